package smpp

import (
	"context"
	"testing"
	"time"
)

func TestRateLimiterAdaptive(t *testing.T) {
	l := newRateLimiter(0, nil)
	if l.rate() != 0 {
		t.Fatalf("adaptive limiter starts at %v, want unlimited", l.rate())
	}
	for range 200 {
		l.ok()
	}
	l.throttled()
	got := l.rate()
	if got < 150 || got > 200 {
		t.Fatalf("after 200 accepted then a throttle: rate %v, want a little under 200", got)
	}
	l.throttled() // inside the cooldown: no second cut
	if l.rate() != got {
		t.Errorf("second throttle in cooldown cut again: %v → %v", got, l.rate())
	}
	// Senders use the whole rate for a while without throttling: it rises.
	now := time.Now().Add(time.Second)
	for i := range 10 {
		l.sent.Add(int64(got * rateTick.Seconds()))
		l.tick(now.Add(time.Duration(i) * rateTick))
	}
	if l.rate() <= got {
		t.Errorf("rate after a second of use without throttling = %v, want above %v", l.rate(), got)
	}
	// Idle senders: no rise.
	r := l.rate()
	l.tick(now.Add(2 * time.Second))
	if l.rate() != r {
		t.Errorf("idle tick changed the rate %v → %v", r, l.rate())
	}
}

func TestRateLimiterCeiling(t *testing.T) {
	l := newRateLimiter(50, nil)
	now := time.Now().Add(time.Second)
	for i := range 50 {
		l.sent.Add(100)
		l.tick(now.Add(time.Duration(i) * rateTick))
	}
	if l.rate() != 50 {
		t.Errorf("rate = %v, want the 50 TPS ceiling", l.rate())
	}
}

func TestRateLimiterWaitContext(t *testing.T) {
	l := newRateLimiter(1, nil)
	ctx, cancel := context.WithTimeout(t.Context(), 20*time.Millisecond)
	defer cancel()
	if err := l.wait(ctx); err != nil {
		t.Fatalf("first slot: %v", err)
	}
	if err := l.wait(ctx); err == nil {
		t.Fatal("second slot at 1 TPS within 20ms: want the context error")
	}
}
