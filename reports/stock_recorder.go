package reports

import (
	"context"
	"errors"
	"time"

	"github.com/jackc/pgx/v5/pgconn"
	"github.com/mhero-health/mhero"
	"github.com/mhero-health/mhero/internal/groupcommit"
)

// StockRecorder stores the stock counts that many goroutines submit at once (USSD hops,
// each waiting to thank its worker) together: every Submit returns once its own report is
// committed, but a batch costs one statement (lookups, insert, one run of the
// latest-stock trigger) and one commit, where a transaction each would cost them all per
// report.
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
	// A stuck PostgreSQL fails a batch after stockTimeout, within a hop's budget (4 s by
	// default): its hops answer "not sent, try again" rather than hang. A hop never stops
	// waiting on its own: answered before its report's fate is known, a worker told "not
	// sent" whose report was then stored would send it again under another key.
	return &StockRecorder{c: groupcommit.New(groupcommit.Config[StockInput, *StockReport]{Max: max, Flushers: flushers, Log: s.Log,
		Timeout: stockTimeout, Linger: stockLinger,
		Flush: func(ctx context.Context, ins []StockInput, out []groupcommit.Result[*StockReport]) error {
			rs, err := s.recordStocks(ctx, ins)
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

// stockTimeout bounds a batch of stock counts, with its counts retried one by one.
const stockTimeout = 3 * time.Second

// stockLinger is how long a batch waits for more counts once it has one. At 10,000 USSD
// hops/s (2,000 reports/s) on two cores, 0.5 ms made batches larger: PostgreSQL's CPU
// per hop fell by a fifth, the server's by a tenth, and the p99 of every hop with them,
// for 0.5-1 ms more on the hop that submits.
const stockLinger = 500 * time.Microsecond

// Submit stores in as SubmitStockReport does (the same checks, errors and answer to a
// repeated idempotency key), in a statement shared with the counts submitted at the same
// time, and returns once it is committed (or its batch failed).
func (r *StockRecorder) Submit(ctx context.Context, in StockInput) (*StockReport, error) {
	return r.c.Do(ctx, in)
}

// Run stores until ctx is done; then it stores what was handed in and returns. Submit
// after that returns an error. Stop the submissions' sources (HTTP, the SMPP pool) first.
func (r *StockRecorder) Run(ctx context.Context) { r.c.Run(ctx) }

// recordStocks is the recorder's batch, stored as SubmitStockReports would store it but
// mostly in one round trip. The counts a USSD session sends (for the worker's own
// facility, every field valid, a key not met earlier in the batch) are looked up and
// inserted by one statement, which also commits them. The others, and those the statement
// did not store (an unknown worker or commodity, a worker without a facility, a key stored
// before), go through submitStocks, which looks them up first and says why it refuses
// one; so do all of them when PostgreSQL refuses the statement.
func (s *Store) recordStocks(ctx context.Context, ins []StockInput) ([]StockResult, error) {
	out := make([]StockResult, len(ins))
	now := s.now()
	var own []int
	keys := map[string]bool{}
	for i := range ins {
		in := &ins[i]
		if in.Facility != "" || len(in.check(now)) > 0 || in.IdempotencyKey != "" && keys[in.IdempotencyKey] {
			continue
		}
		if in.IdempotencyKey != "" {
			keys[in.IdempotencyKey] = true
		}
		own = append(own, i)
	}
	stored := make([]bool, len(ins))
	if len(own) > 0 {
		// Refused by PostgreSQL, the statement stored nothing: every count goes the
		// checked way, which refuses only the count at fault.
		var pe *pgconn.PgError
		if err := s.insertOwnStocks(ctx, ins, own, now, out, stored); err != nil && !errors.As(err, &pe) {
			return nil, err
		}
	}
	var rest []int
	var restIns []StockInput
	for i := range ins {
		if !stored[i] {
			rest, restIns = append(rest, i), append(restIns, ins[i])
		}
	}
	if len(rest) == 0 {
		return out, nil
	}
	rs, err := s.submitStocks(ctx, s.db, restIns)
	if err != nil {
		return nil, err
	}
	for k, i := range rest {
		out[i] = rs[k]
	}
	return out, nil
}

// insertOwnStocks inserts the counts own (indexes into ins) for their workers' own
// facilities in one statement that looks the workers and commodities up, and fills the
// results of those it stored (marking them in stored).
func (s *Store) insertOwnStocks(ctx context.Context, ins []StockInput, own []int, now time.Time, out []StockResult, stored []bool) error {
	n := len(own)
	workers, codes, quantities, days := make([]int64, n), make([]string, n), make([]int32, n), make([]int32, n)
	reported, keys := make([]time.Time, n), make([]*string, n)
	for k, i := range own {
		in := &ins[i]
		workers[k], codes[k], quantities[k], days[k] = int64(in.WorkerID), normCode(in.Commodity), int32(in.Quantity), int32(in.StockoutDays)
		reported[k] = in.ReportedAt
		if reported[k].IsZero() {
			reported[k] = now
		}
		if in.IdempotencyKey != "" {
			keys[k] = &in.IdempotencyKey
		}
	}
	// d holds the counts whose worker has a facility and whose commodity is active, each
	// with its id taken once (MATERIALIZED), so that each returned id finds its count,
	// stored or not (a key stored before).
	rows, err := s.db.Query(ctx, `WITH d AS MATERIALIZED (
			SELECT nextval('stock_reports_id_seq') AS id, d.n, d.worker, w.facility_id AS facility, c.id AS commodity,
				d.quantity, d.days, d.reported, d.key
			FROM unnest($1::bigint[], $2::text[], $3::int[], $4::int[], $5::timestamptz[], $6::text[])
				WITH ORDINALITY AS d(worker, code, quantity, days, reported, key, n)
			JOIN workers w ON w.id = d.worker AND w.facility_id IS NOT NULL
			JOIN commodities c ON c.code = d.code AND c.active),
		ins AS (INSERT INTO stock_reports
				(id, facility_id, commodity_id, quantity, stockout_days, worker_id, reported_at, received_at, idempotency_key)
			SELECT id, facility, commodity, quantity, days, worker, reported, $7, key FROM d ORDER BY n
			ON CONFLICT (idempotency_key) WHERE idempotency_key IS NOT NULL DO NOTHING
			RETURNING id, reported_at, received_at)
		SELECT d.n, ins.id, ins.reported_at, ins.received_at, `+facilityCols+`
		FROM d JOIN ins ON ins.id = d.id JOIN facilities f ON f.id = d.facility`,
		workers, codes, quantities, days, reported, keys, now)
	if err != nil {
		return err
	}
	type storedRow struct {
		k                  int
		id                 int64
		reported, received time.Time
		f                  mhero.Facility
	}
	var got []storedRow
	for rows.Next() {
		var x storedRow
		var n int64
		f := &x.f
		if err := rows.Scan(&n, &x.id, &x.reported, &x.received, &f.ID, &f.Code, &f.Name, &f.LocationID,
			&f.DHIS2UID, &f.DHIS2Code); err != nil {
			rows.Close()
			return err
		}
		x.k = int(n - 1)
		got = append(got, x)
	}
	// Closed with every row read: the statement, and so the batch, is committed.
	if rows.Close(); rows.Err() != nil {
		return rows.Err()
	}
	for _, x := range got {
		i := own[x.k]
		out[i], stored[i] = StockResult{Report: s.storedStock(ctx, &ins[i], x.id, x.f, x.reported, x.received)}, true
	}
	return nil
}
