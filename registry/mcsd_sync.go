package registry

import (
	"bufio"
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strconv"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/mhero-health/mhero"
)

// maxSyncWarnings caps the warnings one sync records.
const maxSyncWarnings = 100

// run fetches and applies one sync, recording its outcome whatever happens.
func (sy *Syncer) run(ctx context.Context, conn *pgxpool.Conn, run *SyncRun) {
	f, err := sy.fetch(ctx, run)
	if f != nil {
		defer f.close()
	}
	if err == nil {
		err = sy.apply(ctx, conn, run, f)
	}
	if err != nil {
		run.Status, run.Error = SyncFailed, mhero.ErrorMessage(err)
		if mhero.ErrorCode(err) == mhero.EINTERNAL {
			run.Error = "internal error (see the server's log)"
			if ctx.Err() != nil {
				run.Error = "the sync was cancelled (the server is stopping?)"
			}
			sy.log.ErrorContext(ctx, "iHRIS sync", "sync_id", run.ID, "error", err)
		}
	}
	if run.Status == SyncFailed {
		run.NextSince = nil
		fctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
		defer cancel()
		if err := sy.finish(fctx, conn, run); err != nil {
			sy.log.ErrorContext(ctx, "record iHRIS sync", "sync_id", run.ID, "error", err)
		}
	}
}

// plan sorts the changes: what goes through the import, which practitioners'
// workers are deactivated, and what cannot be applied. It counts them per type.
func (f *fetcher) plan(run *SyncRun) (items []*change, deactivate []string) {
	all := slices.SortedFunc(maps.Values(f.changes), func(a, b *change) int { return cmp.Compare(a.seq, b.seq) })
	omitted := 0
	for _, c := range all {
		n := run.Counts[c.typ]
		switch {
		case c.deleted:
			n.Deleted++
		case c.fetched:
			n.Fetched++
		default:
			n.Changed++
		}
		run.Counts[c.typ] = n
		switch {
		case c.typ == "Practitioner" && (c.deleted || c.inactive):
			deactivate = append(deactivate, c.id)
		case c.deleted && c.typ != "Organization":
			if len(run.Warnings) >= maxSyncWarnings {
				omitted++
				continue
			}
			run.Warnings = append(run.Warnings, deletedWarning(c.typ, c.id))
		case !c.deleted:
			items = append(items, c)
		}
	}
	if omitted > 0 {
		run.Warnings = append(run.Warnings, fmt.Sprintf("and %d more deletions mhero cannot apply", omitted))
	}
	return items, deactivate
}

func deletedWarning(typ, id string) string {
	if typ == "PractitionerRole" {
		return "PractitionerRole/" + id + " was deleted in iHRIS: a deleted role does not say whose it was, so its worker keeps " +
			"their cadre and facility until their practitioner or another of their roles changes"
	}
	return typ + "/" + id + " was deleted in iHRIS: mhero keeps its locations and facilities; delete it in mhero once no " +
		"worker points at it"
}

// apply writes the changes, the deactivations, the record and the new cursor in one
// transaction. Bad resources roll it all back unless cfg.Partial.
func (sy *Syncer) apply(ctx context.Context, conn *pgxpool.Conn, run *SyncRun, f *fetcher) error {
	items, deactivate := f.plan(run)
	tx, err := conn.Begin(ctx)
	if err != nil {
		return err
	}
	defer tx.Rollback(context.Background()) //nolint:errcheck // after Commit it is a no-op
	if _, err := tx.Exec(ctx, `SET LOCAL jit = off; SET LOCAL work_mem = '64MB'`); err != nil {
		return err
	}
	res := &ImportResult{Errors: []mhero.ErrorDetail{}}
	col := &collector{log: sy.log, last: time.Now()}
	if len(items) > 0 {
		br := bufio.NewReaderSize(&bundleReader{spool: f.spool, items: items}, 64<<10)
		opt := ImportOptions{Format: FormatFHIRBundle, Partial: sy.cfg.Partial, Source: "ihris-sync"}
		if err := sy.s.importFHIR(ctx, tx, br, opt, col, res); err != nil {
			return err
		}
	}
	run.RowsFailed, run.Errors = col.failed, namedErrors(col.sorted(), items)
	if col.failed > 0 && !sy.cfg.Partial {
		run.Status = SyncFailed
		run.Error = fmt.Sprintf("%d changed resources are bad (see errors); nothing was written. Fix them in iHRIS, "+
			"or set ihris.partial to apply the good ones meanwhile.", col.failed)
		return nil
	}
	run.Created, run.Updated = res.Created, res.Updated
	if run.Deactivated, err = deactivateWorkers(ctx, tx, deactivate, run.ID); err != nil {
		return err
	}
	next := f.serverTime.Add(-sy.cfg.Overlap)
	run.NextSince, run.Status = &next, SyncSucceeded
	if col.failed > 0 {
		run.Status = SyncPartial
	}
	if _, err := tx.Exec(ctx, `INSERT INTO mcsd_sync_state (source, cursor) VALUES ($1, $2)
		ON CONFLICT (source) DO UPDATE SET cursor = EXCLUDED.cursor, updated_at = now()`, sy.source, next); err != nil {
		return err
	}
	if err := sy.finish(ctx, tx, run); err != nil {
		return err
	}
	if err := audit(ctx, tx, "sync", "ihris", strconv.FormatInt(run.ID, 10), map[string]any{"status": run.Status,
		"created": run.Created, "updated": run.Updated, "deactivated": run.Deactivated, "rows_failed": run.RowsFailed}); err != nil {
		return err
	}
	return tx.Commit(ctx)
}

// namedErrors replaces the import's entry numbers (positions in the bundle the sync made
// up) with the resources they are about.
func namedErrors(errs []mhero.ErrorDetail, items []*change) []mhero.ErrorDetail {
	for i := range errs {
		if l := errs[i].Line; l >= 1 && l <= len(items) {
			errs[i].Message = items[l-1].typ + "/" + items[l-1].id + ": " + errs[i].Message
			errs[i].Line = 0
		}
	}
	return errs
}

// deactivateWorkers marks inactive the workers of practitioners iHRIS deleted or
// deactivated, as DeactivateWorker does (never deleted: their messages and reports stay).
func deactivateWorkers(ctx context.Context, tx pgx.Tx, ihrisIDs []string, syncID int64) (int, error) {
	if len(ihrisIDs) == 0 {
		return 0, nil
	}
	rows, err := tx.Query(ctx, `UPDATE workers SET active = false, updated_at = now()
		WHERE ihris_id = ANY ($1) AND active RETURNING id`, ihrisIDs)
	if err != nil {
		return 0, err
	}
	ids, err := pgx.CollectRows(rows, pgx.RowTo[int64])
	if err != nil {
		return 0, err
	}
	for _, id := range ids {
		if err := audit(ctx, tx, "deactivate", "worker", strconv.FormatInt(id, 10),
			map[string]any{"source": "ihris", "sync_id": syncID}); err != nil {
			return 0, err
		}
	}
	return len(ids), nil
}

// finish writes a sync's outcome to its record.
func (sy *Syncer) finish(ctx context.Context, q querier, run *SyncRun) error {
	counts, err := json.Marshal(run.Counts)
	if err != nil {
		return err
	}
	errs, err := json.Marshal(run.Errors)
	if err != nil {
		return err
	}
	warnings, err := json.Marshal(run.Warnings)
	if err != nil {
		return err
	}
	return q.QueryRow(ctx, `UPDATE mcsd_syncs SET status = $2, finished_at = now(), next_since = $3, pages = $4, counts = $5,
		created = $6, updated = $7, deactivated = $8, rows_failed = $9, errors = $10, warnings = $11, error = $12
		WHERE id = $1 RETURNING finished_at`, run.ID, run.Status, run.NextSince, run.Pages, counts, run.Created, run.Updated,
		run.Deactivated, run.RowsFailed, errs, warnings, run.Error).Scan(&run.FinishedAt)
}

// withLock runs fn with a connection of its own on which this session holds the
// PostgreSQL advisory lock key. It returns false without running fn when another
// session holds it.
func (s *Store) withLock(ctx context.Context, key int64, fn func(*pgxpool.Conn) error) (bool, error) {
	conn, err := s.db.Acquire(ctx)
	if err != nil {
		return false, err
	}
	defer conn.Release()
	var ok bool
	if err := conn.QueryRow(ctx, `SELECT pg_try_advisory_lock($1)`, key).Scan(&ok); err != nil || !ok {
		return false, err
	}
	defer func() {
		uctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
		defer cancel()
		if _, err := conn.Exec(uctx, `SELECT pg_advisory_unlock($1)`, key); err != nil {
			_ = conn.Hijack().Close(uctx) // ending the session frees the lock
		}
	}()
	return true, fn(conn)
}

func isNoRows(err error) bool { return errors.Is(err, pgx.ErrNoRows) }

const syncCols = `id, source, mode, trigger, actor, status, started_at, finished_at, since, next_since, pages, counts,
	created, updated, deactivated, rows_failed, errors, warnings, error`

func scanSync(row pgx.Row) (SyncRun, error) {
	var r SyncRun
	var counts, errs, warnings []byte
	err := row.Scan(&r.ID, &r.Source, &r.Mode, &r.Trigger, &r.Actor, &r.Status, &r.StartedAt, &r.FinishedAt, &r.Since,
		&r.NextSince, &r.Pages, &counts, &r.Created, &r.Updated, &r.Deactivated, &r.RowsFailed, &errs, &warnings, &r.Error)
	if err != nil {
		return r, err
	}
	for _, j := range []struct {
		b []byte
		v any
	}{{counts, &r.Counts}, {errs, &r.Errors}, {warnings, &r.Warnings}} {
		if err := json.Unmarshal(j.b, j.v); err != nil {
			return r, fmt.Errorf("sync %d: %w", r.ID, err)
		}
	}
	if r.Errors == nil {
		r.Errors = []mhero.ErrorDetail{}
	}
	if r.Warnings == nil {
		r.Warnings = []string{}
	}
	return r, nil
}

// ListSyncs lists recorded iHRIS syncs, newest first: n of them with ids below before (0
// for the newest).
func (s *Store) ListSyncs(ctx context.Context, before int64, n int) ([]SyncRun, error) {
	rows, err := s.db.Query(ctx, `SELECT `+syncCols+` FROM mcsd_syncs WHERE $1 = 0 OR id < $1 ORDER BY id DESC LIMIT $2`, before, n)
	if err != nil {
		return nil, err
	}
	return pgx.CollectRows(rows, func(row pgx.CollectableRow) (SyncRun, error) { return scanSync(row) })
}
