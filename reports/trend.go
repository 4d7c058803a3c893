package reports

import (
	"context"
	"iter"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/mhero-health/mhero"
)

// TrendPoint is one week or month of a commodity's trend in a place.
type TrendPoint struct {
	Period               string    `json:"period"` // the DHIS2 week or month, e.g. 2026W45
	Start                time.Time `json:"start"`  // cut to the requested period
	End                  time.Time `json:"end"`
	Reports              int       `json:"reports"`
	FacilitiesReporting  int       `json:"facilities_reporting"`
	FacilitiesStockedOut int       `json:"facilities_stocked_out"`
	// Quantity is the stock on hand across the place: each reporting facility's last
	// count in the bucket, added up.
	Quantity int64 `json:"quantity"`
}

// TrendFilter is a Filter (Commodity and Period required) with the bucket size.
type TrendFilter struct {
	Filter
	Interval PeriodType // Week or Month
}

// StockTrend gives one point per week or month of the Period for one Commodity in the
// filter's place, oldest first; weeks or months without reports are there with zeros, so
// a chart's axis has no holes.
func (s *Store) StockTrend(ctx context.Context, f TrendFilter) iter.Seq2[TrendPoint, error] {
	return func(yield func(TrendPoint, error) bool) {
		if err := f.check(); err != nil {
			yield(TrendPoint{}, err)
			return
		}
		buckets := f.Period.Split(f.Interval)
		starts := make([]time.Time, len(buckets))
		for i, b := range buckets {
			starts[i] = b.Start
		}
		// The buckets that had reports come from the database; the others are zeros. A
		// year has at most 53 of them, so they are gathered before anything is yielded.
		got := make([]TrendPoint, len(buckets))
		seq := view(ctx, s, f.Filter, nil, func(sc *scope, a *sqlArgs) (string, error) {
			bucket := `width_bucket(s.reported_at, ` + a.add(starts) + `::timestamptz[])`
			return `WITH fac AS MATERIALIZED (` + sc.facilities(a) + `),
				r AS (SELECT ` + bucket + ` AS b, s.facility_id, s.quantity, ` + stockedOut + ` AS out,
						row_number() OVER (PARTITION BY ` + bucket + `, s.facility_id ORDER BY s.reported_at DESC, s.id DESC) AS rn
					FROM stock_reports s
					WHERE s.facility_id IN (SELECT id FROM fac) AND s.commodity_id = ` + a.add(sc.commodity) + `
						AND ` + sc.inPeriod(a, "s.reported_at") + `)
				SELECT b, count(*), count(DISTINCT facility_id), count(DISTINCT facility_id) FILTER (WHERE out),
					COALESCE(sum(quantity) FILTER (WHERE rn = 1), 0)
				FROM r GROUP BY b ORDER BY b`, nil
		}, func(rows pgx.Rows, p *TrendPoint) error {
			var b int
			if err := rows.Scan(&b, &p.Reports, &p.FacilitiesReporting, &p.FacilitiesStockedOut, &p.Quantity); err != nil {
				return err
			}
			if b >= 1 && b <= len(got) {
				got[b-1] = *p
			}
			return nil
		})
		for _, err := range seq {
			if err != nil {
				yield(TrendPoint{}, err)
				return
			}
		}
		for i, b := range buckets {
			p := got[i]
			p.Period, p.Start, p.End = b.String(), b.Start, b.End
			if !yield(p, nil) {
				return
			}
		}
	}
}

func (f *TrendFilter) check() error {
	var d []mhero.ErrorDetail
	if f.Period.IsZero() {
		d = append(d, mhero.ErrorDetail{Field: "period", Message: "period is required, e.g. 2026 or 2026Q4"})
	}
	if f.Commodity == "" {
		d = append(d, mhero.ErrorDetail{Field: "commodity", Message: "commodity is required"})
	}
	if f.Interval != Week && f.Interval != Month {
		d = append(d, mhero.ErrorDetail{Field: "interval", Message: "interval must be week or month"})
	}
	if len(d) > 0 {
		return &mhero.Error{Code: mhero.EINVALID, Message: "The trend needs a commodity, a period and an interval.", Details: d}
	}
	return nil
}
