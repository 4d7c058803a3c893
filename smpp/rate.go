package smpp

import (
	"context"
	"math"
	"sync"
	"sync/atomic"
	"time"
)

// Rate control of one MNO account, shared by all its binds. Every submit_sm (every
// segment) takes one slot. With a configured TPS the rate starts at that cap and never
// goes above it; with TPS 0 it starts unlimited. Either way a throttling answer
// (ESME_RTHROTTLED, ESME_RMSGQFUL) cuts the rate to 95% of what the SMSC accepted over
// the last second (halves it when nothing was accepted), at most once per rateCooldown,
// and a tick every rateTick raises it by 2% (at least one PDU/s) while the senders use
// what they are given and the SMSC does not complain. That keeps an account just under
// an unknown operator limit instead of bouncing off it.
const (
	rateTick       = 100 * time.Millisecond
	rateWindow     = 10 // ticks of accepted-count history: one second
	rateCooldown   = 250 * time.Millisecond
	rateCutFactor  = 0.95
	rateGrowFactor = 0.02
	rateUnlimited  = 100000 // an adaptive rate above this goes back to unlimited
	// rateMargin paces 1% under the rate, so the jitter of scheduling and the network
	// does not make the SMSC count rate+1 PDUs in one of its seconds.
	rateMargin = 0.99
)

type rateLimiter struct {
	ceiling float64 // configured cap; 0 = none (adaptive from unlimited)
	// shared, with a Coordinator and a cap, is the account's schedule across instances:
	// every slot handed out is one reserved there.
	shared *sharedRate

	rateBits atomic.Uint64 // float64 bits of the current rate; 0 = unlimited
	accepted atomic.Int64  // submit_sm answered OK, all time
	sent     atomic.Int64  // slots handed out, all time

	mu       sync.Mutex
	tat      time.Time // next free slot (GCRA theoretical arrival time)
	lastCut  time.Time
	hist     [rateWindow + 1]int64 // accepted at each of the last ticks, ring
	histN    int                   // ticks recorded
	lastSent int64
	ring     []int64 // with a configured cap: when each of the last cap slots was used
	next     int
	onChange func(rate float64) // metrics hook; called with mu held
}

func newRateLimiter(tps int, onChange func(float64)) *rateLimiter {
	l := &rateLimiter{ceiling: float64(tps), onChange: onChange}
	if tps > 0 {
		l.ring = make([]int64, tps)
	}
	l.setRate(float64(tps))
	return l
}

// rate is the current limit in PDUs per second; 0 means unlimited.
func (l *rateLimiter) rate() float64 { return math.Float64frombits(l.rateBits.Load()) }

func (l *rateLimiter) setRate(r float64) {
	l.rateBits.Store(math.Float64bits(r))
	if l.onChange != nil {
		l.onChange(r)
	}
}

// wait blocks until the next PDU may be sent, or ctx ends. Slots are paced at exact
// intervals (no burst), so no one-second window ever sees more than rate+1 PDUs.
func (l *rateLimiter) wait(ctx context.Context) error {
	l.sent.Add(1)
	if l.rate() == 0 {
		return nil
	}
	if l.shared == nil {
		return l.pace(ctx)
	}
	// The shared schedule is spaced for the cap already; a rate cut by throttling paces
	// here first, then takes its slot of the schedule.
	if l.rate() < l.ceiling {
		if err := l.pace(ctx); err != nil {
			return err
		}
	}
	return l.shared.take(ctx)
}

// pace is wait for this process alone.
func (l *rateLimiter) pace(ctx context.Context) error {
	l.mu.Lock()
	r := l.rate()
	if r == 0 {
		l.mu.Unlock()
		return nil
	}
	now := time.Now()
	slot := l.tat
	if slot.Before(now) {
		slot = now
	}
	l.tat = slot.Add(time.Duration(float64(time.Second) / (r * rateMargin)))
	l.mu.Unlock()
	if d := slot.Sub(now); d > 0 && !sleep(ctx, d) {
		return ctx.Err()
	}
	if l.ring == nil {
		return nil
	}
	// A configured cap is also held as a hard sliding window over the moments slots are
	// used (just before the write): a sender that woke late cannot squeeze in with the
	// next on-time one and make any second hold more than the cap.
	for {
		l.mu.Lock()
		now := time.Now().UnixNano()
		oldest := l.ring[l.next]
		if oldest == 0 || now-oldest >= int64(time.Second) {
			l.ring[l.next] = now
			l.next = (l.next + 1) % len(l.ring)
			l.mu.Unlock()
			return nil
		}
		l.mu.Unlock()
		if !sleep(ctx, time.Duration(oldest+int64(time.Second)-now)) {
			return ctx.Err()
		}
	}
}

// ok records an accepted submit_sm.
func (l *rateLimiter) ok() { l.accepted.Add(1) }

// throttled records a throttling answer and cuts the rate, at most once per cooldown
// (the answers to PDUs already in flight at the old rate do not count twice).
func (l *rateLimiter) throttled() {
	l.mu.Lock()
	defer l.mu.Unlock()
	now := time.Now()
	if now.Sub(l.lastCut) < rateCooldown {
		return
	}
	l.lastCut = now
	// While the SMSC throttles, what it accepted over the last second is its limit: aim a
	// little under it. This does not compound, so throttling answers that echo an earlier
	// burst (the SMSC's window still remembers it) do not spiral the rate down.
	var r float64
	if measured := float64(l.acceptedLastSecond()); measured > 0 {
		r = measured * rateCutFactor
	} else if cur := l.rate(); cur > 0 {
		r = cur / 2 // nothing accepted for a second: halve
	}
	if l.ceiling > 0 {
		r = min(r, l.ceiling)
	}
	l.setRate(max(r, 1))
}

// acceptedLastSecond counts OK answers over the last rateWindow ticks; before a second
// of history exists it counts from the start, still over a full second.
func (l *rateLimiter) acceptedLastSecond() int64 {
	now := l.accepted.Load()
	if l.histN == 0 {
		return now
	}
	back := min(l.histN, rateWindow)
	old := l.hist[(l.histN-back)%len(l.hist)]
	if l.histN < rateWindow {
		old = 0
	}
	return now - old
}

// tick records history and raises a limited rate when the senders used most of it and
// the SMSC has not throttled for a cooldown.
func (l *rateLimiter) tick(now time.Time) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.hist[l.histN%len(l.hist)] = l.accepted.Load()
	l.histN++
	sent := l.sent.Load()
	used := float64(sent - l.lastSent)
	l.lastSent = sent
	r := l.rate()
	if r == 0 || now.Sub(l.lastCut) < rateCooldown {
		return
	}
	if used < 0.8*r*rateTick.Seconds() {
		return // not limited by us: no evidence more would be accepted
	}
	r += max(1, r*rateGrowFactor)
	switch {
	case l.ceiling > 0 && r > l.ceiling:
		r = l.ceiling
	case l.ceiling == 0 && r > rateUnlimited:
		r = 0
	}
	l.setRate(r)
}

// run ticks until ctx ends.
func (l *rateLimiter) run(ctx context.Context) {
	t := time.NewTicker(rateTick)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case now := <-t.C:
			l.tick(now)
		}
	}
}
