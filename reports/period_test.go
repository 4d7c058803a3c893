package reports_test

import (
	"testing"
	"time"

	"github.com/mhero-health/mhero"
	"github.com/mhero-health/mhero/reports"
)

func day(y int, m time.Month, d int) time.Time { return time.Date(y, m, d, 0, 0, 0, 0, time.UTC) }

func TestParsePeriod(t *testing.T) {
	t.Parallel()
	tests := []struct {
		in         string
		typ        reports.PeriodType
		start, end time.Time
		canonical  string
	}{
		{"2026", reports.Year, day(2026, 1, 1), day(2027, 1, 1), "2026"},
		{"202611", reports.Month, day(2026, 11, 1), day(2026, 12, 1), "202611"},
		{"202602", reports.Month, day(2026, 2, 1), day(2026, 3, 1), "202602"},
		{"2026Q4", reports.Quarter, day(2026, 10, 1), day(2027, 1, 1), "2026Q4"},
		{"2026q1", reports.Quarter, day(2026, 1, 1), day(2026, 4, 1), "2026Q1"},
		{"20261105", reports.Day, day(2026, 11, 5), day(2026, 11, 6), "20261105"},
		{"20240229", reports.Day, day(2024, 2, 29), day(2024, 3, 1), "20240229"},
		// ISO weeks: week 1 holds 4 January, weeks start on Monday.
		{"2026W48", reports.Week, day(2026, 11, 23), day(2026, 11, 30), "2026W48"},
		{"2026W1", reports.Week, day(2025, 12, 29), day(2026, 1, 5), "2026W1"},
		{"2026W01", reports.Week, day(2025, 12, 29), day(2026, 1, 5), "2026W1"},
		{"2020W53", reports.Week, day(2020, 12, 28), day(2021, 1, 4), "2020W53"},
		{"2021W1", reports.Week, day(2021, 1, 4), day(2021, 1, 11), "2021W1"},
		{"2026W53", reports.Week, day(2026, 12, 28), day(2027, 1, 4), "2026W53"},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			p, err := reports.ParsePeriod(tt.in, nil)
			if err != nil {
				t.Fatalf("ParsePeriod(%q): %v", tt.in, err)
			}
			if p.Type != tt.typ || !p.Start.Equal(tt.start) || !p.End.Equal(tt.end) {
				t.Errorf("ParsePeriod(%q) = %s [%s, %s), want %s [%s, %s)", tt.in, p.Type, p.Start, p.End, tt.typ, tt.start, tt.end)
			}
			if got := p.String(); got != tt.canonical {
				t.Errorf("ParsePeriod(%q).String() = %q, want %q", tt.in, got, tt.canonical)
			}
		})
	}
}

func TestParsePeriodRejects(t *testing.T) {
	t.Parallel()
	for _, in := range []string{"", "26", "202", "2026W0", "2026W54", "2025W53", "2026W", "2026W123", "202613", "202600",
		"2026Q0", "2026Q5", "2026Q", "2026Q12", "20260230", "20261301", "2026-11", "2026-11-05", "1899", "0000", "２０２６",
		"+026", "2026 ", " 2026", "2026S1", "2026BiW1", "2026AprilS1", "2026W4a", "abcd", "2026M11"} {
		_, err := reports.ParsePeriod(in, nil)
		if mhero.ErrorCode(err) != mhero.EINVALID {
			t.Errorf("ParsePeriod(%q) = %v, want an EINVALID error", in, err)
		}
	}
}

// Periods start at midnight where the country is, not in UTC.
func TestParsePeriodInTimeZone(t *testing.T) {
	t.Parallel()
	nairobi := time.FixedZone("EAT", 3*3600)
	p, err := reports.ParsePeriod("202611", nairobi)
	if err != nil {
		t.Fatal(err)
	}
	if want := time.Date(2026, 10, 31, 21, 0, 0, 0, time.UTC); !p.Start.Equal(want) {
		t.Errorf("202611 in EAT starts at %s, want %s", p.Start.UTC(), want)
	}
}

func TestPeriodSplit(t *testing.T) {
	t.Parallel()
	month, _ := reports.ParsePeriod("202611", nil)
	var got []string
	for _, b := range month.Split(reports.Week) {
		got = append(got, b.String()+" "+b.Start.Format("0102")+"-"+b.End.Format("0102"))
	}
	want := []string{"2026W44 1101-1102", "2026W45 1102-1109", "2026W46 1109-1116", "2026W47 1116-1123",
		"2026W48 1123-1130", "2026W49 1130-1201"}
	if len(got) != len(want) {
		t.Fatalf("202611 by week = %v, want %v", got, want)
	}
	for i := range want {
		if got[i] != want[i] {
			t.Errorf("202611 by week [%d] = %q, want %q", i, got[i], want[i])
		}
	}
	year, _ := reports.ParsePeriod("2026", nil)
	if months := year.Split(reports.Month); len(months) != 12 || months[11].String() != "202612" {
		t.Errorf("2026 by month = %d buckets ending %v, want 12 ending 202612", len(months), months[len(months)-1])
	}
	if weeks := year.Split(reports.Week); len(weeks) != 53 || weeks[0].String() != "2026W1" || weeks[52].String() != "2026W53" {
		t.Errorf("2026 by week = %d buckets, %v .. %v; want 53, 2026W1 .. 2026W53", len(weeks), weeks[0], weeks[len(weeks)-1])
	}
}

// FuzzParsePeriod checks that any period the parser accepts is a non-empty range that
// starts at midnight, that its canonical name parses back to the same range, and that
// the parser never panics on anything.
func FuzzParsePeriod(f *testing.F) {
	for _, seed := range []string{
		"2026W48",  // ISO week, the DHIS2 weekly form
		"2026W1",   // DHIS2 writes weeks without a leading zero
		"2020W53",  // a 53-week year
		"202611",   // month
		"2026Q4",   // quarter
		"2026",     // year
		"20261105", // day
		"2026w01",  // typed by hand
		"2026-11",  // ISO month: refused
		"2026W99",  // out of range: refused
		"",         // empty
	} {
		f.Add(seed)
	}
	f.Fuzz(func(t *testing.T, s string) {
		p, err := reports.ParsePeriod(s, nil)
		if err != nil {
			if mhero.ErrorCode(err) != mhero.EINVALID {
				t.Fatalf("ParsePeriod(%q) error %v is not EINVALID", s, err)
			}
			return
		}
		if !p.Start.Before(p.End) {
			t.Fatalf("ParsePeriod(%q) = [%s, %s): empty", s, p.Start, p.End)
		}
		if h, m, sec := p.Start.Clock(); h != 0 || m != 0 || sec != 0 {
			t.Fatalf("ParsePeriod(%q) starts at %s, not midnight", s, p.Start)
		}
		if p.Type == reports.Week && p.Start.Weekday() != time.Monday {
			t.Fatalf("week %q starts on %s", s, p.Start.Weekday())
		}
		name := p.String()
		q, err := reports.ParsePeriod(name, nil)
		if err != nil || q.Type != p.Type || !q.Start.Equal(p.Start) || !q.End.Equal(p.End) {
			t.Fatalf("ParsePeriod(%q) = %s, which parses back as %v, %v", s, name, q, err)
		}
		if !p.Contains(p.Start) || p.Contains(p.End) {
			t.Fatalf("%s does not hold its start or holds its end", name)
		}
	})
}
