package reports

import (
	"strconv"
	"strings"
	"time"

	"github.com/mhero-health/mhero"
)

// PeriodType is the kind of a DHIS2 period.
type PeriodType string

const (
	Day     PeriodType = "day"     // 20261105
	Week    PeriodType = "week"    // 2026W48, an ISO 8601 week (Monday to Sunday)
	Month   PeriodType = "month"   // 202611
	Quarter PeriodType = "quarter" // 2026Q4
	Year    PeriodType = "year"    // 2026
)

// Period is a DHIS2 period: the time range [Start, End) of a day, ISO week, month,
// quarter or year, in the time zone it was parsed in. Reports name periods the way DHIS2
// does so that what the ministry reads here is what it exports there.
type Period struct {
	Type  PeriodType
	Start time.Time // inclusive, midnight
	End   time.Time // exclusive, midnight
}

// Years a period may name. DHIS2 writes years with four digits; data from before 1900
// is not health-worker data.
const (
	minPeriodYear = 1900
	maxPeriodYear = 9999
)

// ParsePeriod reads a DHIS2 period: "2026W48" (ISO week; "2026W1" and "2026W01" alike),
// "202611" (month), "2026Q4", "2026", or "20261105" (day). Days start at midnight in loc
// (nil means UTC), the time zone the country reports in. Anything else is an EINVALID
// error that shows the accepted forms.
func ParsePeriod(s string, loc *time.Location) (Period, error) {
	if loc == nil {
		loc = time.UTC
	}
	p, ok := parsePeriod(s, loc)
	if !ok {
		return Period{}, &mhero.Error{Code: mhero.EINVALID,
			Message: "Period " + strconv.Quote(truncate(s, 40)) + " is not a DHIS2 period.",
			Details: []mhero.ErrorDetail{{Field: "period",
				Message: "use 2026W48 (ISO week), 202611 (month), 2026Q4 (quarter), 2026 (year) or 20261105 (day)"}}}
	}
	return p, nil
}

func parsePeriod(s string, loc *time.Location) (Period, bool) {
	if len(s) < 4 {
		return Period{}, false
	}
	year, ok := digits(s[:4])
	if !ok || year < minPeriodYear || year > maxPeriodYear {
		return Period{}, false
	}
	rest := s[4:]
	switch {
	case rest == "":
		start := time.Date(year, time.January, 1, 0, 0, 0, 0, loc)
		return Period{Year, start, start.AddDate(1, 0, 0)}, true
	case rest[0] == 'Q' || rest[0] == 'q':
		q, ok := digits(rest[1:])
		if !ok || len(rest) != 2 || q < 1 || q > 4 {
			return Period{}, false
		}
		start := time.Date(year, time.Month(3*q-2), 1, 0, 0, 0, 0, loc)
		return Period{Quarter, start, start.AddDate(0, 3, 0)}, true
	case rest[0] == 'W' || rest[0] == 'w':
		w, ok := digits(rest[1:])
		if !ok || len(rest) > 3 || w < 1 || w > isoWeeks(year) {
			return Period{}, false
		}
		start := isoWeekStart(year, w, loc)
		return Period{Week, start, start.AddDate(0, 0, 7)}, true
	case len(rest) == 2:
		m, ok := digits(rest)
		if !ok || m < 1 || m > 12 {
			return Period{}, false
		}
		start := time.Date(year, time.Month(m), 1, 0, 0, 0, 0, loc)
		return Period{Month, start, start.AddDate(0, 1, 0)}, true
	case len(rest) == 4:
		md, ok := digits(rest)
		m, d := md/100, md%100
		if !ok || m < 1 || m > 12 || d < 1 || d > daysIn(year, time.Month(m)) {
			return Period{}, false
		}
		start := time.Date(year, time.Month(m), d, 0, 0, 0, 0, loc)
		return Period{Day, start, start.AddDate(0, 0, 1)}, true
	}
	return Period{}, false
}

// digits reads a short run of ASCII digits (no sign, no spaces).
func digits(s string) (int, bool) {
	if s == "" || len(s) > 8 {
		return 0, false
	}
	n := 0
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c < '0' || c > '9' {
			return 0, false
		}
		n = n*10 + int(c-'0')
	}
	return n, true
}

func daysIn(year int, m time.Month) int {
	return time.Date(year, m+1, 0, 0, 0, 0, 0, time.UTC).Day()
}

// isoWeeks is 53 for the years whose 28 December falls in week 53, else 52.
func isoWeeks(year int) int {
	_, w := time.Date(year, time.December, 28, 0, 0, 0, 0, time.UTC).ISOWeek()
	return w
}

// isoWeekStart is the Monday of ISO week w: week 1 is the week with 4 January in it.
func isoWeekStart(year, w int, loc *time.Location) time.Time {
	jan4 := time.Date(year, time.January, 4, 0, 0, 0, 0, loc)
	monday := jan4.AddDate(0, 0, -((int(jan4.Weekday()) + 6) % 7))
	return monday.AddDate(0, 0, 7*(w-1))
}

// String writes the period the DHIS2 way: 2026W48, 202611, 2026Q4, 2026, 20261105.
func (p Period) String() string {
	y, m, d := p.Start.Date()
	switch p.Type {
	case Day:
		return pad(y, 4) + pad(int(m), 2) + pad(d, 2)
	case Week:
		wy, w := p.Start.ISOWeek()
		return pad(wy, 4) + "W" + strconv.Itoa(w)
	case Month:
		return pad(y, 4) + pad(int(m), 2)
	case Quarter:
		return pad(y, 4) + "Q" + strconv.Itoa((int(m)+2)/3)
	case Year:
		return pad(y, 4)
	}
	return ""
}

// IsZero reports whether p is no period at all (a filter that does not limit by time).
func (p Period) IsZero() bool { return p.Type == "" }

// Contains reports whether t falls inside the period.
func (p Period) Contains(t time.Time) bool { return !t.Before(p.Start) && t.Before(p.End) }

// Split cuts the period into the weeks or months (by) that overlap it, each cut to the
// period's own bounds: the buckets of a trend. A bucket keeps the name of its whole week
// or month, so 202611 by week starts with 2026W44 (Monday 26 October), cut to 1 November.
func (p Period) Split(by PeriodType) []Period {
	var out []Period
	for start := p.bucketStart(by); start.Before(p.End); {
		next := start.AddDate(0, 1, 0)
		if by == Week {
			next = start.AddDate(0, 0, 7)
		}
		out = append(out, Period{Type: by, Start: latest(start, p.Start), End: earliest(next, p.End)})
		start = next
	}
	return out
}

// bucketStart is the start of the week or month that p starts in.
func (p Period) bucketStart(by PeriodType) time.Time {
	y, m, d := p.Start.Date()
	if by == Week {
		return time.Date(y, m, d-(int(p.Start.Weekday())+6)%7, 0, 0, 0, 0, p.Start.Location())
	}
	return time.Date(y, m, 1, 0, 0, 0, 0, p.Start.Location())
}

func latest(a, b time.Time) time.Time {
	if a.After(b) {
		return a
	}
	return b
}

func earliest(a, b time.Time) time.Time {
	if a.Before(b) {
		return a
	}
	return b
}

func pad(n, width int) string {
	s := strconv.Itoa(n)
	if len(s) < width {
		s = strings.Repeat("0", width-len(s)) + s
	}
	return s
}

// truncate shortens s for an error message, so a pasted novel is not echoed back.
func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "…"
}
