package outbox

import (
	"context"

	"github.com/mhero-health/mhero/internal/groupcommit"
)

// ErrStopped is returned by a recorder's Record once it has stopped.
var ErrStopped = groupcommit.ErrStopped

// ReceiptRecorder records delivery receipts from many goroutines (the pool's receipt
// handlers) in shared transactions: each Record returns once its receipt is committed,
// so the SMSC is answered only after that, and the rate is not bound by commits.
type ReceiptRecorder struct {
	g *groupcommit.Committer[Receipt, struct{}]
}

// NewReceiptRecorder returns a recorder batching up to max receipts per transaction
// (default 256) with flushers transactions at once (default 2). Run must be running for
// Record to return.
func (s *Store) NewReceiptRecorder(max, flushers int) *ReceiptRecorder {
	// The SMSC must not get its deliver_sm_resp before the receipt is stored, so each
	// receipt handler waits for its commit; a transaction each would bound the rate.
	return &ReceiptRecorder{g: groupcommit.New(groupcommit.Config[Receipt, struct{}]{Max: max, Flushers: flushers, Log: s.log,
		Flush: func(ctx context.Context, rs []Receipt, _ []groupcommit.Result[struct{}]) error {
			return s.RecordReceipts(ctx, rs)
		},
		One: func(ctx context.Context, r Receipt) (struct{}, error) { return struct{}{}, s.RecordReceipt(ctx, r) }})}
}

// Record stores r, in a batch with the receipts recorded at the same time, and returns
// when it is committed. An invalid receipt is refused at once (EVALIDATION).
func (r *ReceiptRecorder) Record(ctx context.Context, rc Receipt) error {
	if err := rc.Validate(); err != nil {
		return err
	}
	_, err := r.g.Do(ctx, rc)
	return err
}

// Run records until ctx is done; then it records what was handed in and returns. Record
// after that returns ErrStopped. Stop the receipts' source (the SMPP pool) first.
func (r *ReceiptRecorder) Run(ctx context.Context) { r.g.Run(ctx) }
