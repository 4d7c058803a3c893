package groupcommit_test

import (
	"context"
	"errors"
	"runtime"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/mhero-health/mhero/internal/groupcommit"
)

// store is a database of committed items: Flush commits a batch at once (refusing
// negative items on their own, failing as a whole while broken), One commits one item.
// holdNext makes the next flush wait until released, to gather items behind it.
type store struct {
	mu        sync.Mutex
	committed map[int]bool
	batches   []int // sizes of the batches committed
	ones      int
	broken    bool
	hold      chan struct{}
	held      int // items in the flush being held
}

func newStore() *store { return &store{committed: map[int]bool{}} }

func (s *store) flush(_ context.Context, items []int, out []groupcommit.Result[string]) error {
	s.mu.Lock()
	hold := s.hold
	s.hold, s.held = nil, len(items)
	s.mu.Unlock()
	if hold != nil {
		<-hold
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.held = 0
	if s.broken {
		return errors.New("connection lost")
	}
	for i, n := range items {
		if n < 0 {
			out[i].Err = errors.New("negative")
			continue
		}
		s.committed[n] = true
		out[i].Value = "#" + strconv.Itoa(n)
	}
	s.batches = append(s.batches, len(items))
	return nil
}

func (s *store) one(_ context.Context, n int) (string, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.ones++
	if n < 0 {
		return "", errors.New("negative")
	}
	s.committed[n] = true
	return "#" + strconv.Itoa(n), nil
}

func (s *store) holdNext() (release func()) {
	h := make(chan struct{})
	s.mu.Lock()
	s.hold = h
	s.mu.Unlock()
	return func() { close(h) }
}

// lock runs fn under the store's lock.
func (s *store) lock(fn func()) {
	s.mu.Lock()
	defer s.mu.Unlock()
	fn()
}

// until yields until cond holds.
func until(cond func() bool) {
	for !cond() {
		runtime.Gosched()
	}
}

func start(t *testing.T, s *store, max, flushers int) (*groupcommit.Committer[int, string], func()) {
	c := groupcommit.New(groupcommit.Config[int, string]{Max: max, Flushers: flushers, Flush: s.flush, One: s.one})
	return c, running(t, c)
}

// running runs c until the returned stop is called (or the test ends) and stop returns.
func running(t *testing.T, c *groupcommit.Committer[int, string]) (stop func()) {
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); c.Run(ctx) }()
	stop = func() { cancel(); <-done }
	t.Cleanup(stop)
	return stop
}

// Items handed in while a flush commits go together in the next one, up to Max, and each
// caller gets its own item's result, only once that item is committed.
func TestItemsWaitingGoTogetherAndEachGetsItsOwnResult(t *testing.T) {
	s := newStore()
	c, _ := start(t, s, 8, 1)
	release := s.holdNext()
	var wg sync.WaitGroup
	for n := range 30 {
		wg.Go(func() {
			v, err := c.Do(context.Background(), n)
			committed := false
			s.lock(func() { committed = s.committed[n] })
			if err != nil || v != "#"+strconv.Itoa(n) || !committed {
				t.Errorf("item %d: %q, %v, committed %v; want its own result after its commit", n, v, err, committed)
			}
		})
	}
	until(func() bool { return c.Waiting() == 8 }) // the first flush is held and the queue is full
	release()
	wg.Wait()
	total := 0
	for _, b := range s.batches {
		if b > 8 {
			t.Errorf("a batch of %d, more than Max 8", b)
		}
		total += b
	}
	if total != 30 || len(s.batches) < 2 || s.batches[1] != 8 {
		t.Errorf("batches %v: want 30 items, the 8 waiting behind the first flush committed together", s.batches)
	}
}

// An item refused on its own fails only its caller; a flush that fails as a whole is
// retried item by item, so one bad item or a lost connection fails no other.
func TestAFailedBatchIsRetriedItemByItem(t *testing.T) {
	s := newStore()
	c, _ := start(t, s, 8, 1)
	if _, err := c.Do(context.Background(), -1); err == nil || err.Error() != "negative" {
		t.Errorf("a refused item: err = %v", err)
	}

	release := s.holdNext()
	first := make(chan error, 1)
	go func() { _, err := c.Do(context.Background(), 100); first <- err }()
	until(func() bool { held := 0; s.lock(func() { held = s.held }); return held == 1 })
	var wg sync.WaitGroup
	results := make([]error, 4)
	for i, n := range []int{1, 2, -3, 4} {
		wg.Go(func() { _, results[i] = c.Do(context.Background(), n) })
	}
	until(func() bool { return c.Waiting() == 4 })
	s.lock(func() { s.broken = true })
	release()
	wg.Wait()
	// A batch of one that fails is not tried again: its caller has the error.
	if err := <-first; err == nil || s.ones != 4 {
		t.Errorf("a failed batch of one: err = %v; %d single commits, want 4 (the other batch's)", err, s.ones)
	}
	for i, err := range results {
		if want := i == 2; (err != nil) != want {
			t.Errorf("item %d of a failed batch: err = %v", i, err)
		}
	}
	for _, n := range []int{1, 2, 4} {
		if !s.committed[n] {
			t.Errorf("item %d of a failed batch was not committed", n)
		}
	}
}

// Stopping commits every item handed in; after that Do refuses at once. A caller whose
// context ends before its item is handed in gets the context's error.
func TestStopCommitsWhatWasHandedIn(t *testing.T) {
	s := newStore()
	c, stop := start(t, s, 4, 1)
	release := s.holdNext()
	var wg sync.WaitGroup
	for n := range 5 {
		wg.Go(func() {
			if _, err := c.Do(context.Background(), n); err != nil {
				t.Errorf("item %d handed in before the stop: %v", n, err)
			}
		})
	}
	until(func() bool { held := 0; s.lock(func() { held = s.held }); return held+c.Waiting() == 5 })
	stopped := make(chan struct{})
	go func() { stop(); close(stopped) }()
	release()
	<-stopped
	wg.Wait()
	for n := range 5 {
		if !s.committed[n] {
			t.Errorf("item %d handed in before the stop was not committed", n)
		}
	}
	if _, err := c.Do(context.Background(), 7); !errors.Is(err, groupcommit.ErrStopped) {
		t.Errorf("after the stop: err = %v, want ErrStopped", err)
	}

	// Not yet running: the queue (Max × Flushers) fills, and a caller's context ends first.
	idle := groupcommit.New(groupcommit.Config[int, string]{Max: 1, Flushers: 1, Flush: s.flush, One: s.one})
	queued := make(chan error, 1)
	go func() { _, err := idle.Do(context.Background(), 8); queued <- err }()
	until(func() bool { return idle.Waiting() == 1 })
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := idle.Do(ctx, 9); !errors.Is(err, context.Canceled) {
		t.Errorf("a full queue and a cancelled caller: err = %v", err)
	}
	stopIdle := running(t, idle)
	if err := <-queued; err != nil {
		t.Errorf("the queued item once running: %v", err)
	}
	stopIdle()
	if !s.committed[8] {
		t.Error("the queued item was not committed")
	}
}

// With a Timeout, a stuck database fails each batch once it is over, its items retried
// one by one within it: every caller gets an error soon, none waits behind the stuck one.
func TestTimeoutFailsABatchTheDatabaseDoesNotFinish(t *testing.T) {
	stuck := func(ctx context.Context) error { <-ctx.Done(); return ctx.Err() }
	c := groupcommit.New(groupcommit.Config[int, string]{Max: 2, Flushers: 1, Timeout: 100 * time.Millisecond,
		Flush: func(ctx context.Context, _ []int, _ []groupcommit.Result[string]) error { return stuck(ctx) },
		One:   func(ctx context.Context, _ int) (string, error) { return "", stuck(ctx) }})
	running(t, c)
	start := time.Now()
	var wg sync.WaitGroup
	for n := range 4 {
		wg.Go(func() {
			if _, err := c.Do(context.Background(), n); !errors.Is(err, context.DeadlineExceeded) {
				t.Errorf("item %d of a stuck database: err = %v, want the batch's timeout", n, err)
			}
		})
	}
	wg.Wait()
	// Four items in batches of up to two: at most four batches of 100 ms in a row.
	if took := time.Since(start); took > 2*time.Second {
		t.Errorf("the callers of a stuck database waited %v", took)
	}
}

// With Linger, a flush waits that long after its first item for others: items handed in
// one after the other within it go together; a full batch does not wait, and a lone item
// is committed once the linger is over.
func TestLingerGathersItemsHandedInOneAfterAnother(t *testing.T) {
	s := newStore()
	c := groupcommit.New(groupcommit.Config[int, string]{Max: 3, Flushers: 1, Flush: s.flush, One: s.one, Linger: 2 * time.Second})
	running(t, c)

	start := time.Now()
	var wg sync.WaitGroup
	for n := range 3 {
		wg.Go(func() {
			if _, err := c.Do(context.Background(), n); err != nil {
				t.Error(err)
			}
		})
		time.Sleep(20 * time.Millisecond)
	}
	wg.Wait()
	if took := time.Since(start); took > time.Second {
		t.Errorf("a full batch waited %v for its linger", took)
	}
	s.lock(func() {
		if len(s.batches) != 1 || s.batches[0] != 3 {
			t.Errorf("batches %v: want the three items handed in one after the other together", s.batches)
		}
	})

	lone := groupcommit.New(groupcommit.Config[int, string]{Max: 3, Flushers: 1, Flush: s.flush, One: s.one, Linger: 50 * time.Millisecond})
	running(t, lone)
	start = time.Now()
	if _, err := lone.Do(context.Background(), 9); err != nil || time.Since(start) < 50*time.Millisecond {
		t.Errorf("a lone item: %v after %v; want it committed once the 50 ms linger is over", err, time.Since(start))
	}
}
