package sms

import (
	"fmt"
	"math/bits"
	"strconv"
	"strings"
	"time"
)

// Spec is when a schedule fires, in a time zone's wall-clock time. It is written as cron's
// five fields, "minute hour day-of-month month day-of-week" (numbers, names JAN-DEC and
// SUN-SAT, *, ranges a-b, steps */n and a-b/n, lists a,b; when both day fields are
// restricted either matches, as in cron; a day field counts as unrestricted only when it
// is exactly *), or in a plain form:
//
//	daily 08:00             every day at 08:00
//	weekly MON 08:00        every Monday at 08:00 (MON,THU for several days)
//	monthly 1 08:00         the 1st of every month at 08:00
//	@hourly @daily @weekly @monthly
//
// A wall-clock time that a daylight-saving change skips fires at the same time after the
// change; one it repeats fires once.
type Spec struct {
	minute, hour, dom uint64 // bit n: value n
	month             uint16 // bit n: month n (1-12)
	dow               uint8  // bit n: weekday n (0 = Sunday)
	domAny, dowAny    bool   // the field was *, so the other day field decides alone
	text              string // the five fields, as String writes them
}

var (
	monthNames = []string{"JAN", "FEB", "MAR", "APR", "MAY", "JUN", "JUL", "AUG", "SEP", "OCT", "NOV", "DEC"}
	dayNames   = []string{"SUN", "MON", "TUE", "WED", "THU", "FRI", "SAT"}
)

// maxSpecLength bounds what is parsed: a real spec is a few dozen characters.
const maxSpecLength = 200

// ParseSpec reads a spec; an error says what is wrong.
func ParseSpec(s string) (Spec, error) {
	s = strings.Join(strings.Fields(strings.ToUpper(s)), " ")
	if len(s) > maxSpecLength {
		return Spec{}, fmt.Errorf("schedule is longer than %d characters", maxSpecLength)
	}
	cron, err := plainForm(s)
	if err != nil {
		return Spec{}, err
	}
	f := strings.Fields(cron)
	if len(f) != 5 {
		return Spec{}, fmt.Errorf("schedule %q: want five cron fields (minute hour day month weekday), or daily HH:MM, weekly MON HH:MM, monthly D HH:MM", s)
	}
	var sp Spec
	var mo, dw uint64
	if sp.minute, err = field(f[0], 0, 59, nil); err != nil {
		return Spec{}, fmt.Errorf("minute: %w", err)
	}
	if sp.hour, err = field(f[1], 0, 23, nil); err != nil {
		return Spec{}, fmt.Errorf("hour: %w", err)
	}
	if sp.dom, err = field(f[2], 1, 31, nil); err != nil {
		return Spec{}, fmt.Errorf("day of month: %w", err)
	}
	if mo, err = field(f[3], 1, 12, monthNames); err != nil {
		return Spec{}, fmt.Errorf("month: %w", err)
	}
	if dw, err = field(f[4], 0, 7, dayNames); err != nil {
		return Spec{}, fmt.Errorf("day of week: %w", err)
	}
	if dw&(1<<7) != 0 { // 7 is Sunday too
		dw = dw&^(1<<7) | 1
	}
	sp.month, sp.dow = uint16(mo), uint8(dw)
	sp.domAny, sp.dowAny = f[2] == "*", f[4] == "*"
	sp.text = sp.format()
	if !sp.possible() {
		return Spec{}, fmt.Errorf("schedule %q never fires (no such day in those months)", s)
	}
	return sp, nil
}

// plainForm turns the plain forms into cron fields; anything else is returned as it is.
func plainForm(s string) (string, error) {
	switch s {
	case "@HOURLY":
		return "0 * * * *", nil
	case "@DAILY", "@MIDNIGHT":
		return "0 0 * * *", nil
	case "@WEEKLY":
		return "0 0 * * SUN", nil
	case "@MONTHLY":
		return "0 0 1 * *", nil
	}
	f := strings.Fields(s)
	if len(f) == 0 {
		return "", fmt.Errorf("schedule is empty")
	}
	var day, at string
	switch {
	case f[0] == "DAILY" && len(f) == 2:
		day, at = "* * *", f[1]
	case f[0] == "WEEKLY" && len(f) == 3:
		day, at = "* * "+f[1], f[2]
	case f[0] == "MONTHLY" && len(f) == 3:
		day, at = f[1]+" * *", f[2]
	case f[0] == "DAILY" || f[0] == "WEEKLY" || f[0] == "MONTHLY":
		return "", fmt.Errorf("schedule %q: want daily HH:MM, weekly MON HH:MM or monthly D HH:MM", s)
	default:
		return s, nil
	}
	h, m, ok := strings.Cut(at, ":")
	hh, err1 := strconv.Atoi(h)
	mm, err2 := strconv.Atoi(m)
	if !ok || err1 != nil || err2 != nil || hh < 0 || hh > 23 || mm < 0 || mm > 59 || len(m) != 2 {
		return "", fmt.Errorf("schedule %q: %q is not a time of day such as 08:00", s, at)
	}
	return fmt.Sprintf("%d %d %s", mm, hh, day), nil
}

// field reads one cron field into a bit set of the values lo..hi it allows.
func field(s string, lo, hi int, names []string) (uint64, error) {
	var set uint64
	for _, part := range strings.Split(s, ",") {
		rng, stepText, hasStep := strings.Cut(part, "/")
		step := 1
		if hasStep {
			n, err := strconv.Atoi(stepText)
			if err != nil || n < 1 || n > hi {
				return 0, fmt.Errorf("step %q is not a number from 1 to %d", stepText, hi)
			}
			step = n
		}
		a, b := lo, hi
		switch {
		case rng == "*":
		case strings.Contains(rng, "-"):
			x, y, _ := strings.Cut(rng, "-")
			var err error
			if a, err = value(x, lo, hi, names); err != nil {
				return 0, err
			}
			if b, err = value(y, lo, hi, names); err != nil {
				return 0, err
			}
			if a > b {
				return 0, fmt.Errorf("range %q runs backwards", rng)
			}
		default:
			v, err := value(rng, lo, hi, names)
			if err != nil {
				return 0, err
			}
			a, b = v, v
			if hasStep {
				b = hi // "5/15": from 5, every 15
			}
		}
		for v := a; v <= b; v += step {
			set |= 1 << uint(v)
		}
	}
	return set, nil
}

func value(s string, lo, hi int, names []string) (int, error) {
	for i, n := range names {
		if s == n {
			if lo == 1 {
				return i + 1, nil
			}
			return i, nil
		}
	}
	v, err := strconv.Atoi(s)
	if err != nil || v < lo || v > hi || len(s) > 2 {
		return 0, fmt.Errorf("%q is not a value from %d to %d", s, lo, hi)
	}
	return v, nil
}

// possible reports whether the spec has a slot at all: "0 8 31 2 *" (February 31st)
// has none.
func (sp Spec) possible() bool {
	switch {
	case sp.minute == 0 || sp.hour == 0 || sp.month == 0:
		return false
	case sp.domAny || !sp.dowAny:
		return true // a weekday decides (or either field may match): every month has one
	}
	for m := 1; m <= 12; m++ {
		days := uint64(1)<<uint(daysInMonth(m)+1) - 2 // bits 1..n
		if sp.month&(1<<uint(m)) != 0 && sp.dom&days != 0 {
			return true
		}
	}
	return false
}

// daysInMonth is the most days month m can have (February 29).
func daysInMonth(m int) int {
	switch m {
	case 2:
		return 29
	case 4, 6, 9, 11:
		return 30
	}
	return 31
}

// String writes the spec as five cron fields.
func (sp Spec) String() string { return sp.text }

func (sp Spec) format() string {
	f := func(set uint64, lo, hi int, any bool) string {
		if any {
			return "*"
		}
		var parts []string
		for v := lo; v <= hi; v++ {
			if set&(1<<uint(v)) == 0 {
				continue
			}
			w := v
			for w+1 <= hi && set&(1<<uint(w+1)) != 0 {
				w++
			}
			switch {
			case w == v:
				parts = append(parts, strconv.Itoa(v))
			default:
				parts = append(parts, strconv.Itoa(v)+"-"+strconv.Itoa(w))
			}
			v = w
		}
		return strings.Join(parts, ",")
	}
	all := func(set uint64, lo, hi int) bool { return bits.OnesCount64(set) == hi-lo+1 }
	return strings.Join([]string{
		f(sp.minute, 0, 59, all(sp.minute, 0, 59)),
		f(sp.hour, 0, 23, all(sp.hour, 0, 23)),
		f(sp.dom, 1, 31, sp.domAny),
		f(uint64(sp.month), 1, 12, all(uint64(sp.month), 1, 12)),
		f(uint64(sp.dow), 0, 6, sp.dowAny),
	}, " ")
}

// dayMatches reports whether the date is one of the spec's days.
func (sp Spec) dayMatches(t time.Time) bool {
	if sp.month&(1<<uint(t.Month())) == 0 {
		return false
	}
	dom := sp.dom&(1<<uint(t.Day())) != 0
	dow := sp.dow&(1<<uint(t.Weekday())) != 0
	switch {
	case sp.domAny && sp.dowAny:
		return true
	case sp.domAny:
		return dow
	case sp.dowAny:
		return dom
	}
	return dom || dow
}

// Next returns the first slot strictly after t, in zone; zero when there is none in the
// next five years (a spec ParseSpec accepted always has one).
func (sp Spec) Next(t time.Time, zone *time.Location) time.Time {
	if zone == nil {
		zone = time.UTC
	}
	lt := t.In(zone)
	day := time.Date(lt.Year(), lt.Month(), lt.Day(), 0, 0, 0, 0, zone)
	for d := 0; d < 5*366+1; d++ {
		date := day.AddDate(0, 0, d)
		if !sp.dayMatches(date) {
			continue
		}
		// Skipped wall-clock times normalise forward, so candidates of one day are not
		// always in order: take the earliest after t.
		var best time.Time
		for h := 0; h < 24; h++ {
			if sp.hour&(1<<uint(h)) == 0 {
				continue
			}
			for m := 0; m < 60; m++ {
				if sp.minute&(1<<uint(m)) == 0 {
					continue
				}
				c := time.Date(date.Year(), date.Month(), date.Day(), h, m, 0, 0, zone)
				if c.After(t) && (best.IsZero() || c.Before(best)) {
					best = c
				}
			}
		}
		if !best.IsZero() {
			return best
		}
	}
	return time.Time{}
}
