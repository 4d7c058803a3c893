package sessions_test

import (
	"bytes"
	"context"
	"net/url"
	"testing"
	"time"

	"github.com/mhero-health/mhero"
	"github.com/mhero-health/mhero/registry/registrytest"
	"github.com/mhero-health/mhero/sessions"
	"github.com/valkey-io/valkey-go"
)

func openStore(t *testing.T) *sessions.Store {
	t.Helper()
	if testing.Short() {
		t.Skip("needs Valkey/Redis")
	}
	s, err := sessions.Open(t.Context(), registrytest.ValkeyURL(), registrytest.KeyPrefix(t))
	if err != nil {
		t.Fatalf("connect Valkey (run make deps): %v", err)
	}
	t.Cleanup(s.Close)
	return s
}

const worker = "231886000001"

func TestUSSDStateRoundTripsUnderTheLock(t *testing.T) {
	t.Parallel()
	s := openStore(t)
	ctx := t.Context()

	state, token, _, err := s.LockUSSD(ctx, worker, time.Second, 0, time.Minute)
	if err != nil || token == "" {
		t.Fatalf("LockUSSD on a new worker = token %q, %v", token, err)
	}
	if state != nil {
		t.Errorf("LockUSSD on a new worker returned state %q, want nil", state)
	}
	if err := s.SaveUSSD(ctx, worker, token, []byte("step 1"), time.Minute); err != nil {
		t.Fatalf("SaveUSSD: %v", err)
	}
	state, token, _, err = s.LockUSSD(ctx, worker, time.Second, 0, time.Minute)
	if err != nil || !bytes.Equal(state, []byte("step 1")) {
		t.Fatalf("LockUSSD after save = %q, %v; want the saved state", state, err)
	}
	if err := s.UnlockUSSD(ctx, worker, token); err != nil {
		t.Fatalf("UnlockUSSD: %v", err)
	}
	// Another worker's state is separate.
	other, token2, _, err := s.LockUSSD(ctx, "231886000002", time.Second, 0, time.Minute)
	if err != nil || other != nil {
		t.Errorf("another worker's LockUSSD = %q, %v; want no state", other, err)
	}
	_ = s.UnlockUSSD(ctx, "231886000002", token2)
}

func TestLockUSSDWaitsForTheHopThatHoldsIt(t *testing.T) {
	t.Parallel()
	s := openStore(t)
	ctx := t.Context()
	_, first, _, err := s.LockUSSD(ctx, worker, time.Minute, 0, time.Minute)
	if err != nil {
		t.Fatal(err)
	}

	// While the first hop holds the lock, a second one gives up when its context ends.
	short, cancel := context.WithTimeout(ctx, 20*time.Millisecond)
	defer cancel()
	if _, tok, _, err := s.LockUSSD(short, worker, time.Minute, 0, time.Minute); err == nil {
		t.Fatalf("a second LockUSSD got token %q while the first held the lock", tok)
	}

	// Once the first saves, the waiting hop gets the lock and sees what it saved.
	type result struct {
		state []byte
		token string
		err   error
	}
	got := make(chan result, 1)
	go func() {
		st, tok, _, err := s.LockUSSD(ctx, worker, time.Minute, 0, time.Minute)
		got <- result{st, tok, err}
	}()
	if err := s.SaveUSSD(ctx, worker, first, []byte("first"), time.Minute); err != nil {
		t.Fatal(err)
	}
	r := <-got
	if r.err != nil || string(r.state) != "first" {
		t.Fatalf("waiting LockUSSD = %q, %v; want the first hop's state", r.state, r.err)
	}
	if err := s.UnlockUSSD(ctx, worker, r.token); err != nil {
		t.Fatal(err)
	}
}

func TestSaveUSSDRefusesAHopThatLostItsLock(t *testing.T) {
	t.Parallel()
	s := openStore(t)
	ctx := t.Context()
	_, token, _, err := s.LockUSSD(ctx, worker, time.Minute, 0, time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.SaveUSSD(ctx, worker, token, []byte("kept"), time.Minute); err != nil {
		t.Fatal(err)
	}
	// The same token again: the lock was released by the save, so this hop no longer
	// holds it and must not overwrite.
	err = s.SaveUSSD(ctx, worker, token, []byte("stale"), time.Minute)
	if mhero.ErrorCode(err) != mhero.ECONFLICT {
		t.Fatalf("SaveUSSD with a released token = %v, want ECONFLICT", err)
	}
	// Unlocking with a stale token leaves another hop's lock alone.
	_, holder, _, err := s.LockUSSD(ctx, worker, time.Minute, 0, time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.UnlockUSSD(ctx, worker, token); err != nil {
		t.Fatal(err)
	}
	// The holder still holds the lock: its save is accepted. (Probing with a lock
	// attempt under a short deadline raced: a script the client gave up on could still
	// run on the server and take the lock after the holder let go.)
	if err := s.SaveUSSD(ctx, worker, holder, []byte("kept"), time.Minute); err != nil {
		t.Fatalf("the holder's save after a stale unlock = %v; the stale unlock released its lock", err)
	}
	state, _, _, err := s.LockUSSD(ctx, worker, time.Minute, 0, time.Minute)
	if err != nil || string(state) != "kept" {
		t.Errorf("state after a refused save = %q, %v; want %q", state, err, "kept")
	}
}

func TestLockUSSDCountsHopsAgainstTheLimit(t *testing.T) {
	t.Parallel()
	s := openStore(t)
	ctx := t.Context()
	const limit = 3
	for i := 1; i <= limit; i++ {
		_, token, hops, err := s.LockUSSD(ctx, worker, time.Minute, limit, time.Minute)
		if err != nil || token == "" || hops != i {
			t.Fatalf("hop %d: token %q, hops %d, err %v; want a lock and count %d", i, token, hops, err, i)
		}
		if err := s.UnlockUSSD(ctx, worker, token); err != nil {
			t.Fatal(err)
		}
	}
	state, token, hops, err := s.LockUSSD(ctx, worker, time.Minute, limit, time.Minute)
	if err != nil || token != "" || state != nil || hops != limit+1 {
		t.Fatalf("hop over the limit: token %q, hops %d, err %v; want no lock and count %d", token, hops, err, limit+1)
	}
	// No lock was taken: an unlimited hop gets it at once.
	short, cancel := context.WithTimeout(ctx, time.Second)
	defer cancel()
	if _, token, _, err := s.LockUSSD(short, worker, time.Minute, 0, time.Minute); err != nil || token == "" {
		t.Fatalf("lock after a refused hop: %q, %v", token, err)
	}
	// Other workers have their own count.
	if _, token, hops, err := s.LockUSSD(ctx, "231886000009", time.Minute, limit, time.Minute); err != nil || token == "" || hops != 1 {
		t.Errorf("another worker: token %q, hops %d, err %v; want its first hop", token, hops, err)
	}
}

func TestUSSDStateExpiresWithItsTTL(t *testing.T) {
	t.Parallel()
	s := openStore(t)
	ctx := t.Context()
	_, token, _, err := s.LockUSSD(ctx, worker, time.Minute, 0, time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	// A TTL of one millisecond: the state is gone by the time anyone asks (Redis checks
	// expiry on access, so this does not depend on timing beyond 1 ms passing).
	if err := s.SaveUSSD(ctx, worker, token, []byte("short-lived"), time.Millisecond); err != nil {
		t.Fatal(err)
	}
	time.Sleep(5 * time.Millisecond)
	state, token, _, err := s.LockUSSD(ctx, worker, time.Minute, 0, time.Minute)
	if err != nil || state != nil {
		t.Errorf("state after its TTL = %q, %v; want none", state, err)
	}
	_ = s.UnlockUSSD(ctx, worker, token)
}

// A hop whose deadline passes while its lock request is still on the way must not leave
// the worker locked when the request is carried out after all.
func TestLockUSSDThatGaveUpLeavesNoLock(t *testing.T) {
	t.Parallel()
	if testing.Short() {
		t.Skip("needs Valkey/Redis")
	}
	u, err := url.Parse(registrytest.ValkeyURL())
	if err != nil {
		t.Fatal(err)
	}
	prefix := registrytest.KeyPrefix(t)
	direct, err := sessions.Open(t.Context(), u.String(), prefix)
	if err != nil {
		t.Fatalf("connect Valkey (run make deps): %v", err)
	}
	t.Cleanup(direct.Close)
	slowURL := *u
	slowURL.Host = registrytest.StartProxy(t, u.Host, 200*time.Millisecond).Addr()
	slow, err := sessions.Open(t.Context(), slowURL.String(), prefix)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(slow.Close)

	// The request reaches Valkey about 200 ms after the hop gave up at 20 ms. Its lock,
	// had it stayed, would hold for a minute.
	short, cancel := context.WithTimeout(t.Context(), 20*time.Millisecond)
	defer cancel()
	if _, tok, _, err := slow.LockUSSD(short, worker, time.Minute, 100, time.Minute); err == nil {
		t.Fatalf("LockUSSD through a slow server got token %q within 20 ms", tok)
	}
	// Wait for the late request to be carried out: it counts the hop (under the key
	// layout the package documents) in the same script that takes the lock.
	raw, err := valkey.NewClient(valkey.MustParseURL(u.String()))
	if err != nil {
		t.Fatal(err)
	}
	defer raw.Close()
	rateKey := prefix + "ussd:{" + worker + "}:r"
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(5 * time.Millisecond) {
		if n, err := raw.Do(t.Context(), raw.B().Exists().Key(rateKey).Build()).AsInt64(); err != nil {
			t.Fatal(err)
		} else if n == 1 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the late lock request never reached Valkey")
		}
	}
	// The next hop gets the lock once the clean-up has been carried out too (well
	// before the minute).
	ctx, cancel2 := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel2()
	_, token, _, err := direct.LockUSSD(ctx, worker, time.Minute, 0, time.Minute)
	if err != nil {
		t.Fatalf("the next hop could not lock: %v (the late request's lock was left behind)", err)
	}
	if err := direct.UnlockUSSD(t.Context(), worker, token); err != nil {
		t.Fatal(err)
	}
}

func TestSwapUSSDWritesOnlyOverTheStateItWasGiven(t *testing.T) {
	t.Parallel()
	s := openStore(t)
	ctx := t.Context()
	swap := func(old, state string, maxHops int) (bool, string) {
		t.Helper()
		var o, n []byte
		if old != "" {
			o = []byte(old)
		}
		if state != "" {
			n = []byte(state)
		}
		cur, ok, _, err := s.SwapUSSD(ctx, worker, o, n, time.Minute, maxHops, time.Minute)
		if err != nil {
			t.Fatalf("SwapUSSD(%q → %q): %v", old, state, err)
		}
		return ok, string(cur)
	}
	stored := func() string {
		t.Helper()
		st, token, _, err := s.LockUSSD(ctx, worker, time.Second, 0, time.Minute)
		if err != nil {
			t.Fatal(err)
		}
		if err := s.UnlockUSSD(ctx, worker, token); err != nil {
			t.Fatal(err)
		}
		return string(st)
	}

	if ok, _ := swap("", "step 1", 0); !ok || stored() != "step 1" {
		t.Fatalf("swap over no state: %v, stored %q; want step 1 written", ok, stored())
	}
	// Another hop (another instance) moved the session on: a swap over what this one saw
	// writes nothing.
	if ok, cur := swap("", "stale", 0); ok || cur != "step 1" || stored() != "step 1" {
		t.Errorf("swap expecting no state over step 1: %v, current %q, stored %q; want refused, step 1", ok, cur, stored())
	}
	if ok, cur := swap("step 0", "stale", 0); ok || cur != "step 1" || stored() != "step 1" {
		t.Errorf("swap over an older state: %v, current %q, stored %q; want refused, step 1", ok, cur, stored())
	}
	// A nil state checks and writes nothing.
	if ok, _ := swap("step 1", "", 0); !ok || stored() != "step 1" {
		t.Errorf("check-only swap: %v, stored %q; want accepted, unchanged", ok, stored())
	}
	if ok, _ := swap("step 0", "", 0); ok {
		t.Error("check-only swap over an older state was accepted")
	}

	// A hop holding the lock is never overtaken.
	_, token, _, err := s.LockUSSD(ctx, worker, time.Minute, 0, time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	if ok, cur := swap("step 1", "step 2", 0); ok || cur != "" {
		t.Errorf("swap while another hop holds the lock: %v, current %q; want refused, no state", ok, cur)
	}
	if err := s.SaveUSSD(ctx, worker, token, []byte("step 2 (locked)"), time.Minute); err != nil {
		t.Fatalf("the lock's holder could not save after a refused swap: %v", err)
	}
	if ok, _ := swap("step 2 (locked)", "step 3", 0); !ok || stored() != "step 3" {
		t.Errorf("swap after the lock was released: %v, stored %q", ok, stored())
	}
}

func TestSwapUSSDCountsHopsAgainstTheLimit(t *testing.T) {
	t.Parallel()
	s := openStore(t)
	ctx := t.Context()
	const limit = 2
	state := []byte(nil)
	for i := 1; i <= limit; i++ {
		next := []byte{byte('0' + i)}
		_, ok, hops, err := s.SwapUSSD(ctx, worker, state, next, time.Minute, limit, time.Minute)
		if err != nil || !ok || hops != i {
			t.Fatalf("hop %d: swapped %v, hops %d, err %v; want swapped, count %d", i, ok, hops, err, i)
		}
		state = next
	}
	cur, ok, hops, err := s.SwapUSSD(ctx, worker, state, []byte("over"), time.Minute, limit, time.Minute)
	if err != nil || ok || cur != nil || hops != limit+1 {
		t.Fatalf("hop over the limit: swapped %v, hops %d, err %v; want refused, count %d", ok, hops, err, limit+1)
	}
	// It shares LockUSSD's count, and wrote nothing.
	_, token, hops, err := s.LockUSSD(ctx, worker, time.Minute, limit, time.Minute)
	if err != nil || token != "" || hops != limit+2 {
		t.Errorf("LockUSSD after: token %q, hops %d, err %v; want refused at count %d", token, hops, err, limit+2)
	}
	got, token, _, err := s.LockUSSD(ctx, worker, time.Minute, 0, time.Minute)
	if err != nil || string(got) != string(state) {
		t.Errorf("stored %q (%v) after a refused swap, want %q", got, err, state)
	}
	_ = s.UnlockUSSD(ctx, worker, token)
}
