package reports

import "context"

// SubmitStocksOutsideTx stores a batch as StockRecorder's flush does, outside a
// transaction block: tests run SubmitStockReports' cases both ways.
func (s *Store) SubmitStocksOutsideTx(ctx context.Context, ins []StockInput) ([]StockResult, error) {
	return s.submitStocks(ctx, s.db, ins)
}
