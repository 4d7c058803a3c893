package reports

import (
	"context"
	"errors"
	"strconv"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/mhero-health/mhero"
)

// StockInput is one stock count a worker sends: how much of a commodity a facility has.
type StockInput struct {
	WorkerID     mhero.WorkerID // who reports; required
	Facility     string         // facility code or id; empty means the worker's own facility
	Commodity    string         // commodity code, any case ("ORS" from an SMS is "ors")
	Quantity     int            // on hand, 0 or more
	StockoutDays int            // days out of stock since the last report, 0 to 366
	// ReportedAt is when the worker counted; zero means now. It may be up to a year old
	// (an SMS typed offline) but not in the future.
	ReportedAt time.Time
	// IdempotencyKey makes retries safe: a second submission with the same key returns
	// the first report. The USSD engine passes session id and hop.
	IdempotencyKey string
}

// StockReport is a stored stock count.
type StockReport struct {
	ID           int64          `json:"id"`
	Ref          string         `json:"ref"` // shown to the worker, e.g. "S-7K3Q9"
	WorkerID     mhero.WorkerID `json:"worker_id"`
	Facility     mhero.Facility `json:"facility"`
	Commodity    string         `json:"commodity"`
	Quantity     int            `json:"quantity"`
	StockoutDays int            `json:"stockout_days"`
	ReportedAt   time.Time      `json:"reported_at"`
	ReceivedAt   time.Time      `json:"received_at"`
}

// Limits of a stock count: a quantity beyond MaxQuantity is a typing slip on a keypad,
// not a stock level.
const (
	MaxQuantity     = 10_000_000
	MaxStockoutDays = 366
	maxReportAge    = 366 * 24 * time.Hour
	maxClockSkew    = 10 * time.Minute
)

func (in *StockInput) check(now time.Time) []mhero.ErrorDetail {
	var d []mhero.ErrorDetail
	if in.WorkerID <= 0 {
		d = append(d, mhero.ErrorDetail{Field: "worker_id", Message: "the reporting worker is required"})
	}
	if normCode(in.Commodity) == "" {
		d = append(d, mhero.ErrorDetail{Field: "commodity", Message: "commodity is required"})
	}
	if in.Quantity < 0 {
		d = append(d, mhero.ErrorDetail{Field: "quantity", Message: "quantity cannot be negative"})
	} else if in.Quantity > MaxQuantity {
		d = append(d, mhero.ErrorDetail{Field: "quantity", Message: "quantity is more than " + strconv.Itoa(MaxQuantity)})
	}
	if in.StockoutDays < 0 || in.StockoutDays > MaxStockoutDays {
		d = append(d, mhero.ErrorDetail{Field: "stockout_days", Message: "stock-out days must be from 0 to " + strconv.Itoa(MaxStockoutDays)})
	}
	if !in.ReportedAt.IsZero() && in.ReportedAt.After(now.Add(maxClockSkew)) {
		d = append(d, mhero.ErrorDetail{Field: "reported_at", Message: "reported_at is in the future"})
	} else if !in.ReportedAt.IsZero() && in.ReportedAt.Before(now.Add(-maxReportAge)) {
		d = append(d, mhero.ErrorDetail{Field: "reported_at", Message: "reported_at is more than a year ago"})
	}
	if len(in.IdempotencyKey) > maxKeyLen {
		d = append(d, mhero.ErrorDetail{Field: "idempotency_key", Message: "idempotency key is longer than " + strconv.Itoa(maxKeyLen) + " bytes"})
	}
	return d
}

// stockLookup is what a stock report names, as found in one round trip.
type stockLookup struct {
	worker      workerInfo
	facility    *mhero.Facility
	commodityID int16
	existing    int64 // the report already stored under the idempotency key
}

func (s *Store) lookupStock(ctx context.Context, in StockInput, code string) (*stockLookup, error) {
	l := &stockLookup{}
	b := &pgx.Batch{}
	queueExisting(b, "stock_reports", in.IdempotencyKey, &l.existing)
	queueWorker(b, in.WorkerID, &l.worker)
	queueFacility(b, in.Facility, in.WorkerID, &l.facility)
	b.Queue(`SELECT id FROM commodities WHERE code = $1 AND active`, code).QueryRow(func(row pgx.Row) error {
		return noRows(row.Scan(&l.commodityID))
	})
	return l, s.sendBatch(ctx, b)
}

// problems lists what the report names that does not exist.
func (l *stockLookup) problems(in StockInput, code string) []mhero.ErrorDetail {
	var d []mhero.ErrorDetail
	if !l.worker.found && in.WorkerID > 0 {
		d = append(d, mhero.ErrorDetail{Field: "worker_id", Message: "no worker has id " + strconv.FormatInt(int64(in.WorkerID), 10)})
	}
	if l.facility == nil && in.Facility != "" {
		d = append(d, mhero.ErrorDetail{Field: "facility", Message: "no facility has the code or id " + strconv.Quote(truncate(in.Facility, 40))})
	} else if l.facility == nil && l.worker.found {
		d = append(d, mhero.ErrorDetail{Field: "facility", Message: "the worker has no facility; name one"})
	}
	if l.commodityID == 0 && code != "" {
		d = append(d, mhero.ErrorDetail{Field: "commodity", Message: "no commodity has the code " + strconv.Quote(truncate(code, 40))})
	}
	return d
}

// SubmitStockReport stores a stock count and returns it with its reference number. An
// unknown commodity, a negative quantity, an unknown worker or facility are EVALIDATION
// with a detail per problem, all at once. The report is in PostgreSQL when it returns, so
// the worker may be thanked.
func (s *Store) SubmitStockReport(ctx context.Context, in StockInput) (*StockReport, error) {
	now := s.now()
	code := normCode(in.Commodity)
	l, err := s.lookupStock(ctx, in, code)
	if err != nil {
		return nil, err
	}
	if l.existing != 0 {
		return s.findStockReport(ctx, l.existing)
	}
	if d := append(in.check(now), l.problems(in, code)...); len(d) > 0 {
		return nil, invalid("Stock report", d)
	}
	reportedAt := in.ReportedAt
	if reportedAt.IsZero() {
		reportedAt = now
	}
	r := &StockReport{WorkerID: in.WorkerID, Facility: *l.facility, Commodity: code, Quantity: in.Quantity,
		StockoutDays: in.StockoutDays, ReportedAt: reportedAt}
	err = s.db.QueryRow(ctx, `INSERT INTO stock_reports
			(facility_id, commodity_id, quantity, stockout_days, worker_id, reported_at, received_at, idempotency_key)
		VALUES ($1, $2, $3, $4, $5, $6, $7, $8)
		ON CONFLICT (idempotency_key) WHERE idempotency_key IS NOT NULL DO NOTHING
		RETURNING id, reported_at, received_at`,
		l.facility.ID, l.commodityID, in.Quantity, in.StockoutDays, in.WorkerID, reportedAt, now, nullKey(in.IdempotencyKey)).
		Scan(&r.ID, &r.ReportedAt, &r.ReceivedAt)
	if errors.Is(err, pgx.ErrNoRows) {
		// The same key was stored between the lookup and the insert (a retry racing the
		// first attempt): that first report is the answer.
		return s.findStockReportByKey(ctx, in.IdempotencyKey)
	} else if err != nil {
		return nil, pgError(err, "Stock report")
	}
	r.Ref = Ref(RefStock, r.ID)
	s.Log.DebugContext(ctx, "stock report stored", "ref", r.Ref, "worker_id", r.WorkerID, "facility_id", r.Facility.ID,
		"commodity", r.Commodity)
	return r, nil
}

const stockReportSelect = `SELECT s.id, s.worker_id, ` + facilityCols + `, c.code, s.quantity, s.stockout_days,
		s.reported_at, s.received_at, l.path
	FROM stock_reports s JOIN facilities f ON f.id = s.facility_id JOIN locations l ON l.id = f.location_id
	JOIN commodities c ON c.id = s.commodity_id `

func (s *Store) scanStockReport(ctx context.Context, row pgx.Row) (*StockReport, error) {
	var r StockReport
	var path []int64
	f := &r.Facility
	err := row.Scan(&r.ID, &r.WorkerID, &f.ID, &f.Code, &f.Name, &f.LocationID, &f.DHIS2UID, &f.DHIS2Code,
		&r.Commodity, &r.Quantity, &r.StockoutDays, &r.ReportedAt, &r.ReceivedAt, &path)
	if err != nil {
		return nil, pgError(err, "Stock report")
	}
	if !inScope(ctx, path) {
		return nil, errOutOfScope("Stock report")
	}
	r.Ref = Ref(RefStock, r.ID)
	return &r, nil
}

func (s *Store) findStockReport(ctx context.Context, id int64) (*StockReport, error) {
	return s.scanStockReport(ctx, s.db.QueryRow(ctx, stockReportSelect+`WHERE s.id = $1`, id))
}

func (s *Store) findStockReportByKey(ctx context.Context, key string) (*StockReport, error) {
	return s.scanStockReport(ctx, s.db.QueryRow(ctx, stockReportSelect+`WHERE s.idempotency_key = $1`, key))
}

// FindStockReport returns a stock report by its reference number ("S-7K3Q9", typed any
// way a person types it), within the caller's scope.
func (s *Store) FindStockReport(ctx context.Context, ref string) (*StockReport, error) {
	id, ok := parseRef(RefStock, ref)
	if !ok {
		return nil, mhero.Errorf(mhero.ENOTFOUND, "No stock report has the number %q.", truncate(ref, 20))
	}
	return s.findStockReport(ctx, id)
}
