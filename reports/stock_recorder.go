package reports

import (
	"context"

	"github.com/mhero-health/mhero/internal/groupcommit"
)

// StockRecorder stores the stock counts that many goroutines submit at once (USSD hops,
// each waiting to thank its worker) together: every Submit returns once its own report is
// committed, but a batch costs one lookup, one insert, one run of the latest-stock
// trigger and one commit, where a transaction each would cost them all per report.
type StockRecorder struct {
	c *groupcommit.Committer[StockInput, *StockReport]
}

// NewStockRecorder returns a recorder storing up to max counts per batch (default 64)
// with flushers batches at once (default 1: at 10,000 USSD hops/s on two cores, one
// flusher made batches twice as large, used a sixth less of PostgreSQL and had the lower
// tail, with no two batches waiting on each other's latest-stock rows). Run must be
// running for Submit to return.
//
// The recorder is for the workers' own submissions: the caller's scope (an API key's
// locations) is not applied to a report found under a repeated idempotency key.
func (s *Store) NewStockRecorder(max, flushers int) *StockRecorder {
	if max <= 0 {
		max = 64
	}
	if flushers <= 0 {
		flushers = 1
	}
	return &StockRecorder{c: groupcommit.New(groupcommit.Config[StockInput, *StockReport]{Max: max, Flushers: flushers, Log: s.Log,
		Flush: func(ctx context.Context, ins []StockInput, out []groupcommit.Result[*StockReport]) error {
			// No transaction block: the lookups are one round trip and the insert, which
			// commits the batch, another (BEGIN, COMMIT and a savepoint would be three more
			// statements and two more round trips per batch, for the same answers).
			rs, err := s.submitStocks(ctx, s.db, ins)
			if err != nil {
				return err
			}
			for i, r := range rs {
				out[i] = groupcommit.Result[*StockReport]{Value: r.Report, Err: r.Err}
			}
			return nil
		},
		One: s.SubmitStockReport})}
}

// Submit stores in as SubmitStockReport does (the same checks, errors and answer to a
// repeated idempotency key), in a transaction shared with the counts submitted at the
// same time, and returns once it is committed.
func (r *StockRecorder) Submit(ctx context.Context, in StockInput) (*StockReport, error) {
	return r.c.Do(ctx, in)
}

// Run stores until ctx is done; then it stores what was handed in and returns. Submit
// after that returns groupcommit's ErrStopped. Stop the submissions' sources (HTTP, the
// SMPP pool) first.
func (r *StockRecorder) Run(ctx context.Context) { r.c.Run(ctx) }
