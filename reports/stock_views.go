package reports

import (
	"context"
	"iter"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/mhero-health/mhero"
)

// A stock-out is a report of none on hand, or of days without stock since the last one.
const stockedOut = `(s.quantity = 0 OR s.stockout_days > 0)`

// StockReportRow is one stock report as the export lists it.
type StockReportRow struct {
	Ref           string         `json:"ref"`
	FacilityCode  string         `json:"facility_code"`
	FacilityName  string         `json:"facility_name"`
	LocationCode  string         `json:"location_code"` // the facility's own location
	Commodity     string         `json:"commodity"`
	Quantity      int            `json:"quantity"`
	StockoutDays  int            `json:"stockout_days"`
	WorkerID      mhero.WorkerID `json:"worker_id"`
	WorkerIHRISID string         `json:"worker_ihris_id"`
	ReportedAt    time.Time      `json:"reported_at"`
	ReceivedAt    time.Time      `json:"received_at"`
}

// StockReports lists every stock report in the filter's place (Location, Facility),
// Commodity and Period (optional), in the order they were received: the export.
func (s *Store) StockReports(ctx context.Context, f Filter) iter.Seq2[StockReportRow, error] {
	var id int64
	return view(ctx, s, f, nil, func(sc *scope, a *sqlArgs) (string, error) {
		q := `WITH fac AS (` + sc.facilities(a) + `)
			SELECT s.id, fac.code, fac.name, fac.location_code, c.code, s.quantity, s.stockout_days,
				s.worker_id, COALESCE(w.ihris_id, ''), s.reported_at, s.received_at
			FROM stock_reports s JOIN fac ON fac.id = s.facility_id
			JOIN commodities c ON c.id = s.commodity_id JOIN workers w ON w.id = s.worker_id
			WHERE ` + sc.inPeriod(a, "s.reported_at")
		if sc.commodity != 0 {
			q += ` AND s.commodity_id = ` + a.add(sc.commodity)
		}
		return q + ` ORDER BY s.id`, nil
	}, func(rows pgx.Rows, r *StockReportRow) error {
		err := rows.Scan(&id, &r.FacilityCode, &r.FacilityName, &r.LocationCode, &r.Commodity, &r.Quantity, &r.StockoutDays,
			&r.WorkerID, &r.WorkerIHRISID, &r.ReportedAt, &r.ReceivedAt)
		r.Ref = Ref(RefStock, id)
		return err
	})
}

// LatestStock is the last report of one commodity at one facility.
type LatestStock struct {
	FacilityCode string         `json:"facility_code"`
	FacilityName string         `json:"facility_name"`
	LocationCode string         `json:"location_code"`
	Commodity    string         `json:"commodity"`
	Quantity     int            `json:"quantity"`
	StockoutDays int            `json:"stockout_days"`
	StockedOut   bool           `json:"stocked_out"` // nothing on hand at the last count
	ReportedAt   time.Time      `json:"reported_at"`
	AgeDays      int            `json:"age_days"` // whole days since ReportedAt
	Ref          string         `json:"ref"`      // the report's number
	WorkerID     mhero.WorkerID `json:"worker_id"`
}

// LatestStock lists the latest report of each commodity at each facility in the filter's
// place (Location, Facility) and Commodity, by facility code then commodity, with its
// age. Pairs that never reported are not listed (see ReportingRates).
func (s *Store) LatestStock(ctx context.Context, f Filter) iter.Seq2[LatestStock, error] {
	now := s.now()
	var id int64
	return view(ctx, s, f, nil, func(sc *scope, a *sqlArgs) (string, error) {
		q := `WITH fac AS (` + sc.facilities(a) + `)
			SELECT fac.code, fac.name, fac.location_code, c.code, sl.quantity, sl.stockout_days, sl.reported_at,
				sl.report_id, sl.worker_id
			FROM stock_latest sl JOIN fac ON fac.id = sl.facility_id JOIN commodities c ON c.id = sl.commodity_id`
		if sc.commodity != 0 {
			q += ` WHERE sl.commodity_id = ` + a.add(sc.commodity)
		}
		return q + ` ORDER BY fac.code, c.code`, nil
	}, func(rows pgx.Rows, r *LatestStock) error {
		err := rows.Scan(&r.FacilityCode, &r.FacilityName, &r.LocationCode, &r.Commodity, &r.Quantity, &r.StockoutDays,
			&r.ReportedAt, &id, &r.WorkerID)
		r.StockedOut = r.Quantity == 0
		r.AgeDays = max(0, int(now.Sub(r.ReportedAt)/(24*time.Hour)))
		r.Ref = Ref(RefStock, id)
		return err
	})
}

// LocationCount names the location a row of counts is for.
type LocationCount struct {
	LocationCode string `json:"location_code"`
	LocationName string `json:"location_name"`
	Level        int    `json:"level"`
}

// StockOutCount counts, for one location and commodity, the facilities that had a
// stock-out in the period.
type StockOutCount struct {
	LocationCount
	Commodity  string `json:"commodity"`
	Facilities int    `json:"facilities"`  // in the location
	Reporting  int    `json:"reporting"`   // that reported this commodity in the period
	StockedOut int    `json:"stocked_out"` // that reported a stock-out of it in the period
}

// StockOuts counts stock-outs in the Period (required) for each location at the filter's
// Level under Location, and each commodity (or the one named), by location code then
// commodity. Locations with no facility are left out; commodities without a report are
// listed with zeros while active.
func (s *Store) StockOuts(ctx context.Context, f Filter) iter.Seq2[StockOutCount, error] {
	return view(ctx, s, f, needPeriod, func(sc *scope, a *sqlArgs) (string, error) {
		var cond strings.Builder
		cond.WriteString(sc.inPeriod(a, "s.reported_at"))
		commodities := `c.active OR agg.commodity_id IS NOT NULL`
		if sc.commodity != 0 {
			c := a.add(sc.commodity)
			cond.WriteString(` AND s.commodity_id = ` + c)
			commodities = `c.id = ` + c
		}
		return `WITH fac AS MATERIALIZED (` + sc.facilities(a) + `),
			rep AS (SELECT s.facility_id, s.commodity_id, bool_or` + stockedOut + ` AS out
				FROM stock_reports s WHERE s.facility_id IN (SELECT id FROM fac) AND ` + cond.String() + `
				GROUP BY 1, 2),
			agg AS (SELECT fac.grp, rep.commodity_id, count(*) AS reporting, count(*) FILTER (WHERE rep.out) AS stocked_out
				FROM rep JOIN fac ON fac.id = rep.facility_id GROUP BY 1, 2),
			grps AS (SELECT grp, count(*) AS facilities FROM fac GROUP BY grp)
			SELECT g.code, g.name, g.level, c.code, grps.facilities, COALESCE(agg.reporting, 0), COALESCE(agg.stocked_out, 0)
			FROM grps JOIN locations g ON g.id = grps.grp CROSS JOIN commodities c
			LEFT JOIN agg ON agg.grp = grps.grp AND agg.commodity_id = c.id
			WHERE ` + commodities + `
			ORDER BY g.code, c.code`, nil
	}, func(rows pgx.Rows, r *StockOutCount) error {
		return rows.Scan(&r.LocationCode, &r.LocationName, &r.Level, &r.Commodity, &r.Facilities, &r.Reporting, &r.StockedOut)
	})
}

// StockOutFacility is one facility's stock-out of one commodity in a period.
type StockOutFacility struct {
	FacilityCode     string    `json:"facility_code"`
	FacilityName     string    `json:"facility_name"`
	LocationCode     string    `json:"location_code"`
	Commodity        string    `json:"commodity"`
	StockoutReports  int       `json:"stockout_reports"`  // reports in the period that showed a stock-out
	MaxStockoutDays  int       `json:"max_stockout_days"` // the longest stock-out any of them reported
	FirstReportedAt  time.Time `json:"first_reported_at"` // the first of them
	LastReportedAt   time.Time `json:"last_reported_at"`  // the last of them
	LatestQuantity   int       `json:"latest_quantity"`   // on hand at the latest count, any time
	LatestReportedAt time.Time `json:"latest_reported_at"`
	StillOut         bool      `json:"still_out"` // the latest count found none
}

// StockOutFacilities lists the facilities in the filter's place that reported a
// stock-out in the Period (required), one row per facility and commodity (or the one
// named), by facility code then commodity.
func (s *Store) StockOutFacilities(ctx context.Context, f Filter) iter.Seq2[StockOutFacility, error] {
	return view(ctx, s, f, needPeriod, func(sc *scope, a *sqlArgs) (string, error) {
		q := `WITH fac AS MATERIALIZED (` + sc.facilities(a) + `),
			outs AS (SELECT s.facility_id, s.commodity_id, count(*) AS n, max(s.stockout_days) AS days,
					min(s.reported_at) AS first_at, max(s.reported_at) AS last_at
				FROM stock_reports s WHERE s.facility_id IN (SELECT id FROM fac) AND ` + stockedOut + `
					AND ` + sc.inPeriod(a, "s.reported_at")
		if sc.commodity != 0 {
			q += ` AND s.commodity_id = ` + a.add(sc.commodity)
		}
		return q + ` GROUP BY 1, 2)
			SELECT fac.code, fac.name, fac.location_code, c.code, outs.n, outs.days, outs.first_at, outs.last_at,
				sl.quantity, sl.reported_at
			FROM outs JOIN fac ON fac.id = outs.facility_id JOIN commodities c ON c.id = outs.commodity_id
			JOIN stock_latest sl ON sl.facility_id = outs.facility_id AND sl.commodity_id = outs.commodity_id
			ORDER BY fac.code, c.code`, nil
	}, func(rows pgx.Rows, r *StockOutFacility) error {
		err := rows.Scan(&r.FacilityCode, &r.FacilityName, &r.LocationCode, &r.Commodity, &r.StockoutReports,
			&r.MaxStockoutDays, &r.FirstReportedAt, &r.LastReportedAt, &r.LatestQuantity, &r.LatestReportedAt)
		r.StillOut = r.LatestQuantity == 0
		return err
	})
}

// ReportingRate is how many of a location's facilities reported in a period.
type ReportingRate struct {
	LocationCount
	Expected int     `json:"expected"` // the location's facilities
	Reported int     `json:"reported"` // those with at least one stock report in it
	Rate     float64 `json:"rate"`     // Reported / Expected, 0 to 1
}

// ReportingRates gives, for each location at the filter's Level under Location, the
// facilities that sent a stock report (of Commodity, when named) in the Period
// (required) over the facilities expected to, by location code. Every facility in the
// registry is expected to report: its creation date there is when it was imported, not
// when it opened, so it says nothing about past periods.
func (s *Store) ReportingRates(ctx context.Context, f Filter) iter.Seq2[ReportingRate, error] {
	return view(ctx, s, f, needPeriod, func(sc *scope, a *sqlArgs) (string, error) {
		exists := `SELECT 1 FROM stock_reports s WHERE s.facility_id = fac.id AND ` + sc.inPeriod(a, "s.reported_at")
		if sc.commodity != 0 {
			exists += ` AND s.commodity_id = ` + a.add(sc.commodity)
		}
		return `WITH fac AS (` + sc.facilities(a) + `)
			SELECT g.code, g.name, g.level, count(*), count(*) FILTER (WHERE EXISTS (` + exists + `))
			FROM fac JOIN locations g ON g.id = fac.grp
			GROUP BY g.id ORDER BY g.code`, nil
	}, func(rows pgx.Rows, r *ReportingRate) error {
		err := rows.Scan(&r.LocationCode, &r.LocationName, &r.Level, &r.Expected, &r.Reported)
		r.Rate = 0
		if r.Expected > 0 {
			r.Rate = float64(r.Reported) / float64(r.Expected)
		}
		return err
	})
}
