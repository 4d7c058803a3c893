package registry

import (
	"context"
	"encoding/json"
	"errors"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/mhero-health/mhero"
)

// SetOptOuts records many STOP (optedOut[i] true) and START (false), each by phone
// number, in tx, the caller's transaction: for each what SetOptOut does (the worker's
// opted_out and updated_at, an opt_out or opt_in audit row), in one statement whatever
// their number. Changes to the same worker take effect in order, the last one winning.
// errs[i] is ENOTFOUND when no worker has msisdns[i], as SetOptOut's error; a change
// PostgreSQL refuses is refused alone (the others are kept and tx stays usable). The
// error is for the batch as a whole (the connection failed); then tx is best rolled back.
func (s *Store) SetOptOuts(ctx context.Context, tx pgx.Tx, msisdns []mhero.MSISDN, optedOut []bool) ([]error, error) {
	if len(msisdns) != len(optedOut) {
		return nil, errors.New("registry: SetOptOuts needs one opted-out flag per phone number")
	}
	errs := make([]error, len(msisdns))
	if len(msisdns) == 0 {
		return errs, nil
	}
	found, err := s.setOptOuts(ctx, tx, msisdns, optedOut)
	var pe *pgconn.PgError
	if errors.As(err, &pe) {
		// One change refused spoils the statement: undo it and make them one at a time.
		if _, err := tx.Exec(ctx, `ROLLBACK TO SAVEPOINT opt_outs`); err != nil {
			return nil, err
		}
		for i := range msisdns {
			f, err := s.setOptOuts(ctx, tx, msisdns[i:i+1], optedOut[i:i+1])
			if errors.As(err, &pe) {
				if _, err := tx.Exec(ctx, `ROLLBACK TO SAVEPOINT opt_outs`); err != nil {
					return nil, err
				}
				errs[i] = pgError(err, "Worker with this phone number")
				continue
			} else if err != nil {
				return nil, err
			}
			if !f[0] {
				errs[i] = pgError(pgx.ErrNoRows, "Worker with this phone number")
			}
		}
		return errs, nil
	} else if err != nil {
		return nil, err
	}
	for i, f := range found {
		if !f {
			errs[i] = pgError(pgx.ErrNoRows, "Worker with this phone number")
		}
	}
	return errs, nil
}

// setOptOuts makes the changes in one statement within the savepoint opt_outs and says
// which numbers some worker has. After an error the savepoint is still to be rolled back
// to.
func (s *Store) setOptOuts(ctx context.Context, tx pgx.Tx, msisdns []mhero.MSISDN, optedOut []bool) ([]bool, error) {
	numbers := make([]string, len(msisdns))
	for i, m := range msisdns {
		numbers[i] = string(m)
	}
	// As audit does: the actor is the caller's key, or "cli".
	actor, keyID := "cli", (*int64)(nil)
	if p := mhero.PrincipalFromContext(ctx); p != nil {
		actor, keyID = p.Name, &p.KeyID
		if p.KeyID == 0 {
			keyID = nil
		}
	}
	detail, _ := json.Marshal(nil) // SetOptOut's audit detail
	b := &pgx.Batch{}
	b.Queue(`SAVEPOINT opt_outs`)
	// m: each change with the workers it names (by primary or second phone, like
	// SetOptOut); last: each worker's final state; the audit rows in the order of the
	// changes. The workers are found and updated through their indexes (the update by
	// "id = ANY", which the planner takes for a few rows, not a join it may take for
	// many): a batch names a few workers of many.
	b.Queue(`WITH d AS (SELECT * FROM unnest($1::text[], $2::bool[]) WITH ORDINALITY AS d(msisdn, opted_out, n)),
		m AS (SELECT w.id, d.opted_out, d.n FROM workers w JOIN d ON d.msisdn = w.msisdn WHERE w.msisdn = ANY($1)
			UNION SELECT w.id, d.opted_out, d.n FROM workers w JOIN d ON d.msisdn = w.alt_msisdn WHERE w.alt_msisdn = ANY($1)),
		last AS (SELECT DISTINCT ON (id) id, opted_out FROM m ORDER BY id, n DESC),
		u AS (UPDATE workers w SET opted_out = last.opted_out, updated_at = now() FROM last
			WHERE w.id = last.id AND w.id = ANY (ARRAY(SELECT id FROM last))),
		a AS (INSERT INTO audit_log (key_id, actor, action, entity, entity_id, detail)
			SELECT $3::bigint, $4::text, CASE WHEN opted_out THEN 'opt_out' ELSE 'opt_in' END, 'worker', id::text, $5::jsonb
			FROM m ORDER BY n, id)
		SELECT DISTINCT n FROM m`, numbers, optedOut, keyID, actor, detail)
	b.Queue(`RELEASE SAVEPOINT opt_outs`)
	br := tx.SendBatch(ctx, b)
	defer br.Close()
	if _, err := br.Exec(); err != nil {
		return nil, err
	}
	rows, err := br.Query()
	if err != nil {
		return nil, err
	}
	found := make([]bool, len(msisdns))
	for rows.Next() {
		var n int64
		if err := rows.Scan(&n); err != nil {
			rows.Close()
			return nil, err
		}
		found[n-1] = true
	}
	if err := rows.Err(); err != nil {
		return nil, err
	}
	_, err = br.Exec()
	return found, err
}
