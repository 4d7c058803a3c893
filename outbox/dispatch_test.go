package outbox_test

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/mhero-health/mhero"
	"github.com/mhero-health/mhero/outbox"
	"github.com/mhero-health/mhero/outbox/outboxsmpp"
	"github.com/mhero-health/mhero/smpp"
	"github.com/mhero-health/mhero/smpp/smpptest"
)

// fakeSender counts sends per message and answers with fn (nil: accepted).
type fakeSender struct {
	mu    sync.Mutex
	sends map[int64]int
	at    map[int64][]time.Time
	order []int64
	fn    func(ctx context.Context, m outbox.Outgoing, n int) (outbox.SendResult, error)
}

func newFake(fn func(ctx context.Context, m outbox.Outgoing, n int) (outbox.SendResult, error)) *fakeSender {
	return &fakeSender{sends: map[int64]int{}, at: map[int64][]time.Time{}, fn: fn}
}

func accepted(m outbox.Outgoing, n int) outbox.SendResult {
	return outbox.SendResult{MNO: "lonestar", SMSCIDs: []string{fmt.Sprintf("s%d-%d", m.ID, n)}, Segments: 1}
}

func (f *fakeSender) Send(ctx context.Context, m outbox.Outgoing) (outbox.SendResult, error) {
	f.mu.Lock()
	f.sends[m.ID]++
	n := f.sends[m.ID]
	f.at[m.ID] = append(f.at[m.ID], time.Now())
	f.order = append(f.order, m.ID)
	f.mu.Unlock()
	if f.fn != nil {
		return f.fn(ctx, m, n)
	}
	return accepted(m, n), nil
}

func (f *fakeSender) count(id int64) int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.sends[id]
}

func (f *fakeSender) total() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return len(f.order)
}

// start runs d until the returned stop is called (or the test ends); stop returns when
// Run has.
func start(t testing.TB, d *outbox.Dispatcher) (stop func()) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- d.Run(ctx) }()
	var once sync.Once
	stop = func() {
		once.Do(func() {
			cancel()
			select {
			case err := <-done:
				if err != nil {
					t.Errorf("Run: %v", err)
				}
			case <-time.After(30 * time.Second):
				t.Errorf("Run did not return after its context ended")
			}
		})
	}
	t.Cleanup(stop)
	return stop
}

func waitFor(t testing.TB, what string, timeout time.Duration, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func enqueueP(t testing.TB, s *outbox.Store, prio int, to string) *outbox.Message {
	t.Helper()
	m, err := s.Enqueue(context.Background(), outbox.NewMessage{To: mhero.MSISDN("2318812" + to), Body: "Stock report due Friday", Priority: prio})
	if err != nil {
		t.Fatalf("Enqueue: %v", err)
	}
	return m
}

var fast = outbox.DispatchConfig{Poll: 5 * time.Millisecond, Backoff: []time.Duration{20 * time.Millisecond, 40 * time.Millisecond, 60 * time.Millisecond}}

func TestDispatchPriority(t *testing.T) {
	s, db := newStore(t)
	var want []int64
	var bulk, normal []int64
	for i := range 5 {
		bulk = append(bulk, enqueueP(t, s, outbox.PriorityBulk, fmt.Sprintf("%05d", i)).ID)
	}
	for i := range 3 {
		normal = append(normal, enqueueP(t, s, outbox.PriorityNormal, fmt.Sprintf("1%04d", i)).ID)
	}
	for i := range 3 {
		want = append(want, enqueueP(t, s, outbox.PriorityAlert, fmt.Sprintf("2%04d", i)).ID)
	}
	want = append(append(want, normal...), bulk...)
	f := newFake(nil)
	cfg := fast
	cfg.Concurrency = 1
	start(t, s.NewDispatcher(f, cfg, nil))
	waitFor(t, "all submitted", 10*time.Second, func() bool {
		return count(t, db, `SELECT count(*) FROM messages WHERE state = 'submitted'`) == len(want)
	})
	f.mu.Lock()
	defer f.mu.Unlock()
	if fmt.Sprint(f.order) != fmt.Sprint(want) {
		t.Errorf("sent in order %v, want %v", f.order, want)
	}
}

func TestDispatchRetry(t *testing.T) {
	s, _ := newStore(t)
	recovers := enqueueP(t, s, outbox.PriorityNormal, "00001")
	never := enqueueP(t, s, outbox.PriorityNormal, "00002")
	slow := enqueueP(t, s, outbox.PriorityNormal, "00003")
	f := newFake(func(ctx context.Context, m outbox.Outgoing, n int) (outbox.SendResult, error) {
		switch {
		case m.ID == recovers.ID && n <= 2, m.ID == never.ID:
			return outbox.SendResult{}, outbox.Temporary("0x58", 0, errors.New("throttled"))
		case m.ID == slow.ID && n == 1:
			return outbox.SendResult{}, outbox.Temporary("0x14", 300*time.Millisecond, errors.New("queue full"))
		}
		return accepted(m, n), nil
	})
	start(t, s.NewDispatcher(f, fast, nil))
	waitFor(t, "outcomes", 10*time.Second, func() bool {
		return find(t, s, recovers.ID).State == outbox.Submitted && find(t, s, never.ID).State == outbox.Failed &&
			find(t, s, slow.ID).State == outbox.Submitted
	})
	if m := find(t, s, recovers.ID); f.count(m.ID) != 3 || m.Attempts != 3 || len(m.Parts) != 1 || m.Parts[0].SMSCID != fmt.Sprintf("s%d-3", m.ID) {
		t.Errorf("recovering message: %d sends, %+v", f.count(m.ID), m)
	}
	if m := find(t, s, never.ID); f.count(m.ID) != 4 || m.Attempts != 4 || m.ErrorCode != "0x58" || m.FinalAt.IsZero() {
		t.Errorf("message never accepted: %d sends (want 1 + 3 retries), %+v", f.count(m.ID), m)
	}
	f.mu.Lock()
	for _, id := range []int64{recovers.ID, never.ID} {
		at := f.at[id]
		for i := 1; i < len(at); i++ {
			if gap, min := at[i].Sub(at[i-1]), fast.Backoff[i-1]; gap < min {
				t.Errorf("message %d: attempt %d came %v after the previous, want at least %v", id, i+1, gap, min)
			}
		}
	}
	if at := f.at[slow.ID]; len(at) != 2 || at[1].Sub(at[0]) < 300*time.Millisecond {
		t.Errorf("retry-after 300ms not honoured: sends at %v", at)
	}
	f.mu.Unlock()
}

func TestDispatchFailures(t *testing.T) {
	s, _ := newStore(t)
	refused := enqueueP(t, s, outbox.PriorityNormal, "00001")
	lost := enqueueP(t, s, outbox.PriorityNormal, "00002")
	odd := enqueueP(t, s, outbox.PriorityNormal, "00003")
	f := newFake(func(ctx context.Context, m outbox.Outgoing, n int) (outbox.SendResult, error) {
		switch m.ID {
		case refused.ID:
			return outbox.SendResult{}, outbox.Permanent("0x0B", errors.New("invalid destination"))
		case lost.ID:
			return outbox.SendResult{}, outbox.OutcomeUnknown("timeout", errors.New("no submit_sm_resp"))
		}
		return outbox.SendResult{}, errors.New("unclassified")
	})
	cfg := fast
	// Were a claim left behind, it would run out during the test. (Not shorter: on a loaded
	// machine a recorded outcome can take longer than a tiny lease, and a lease that runs
	// out before the outcome is recorded resends by design.)
	cfg.Lease = 200 * time.Millisecond
	start(t, s.NewDispatcher(f, cfg, nil))
	waitFor(t, "outcomes", 10*time.Second, func() bool {
		return find(t, s, refused.ID).State == outbox.Failed && find(t, s, lost.ID).State == outbox.Unknown &&
			find(t, s, odd.ID).State == outbox.Unknown
	})
	time.Sleep(700 * time.Millisecond) // several leases and polls: nothing is sent again
	if m := find(t, s, refused.ID); m.ErrorCode != "0x0B" || m.Attempts != 1 || m.FinalAt.IsZero() || f.count(m.ID) != 1 {
		t.Errorf("refused: %d sends, %+v", f.count(m.ID), m)
	}
	if m := find(t, s, lost.ID); m.ErrorCode != "timeout" || f.count(m.ID) != 1 {
		t.Errorf("outcome unknown: %d sends, %+v; want 1 send, never resent", f.count(m.ID), m)
	}
	if m := find(t, s, odd.ID); m.ErrorCode != "error" || f.count(m.ID) != 1 {
		t.Errorf("unclassified error: %d sends, %+v; want unknown, never resent", f.count(m.ID), m)
	}
}

func TestDispatchExpired(t *testing.T) {
	s, _ := newStore(t)
	ctx := context.Background()
	stale, err := s.Enqueue(ctx, outbox.NewMessage{To: "231881200001", Body: "x", ValidFor: time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	// Valid now, but its retry would come after its validity.
	late, err := s.Enqueue(ctx, outbox.NewMessage{To: "231881200002", Body: "x", ValidFor: 2 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	time.Sleep(10 * time.Millisecond)
	f := newFake(func(ctx context.Context, m outbox.Outgoing, n int) (outbox.SendResult, error) {
		return outbox.SendResult{}, outbox.Temporary("0x58", 0, errors.New("throttled"))
	})
	cfg := fast
	cfg.Backoff = []time.Duration{time.Minute}
	start(t, s.NewDispatcher(f, cfg, nil))
	waitFor(t, "expiry", 10*time.Second, func() bool {
		return find(t, s, stale.ID).State == outbox.Expired && find(t, s, late.ID).State == outbox.Expired
	})
	if m := find(t, s, stale.ID); f.count(m.ID) != 0 || m.FinalAt.IsZero() {
		t.Errorf("message past its validity: %d sends, %+v; want none", f.count(m.ID), m)
	}
	if m := find(t, s, late.ID); f.count(m.ID) != 1 || m.ErrorCode != "0x58" {
		t.Errorf("message whose retry would be late: %d sends, %+v", f.count(m.ID), m)
	}
}

// insertQueued queues n messages in one statement.
func insertQueued(tb testing.TB, db *pgxpool.Pool, n int) {
	tb.Helper()
	_, err := db.Exec(context.Background(), `WITH m AS (INSERT INTO messages (msisdn, body, priority)
		SELECT '2318812' || lpad(g::text, 5, '0'), 'Stock report due Friday', 9 FROM generate_series(1, $1::int) g
		RETURNING id, priority, next_attempt_at)
		INSERT INTO message_queue (message_id, priority, due_at) SELECT * FROM m`, n)
	if err != nil {
		tb.Fatal(err)
	}
	if _, err := db.Exec(context.Background(), `ANALYZE messages, message_queue`); err != nil {
		tb.Fatal(err)
	}
}

func TestDispatchTwoInstances(t *testing.T) {
	s, db := newStore(t)
	const n = 2000
	insertQueued(t, db, n)
	f := newFake(func(ctx context.Context, m outbox.Outgoing, k int) (outbox.SendResult, error) {
		time.Sleep(time.Duration(m.ID%3) * 100 * time.Microsecond)
		return accepted(m, k), nil
	})
	cfg := fast
	cfg.Batch, cfg.Concurrency = 40, 20
	// A second store on its own pool: another instance.
	db2, err := pgxpool.New(context.Background(), db.Config().ConnString())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(db2.Close)
	s2 := outbox.NewStore(db2, nil)
	start(t, s.NewDispatcher(f, cfg, nil))
	start(t, s2.NewDispatcher(f, cfg, nil))
	waitFor(t, "all submitted", 60*time.Second, func() bool {
		return count(t, db, `SELECT count(*) FROM messages WHERE state = 'submitted'`) == n
	})
	time.Sleep(50 * time.Millisecond)
	f.mu.Lock()
	defer f.mu.Unlock()
	if len(f.sends) != n || len(f.order) != n {
		t.Fatalf("%d messages sent in %d sends, want %d once each", len(f.sends), len(f.order), n)
	}
	for id, c := range f.sends {
		if c != 1 {
			t.Errorf("message %d sent %d times", id, c)
		}
	}
}

func TestDispatchLeaseExpired(t *testing.T) {
	s, db := newStore(t)
	const n = 3
	ids := make([]int64, n)
	for i := range ids {
		ids[i] = enqueueP(t, s, outbox.PriorityNormal, fmt.Sprintf("%05d", i)).ID
	}
	// A claims every message and hangs, as a frozen or killed instance would: its sends
	// never end (they ignore their context) until the test releases them.
	release := make(chan struct{})
	hung := newFake(func(ctx context.Context, m outbox.Outgoing, k int) (outbox.SendResult, error) {
		<-release
		return outbox.SendResult{}, outbox.Temporary("0x58", 0, errors.New("throttled"))
	})
	cfg := fast
	cfg.Lease, cfg.Concurrency, cfg.Batch = 300*time.Millisecond, n, n
	stopA := start(t, s.NewDispatcher(hung, cfg, nil))
	waitFor(t, "A's claims", 5*time.Second, func() bool { return hung.total() == n })
	claimed := time.Now()

	b := newFake(nil)
	start(t, s.NewDispatcher(b, cfg, nil))
	waitFor(t, "B's sends", 10*time.Second, func() bool {
		return count(t, db, `SELECT count(*) FROM messages WHERE state = 'submitted'`) == n
	})
	if d := time.Since(claimed); d < 250*time.Millisecond {
		t.Errorf("B sent A's claimed messages after %v, before the lease ran out", d)
	}
	// A's late outcome does not undo B's.
	close(release)
	stopA()
	for _, id := range ids {
		m := find(t, s, id)
		if m.State != outbox.Submitted || b.count(id) != 1 || len(m.Parts) != 1 || m.Parts[0].SMSCID != fmt.Sprintf("s%d-1", id) {
			t.Errorf("message %d: %d sends by B, %+v", id, b.count(id), m)
		}
	}
}

func TestDispatchStop(t *testing.T) {
	t.Run("in flight recorded", func(t *testing.T) {
		s, db := newStore(t)
		for i := range 10 {
			enqueueP(t, s, outbox.PriorityNormal, fmt.Sprintf("%05d", i))
		}
		gate := make(chan struct{})
		f := newFake(func(ctx context.Context, m outbox.Outgoing, k int) (outbox.SendResult, error) {
			<-gate
			time.Sleep(50 * time.Millisecond)
			return accepted(m, k), nil
		})
		cfg := fast
		cfg.Concurrency = 5
		stop := start(t, s.NewDispatcher(f, cfg, nil))
		waitFor(t, "5 sends in flight", 5*time.Second, func() bool { return f.total() == 5 })
		go func() { time.Sleep(20 * time.Millisecond); close(gate) }()
		stop()
		if n := count(t, db, `SELECT count(*) FROM messages WHERE state = 'submitted'`); n != 5 || f.total() != 5 {
			t.Errorf("after stop: %d submitted, %d sent; want the 5 in flight", n, f.total())
		}
		// The others were never claimed: due now, for the next instance.
		if n := count(t, db, `SELECT count(*) FROM message_queue WHERE due_at <= now()`); n != 5 {
			t.Errorf("%d queued and due, want 5", n)
		}
	})
	t.Run("stop timeout", func(t *testing.T) {
		s, _ := newStore(t)
		m := enqueueP(t, s, outbox.PriorityNormal, "00001")
		f := newFake(func(ctx context.Context, m outbox.Outgoing, k int) (outbox.SendResult, error) {
			<-ctx.Done()
			return outbox.SendResult{}, outbox.OutcomeUnknown("timeout", ctx.Err())
		})
		cfg := fast
		cfg.Lease, cfg.StopTimeout = time.Minute, 100*time.Millisecond
		stop := start(t, s.NewDispatcher(f, cfg, nil))
		waitFor(t, "send in flight", 5*time.Second, func() bool { return f.total() == 1 })
		began := time.Now()
		stop()
		if d := time.Since(began); d < 100*time.Millisecond || d > 5*time.Second {
			t.Errorf("Run returned %v after its context ended, want about the 100ms stop timeout", d)
		}
		if got := find(t, s, m.ID); got.State != outbox.Unknown || got.ErrorCode != "timeout" {
			t.Errorf("cancelled send recorded as %+v, want unknown", got)
		}
	})
}

// poolSender is what cmd does: *smpp.Pool as a Sender, its errors classified.

func newPool(tb testing.TB, store *outbox.Store, c smpptest.Config, window int) *smpp.Pool {
	tb.Helper()
	c.SystemID, c.Password = "mhero", "secret"
	smsc := smpptest.NewServer(c)
	tb.Cleanup(smsc.Close)
	host, port, _ := net.SplitHostPort(smsc.Addr())
	p, _ := strconv.Atoi(port)
	cfg := smpp.Config{Name: "lonestar", Host: host, Port: p, SystemID: "mhero", Password: "secret",
		SourceAddr: "384", Prefixes: []string{"+23188"}, Binds: 2, Window: window, ResponseTimeout: 5 * time.Second}
	// Receipts committed in shared transactions, as serve does. The recorder stops after
	// the pool (cleanups run last-in first-out).
	rec := store.NewReceiptRecorder(0, 0)
	rctx, stopRec := context.WithCancel(context.Background())
	recorded := make(chan struct{})
	go func() { defer close(recorded); rec.Run(rctx) }()
	tb.Cleanup(func() { stopRec(); <-recorded })
	pool, err := smpp.NewPool([]smpp.Config{cfg}, outboxsmpp.Handlers(store, rec), nil, nil)
	if err != nil {
		tb.Fatal(err)
	}
	// Start's context is the binds' lifetime.
	ctx, cancel := context.WithCancel(context.Background())
	tb.Cleanup(cancel)
	if err := pool.Start(ctx); err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { _ = pool.Stop(context.Background()) })
	return pool
}

// TestDispatchSMPP drains the queue through a real Pool to the simulator: every message
// delivered (receipts after or before the submit_sm_resp, one part or three), a refused
// number failed with the SMSC's status, an unroutable one failed.
func TestDispatchSMPP(t *testing.T) {
	long := strings.Repeat("Cholera alert: boil drinking water, wash hands, refer any case of watery diarrhoea. ", 5)[:420]
	for _, c := range []struct {
		name  string
		smsc  smpptest.Config
		text  string
		parts int
	}{
		{"receipt after response", smpptest.Config{ReceiptDelay: 2 * time.Millisecond}, "Stock report due Friday", 1},
		{"receipt before response", smpptest.Config{ReceiptBeforeResp: true, ReceiptDelay: 5 * time.Millisecond}, "Stock report due Friday", 1},
		{"three parts receipts before response", smpptest.Config{ReceiptBeforeResp: true, ReceiptDelay: 5 * time.Millisecond}, long, 3},
	} {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			store, db := newStore(t)
			const bad = "231881299999"
			c.smsc.Receipts = true
			c.smsc.SubmitStatus = func(sm smpptest.Submit) uint32 {
				if strings.TrimPrefix(sm.Dst, "+") == bad {
					return 0x0B
				}
				return 0
			}
			pool := newPool(t, store, c.smsc, 10)
			ctx := context.Background()
			const n = 200
			for i := range n {
				prio := outbox.PriorityBulk
				if i%2 == 0 {
					prio = outbox.PriorityAlert
				}
				if _, err := store.Enqueue(ctx, outbox.NewMessage{To: mhero.MSISDN(fmt.Sprintf("2318812%05d", i)), Body: c.text, Priority: prio}); err != nil {
					t.Fatal(err)
				}
			}
			refused, err := store.Enqueue(ctx, outbox.NewMessage{To: bad, Body: "x"})
			if err != nil {
				t.Fatal(err)
			}
			unroutable, err := store.Enqueue(ctx, outbox.NewMessage{To: "233201234567", Body: "x"})
			if err != nil {
				t.Fatal(err)
			}
			d := store.NewDispatcher(outboxsmpp.Sender{Pool: pool}, outbox.DispatchConfig{Poll: 10 * time.Millisecond}, nil)
			start(t, d)
			d.Wake()
			waitFor(t, "delivery", 30*time.Second, func() bool {
				return count(t, db, `SELECT count(*) FROM message_parts WHERE state = 'delivered'`) == n*c.parts &&
					count(t, db, `SELECT count(*) FROM messages WHERE state = 'failed'`) == 2
			})
			if got := count(t, db, `SELECT count(*) FROM messages WHERE state = 'delivered' AND segments = $1 AND final_at IS NOT NULL`, c.parts); got != n {
				t.Errorf("%d messages delivered with %d segments; want %d", got, c.parts, n)
			}
			if got := count(t, db, `SELECT count(*) FROM receipts WHERE message_id IS NULL`); got != 0 {
				t.Errorf("%d receipts left unmatched", got)
			}
			if m := find(t, store, refused.ID); m.ErrorCode != "0x0B" {
				t.Errorf("refused number: %+v, want failed 0x0B", m)
			}
			if m := find(t, store, unroutable.ID); m.ErrorCode != "unroutable" {
				t.Errorf("unroutable number: %+v, want failed unroutable", m)
			}
		})
	}
}

// TestDispatchCancelled: a message cancelled while its send was in flight keeps the
// outcome the store allows: a refusal is recorded, a retry is not.
func TestDispatchCancelled(t *testing.T) {
	s, db := newStore(t)
	retry := enqueueP(t, s, outbox.PriorityNormal, "00001")
	refuse := enqueueP(t, s, outbox.PriorityNormal, "00002")
	gate := make(chan struct{})
	f := newFake(func(ctx context.Context, m outbox.Outgoing, k int) (outbox.SendResult, error) {
		<-gate
		if m.ID == retry.ID {
			return outbox.SendResult{}, outbox.Temporary("0x58", 0, errors.New("throttled"))
		}
		return outbox.SendResult{}, outbox.Permanent("0x0B", errors.New("invalid destination"))
	})
	start(t, s.NewDispatcher(f, fast, nil))
	waitFor(t, "sends", 5*time.Second, func() bool { return f.total() == 2 })
	if _, err := db.Exec(context.Background(), `WITH q AS (DELETE FROM message_queue) UPDATE messages SET state = 'cancelled'`); err != nil {
		t.Fatal(err)
	}
	close(gate)
	waitFor(t, "refusal recorded", 5*time.Second, func() bool { return find(t, s, refuse.ID).State == outbox.Failed })
	time.Sleep(100 * time.Millisecond)
	if m := find(t, s, retry.ID); m.State != outbox.Cancelled || f.count(m.ID) != 1 {
		t.Errorf("cancelled message: %d sends, %+v; want cancelled, not retried", f.count(m.ID), m)
	}
}

// BenchmarkDispatch drains 20,000 queued messages per iteration through a real Pool
// (two binds, window 100) to the simulator, until every outcome is recorded.
//
//	go test -run '^$' -bench Dispatch -benchtime 1x ./outbox/
func BenchmarkDispatch(b *testing.B) {
	const n = 20000
	db := newDB(b, "pool_max_conns=16")
	store := outbox.NewStore(db, nil)
	pool := newPool(b, store, smpptest.Config{SubmitHistory: -1}, 100)
	var total time.Duration
	for b.Loop() {
		b.StopTimer()
		if _, err := db.Exec(context.Background(), `TRUNCATE messages, message_parts, receipts`); err != nil {
			b.Fatal(err)
		}
		insertQueued(b, db, n)
		b.StartTimer()
		began := time.Now()
		ctx, cancel := context.WithCancel(context.Background())
		d := store.NewDispatcher(outboxsmpp.Sender{Pool: pool}, outbox.DispatchConfig{Concurrency: 200, Batch: 100, Poll: 5 * time.Millisecond}, nil)
		done := make(chan error, 1)
		go func() { done <- d.Run(ctx) }()
		for count(b, db, `SELECT count(*) FROM messages WHERE state = 'queued'`) > 0 {
			time.Sleep(10 * time.Millisecond)
		}
		total += time.Since(began)
		cancel()
		if err := <-done; err != nil {
			b.Fatal(err)
		}
		if got := count(b, db, `SELECT count(*) FROM messages WHERE state = 'submitted'`); got != n {
			b.Fatalf("%d of %d submitted", got, n)
		}
	}
	b.ReportMetric(float64(n*b.N)/total.Seconds(), "msgs/s")
}

// TestDispatchReusedSMSCIDs: an SMSC that restarts numbers its messages from the start
// again. The batched record marks the older parts superseded and records the new ones in
// the same transaction (no fall back to one by one), and a receipt for a reused id goes to
// the newer message.
func TestDispatchReusedSMSCIDs(t *testing.T) {
	t.Parallel()
	store, db := newStore(t)
	var mu sync.Mutex
	next := 0
	restart := func() {
		mu.Lock()
		next = 0
		mu.Unlock()
	}
	sender := newFake(func(_ context.Context, m outbox.Outgoing, _ int) (outbox.SendResult, error) {
		mu.Lock()
		defer mu.Unlock()
		next++
		return outbox.SendResult{MNO: "lonestar", SMSCIDs: []string{fmt.Sprintf("x%d", next)}, Segments: 1}, nil
	})
	var logs strings.Builder
	var lmu sync.Mutex
	log := slog.New(slog.NewTextHandler(writerFunc(func(p []byte) (int, error) {
		lmu.Lock()
		defer lmu.Unlock()
		return logs.Write(p)
	}), nil))
	d := store.NewDispatcher(sender, fast, log)
	start(t, d)
	send := func(from int) []int64 {
		var ids []int64
		for i := range 5 {
			ids = append(ids, enqueueP(t, store, outbox.PriorityBulk, fmt.Sprintf("%05d", from+i)).ID)
		}
		d.Wake()
		waitFor(t, "submission", 10*time.Second, func() bool {
			return count(t, db, `SELECT count(*) FROM messages WHERE id = ANY($1) AND state = 'submitted'`, ids) == 5
		})
		return ids
	}
	older := send(0)
	restart()
	newer := send(10)
	if n := count(t, db, `SELECT count(*) FROM message_parts WHERE message_id = ANY($1) AND superseded`, older); n != 5 {
		t.Errorf("%d of the older parts superseded, want 5", n)
	}
	if n := count(t, db, `SELECT count(*) FROM message_parts WHERE message_id = ANY($1) AND NOT superseded`, newer); n != 5 {
		t.Errorf("%d of the newer parts current, want 5", n)
	}
	if err := store.RecordReceipt(context.Background(), outbox.Receipt{MNO: "lonestar", SMSCID: "x3", Stat: "DELIVRD"}); err != nil {
		t.Fatal(err)
	}
	if n := count(t, db, `SELECT count(*) FROM messages WHERE id = ANY($1) AND state = 'delivered'`, newer); n != 1 {
		t.Errorf("%d newer messages delivered by the receipt for x3, want 1", n)
	}
	if n := count(t, db, `SELECT count(*) FROM messages WHERE id = ANY($1) AND state = 'delivered'`, older); n != 0 {
		t.Errorf("%d older messages delivered by a receipt for a reused id, want 0", n)
	}
	lmu.Lock()
	defer lmu.Unlock()
	if strings.Contains(logs.String(), "one by one") || !strings.Contains(logs.String(), "SMSC reused message ids") {
		t.Errorf("logs: %s\nwant the reuse recorded in the batch, and said", logs.String())
	}
}

type writerFunc func([]byte) (int, error)

func (f writerFunc) Write(p []byte) (int, error) { return f(p) }
