package sms

import (
	"strings"
	"testing"
	"time"
)

func TestParseSpec(t *testing.T) {
	t.Parallel()
	tests := []struct {
		in, want string // want "" = an error
	}{
		{"0 8 * * MON", "0 8 * * 1"},
		{"weekly MON 08:00", "0 8 * * 1"},
		{"Weekly mon,thu 7:30", "30 7 * * 1,4"},
		{"daily 08:00", "0 8 * * *"},
		{"monthly 1 06:15", "15 6 1 * *"},
		{"@hourly", "0 * * * *"},
		{"@weekly", "0 0 * * 0"},
		{"*/15 8-17 * * MON-FRI", "0,15,30,45 8-17 * * 1-5"},
		{"0 8 * * 7", "0 8 * * 0"}, // 7 is Sunday
		{"0 8 1,15 JAN,JUL *", "0 8 1,15 1,7 *"},
		{"5/20 * * * *", "5,25,45 * * * *"},
		{"0 8 29 2 *", "0 8 29 2 *"}, // leap days only
		{"0 8 31 2 *", ""},           // never
		{"0 8 30 2 *", ""},
		{"60 8 * * *", ""},
		{"0 24 * * *", ""},
		{"0 8 0 * *", ""},
		{"0 8 * 13 *", ""},
		{"0 8 * * 8", ""},
		{"0 8 * *", ""},
		{"0 8 * * * *", ""},
		{"*/0 * * * *", ""},
		{"5-1 * * * *", ""},
		{"weekly MON", ""},
		{"daily 8h", ""},
		{"daily 08:5", ""},
		{"", ""},
		{"every monday", ""},
	}
	for _, tt := range tests {
		sp, err := ParseSpec(tt.in)
		switch {
		case tt.want == "" && err == nil:
			t.Errorf("ParseSpec(%q) = %q, want an error", tt.in, sp)
		case tt.want != "" && err != nil:
			t.Errorf("ParseSpec(%q): %v", tt.in, err)
		case tt.want != "" && sp.String() != tt.want:
			t.Errorf("ParseSpec(%q) = %q, want %q", tt.in, sp, tt.want)
		}
	}
}

func TestSpecNext(t *testing.T) {
	t.Parallel()
	monrovia := time.FixedZone("GMT", 0)
	paris, err := time.LoadLocation("Europe/Paris")
	if err != nil {
		t.Skip("no time zone database:", err)
	}
	at := func(zone *time.Location, s string) time.Time {
		v, err := time.ParseInLocation("2006-01-02 15:04", s, zone)
		if err != nil {
			t.Fatal(err)
		}
		return v
	}
	tests := []struct {
		spec  string
		zone  *time.Location
		after string
		want  string
	}{
		{"weekly MON 08:00", monrovia, "2026-11-25 10:00", "2026-11-30 08:00"}, // a Wednesday
		{"weekly MON 08:00", monrovia, "2026-11-30 07:59", "2026-11-30 08:00"},
		{"weekly MON 08:00", monrovia, "2026-11-30 08:00", "2026-12-07 08:00"}, // strictly after
		{"monthly 31 09:00", monrovia, "2026-11-01 00:00", "2026-12-31 09:00"}, // November has no 31st
		{"0 8 29 2 *", monrovia, "2026-03-01 00:00", "2028-02-29 08:00"},
		{"0 8 13 * FRI", monrovia, "2026-11-01 00:00", "2026-11-06 08:00"}, // day of month OR weekday
		{"*/15 * * * *", monrovia, "2026-11-25 10:07", "2026-11-25 10:15"},
		{"30 2 * * *", paris, "2026-03-28 12:00", "2026-03-29 03:30"},       // 02:30 does not exist that night
		{"30 2 * * *", paris, "2026-10-24 12:00", "2026-10-25 02:30"},       // 02:30 happens twice: once
		{"weekly MON 08:00", paris, "2026-03-27 12:00", "2026-03-30 08:00"}, // wall clock across the change
	}
	for _, tt := range tests {
		sp, err := ParseSpec(tt.spec)
		if err != nil {
			t.Fatal(err)
		}
		got := sp.Next(at(tt.zone, tt.after), tt.zone)
		if want := at(tt.zone, tt.want); !got.Equal(want) {
			t.Errorf("%q.Next(%s %s) = %s, want %s", tt.spec, tt.after, tt.zone, got.In(tt.zone), want)
		}
	}
	// Twice in a row from the repeated hour gives two distinct slots a day apart.
	sp, _ := ParseSpec("30 2 * * *")
	first := sp.Next(at(paris, "2026-10-24 12:00"), paris)
	if second := sp.Next(first, paris); second.Sub(first) < 24*time.Hour {
		t.Errorf("after %s the next slot is %s: the repeated 02:30 fired twice", first, second)
	}
}

func TestPeriod(t *testing.T) {
	t.Parallel()
	zone := time.FixedZone("GMT", 0)
	slot := time.Date(2026, 11, 25, 8, 0, 0, 0, zone) // a Wednesday
	tests := []struct {
		r        Reporting
		from, to string
	}{
		{Reporting{Period: "day"}, "2026-11-25", "2026-11-26"},
		{Reporting{Period: "week"}, "2026-11-23", "2026-11-30"},
		{Reporting{Period: "week", Previous: true}, "2026-11-16", "2026-11-23"},
		{Reporting{Period: "month"}, "2026-11-01", "2026-12-01"},
		{Reporting{Period: "month", Previous: true}, "2026-10-01", "2026-11-01"},
	}
	for _, tt := range tests {
		from, to := period(&tt.r, slot, zone)
		if f, e := from.Format("2006-01-02"), to.Format("2006-01-02"); f != tt.from || e != tt.to {
			t.Errorf("period(%+v) = [%s, %s), want [%s, %s)", tt.r, f, e, tt.from, tt.to)
		}
	}
}

// FuzzParseSpec checks the schedule parser: no panic, a spec it accepts writes itself in
// a form it reads back as the same spec, and its next slot is after the time asked and
// one of its slots.
func FuzzParseSpec(f *testing.F) {
	for _, s := range []string{
		"0 8 * * MON",          // the weekly reminder
		"weekly MON,THU 08:00", // plain form
		"monthly 1 06:15",
		"*/15 8-17 * * 1-5", // steps and ranges
		"0 8 29 2 *",        // leap days
		"0 8 31 2 *",        // never
		"@daily",
		"5/20 0 1,15 JAN-JUN SUN", // names
		"1-2/0 * * * *",           // a zero step
		strings.Repeat("1,", 100) + "1 * * * *",
	} {
		f.Add(s)
	}
	zone := time.FixedZone("WAT", 3600)
	base := time.Date(2026, 11, 25, 10, 7, 0, 0, time.UTC)
	f.Fuzz(func(t *testing.T, s string) {
		sp, err := ParseSpec(s)
		if err != nil {
			return
		}
		again, err := ParseSpec(sp.String())
		if err != nil || again != sp {
			t.Fatalf("ParseSpec(%q) = %q, which reads back as %q (%v)", s, sp, again, err)
		}
		next := sp.Next(base, zone)
		if next.IsZero() {
			t.Fatalf("%q (%q) has no slot, yet was accepted", s, sp)
		}
		if !next.After(base) {
			t.Fatalf("%q.Next(%s) = %s, not after", sp, base, next)
		}
		lt := next.In(zone)
		if lt.Second() != 0 || sp.minute&(1<<uint(lt.Minute())) == 0 || sp.hour&(1<<uint(lt.Hour())) == 0 || !sp.dayMatches(lt) {
			t.Fatalf("%q.Next(%s) = %s, which is not one of its slots", sp, base, lt)
		}
	})
}
