package sessions_test

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/mhero-health/mhero/registry/registrytest"
	"github.com/mhero-health/mhero/sessions"
)

// openStores opens n Stores on one prefix: n instances of the server.
func openStores(t *testing.T, n int) []*sessions.Store {
	t.Helper()
	if testing.Short() {
		t.Skip("needs Valkey/Redis")
	}
	prefix := registrytest.KeyPrefix(t)
	var out []*sessions.Store
	for range n {
		s, err := sessions.Open(t.Context(), registrytest.ValkeyURL(), prefix)
		if err != nil {
			t.Fatalf("connect Valkey (run make deps): %v", err)
		}
		t.Cleanup(s.Close)
		out = append(out, s)
	}
	return out
}

func TestSlotLeaseHolders(t *testing.T) {
	st := openStores(t, 2)
	a, b := st[0], st[1]
	ctx := t.Context()
	steps := []struct {
		name string
		do   func() (bool, error)
		want bool
	}{
		{"a acquires a free slot", func() (bool, error) { return a.AcquireSlot(ctx, "lonestar", 1, "a", time.Minute) }, true},
		{"b cannot acquire it", func() (bool, error) { return b.AcquireSlot(ctx, "lonestar", 1, "b", time.Minute) }, false},
		{"a cannot acquire it twice", func() (bool, error) { return a.AcquireSlot(ctx, "lonestar", 1, "a", time.Minute) }, false},
		{"b acquires another slot", func() (bool, error) { return b.AcquireSlot(ctx, "lonestar", 2, "b", time.Minute) }, true},
		{"b acquires slot 1 of another account", func() (bool, error) { return b.AcquireSlot(ctx, "orange", 1, "b", time.Minute) }, true},
		{"b cannot renew a's lease", func() (bool, error) { return b.RenewSlot(ctx, "lonestar", 1, "b", time.Minute) }, false},
		{"a renews its lease", func() (bool, error) { return a.RenewSlot(ctx, "lonestar", 1, "a", time.Minute) }, true},
		{"b's release leaves a's lease", func() (bool, error) {
			if err := b.ReleaseSlot(ctx, "lonestar", 1, "b"); err != nil {
				return false, err
			}
			h, err := a.SlotHolder(ctx, "lonestar", 1)
			return h == "a", err
		}, true},
		{"a releases, b acquires", func() (bool, error) {
			if err := a.ReleaseSlot(ctx, "lonestar", 1, "a"); err != nil {
				return false, err
			}
			return b.AcquireSlot(ctx, "lonestar", 1, "b", time.Minute)
		}, true},
		{"a cannot renew a released lease", func() (bool, error) { return a.RenewSlot(ctx, "lonestar", 1, "a", time.Minute) }, false},
	}
	for _, s := range steps {
		got, err := s.do()
		if err != nil {
			t.Fatalf("%s: %v", s.name, err)
		}
		if got != s.want {
			t.Fatalf("%s: got %v, want %v", s.name, got, s.want)
		}
	}
}

// TestSlotLeaseExpires: a holder that stops renewing loses the slot when its TTL runs
// out; it can then neither renew nor release the new holder's lease.
func TestSlotLeaseExpires(t *testing.T) {
	st := openStores(t, 2)
	a, b := st[0], st[1]
	ctx := t.Context()
	if ok, err := a.AcquireSlot(ctx, "lonestar", 1, "a", 300*time.Millisecond); err != nil || !ok {
		t.Fatalf("AcquireSlot = %v, %v", ok, err)
	}
	if ok, _ := b.AcquireSlot(ctx, "lonestar", 1, "b", time.Minute); ok {
		t.Fatal("b took a live lease")
	}
	deadline := time.Now().Add(5 * time.Second)
	for {
		ok, err := b.AcquireSlot(ctx, "lonestar", 1, "b", time.Minute)
		if err != nil {
			t.Fatal(err)
		}
		if ok {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the lease never expired")
		}
		time.Sleep(20 * time.Millisecond)
	}
	if ok, err := a.RenewSlot(ctx, "lonestar", 1, "a", time.Minute); err != nil || ok {
		t.Errorf("a renewed an expired lease now b's: %v, %v", ok, err)
	}
	if err := a.ReleaseSlot(ctx, "lonestar", 1, "a"); err != nil {
		t.Fatal(err)
	}
	if h, err := b.SlotHolder(ctx, "lonestar", 1); err != nil || h != "b" {
		t.Errorf("holder after a's late release = %q, %v; want b", h, err)
	}
}

// TestReserveRateSchedule: two instances reserving on one account get consecutive,
// non-overlapping slots, never beyond the horizon; a debit pushes the schedule back.
// Offsets are from the server's now at each call, so the bounds allow for the time
// between calls.
func TestReserveRateSchedule(t *testing.T) {
	st := openStores(t, 2)
	a, b := st[0], st[1]
	ctx := t.Context()
	const interval, horizon = 10 * time.Millisecond, 200 * time.Millisecond
	start := time.Now()
	g, first, err := a.ReserveRate(ctx, "lonestar", interval, horizon, 5, 0)
	if err != nil {
		t.Fatal(err)
	}
	if g != 5 || first != 0 {
		t.Fatalf("first reservation = %d from %v, want 5 from now", g, first)
	}
	// b's slots start where a's end, 5 intervals after a's first, less the time since.
	g, first, err = b.ReserveRate(ctx, "lonestar", interval, horizon, 5, 0)
	since := time.Since(start)
	if err != nil {
		t.Fatal(err)
	}
	if g != 5 || first > 5*interval || first < 5*interval-since {
		t.Fatalf("second instance = %d from %v, want 5 from %v less up to %v", g, first, 5*interval, since)
	}
	// The horizon caps a large request: slots up to now+200ms, 10 taken already.
	g, _, err = a.ReserveRate(ctx, "lonestar", interval, horizon, 1000, 0)
	since = time.Since(start)
	if err != nil {
		t.Fatal(err)
	}
	if most := 11 + int(since/interval) + 1; g < 11 || g > most {
		t.Fatalf("reservation up to the horizon = %d slots, want 11 to %d", g, most)
	}
	// Past the horizon nothing is granted, only a wait under one interval; time passing
	// frees a slot now and then, so ask until the schedule is full.
	full := false
	for i := 0; i < 100 && !full; i++ {
		g, wait, err := b.ReserveRate(ctx, "lonestar", interval, horizon, 5, 0)
		switch {
		case err != nil:
			t.Fatal(err)
		case g > 2:
			t.Fatalf("reservation with the horizon full = %d slots", g)
		case g == 0 && (wait <= 0 || wait > interval):
			t.Fatalf("reservation past the horizon: wait %v, want (0, %v]", wait, interval)
		}
		full = g == 0
	}
	if !full {
		t.Fatal("the schedule never refused a reservation past the horizon")
	}
	// Another account has its own schedule; a debit is charged before the grant.
	g, first, err = a.ReserveRate(ctx, "orange", interval, horizon, 1, 7)
	if err != nil {
		t.Fatal(err)
	}
	if g != 1 || first != 7*interval {
		t.Fatalf("reservation after a debit of 7 = %d from %v, want 1 from %v", g, first, 7*interval)
	}
}

func TestLeaseErrorsNameValkey(t *testing.T) {
	st := openStores(t, 1)
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	if _, err := st[0].AcquireSlot(ctx, "lonestar", 1, "a", time.Second); err == nil || !strings.Contains(err.Error(), "valkey") {
		t.Errorf("AcquireSlot with a cancelled context = %v, want a valkey error", err)
	}
	if _, _, err := st[0].ReserveRate(ctx, "lonestar", time.Millisecond, time.Second, 1, 0); err == nil {
		t.Error("ReserveRate with a cancelled context: no error")
	}
}
