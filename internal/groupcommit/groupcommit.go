// Package groupcommit stores items that many goroutines hand in, as many together as
// are waiting, each caller returning only once its own item is committed (group commit).
// A caller that must not answer before its item is durable (an SMSC's receipt, a worker
// thanked for a stock report) then costs a share of a transaction, not one of its own,
// and the rate is no longer bound by commits.
//
// It is internal, and not in one of the stores, because two stores use it (outbox's
// receipts, reports' stock counts) and neither may import the other.
package groupcommit

import (
	"context"
	"errors"
	"log/slog"
	"sync"
	"time"
)

// ErrStopped is returned by Do once the committer has stopped.
var ErrStopped = errors.New("group commit: stopped")

// Result is what became of one item of a flush.
type Result[R any] struct {
	Value R
	Err   error // the item alone was refused; the others were committed
}

// Config is what a Committer commits and how much at once.
type Config[T, R any] struct {
	// Max is the most items a flush takes (default 256); Flushers how many flushes run at
	// once (default 2): while one commits, the next batch gathers.
	Max, Flushers int
	// Flush commits items together and fills out[i] for items[i]. Its error fails the
	// flush as a whole (the connection or the commit failed): each item is then handed to
	// One, so that one bad item or a lost connection fails no other. Flush and One must be
	// safe to run again for an item that may have been committed (idempotency keys).
	Flush func(ctx context.Context, items []T, out []Result[R]) error
	One   func(ctx context.Context, item T) (R, error)
	Log   *slog.Logger
	// Timeout, when positive, bounds a batch: its flush and, if that fails, its items
	// committed one by one. A stuck database then fails the batch (each caller gets the
	// error) instead of holding every caller behind it.
	Timeout time.Duration
	// Linger is how long a flush, once it has an item, waits for others to join it (up
	// to Max) before committing: fewer, larger batches cost the database less per item,
	// for that much more latency each. 0: it takes only the items already waiting.
	Linger time.Duration
}

// Committer gathers and commits items until Run's context is done.
type Committer[T, R any] struct {
	cfg Config[T, R]
	in  chan pending[T, R]

	mu      sync.RWMutex
	stopped bool
}

type pending[T, R any] struct {
	item T
	done chan Result[R]
}

// New returns a committer; Run must be running for Do to return.
func New[T, R any](cfg Config[T, R]) *Committer[T, R] {
	if cfg.Max <= 0 {
		cfg.Max = 256
	}
	if cfg.Flushers <= 0 {
		cfg.Flushers = 2
	}
	if cfg.Log == nil {
		cfg.Log = slog.Default()
	}
	return &Committer[T, R]{cfg: cfg, in: make(chan pending[T, R], cfg.Max*cfg.Flushers)}
}

// Do hands item in and waits until it is committed or refused. Only a context done
// before the item is handed in stops the wait: once handed in, the item is committed
// whatever the caller's context does (the answer only tells the caller; it must not cut a
// batch short, nor leave the caller not knowing whether its item was committed).
func (c *Committer[T, R]) Do(ctx context.Context, item T) (R, error) {
	p := pending[T, R]{item: item, done: make(chan Result[R], 1)}
	c.mu.RLock()
	if c.stopped {
		c.mu.RUnlock()
		var zero R
		return zero, ErrStopped
	}
	select {
	case c.in <- p:
		c.mu.RUnlock()
	case <-ctx.Done():
		c.mu.RUnlock()
		var zero R
		return zero, ctx.Err()
	}
	r := <-p.done
	return r.Value, r.Err
}

// Waiting is how many items are handed in and not yet taken by a flush.
func (c *Committer[T, R]) Waiting() int { return len(c.in) }

// Run flushes until ctx is done, then refuses new items, flushes what was handed in and
// returns. Flushes use a context that outlives ctx: an item handed in is committed.
func (c *Committer[T, R]) Run(ctx context.Context) {
	fctx := context.WithoutCancel(ctx)
	var wg sync.WaitGroup
	for range c.cfg.Flushers {
		wg.Go(func() { c.loop(fctx) })
	}
	<-ctx.Done()
	c.mu.Lock()
	c.stopped = true // no Do is between its check and its send now
	close(c.in)
	c.mu.Unlock()
	wg.Wait()
}

func (c *Committer[T, R]) loop(ctx context.Context) {
	batch := make([]pending[T, R], 0, c.cfg.Max)
	items := make([]T, 0, c.cfg.Max)
	out := make([]Result[R], 0, c.cfg.Max)
	var linger *time.Timer
	for p := range c.in {
		batch = append(batch[:0], p)
		var until <-chan time.Time // nil: no lingering, take what is waiting
		if c.cfg.Linger > 0 {
			if linger == nil {
				linger = time.NewTimer(c.cfg.Linger)
			} else {
				linger.Reset(c.cfg.Linger)
			}
			until = linger.C
		}
	more:
		for len(batch) < c.cfg.Max {
			if until == nil {
				select {
				case p, ok := <-c.in:
					if !ok {
						break more
					}
					batch = append(batch, p)
				default:
					break more
				}
				continue
			}
			select {
			case p, ok := <-c.in:
				if !ok {
					break more
				}
				batch = append(batch, p)
			case <-until:
				break more
			}
		}
		if linger != nil {
			linger.Stop() // a timer stopped or fired resets cleanly (Go 1.23)
		}
		items = items[:0]
		for _, p := range batch {
			items = append(items, p.item)
		}
		out = out[:len(batch)]
		clear(out)
		c.commit(ctx, batch, items, out)
	}
}

// commit flushes one batch and answers its callers.
func (c *Committer[T, R]) commit(ctx context.Context, batch []pending[T, R], items []T, out []Result[R]) {
	if c.cfg.Timeout > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, c.cfg.Timeout)
		defer cancel()
	}
	err := c.cfg.Flush(ctx, items, out)
	if err == nil {
		for i, p := range batch {
			p.done <- out[i]
		}
		return
	}
	if len(batch) == 1 {
		batch[0].done <- Result[R]{Err: err}
		return
	}
	c.cfg.Log.Warn("batch not committed; committing its items one by one", "items", len(batch), "err", err)
	for _, p := range batch {
		v, err := c.cfg.One(ctx, p.item)
		p.done <- Result[R]{Value: v, Err: err}
	}
}
