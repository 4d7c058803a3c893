package reports

import (
	"context"
	"encoding/json"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
)

// PushRun is one recorded push of a period to DHIS2.
type PushRun struct {
	ID          int64        `json:"id"`
	Period      string       `json:"period"`
	DataSet     string       `json:"data_set"`
	Trigger     string       `json:"trigger"`
	Actor       string       `json:"actor"`
	Status      string       `json:"status"`
	StartedAt   time.Time    `json:"started_at"`
	FinishedAt  *time.Time   `json:"finished_at,omitempty"`
	ValuesSent  int          `json:"values_sent"`
	Skipped     int          `json:"skipped"`           // facility-commodity pairs left out (see warnings)
	DryRun      *PushSummary `json:"dry_run,omitempty"` // the dry run's answer, when one was made
	DHIS2Status string       `json:"dhis2_status"`      // the real import's status, as DHIS2 said
	ImportCount
	Conflicts int             `json:"conflicts"` // of the real import, or of the dry run that stopped it
	Warnings  []ExportWarning `json:"warnings"`
	Error     string          `json:"error,omitempty"`
}

// PushSummary is what a dry run answered.
type PushSummary struct {
	Status string `json:"status"`
	ImportCount
	Conflicts int `json:"conflicts"`
}

// PushRunDetail is a push with DHIS2's conflicts, each with the values it concerns.
type PushRunDetail struct {
	PushRun
	ConflictDetails []PushConflict `json:"conflict_details"`
}

// PushConflict is one conflict DHIS2 reported.
type PushConflict struct {
	Phase string `json:"phase"` // dry_run or import
	Conflict
	Values []SentValue `json:"values"` // what mhero sent that it is about (at most 20)
}

// interruptPushes marks pushes left running by an instance that died as failed. The
// caller holds the lock, so none is really running.
func (s *Store) interruptPushes(ctx context.Context) error {
	_, err := s.db.Exec(ctx, `UPDATE dhis2_pushes SET status = 'failed', finished_at = $1,
		error = 'interrupted: the instance running it stopped' WHERE status = 'running'`, s.now())
	return err
}

// finishPush writes a push's outcome and conflicts in one transaction.
func (s *Store) finishPush(ctx context.Context, r *PushRunDetail) error {
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	now := s.now()
	r.FinishedAt = &now
	if r.Status == PushRunning {
		r.Status, r.Error = PushFailed, "the push stopped before DHIS2 answered"
	}
	warnings, err := json.Marshal(r.Warnings)
	if err != nil {
		return err
	}
	var dry []byte
	if r.DryRun != nil {
		if dry, err = json.Marshal(r.DryRun); err != nil {
			return err
		}
	}
	return pgx.BeginFunc(ctx, s.db, func(tx pgx.Tx) error {
		if _, err := tx.Exec(ctx, `UPDATE dhis2_pushes SET status = $2, finished_at = $3, values_sent = $4, skipped = $5,
			dry_run = $6, dhis2_status = $7, imported = $8, updated = $9, ignored = $10, deleted = $11, conflicts = $12,
			warnings = $13, error = $14 WHERE id = $1`, r.ID, r.Status, now, r.ValuesSent, r.Skipped, dry, r.DHIS2Status,
			r.Imported, r.Updated, r.Ignored, r.Deleted, r.Conflicts, warnings, r.Error); err != nil {
			return err
		}
		rows := make([][]any, 0, len(r.ConflictDetails))
		for i, c := range r.ConflictDetails {
			vals, err := json.Marshal(c.Values)
			if err != nil {
				return err
			}
			idx := make([]int32, len(c.Indexes))
			for j, x := range c.Indexes {
				idx[j] = int32(x)
			}
			rows = append(rows, []any{r.ID, int32(i), c.Phase, c.Object, c.Value, c.ErrorCode, c.Property, idx, vals})
		}
		_, err := tx.CopyFrom(ctx, pgx.Identifier{"dhis2_push_conflicts"},
			[]string{"push_id", "n", "phase", "object", "value", "error_code", "property", "indexes", "data_values"}, pgx.CopyFromRows(rows))
		return err
	})
}

const pushCols = `id, period, data_set, trigger, actor, status, started_at, finished_at, values_sent, skipped, dry_run,
	dhis2_status, imported, updated, ignored, deleted, conflicts, warnings, error`

func scanPush(row pgx.Row) (*PushRun, error) {
	var r PushRun
	var dry, warnings []byte
	if err := row.Scan(&r.ID, &r.Period, &r.DataSet, &r.Trigger, &r.Actor, &r.Status, &r.StartedAt, &r.FinishedAt,
		&r.ValuesSent, &r.Skipped, &dry, &r.DHIS2Status, &r.Imported, &r.Updated, &r.Ignored, &r.Deleted, &r.Conflicts,
		&warnings, &r.Error); err != nil {
		return nil, err
	}
	if len(dry) > 0 {
		r.DryRun = &PushSummary{}
		if err := decodeJSONBytes(dry, r.DryRun); err != nil {
			return nil, err
		}
	}
	if err := decodeJSONBytes(warnings, &r.Warnings); err != nil {
		return nil, err
	}
	if r.Warnings == nil {
		r.Warnings = []ExportWarning{}
	}
	return &r, nil
}

// ListPushes lists recorded pushes, newest first: n of them with ids below before (0 for
// the newest).
func (s *Store) ListPushes(ctx context.Context, before int64, n int) ([]PushRun, error) {
	rows, err := s.db.Query(ctx, `SELECT `+pushCols+` FROM dhis2_pushes WHERE $1 = 0 OR id < $1 ORDER BY id DESC LIMIT $2`, before, n)
	if err != nil {
		return nil, err
	}
	return pgx.CollectRows(rows, func(row pgx.CollectableRow) (PushRun, error) {
		r, err := scanPush(row)
		if err != nil {
			return PushRun{}, err
		}
		return *r, nil
	})
}

// FindPush returns a recorded push with its conflicts.
func (s *Store) FindPush(ctx context.Context, id int64) (*PushRunDetail, error) {
	r, err := scanPush(s.db.QueryRow(ctx, `SELECT `+pushCols+` FROM dhis2_pushes WHERE id = $1`, id))
	if err != nil {
		return nil, pgError(err, fmt.Sprintf("DHIS2 push %d", id))
	}
	d := &PushRunDetail{PushRun: *r, ConflictDetails: []PushConflict{}}
	rows, err := s.db.Query(ctx, `SELECT phase, object, value, error_code, property, indexes, data_values
		FROM dhis2_push_conflicts WHERE push_id = $1 ORDER BY n`, id)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	for rows.Next() {
		var c PushConflict
		var idx []int32
		var vals []byte
		if err := rows.Scan(&c.Phase, &c.Object, &c.Value, &c.ErrorCode, &c.Property, &idx, &vals); err != nil {
			return nil, err
		}
		for _, x := range idx {
			c.Indexes = append(c.Indexes, int(x))
		}
		if err := decodeJSONBytes(vals, &c.Values); err != nil {
			return nil, err
		}
		d.ConflictDetails = append(d.ConflictDetails, c)
	}
	return d, rows.Err()
}
