package sms

import (
	"context"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/mhero-health/mhero"
)

// StockReports answers ReportedFacilities from the reports' stock_reports table (the
// reports package offers no such query yet; this is the one place that reads its table,
// and a method of *reports.Store with the same signature can replace it).
type StockReports struct{ DB *pgxpool.Pool }

// FacilitiesReported returns the facilities with a stock report counted in [from, to).
// One index probe per facility (stock_reports_facility_time_idx), so a year of reports
// costs what a day does.
func (r StockReports) FacilitiesReported(ctx context.Context, from, to time.Time) ([]mhero.FacilityID, error) {
	rows, err := r.DB.Query(ctx, `SELECT f.id FROM facilities f
		WHERE EXISTS (SELECT 1 FROM stock_reports s WHERE s.facility_id = f.id AND s.reported_at >= $1 AND s.reported_at < $2)`,
		from, to)
	if err != nil {
		return nil, err
	}
	return pgx.CollectRows(rows, pgx.RowTo[mhero.FacilityID])
}
