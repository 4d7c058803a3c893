package ussd_test

import (
	"context"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/mhero-health/mhero/registry/registrytest"
	"github.com/mhero-health/mhero/ussd"
	"github.com/mhero-health/mhero/ussd/ussdtest"
	"github.com/valkey-io/valkey-go"
)

// countingStore counts the round trips a SessionStore makes. While gate is set, saves
// wait for it to close.
type countingStore struct {
	ussd.SessionStore
	calls atomic.Int64
	gate  atomic.Pointer[chan struct{}]
}

func (c *countingStore) LockUSSD(ctx context.Context, key string, hold time.Duration, maxHops int, window time.Duration) ([]byte, string, int, error) {
	c.calls.Add(1)
	return c.SessionStore.LockUSSD(ctx, key, hold, maxHops, window)
}

func (c *countingStore) SaveUSSD(ctx context.Context, key, token string, state []byte, ttl time.Duration) error {
	if g := c.gate.Load(); g != nil {
		<-*g
	}
	c.calls.Add(1)
	return c.SessionStore.SaveUSSD(ctx, key, token, state, ttl)
}

func (c *countingStore) UnlockUSSD(ctx context.Context, key, token string) error {
	c.calls.Add(1)
	return c.SessionStore.UnlockUSSD(ctx, key, token)
}

func (c *countingStore) SwapUSSD(ctx context.Context, key string, old, state []byte, ttl time.Duration, maxHops int, window time.Duration) ([]byte, bool, int, error) {
	c.calls.Add(1)
	return c.SessionStore.SwapUSSD(ctx, key, old, state, ttl, maxHops, window)
}

// A session's hops that land on the instance that saved its state need one round trip to
// Valkey, not two; the hop that submits still takes the lock. Without remembered states
// every hop takes two. The hop that ends the session is answered once it holds the lock
// and has run: its save follows the answer.
func TestRememberedStatesSaveARoundTripPerHop(t *testing.T) {
	t.Parallel()
	for _, c := range []struct {
		name           string
		savedStates    int
		want, answered []int64 // round trips of dial, Stock report, ORS, 40, Send; in all and before the answer
	}{
		{"remembered", 0, []int64{1, 1, 1, 1, 2}, []int64{1, 1, 1, 1, 1}},
		{"off", -1, []int64{2, 2, 2, 2, 2}, []int64{2, 2, 2, 2, 1}},
	} {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			var counted *countingStore
			e := newEnv(t, func(cfg *ussd.Config) {
				counted = &countingStore{SessionStore: cfg.Sessions}
				cfg.Sessions, cfg.SavedStates = counted, c.savedStates
			})
			s := e.session(t, "africastalking", "trips-1", "+231886000001")
			var rep ussd.Reply
			for hop := 0; hop <= len(stockReport); hop++ {
				var req *http.Request
				if hop == 0 {
					req = s.Dial("")
				} else {
					req = s.Answer(stockReport[hop-1])
				}
				before := counted.calls.Load()
				gate := make(chan struct{})
				if hop == len(stockReport) {
					// The last hop's save waits until its answer is read: had the answer
					// waited for the save, it would not come.
					counted.gate.Store(&gate)
				}
				type answer struct {
					rep ussd.Reply
					err error
				}
				answers := make(chan answer, 1)
				go func() {
					rep, err := ussdtest.Do(e.Client, s, req)
					answers <- answer{rep, err}
				}()
				select {
				case a := <-answers:
					if a.err != nil {
						close(gate)
						t.Fatalf("hop %d: %v", hop, a.err)
					}
					rep = a.rep
				case <-time.After(3 * time.Second):
					close(gate)
					t.Fatalf("hop %d: no answer while its save waited", hop)
				}
				answered := counted.calls.Load() - before
				// Wait (as at shutdown) returns only once the save is done.
				waited := make(chan struct{})
				go func() { e.Engine.Wait(); close(waited) }()
				if hop == len(stockReport) {
					select {
					case <-waited:
						t.Errorf("Wait returned while the last hop's save was in flight")
					case <-time.After(50 * time.Millisecond):
					}
				}
				counted.gate.Store(nil)
				close(gate)
				<-waited
				if got := counted.calls.Load() - before; got != c.want[hop] || answered != c.answered[hop] {
					t.Errorf("hop %d: %d round trips, %d before the answer; want %d, %d; answered %q", hop, got, answered,
						c.want[hop], c.answered[hop], rep.Text)
				}
			}
			if !strings.HasPrefix(rep.Text, "Thank you.") {
				t.Errorf("last hop = %q, want the thanks", rep.Text)
			}
			if n := len(e.Actions["stock.submit"].Calls()); n != 1 {
				t.Errorf("stock.submit ran %d times, want once", n)
			}
		})
	}
}

// Two instances behind one load balancer, sharing Valkey: hops of one session alternate
// between them, so each often remembers a state the other has moved on since. Every
// screen must be the one a single instance shows, and the report submitted once.
func TestASessionMovesBetweenInstances(t *testing.T) {
	t.Parallel()
	a := newEnv(t)
	b := newEnv(t, func(c *ussd.Config) {
		c.Sessions = a.Store
		for name, r := range a.Actions {
			c.Actions[name] = r
		}
	})
	single := newEnv(t, func(c *ussd.Config) { c.SavedStates = -1 })

	const id, phone = "lb-1", "+231886000001"
	sa, sb, ss := a.session(t, "africastalking", id, phone), b.session(t, "africastalking", id, phone),
		single.session(t, "africastalking", id, phone)
	// Which instance serves each hop: a saves, b moves on, a must notice its memory is
	// stale (twice in a row), b finishes over a's state.
	route := []*env{a, a, b, a, b}
	for i, e := range route {
		var reqA, reqB, reqS *http.Request
		if i == 0 {
			reqA, reqB, reqS = sa.Dial(""), sb.Dial(""), ss.Dial("")
		} else {
			in := stockReport[i-1]
			reqA, reqB, reqS = sa.Answer(in), sb.Answer(in), ss.Answer(in)
		}
		want := single.do(t, ss, reqS)
		var got ussd.Reply
		if e == a {
			got = a.do(t, sa, reqA)
		} else {
			got = b.do(t, sb, reqB)
		}
		if got != want {
			t.Errorf("hop %d: instance %s answered %q (end %v), one instance alone %q (end %v)",
				i, map[*env]string{a: "a", b: "b"}[e], got.Text, got.End, want.Text, want.End)
		}
	}
	if n := len(a.Actions["stock.submit"].Calls()); n != 1 {
		t.Errorf("stock.submit ran %d times across the two instances, want once", n)
	}
}

// A state the engine remembers but Valkey no longer holds (it expired, or was removed)
// is not brought back: the worker's next session starts afresh, with no offer to
// continue the old one.
func TestARememberedStateGoneFromValkeyIsNotBroughtBack(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	const phone = "+231886000001"
	s := e.session(t, "africastalking", "gone-1", phone)
	e.do(t, s, s.Dial(""))
	e.do(t, s, s.Answer("1")) // half-way: a dropped session that could be resumed

	opt := valkey.MustParseURL(registrytest.ValkeyURL())
	opt.DisableCache = true
	client, err := valkey.NewClient(opt)
	if err != nil {
		t.Fatal(err)
	}
	defer client.Close()
	key := e.Store.Prefix + "ussd:{" + strings.TrimPrefix(phone, "+") + "}:s"
	if n, err := client.Do(t.Context(), client.B().Del().Key(key).Build()).AsInt64(); err != nil || n != 1 {
		t.Fatalf("DEL %s = %d, %v; want the session's state removed", key, n, err)
	}

	s2 := e.session(t, "africastalking", "gone-2", phone)
	rep := e.do(t, s2, s2.Dial(""))
	if strings.Contains(rep.Text, "Continue where you left off") || !strings.Contains(rep.Text, "Stock report") {
		t.Errorf("new session after the state was removed = %q, want the main menu", rep.Text)
	}
}

// The benchmark's load generator (ussdtest.Load over a ConnPool) works, so that
// BenchmarkStockReportSessions measures what it says.
func TestBenchmarkSessionsRunThroughConnPool(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	e.Dir.Generate = benchWorker
	pool := ussdtest.NewConnPool(strings.TrimPrefix(e.URL, "http://"), 2)
	defer pool.Close()
	load := ussdtest.Load{Pool: pool, URL: e.URL, Sessions: 2, Every: time.Millisecond,
		Inputs: stockReport, Phone: ussdtest.Phone, Done: "Thank you."}
	res := load.Run(3)
	if res.Failures > 0 {
		t.Fatalf("%d sessions failed; first: %v", res.Failures, res.First)
	}
	if n, want := len(res.Latencies), 3*(len(stockReport)+1); n != want || res.Rate <= 0 {
		t.Errorf("%d hops timed (%.0f/s), want %d", n, res.Rate, want)
	}
	if n := e.Actions["stock.submit"].Reports(); n != 3 {
		t.Errorf("%d reports, want 3", n)
	}
	// A session that does not end as expected is a failure, with what it got.
	load.Done, load.Phone = "Merci", func(i int) string { return ussdtest.Phone(100 + i) }
	if res := load.Run(2); res.Failures != 2 || res.First == nil || !strings.Contains(res.First.Error(), "Thank you") {
		t.Errorf("sessions ending otherwise than Done: %d failures, %v", res.Failures, res.First)
	}
	// So is a session that cannot reach the server.
	down := ussdtest.NewConnPool("127.0.0.1:1", 1)
	defer down.Close()
	load.Pool = down
	if res := load.Run(2); res.Failures != 2 || res.First == nil || !strings.Contains(res.First.Error(), "refused") {
		t.Errorf("sessions that cannot connect: %d failures, %v", res.Failures, res.First)
	}
}

// Copies of a hop racing on the instance that remembers the session's state all compute
// from the same state; one swap wins, and the others, finding the state moved on, answer
// as a retry: every copy gets the same screen, and the session goes on from it.
func TestRacingCopiesOfARememberedHopAgree(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	s := e.session(t, "africastalking", "race-2", "+231886000001")
	e.do(t, s, s.Dial(""))
	e.do(t, s, s.Answer("1"))
	e.do(t, s, s.Answer("1"))
	s.Answer("40") // the hop every copy below repeats
	quantity := s.Len() - 1

	const copies = 20
	replies := make([]ussd.Reply, copies)
	errs := make([]error, copies)
	var wg sync.WaitGroup
	for i := range copies {
		wg.Go(func() { replies[i], errs[i] = ussdtest.Do(e.Client, s, s.Hop(quantity)) })
	}
	wg.Wait()
	for i := range copies {
		if errs[i] != nil {
			t.Fatalf("copy %d: %v", i, errs[i])
		}
		if !strings.HasPrefix(replies[i].Text, "Send this report?") {
			t.Errorf("copy %d got %q, want the confirm screen", i, replies[i].Text)
		}
	}
	if rep := e.do(t, s, s.Answer("1")); !strings.HasPrefix(rep.Text, "Thank you.") {
		t.Errorf("the hop after the copies = %q, want the thanks", rep.Text)
	}
	if n := len(e.Actions["stock.submit"].Calls()); n != 1 {
		t.Errorf("stock.submit ran %d times, want once", n)
	}
}

// The hop that ends a session is answered before its save; a retry of it arriving
// meanwhile waits for that save, then gets the same answer, and the report is submitted
// once.
func TestARetryOfTheEndingHopWaitsForItsSave(t *testing.T) {
	t.Parallel()
	var counted *countingStore
	e := newEnv(t, func(cfg *ussd.Config) {
		counted = &countingStore{SessionStore: cfg.Sessions}
		cfg.Sessions = counted
	})
	s := e.session(t, "africastalking", "retry-end-1", "+231886000001")
	e.do(t, s, s.Dial(""))
	for _, in := range stockReport[:len(stockReport)-1] {
		e.do(t, s, s.Answer(in))
	}
	last := s.Answer(stockReport[len(stockReport)-1])
	retry := s.Hop(s.Len() - 1) // the same request again
	gate := make(chan struct{})
	counted.gate.Store(&gate)
	first := e.do(t, s, last)
	retried := make(chan ussd.Reply, 1)
	go func() {
		rep, err := ussdtest.Do(e.Client, s, retry)
		if err != nil {
			t.Error(err)
		}
		retried <- rep
	}()
	select {
	case rep := <-retried:
		t.Fatalf("the retry was answered %q while the first one's save waited", rep.Text)
	case <-time.After(200 * time.Millisecond):
	}
	counted.gate.Store(nil)
	close(gate)
	if rep := <-retried; rep != first || !strings.HasPrefix(first.Text, "Thank you.") {
		t.Errorf("retry = %+v, want the first answer %+v", rep, first)
	}
	if n := len(e.Actions["stock.submit"].Calls()); n != 1 {
		t.Errorf("stock.submit ran %d times, want once", n)
	}
}
