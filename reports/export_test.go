package reports

import "context"

// RecordStocks stores a batch as StockRecorder's flush does: tests run
// SubmitStockReports' cases both ways.
func (s *Store) RecordStocks(ctx context.Context, ins []StockInput) ([]StockResult, error) {
	return s.recordStocks(ctx, ins)
}
