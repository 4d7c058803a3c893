package outbox

import (
	"testing"
	"time"
)

func TestPacingSpreadsEvenlyOutsideQuietHours(t *testing.T) {
	monrovia := time.FixedZone("GMT", 0)
	quiet, err := ParseQuietHours("21:00-07:00", monrovia)
	if err != nil {
		t.Fatal(err)
	}
	at := func(day, h, m int) time.Time { return time.Date(2026, 11, day, h, m, 0, 0, monrovia) }
	cases := []struct {
		name   string
		p      pacing
		i      int
		want   time.Time
		inside bool
	}{
		{"no spread: now", pacing{start: at(26, 10, 0), n: 100}, 99, at(26, 10, 0), false},
		{"even spread", pacing{start: at(26, 10, 0), spread: 2 * time.Hour, n: 4}, 2, at(26, 11, 0), false},
		{"no spread in quiet hours: at their end", pacing{start: at(26, 23, 0), n: 10, quiet: quiet}, 5, at(27, 7, 0), false},
		{"spread across the night skips it", pacing{start: at(26, 20, 0), spread: 2 * time.Hour, n: 2}, 1, at(26, 21, 0), false},
		{"with quiet hours the second hour is the morning", pacing{start: at(26, 20, 0), spread: 2 * time.Hour, n: 2, quiet: quiet}, 1, at(27, 7, 0), false},
		{"after midnight in quiet hours", pacing{start: at(27, 3, 0), spread: time.Hour, n: 4, quiet: quiet}, 2, at(27, 7, 30), false},
	}
	for _, c := range cases {
		if got := c.p.due(c.i); !got.Equal(c.want) {
			t.Errorf("%s: due(%d) = %v, want %v", c.name, c.i, got, c.want)
		}
	}
	// Every due time of a long paced send lies outside the quiet hours, in order.
	p := pacing{start: at(26, 18, 0), spread: 30 * time.Hour, n: 5000, quiet: quiet}
	prev := time.Time{}
	for i := range p.n {
		d := p.due(i)
		from, to := quiet.nextQuiet(d)
		if !d.Before(from) && d.Before(to) {
			t.Fatalf("due(%d) = %v falls in quiet hours %v-%v", i, d, from, to)
		}
		if d.Before(prev) {
			t.Fatalf("due(%d) = %v before due(%d) = %v", i, d, i-1, prev)
		}
		prev = d
	}
	if end := p.end(); !end.Equal(at(28, 20, 0)) { // 3h + 14h + 13h of day time
		t.Errorf("30h of day time from 18:00 ends %v", end)
	}
}

func TestParseQuietHours(t *testing.T) {
	for _, bad := range []string{"21-07", "21:00", "25:00-07:00", "07:00-07:00", "x"} {
		if _, err := ParseQuietHours(bad, time.UTC); err == nil {
			t.Errorf("%q accepted", bad)
		}
	}
	q, err := ParseQuietHours(" 22:30 - 06:15 ", time.UTC)
	if err != nil || q.String() != "22:30-06:15" {
		t.Errorf("got %q, %v", q.String(), err)
	}
	if q, err := ParseQuietHours("", time.UTC); err != nil || !q.IsZero() {
		t.Errorf("empty: %v %v", q, err)
	}
}
