package outbox

import (
	"fmt"
	"strconv"
	"strings"
	"time"
)

// QuietHours is the part of each day, in the deployment's time zone, when bulk messages
// are not delivered (a broadcast paced across it waits for the morning). Start after End
// wraps midnight ("21:00"–"07:00"). The zero value has no quiet hours.
type QuietHours struct {
	Start, End time.Duration // since local midnight
	Zone       *time.Location
}

// ParseQuietHours reads "21:00-07:00" in zone; "" is no quiet hours.
func ParseQuietHours(s string, zone *time.Location) (QuietHours, error) {
	if strings.TrimSpace(s) == "" {
		return QuietHours{}, nil
	}
	a, b, ok := strings.Cut(s, "-")
	start, err1 := clock(a)
	end, err2 := clock(b)
	if !ok || err1 != nil || err2 != nil || start == end {
		return QuietHours{}, fmt.Errorf("quiet hours %q: want HH:MM-HH:MM, e.g. 21:00-07:00", s)
	}
	if zone == nil {
		zone = time.UTC
	}
	return QuietHours{Start: start, End: end, Zone: zone}, nil
}

func clock(s string) (time.Duration, error) {
	h, m, ok := strings.Cut(strings.TrimSpace(s), ":")
	hh, err1 := strconv.Atoi(h)
	mm, err2 := strconv.Atoi(m)
	if !ok || err1 != nil || err2 != nil || hh < 0 || hh > 23 || mm < 0 || mm > 59 {
		return 0, fmt.Errorf("not a time of day: %q", s)
	}
	return time.Duration(hh)*time.Hour + time.Duration(mm)*time.Minute, nil
}

// IsZero reports whether there are no quiet hours.
func (q QuietHours) IsZero() bool { return q.Zone == nil }

// String writes "21:00-07:00".
func (q QuietHours) String() string {
	if q.IsZero() {
		return ""
	}
	f := func(d time.Duration) string { return fmt.Sprintf("%02d:%02d", int(d.Hours()), int(d.Minutes())%60) }
	return f(q.Start) + "-" + f(q.End)
}

// nextQuiet returns the next quiet period [from, to) that ends after t (possibly the one
// t is in).
func (q QuietHours) nextQuiet(t time.Time) (from, to time.Time) {
	lt := t.In(q.Zone)
	day := time.Date(lt.Year(), lt.Month(), lt.Day(), 0, 0, 0, 0, q.Zone)
	for d := -1; ; d++ {
		base := day.AddDate(0, 0, d)
		from = base.Add(q.Start)
		to = base.Add(q.End)
		if q.End < q.Start {
			to = base.AddDate(0, 0, 1).Add(q.End)
		}
		if to.After(t) {
			return from, to
		}
	}
}

// pacing maps the i-th of n messages to its due time: evenly over spread of allowed time
// from start, where allowed time skips the quiet hours when quiet is set. With spread 0
// every message is due at start, or at the end of the quiet period start falls in.
type pacing struct {
	start  time.Time
	spread time.Duration
	n      int
	quiet  QuietHours // zero: none
}

// due returns when message i (0-based) may be sent.
func (p pacing) due(i int) time.Time {
	var offset time.Duration
	if p.n > 0 && p.spread > 0 {
		offset = time.Duration(float64(p.spread) * float64(i) / float64(p.n))
	}
	return p.advance(p.start, offset)
}

// advance moves from t by d of allowed (non-quiet) time.
func (p pacing) advance(t time.Time, d time.Duration) time.Time {
	if p.quiet.IsZero() {
		return t.Add(d)
	}
	for range 400 { // a year of days at most; quiet hours are never the whole day
		from, to := p.quiet.nextQuiet(t)
		if !t.Before(from) { // inside a quiet period: skip to its end
			t = to
			continue
		}
		if room := from.Sub(t); d < room {
			return t.Add(d)
		} else {
			d -= room
			t = to
		}
	}
	return t.Add(d)
}

// end returns when the last message of the pacing is due at the latest.
func (p pacing) end() time.Time { return p.advance(p.start, p.spread) }
