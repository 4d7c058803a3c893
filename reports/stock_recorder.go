package reports

import (
	"context"

	"github.com/jackc/pgx/v5"
	"github.com/mhero-health/mhero/internal/groupcommit"
)

// StockRecorder stores the stock counts that many goroutines submit at once (USSD hops,
// each waiting to thank its worker) in shared transactions: every Submit returns once its
// own report is committed, but a batch costs one lookup, one insert, one run of the
// latest-stock trigger and one commit, where a transaction each would cost them all per
// report.
type StockRecorder struct {
	c *groupcommit.Committer[StockInput, *StockReport]
}

// NewStockRecorder returns a recorder storing up to max counts per transaction (default
// 64) with flushers transactions at once (default 2). Run must be running for Submit to
// return.
//
// The recorder is for the workers' own submissions: the caller's scope (an API key's
// locations) is not applied to a report found under a repeated idempotency key.
func (s *Store) NewStockRecorder(max, flushers int) *StockRecorder {
	if max <= 0 {
		max = 64
	}
	return &StockRecorder{c: groupcommit.New(groupcommit.Config[StockInput, *StockReport]{Max: max, Flushers: flushers, Log: s.Log,
		Flush: func(ctx context.Context, ins []StockInput, out []groupcommit.Result[*StockReport]) error {
			return pgx.BeginFunc(ctx, s.db, func(tx pgx.Tx) error {
				rs, err := s.SubmitStockReports(ctx, tx, ins)
				if err != nil {
					return err
				}
				for i, r := range rs {
					out[i] = groupcommit.Result[*StockReport]{Value: r.Report, Err: r.Err}
				}
				return nil
			})
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
