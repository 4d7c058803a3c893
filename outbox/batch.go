package outbox

import (
	"context"
	"errors"
	"log/slog"
	"sync"
)

// ErrStopped is returned by a batcher's Record once it has stopped.
var ErrStopped = errors.New("outbox: recorder stopped")

// groupCommit records items that many goroutines hand in, as many together as are
// waiting, each caller returning only once its item is committed (group commit). The
// SMSC must not get its deliver_sm_resp before the receipt is stored, so a receipt
// handler waits; with a transaction per receipt the rate would be the commit rate.
type groupCommit[T any] struct {
	in       chan pending[T]
	max      int
	flushers int
	flush    func(context.Context, []T) error
	one      func(context.Context, T) error // a failed batch is retried item by item
	log      *slog.Logger

	mu      sync.RWMutex
	stopped bool
}

type pending[T any] struct {
	item T
	done chan error
}

func newGroupCommit[T any](max, flushers int, flush func(context.Context, []T) error, one func(context.Context, T) error, log *slog.Logger) *groupCommit[T] {
	return &groupCommit[T]{in: make(chan pending[T], max*flushers), max: max, flushers: flushers, flush: flush, one: one, log: log}
}

// record hands item in and waits until it is committed or failed.
func (g *groupCommit[T]) record(ctx context.Context, item T) error {
	p := pending[T]{item: item, done: make(chan error, 1)}
	g.mu.RLock()
	if g.stopped {
		g.mu.RUnlock()
		return ErrStopped
	}
	select {
	case g.in <- p:
		g.mu.RUnlock()
	case <-ctx.Done():
		g.mu.RUnlock()
		return ctx.Err()
	}
	// Once handed in, the item is recorded whatever the caller's context does: the
	// answer only tells the caller; it must not cut a batch short.
	return <-p.done
}

// run flushes until ctx is done, then refuses new items, flushes what was handed in and
// returns. Flushes use a context that outlives ctx: an item handed in is recorded.
func (g *groupCommit[T]) run(ctx context.Context) {
	fctx := context.WithoutCancel(ctx)
	var wg sync.WaitGroup
	for range g.flushers {
		wg.Go(func() { g.loop(fctx) })
	}
	<-ctx.Done()
	g.mu.Lock()
	g.stopped = true // no record is between its check and its send now
	close(g.in)
	g.mu.Unlock()
	wg.Wait()
}

func (g *groupCommit[T]) loop(ctx context.Context) {
	batch := make([]pending[T], 0, g.max)
	items := make([]T, 0, g.max)
	for p := range g.in {
		batch = append(batch[:0], p)
	more:
		for len(batch) < g.max {
			select {
			case p, ok := <-g.in:
				if !ok {
					break more
				}
				batch = append(batch, p)
			default:
				break more
			}
		}
		items = items[:0]
		for _, p := range batch {
			items = append(items, p.item)
		}
		err := g.flush(ctx, items)
		if err == nil {
			for _, p := range batch {
				p.done <- nil
			}
			continue
		}
		if len(batch) > 1 {
			g.log.Warn("batch not recorded; recording its items one by one", "items", len(batch), "err", err)
		}
		for _, p := range batch {
			if len(batch) == 1 {
				p.done <- err
				continue
			}
			p.done <- g.one(ctx, p.item)
		}
	}
}

// ReceiptRecorder records delivery receipts from many goroutines (the pool's receipt
// handlers) in shared transactions: each Record returns once its receipt is committed,
// so the SMSC is answered only after that, and the rate is not bound by commits.
type ReceiptRecorder struct {
	g *groupCommit[Receipt]
}

// NewReceiptRecorder returns a recorder batching up to max receipts per transaction
// (default 256) with flushers transactions at once (default 2). Run must be running for
// Record to return.
func (s *Store) NewReceiptRecorder(max, flushers int) *ReceiptRecorder {
	if max <= 0 {
		max = 256
	}
	if flushers <= 0 {
		flushers = 2
	}
	return &ReceiptRecorder{g: newGroupCommit(max, flushers, s.RecordReceipts, s.RecordReceipt, s.log)}
}

// Record stores r, in a batch with the receipts recorded at the same time, and returns
// when it is committed. An invalid receipt is refused at once (EVALIDATION).
func (r *ReceiptRecorder) Record(ctx context.Context, rc Receipt) error {
	if err := rc.Validate(); err != nil {
		return err
	}
	return r.g.record(ctx, rc)
}

// Run records until ctx is done; then it records what was handed in and returns. Record
// after that returns ErrStopped. Stop the receipts' source (the SMPP pool) first.
func (r *ReceiptRecorder) Run(ctx context.Context) { r.g.run(ctx) }
