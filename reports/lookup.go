package reports

import (
	"context"
	"errors"

	"github.com/jackc/pgx/v5"
	"github.com/mhero-health/mhero"
)

// The lookups a submission needs (its worker, facilities, commodity, and any row already
// stored under its idempotency key) go to PostgreSQL as one batch: one round trip inside
// the few seconds a USSD hop has.

const facilityCols = `f.id, f.code, f.name, f.location_id, COALESCE(f.dhis2_uid, ''), COALESCE(f.dhis2_code, '')`

func scanFacility(row pgx.Row, f *mhero.Facility) error {
	return row.Scan(&f.ID, &f.Code, &f.Name, &f.LocationID, &f.DHIS2UID, &f.DHIS2Code)
}

// workerInfo is what the registry has for a worker when they submit.
type workerInfo struct {
	found        bool
	facility     int64  // 0 when unattached
	facilityCode string // "" when unattached
	cadre        string // cadre code, "" when none
}

// queueWorker looks up a worker by internal id.
func queueWorker(b *pgx.Batch, id mhero.WorkerID, dst *workerInfo) {
	b.Queue(`SELECT COALESCE(w.facility_id, 0), COALESCE(f.code, ''), COALESCE(c.code, '') FROM workers w
		LEFT JOIN facilities f ON f.id = w.facility_id LEFT JOIN cadres c ON c.id = w.cadre_id
		WHERE w.id = $1`, int64(id)).QueryRow(func(row pgx.Row) error {
		err := row.Scan(&dst.facility, &dst.facilityCode, &dst.cadre)
		dst.found = err == nil
		return noRows(err)
	})
}

// queueFacility looks up a facility by code or id; an empty ref means the worker's own
// facility. dst stays nil when there is none.
func queueFacility(b *pgx.Batch, ref string, worker mhero.WorkerID, dst **mhero.Facility) {
	q, args := `SELECT `+facilityCols+` FROM facilities f WHERE f.code = $1 OR ($2 > 0 AND f.id = $2)
		ORDER BY (f.code = $1) DESC LIMIT 1`, []any{ref, refID(ref)}
	if ref == "" {
		q, args = `SELECT `+facilityCols+` FROM facilities f JOIN workers w ON w.facility_id = f.id WHERE w.id = $1`, []any{int64(worker)}
	}
	b.Queue(q, args...).QueryRow(func(row pgx.Row) error {
		var f mhero.Facility
		err := scanFacility(row, &f)
		if err == nil {
			*dst = &f
		}
		return noRows(err)
	})
}

// queueExisting finds the id of the row of table already stored under an idempotency key.
// table is one of ours, never user input.
func queueExisting(b *pgx.Batch, table, key string, dst *int64) {
	if key == "" {
		return
	}
	b.Queue(`SELECT id FROM `+table+` WHERE idempotency_key = $1`, key).QueryRow(func(row pgx.Row) error {
		return noRows(row.Scan(dst))
	})
}

// noRows treats "no such row" as an answer, not an error.
func noRows(err error) error {
	if errors.Is(err, pgx.ErrNoRows) {
		return nil
	}
	return err
}

func (s *Store) sendBatch(ctx context.Context, b *pgx.Batch) error {
	return s.db.SendBatch(ctx, b).Close()
}

// inScope reports whether a location path lies inside the caller's scope (any location
// for internal callers and unscoped keys).
func inScope(ctx context.Context, path []int64) bool {
	p := mhero.PrincipalFromContext(ctx)
	if p == nil || p.Scope == nil {
		return true
	}
	for _, id := range path {
		if id == int64(p.Scope.ID) {
			return true
		}
	}
	return false
}

func errOutOfScope(what string) error {
	return mhero.Errorf(mhero.EFORBIDDEN, "%s is outside this key's location scope.", what)
}
