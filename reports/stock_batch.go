package reports

import (
	"cmp"
	"context"
	"errors"
	"slices"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/mhero-health/mhero"
)

// StockResult is what became of one stock count of a batch: the stored report (or the
// one stored earlier under its idempotency key), or why it was refused.
type StockResult struct {
	Report *StockReport
	// Err is what SubmitStockReport would have returned for this count alone: EVALIDATION
	// with a detail per problem, EFORBIDDEN for an earlier report outside the caller's
	// scope, or any other error for one PostgreSQL refused.
	Err error
}

// SubmitStockReports stores many stock counts in tx, the caller's transaction, each
// exactly as SubmitStockReport would (the same checks, rows, latest-stock rows and
// references, a repeated idempotency key answered with the first report, stored in this
// batch or before it), in two round trips whatever their number: the lookups and the
// insert (one more for counts sent again). The reports commit or roll back with tx, so
// the caller may thank the workers only after its commit.
//
// The results are in the order of ins. A count that is not valid is refused on its own,
// and one that PostgreSQL refuses (a facility removed meanwhile) too: the others are
// stored and tx stays usable. The error is for the batch as a whole (the connection
// failed); then tx is best rolled back.
func (s *Store) SubmitStockReports(ctx context.Context, tx pgx.Tx, ins []StockInput) ([]StockResult, error) {
	return s.submitStocks(ctx, stockTx{tx}, ins)
}

// stockDB is where a batch of stock counts is stored: the caller's transaction, or the
// pool, where each statement commits on its own (see StockRecorder).
type stockDB interface {
	SendBatch(ctx context.Context, b *pgx.Batch) pgx.BatchResults
}

// stockTx is a transaction as a stockDB: the batch insert then has a savepoint of its own.
type stockTx struct{ pgx.Tx }

// inTx says whether statements sent to db share a transaction that a failed one would
// abort (so it must be undone to a savepoint), rather than each committing on its own.
func inTx(db stockDB) bool {
	_, ok := db.(stockTx)
	return ok
}

// submitStocks is SubmitStockReports in db. Outside a transaction the lookups and the
// insert are two round trips, and the insert commits the batch.
func (s *Store) submitStocks(ctx context.Context, db stockDB, ins []StockInput) ([]StockResult, error) {
	out := make([]StockResult, len(ins))
	if len(ins) == 0 {
		return out, nil
	}
	now := s.now()
	l, err := s.lookupStocks(ctx, db, ins)
	if err != nil {
		return nil, err
	}
	rows, same := l.check(ins, now, out)
	if err := s.insertStocks(ctx, db, ins, rows, now, out); err != nil {
		return nil, err
	}
	for i, j := range same {
		out[i] = out[j]
		if r := out[j].Report; r != nil {
			c := *r
			out[i].Report = &c
		}
	}
	return out, nil
}

// check decides each count of a batch as SubmitStockReport does: an earlier report
// under its key, else refused for what is wrong with it, else a row to insert. A count
// repeating the key of one to insert before it is answered as that one (same: its index
// to that one's).
func (l *stockLookups) check(ins []StockInput, now time.Time, out []StockResult) (rows []stockRow, same map[int]int) {
	same = map[int]int{}
	first := map[string]int{} // idempotency key -> the count of this batch to store under it
	for i := range ins {
		in := &ins[i]
		key := in.IdempotencyKey
		if id, ok := l.existing[key]; ok && key != "" {
			out[i].Report, out[i].Err = l.earlier[id].report, l.earlier[id].err
			continue
		}
		if j, ok := first[key]; ok && key != "" {
			same[i] = j
			continue
		}
		code := normCode(in.Commodity)
		one := stockLookup{worker: workerInfo{found: l.workers[in.WorkerID]}, facility: l.facilityOf(in),
			commodityID: l.commodities[code]}
		if d := append(in.check(now), one.problems(*in, code)...); len(d) > 0 {
			out[i].Err = invalid("Stock report", d)
			continue
		}
		reportedAt := in.ReportedAt
		if reportedAt.IsZero() {
			reportedAt = now
		}
		rows = append(rows, stockRow{i: i, facility: one.facility, commodityID: one.commodityID, reportedAt: reportedAt})
		if key != "" {
			first[key] = i
		}
	}
	return rows, same
}

// stockLookups is what a batch of stock counts names, found in one round trip.
type stockLookups struct {
	workers     map[mhero.WorkerID]bool
	own         map[mhero.WorkerID]*mhero.Facility // each worker's facility
	byCode      map[string]*mhero.Facility         // facilities named by code or id
	byID        map[int64]*mhero.Facility
	commodities map[string]int16 // active ones
	existing    map[string]int64 // idempotency key -> report stored before
	earlier     map[int64]stockResultOf
}

type stockResultOf struct {
	report *StockReport
	err    error
}

// facilityOf is the facility a count is for: the one it names (by code before id), else
// the worker's own.
func (l *stockLookups) facilityOf(in *StockInput) *mhero.Facility {
	if in.Facility == "" {
		return l.own[in.WorkerID]
	}
	if f := l.byCode[in.Facility]; f != nil {
		return f
	}
	if id := refID(in.Facility); id > 0 {
		return l.byID[id]
	}
	return nil
}

// lookupStocks finds what a batch names in one round trip, and the reports of the counts
// sent again in another when there are any.
func (s *Store) lookupStocks(ctx context.Context, db stockDB, ins []StockInput) (*stockLookups, error) {
	l := &stockLookups{workers: map[mhero.WorkerID]bool{}, own: map[mhero.WorkerID]*mhero.Facility{},
		byCode: map[string]*mhero.Facility{}, byID: map[int64]*mhero.Facility{}, commodities: map[string]int16{},
		existing: map[string]int64{}, earlier: map[int64]stockResultOf{}}
	b := &pgx.Batch{}
	l.queue(b, ins)
	if err := db.SendBatch(ctx, b).Close(); err != nil {
		return nil, err
	}
	if len(l.existing) == 0 {
		return l, nil
	}
	// Counts sent again (an SMS handled again after a crash): their first reports, as
	// SubmitStockReport finds them.
	b = &pgx.Batch{}
	for _, id := range l.existing {
		b.Queue(stockReportSelect+`WHERE s.id = $1`, id).QueryRow(func(row pgx.Row) error {
			r, err := s.scanStockReport(ctx, row)
			l.earlier[id] = stockResultOf{r, err}
			return nil
		})
	}
	return l, db.SendBatch(ctx, b).Close()
}

// queue queues the lookups of a batch's workers, their facilities, the facilities named,
// the commodities and the reports already stored under the batch's keys.
func (l *stockLookups) queue(b *pgx.Batch, ins []StockInput) {
	var workers, ids []int64
	var refs, codes, keys []string
	for _, in := range ins {
		workers, codes = append(workers, int64(in.WorkerID)), append(codes, normCode(in.Commodity))
		if in.Facility != "" {
			refs = append(refs, in.Facility)
			if id := refID(in.Facility); id > 0 {
				ids = append(ids, id)
			}
		}
		if in.IdempotencyKey != "" {
			keys = append(keys, in.IdempotencyKey)
		}
	}
	// The workers and their own facilities, if they have one.
	b.Queue(`SELECT w.id, COALESCE(f.id, 0), COALESCE(f.code, ''), COALESCE(f.name, ''), COALESCE(f.location_id, 0),
			COALESCE(f.dhis2_uid, ''), COALESCE(f.dhis2_code, '')
		FROM workers w LEFT JOIN facilities f ON f.id = w.facility_id WHERE w.id = ANY($1)`,
		workers).Query(func(rows pgx.Rows) error {
		return forEach(rows, func() error {
			var id int64
			var f mhero.Facility
			err := rows.Scan(&id, &f.ID, &f.Code, &f.Name, &f.LocationID, &f.DHIS2UID, &f.DHIS2Code)
			l.workers[mhero.WorkerID(id)] = true
			if f.ID != 0 {
				l.own[mhero.WorkerID(id)] = &f
			}
			return err
		})
	})
	if len(refs) > 0 {
		b.Queue(`SELECT `+facilityCols+` FROM facilities f WHERE f.code = ANY($1) OR f.id = ANY($2)`, refs, ids).Query(
			func(rows pgx.Rows) error {
				return forEach(rows, func() error {
					var f mhero.Facility
					err := scanFacility(rows, &f)
					l.byCode[f.Code], l.byID[int64(f.ID)] = &f, &f
					return err
				})
			})
	}
	b.Queue(`SELECT code, id FROM commodities WHERE code = ANY($1) AND active`, codes).Query(func(rows pgx.Rows) error {
		return forEach(rows, func() error {
			var code string
			var id int16
			err := rows.Scan(&code, &id)
			l.commodities[code] = id
			return err
		})
	})
	if len(keys) > 0 {
		b.Queue(`SELECT idempotency_key, id FROM stock_reports WHERE idempotency_key = ANY($1)`, keys).Query(func(rows pgx.Rows) error {
			return forEach(rows, func() error {
				var key string
				var id int64
				err := rows.Scan(&key, &id)
				l.existing[key] = id
				return err
			})
		})
	}
}

// forEach calls fn for each row of rows and closes them.
func forEach(rows pgx.Rows, fn func() error) error {
	defer rows.Close()
	for rows.Next() {
		if err := fn(); err != nil {
			return err
		}
	}
	return rows.Err()
}

// stockRow is a valid count of a batch, to insert.
type stockRow struct {
	i           int // in the batch
	facility    *mhero.Facility
	commodityID int16
	reportedAt  time.Time
}

// insertStocks inserts the valid counts of a batch in one statement (its statement-level
// trigger updates the latest-stock rows once) and fills their results. When PostgreSQL
// refuses one row, the statement is undone (to its own savepoint in a transaction) and
// the rows are inserted one by one, so only that one is refused.
func (s *Store) insertStocks(ctx context.Context, db stockDB, ins []StockInput, rows []stockRow, now time.Time, out []StockResult) error {
	if len(rows) == 0 {
		return nil
	}
	conflicts, err := s.insertStockRows(ctx, db, ins, rows, now, out)
	var pe *pgconn.PgError
	if errors.As(err, &pe) {
		if err := undoStockRows(ctx, db); err != nil {
			return err
		}
		conflicts = nil
		// In the batch statement's order (its trigger's), so that two batches falling back
		// at once lock the latest-stock rows in the same order.
		rows = slices.Clone(rows)
		slices.SortStableFunc(rows, func(a, b stockRow) int {
			return cmp.Or(cmp.Compare(a.facility.ID, b.facility.ID), cmp.Compare(a.commodityID, b.commodityID))
		})
		for _, r := range rows {
			c, err := s.insertStockRows(ctx, db, ins, []stockRow{r}, now, out)
			if errors.As(err, &pe) {
				if err := undoStockRows(ctx, db); err != nil {
					return err
				}
				out[r.i].Err = pgError(err, "Stock report")
				continue
			} else if err != nil {
				return err
			}
			conflicts = append(conflicts, c...)
		}
	} else if err != nil {
		return err
	}
	if len(conflicts) == 0 {
		return nil
	}
	// The same key was stored between the lookup and the insert (a retry racing the first
	// attempt): that first report is the answer.
	b := &pgx.Batch{}
	for _, i := range conflicts {
		b.Queue(stockReportSelect+`WHERE s.idempotency_key = $1`, ins[i].IdempotencyKey).QueryRow(func(row pgx.Row) error {
			out[i].Report, out[i].Err = s.scanStockReport(ctx, row)
			return nil
		})
	}
	return db.SendBatch(ctx, b).Close()
}

// undoStockRows undoes an insert PostgreSQL refused: back to its savepoint in a
// transaction; outside one the statement was undone on its own.
func undoStockRows(ctx context.Context, db stockDB) error {
	if !inTx(db) {
		return nil
	}
	b := &pgx.Batch{}
	b.Queue(`ROLLBACK TO SAVEPOINT stock_reports_batch`)
	return db.SendBatch(ctx, b).Close()
}

// insertStockRows inserts rows in one statement (in a transaction, within the savepoint
// stock_reports_batch), fills the results of those stored, and returns the counts whose
// key was stored meanwhile. After an error in a transaction the savepoint is still to be
// rolled back to.
func (s *Store) insertStockRows(ctx context.Context, db stockDB, ins []StockInput, rows []stockRow, now time.Time, out []StockResult) ([]int, error) {
	b := &pgx.Batch{}
	tx := inTx(db)
	if tx {
		b.Queue(`SAVEPOINT stock_reports_batch`)
	}
	// The ids are taken in the order of the rows (d is computed once), so that each
	// returned id finds its count, stored or not (a key stored meanwhile).
	b.Queue(`WITH d AS MATERIALIZED (
			SELECT nextval('stock_reports_id_seq') AS id, d.* FROM unnest($1::bigint[], $2::smallint[], $3::int[], $4::int[],
				$5::bigint[], $6::timestamptz[], $7::text[]) WITH ORDINALITY AS d(facility, commodity, quantity, days, worker, reported, key, n)),
		ins AS (INSERT INTO stock_reports
				(id, facility_id, commodity_id, quantity, stockout_days, worker_id, reported_at, received_at, idempotency_key)
			SELECT id, facility, commodity, quantity, days, worker, reported, $8, key FROM d ORDER BY n
			ON CONFLICT (idempotency_key) WHERE idempotency_key IS NOT NULL DO NOTHING
			RETURNING id, reported_at, received_at)
		SELECT d.n, ins.id, ins.reported_at, ins.received_at FROM d LEFT JOIN ins ON ins.id = d.id`,
		append(stockColumns(ins, rows), now)...)
	if tx {
		b.Queue(`RELEASE SAVEPOINT stock_reports_batch`)
	}
	br := db.SendBatch(ctx, b)
	defer br.Close()
	if tx {
		if _, err := br.Exec(); err != nil {
			return nil, err
		}
	}
	res, err := br.Query()
	if err != nil {
		return nil, err
	}
	var conflicts []int
	type stored struct {
		k          int
		id         *int64
		reported   *time.Time
		receivedAt *time.Time
	}
	var got []stored
	for res.Next() {
		var x stored
		var n int64
		if err := res.Scan(&n, &x.id, &x.reported, &x.receivedAt); err != nil {
			res.Close()
			return nil, err
		}
		x.k = int(n - 1)
		got = append(got, x)
	}
	if err := res.Err(); err != nil {
		return nil, err
	}
	if tx {
		if _, err := br.Exec(); err != nil {
			return nil, err
		}
	} else if err := br.Close(); err != nil {
		return nil, err // the statement's commit
	}
	for _, x := range got {
		r, in := rows[x.k], &ins[rows[x.k].i]
		if x.id == nil {
			conflicts = append(conflicts, r.i)
			continue
		}
		out[r.i] = StockResult{Report: s.storedStock(ctx, in, *x.id, *r.facility, *x.reported, *x.receivedAt)}
	}
	return conflicts, nil
}

// storedStock is the report PostgreSQL stored for in under id, logged at debug level.
func (s *Store) storedStock(ctx context.Context, in *StockInput, id int64, f mhero.Facility, reported, received time.Time) *StockReport {
	r := &StockReport{ID: id, Ref: Ref(RefStock, id), WorkerID: in.WorkerID, Facility: f, Commodity: normCode(in.Commodity),
		Quantity: in.Quantity, StockoutDays: in.StockoutDays, ReportedAt: reported, ReceivedAt: received}
	s.Log.DebugContext(ctx, "stock report stored", "ref", r.Ref, "worker_id", r.WorkerID, "facility_id", r.Facility.ID,
		"commodity", r.Commodity)
	return r
}

// stockColumns is rows as the insert's arrays: facility, commodity, quantity, stock-out
// days, worker, reported at, idempotency key (NULL for none).
func stockColumns(ins []StockInput, rows []stockRow) []any {
	n := len(rows)
	facilities, commodities, quantities, days := make([]int64, n), make([]int16, n), make([]int32, n), make([]int32, n)
	workers, reported, keys := make([]int64, n), make([]time.Time, n), make([]*string, n)
	for k, r := range rows {
		in := &ins[r.i]
		facilities[k], commodities[k], quantities[k], days[k] = int64(r.facility.ID), r.commodityID, int32(in.Quantity), int32(in.StockoutDays)
		workers[k], reported[k] = int64(in.WorkerID), r.reportedAt
		if in.IdempotencyKey != "" {
			keys[k] = &in.IdempotencyKey
		}
	}
	return []any{facilities, commodities, quantities, days, workers, reported, keys}
}
