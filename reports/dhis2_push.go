package reports

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/mhero-health/mhero"
)

// Push statuses.
const (
	PushRunning   = "running"
	PushSucceeded = "succeeded" // DHIS2 took every value
	PushWarning   = "warning"   // DHIS2 imported, but reported conflicts or ignored values
	PushFailed    = "failed"    // nothing imported: DHIS2 unreachable, refused, or the dry run found conflicts
	PushSkipped   = "skipped"   // nothing to send
)

// Who started a push.
const (
	TriggerSchedule = "schedule"
	TriggerAPI      = "api"
)

// dhis2LockKey is the advisory lock that keeps pushes one at a time across instances.
const dhis2LockKey int64 = 0x6d6865726f_0201

// failedRetry is how soon a failed scheduled push is tried again.
const failedRetry = 15 * time.Minute

// Pusher sends aggregated stock to DHIS2: now (Push, POST /api/v1/exports/dhis2/push)
// and on the configured schedule (Run). Every push is recorded with DHIS2's answer. One
// push runs at a time across all instances (a PostgreSQL advisory lock).
type Pusher struct {
	s      *Store
	cfg    DHIS2Config
	client *dhis2Client
	log    *slog.Logger
	// OnPush, when set, is called after every push Run attempts (metrics, tests).
	OnPush func(*PushRunDetail, error)
	// checkEvery is how often Run asks whether a push is due.
	checkEvery time.Duration
}

// NewPusher returns a Pusher for a configuration that passed Validate. hc may be nil
// (http.Client defaults; each request is bounded by cfg.Timeout).
func NewPusher(s *Store, cfg DHIS2Config, hc *http.Client, log *slog.Logger) (*Pusher, error) {
	if !cfg.resolved {
		return nil, errors.New("reports: the DHIS2 configuration must pass Validate before NewPusher")
	}
	if errs := cfg.check(); len(errs) > 0 {
		return nil, errors.Join(errs...)
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	log = log.With("comp", "dhis2")
	p := &Pusher{s: s, cfg: cfg, log: log, checkEvery: time.Minute}
	p.client = newDHIS2Client(&p.cfg, hc, log)
	return p, nil
}

// PeriodType is the type of period the data set takes.
func (p *Pusher) PeriodType() PeriodType { return p.cfg.periodType() }

// Push sends a period (of the data set's type) to DHIS2 now and returns the recorded
// push. Its outcome, including DHIS2 being down, is in the record's status and error; an
// error is returned only when nothing could be recorded: EINVALID for a period of the
// wrong type, ECONFLICT when another push is running, EFORBIDDEN for a caller limited to
// a location scope (a push sends the whole country).
func (p *Pusher) Push(ctx context.Context, period Period) (*PushRunDetail, error) {
	if pr := mhero.PrincipalFromContext(ctx); pr != nil && pr.Scope != nil {
		return nil, mhero.Errorf(mhero.EFORBIDDEN, "Pushing to DHIS2 needs an admin key without a location scope.")
	}
	return p.push(ctx, period, TriggerAPI, false)
}

func (p *Pusher) push(ctx context.Context, period Period, trigger string, ifDue bool) (*PushRunDetail, error) {
	if period.Type != p.cfg.periodType() {
		return nil, &mhero.Error{Code: mhero.EINVALID, Message: "The data set takes " + p.cfg.PeriodType + " periods.",
			Details: []mhero.ErrorDetail{{Field: "period", Message: "give a " + p.cfg.PeriodType + " period, such as " +
				PreviousPeriod(p.cfg.periodType(), p.s.now(), p.s.tz()).String()}}}
	}
	var out *PushRunDetail
	locked, err := withLock(ctx, p.s.db, dhis2LockKey, func() error {
		if err := p.s.interruptPushes(ctx); err != nil {
			return err
		}
		if ifDue {
			if due, err := p.due(ctx); err != nil || !due {
				return err
			}
		}
		run := &PushRun{Period: period.String(), DataSet: p.cfg.DataSet, Trigger: trigger, Actor: actorOf(ctx),
			Status: PushRunning, StartedAt: p.s.now(), Warnings: []ExportWarning{}}
		if err := p.s.db.QueryRow(ctx, `INSERT INTO dhis2_pushes (period, data_set, trigger, actor, started_at)
			VALUES ($1, $2, $3, $4, $5) RETURNING id`, run.Period, run.DataSet, run.Trigger, run.Actor, run.StartedAt).Scan(&run.ID); err != nil {
			return err
		}
		out = &PushRunDetail{PushRun: *run, ConflictDetails: []PushConflict{}}
		p.send(ctx, period, out)
		return p.s.finishPush(context.WithoutCancel(ctx), out)
	})
	switch {
	case err != nil:
		return out, err
	case !locked:
		return nil, mhero.Errorf(mhero.ECONFLICT, "A DHIS2 push is already running; try again when it has finished.")
	}
	if out != nil {
		p.logPush(ctx, out)
	}
	return out, nil
}

func actorOf(ctx context.Context) string {
	if pr := mhero.PrincipalFromContext(ctx); pr != nil {
		return pr.Name
	}
	return TriggerSchedule
}

// send builds the payload in a temporary file (a country's values can be large, and the
// dry run and the import must send the same bytes), then delivers it, filling in run.
func (p *Pusher) send(ctx context.Context, period Period, run *PushRunDetail) {
	f, err := os.CreateTemp("", "mhero-dhis2-*.json")
	if err != nil {
		run.fail("could not write the payload to a temporary file", err, p.log)
		return
	}
	defer os.Remove(f.Name())
	defer f.Close()
	var sent []SentValue
	w := newDataValueSet(f)
	w.begin(&p.cfg, period)
	sum, err := exportValues(ctx, p.s, &p.cfg, period, "", func(v *SentValue) error {
		w.value(v)
		sent = append(sent, *v)
		return nil
	})
	if err == nil {
		err = w.end(nil)
	}
	if err != nil {
		run.fail("could not read the period's stock reports", err, p.log)
		return
	}
	run.ValuesSent, run.Skipped, run.Warnings = sum.Values, sum.Skipped, sum.Warnings
	if sum.Values == 0 {
		run.Status, run.Error = PushSkipped, "nothing to send: no stock report in "+run.Period+" could be mapped to DHIS2"
		return
	}
	size, err := f.Seek(0, io.SeekCurrent)
	if err != nil {
		run.fail("could not read back the payload", err, p.log)
		return
	}
	p.deliver(ctx, f, size, sent, run)
}

// deliver posts the payload (a dry run first, when configured) and records DHIS2's
// answers in run.
func (p *Pusher) deliver(ctx context.Context, f io.ReaderAt, size int64, sent []SentValue, run *PushRunDetail) {
	if p.cfg.DryRunFirst {
		ds, err := p.client.post(ctx, f, size, true)
		if err != nil {
			run.Status, run.Error = PushFailed, "dry run: "+dhis2Message(err)
			return
		}
		run.DryRun = &PushSummary{Status: ds.Status, ImportCount: ds.ImportCount, Conflicts: ds.ConflictsTotal}
		run.addConflicts("dry_run", ds.Conflicts, sent)
		if ds.Status == DHIS2StatusError || ds.ConflictsTotal > 0 {
			run.Status, run.Conflicts = PushFailed, ds.ConflictsTotal
			run.Error = fmt.Sprintf("the dry run reported %d conflicts (status %s); nothing was imported", ds.ConflictsTotal, ds.Status)
			return
		}
	}
	is, err := p.client.post(ctx, f, size, false)
	if err != nil {
		run.Status, run.Error = PushFailed, dhis2Message(err)
		return
	}
	run.DHIS2Status, run.ImportCount, run.Conflicts = is.Status, is.ImportCount, is.ConflictsTotal
	run.addConflicts("import", is.Conflicts, sent)
	switch {
	case is.Status == DHIS2StatusError:
		run.Status, run.Error = PushFailed, "DHIS2 refused the import: "+truncate(is.Description, 300)
	case is.Status == DHIS2StatusWarning || is.ConflictsTotal > 0 || is.Ignored > 0:
		run.Status = PushWarning
	default:
		run.Status = PushSucceeded
	}
}

// dhis2Message is an error as a push records it: DHIS2's own problems in full, anything
// else (a cancelled request) generically.
func dhis2Message(err error) string {
	var de *DHIS2Error
	if errors.As(err, &de) {
		return de.Message
	}
	if errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
		return "the push was cancelled (the server is stopping?)"
	}
	return "the request to DHIS2 failed"
}

// fail records an internal failure; the cause is logged, not recorded (it may name
// internals).
func (r *PushRunDetail) fail(msg string, err error, log *slog.Logger) {
	r.Status, r.Error = PushFailed, msg
	log.Error("DHIS2 push failed", "push_id", r.ID, "period", r.Period, "error", err)
}

// addConflicts keeps DHIS2's conflicts with the values they point at: by index when DHIS2
// gives them, else every value naming the conflict's object.
func (r *PushRunDetail) addConflicts(phase string, cs []Conflict, sent []SentValue) {
	for _, c := range cs {
		pc := PushConflict{Phase: phase, Conflict: c, Values: []SentValue{}}
		for _, i := range c.Indexes {
			if i >= 0 && i < len(sent) && len(pc.Values) < 20 {
				pc.Values = append(pc.Values, sent[i])
			}
		}
		if len(c.Indexes) == 0 && c.Object != "" {
			for i := range sent {
				v := &sent[i]
				if len(pc.Values) < 20 && (v.OrgUnit == c.Object || v.DataElement == c.Object || v.CategoryOptionCombo == c.Object) {
					pc.Values = append(pc.Values, *v)
				}
			}
		}
		r.ConflictDetails = append(r.ConflictDetails, pc)
	}
}

func (p *Pusher) logPush(ctx context.Context, r *PushRunDetail) {
	attrs := []any{"push_id", r.ID, "period", r.Period, "trigger", r.Trigger, "status", r.Status, "values", r.ValuesSent,
		"skipped", r.Skipped, "imported", r.Imported, "updated", r.Updated, "ignored", r.Ignored, "conflicts", r.Conflicts}
	switch r.Status {
	case PushFailed:
		p.log.ErrorContext(ctx, "DHIS2 push failed", append(attrs, "error", r.Error)...)
	case PushWarning:
		p.log.WarnContext(ctx, "DHIS2 push imported with conflicts or ignored values", attrs...)
	default:
		p.log.InfoContext(ctx, "DHIS2 push finished", attrs...)
	}
}

// due says whether a scheduled push should run now.
func (p *Pusher) due(ctx context.Context) (bool, error) {
	var last time.Time
	var status string
	err := p.s.db.QueryRow(ctx, `SELECT started_at, status FROM dhis2_pushes WHERE trigger = 'schedule'
		ORDER BY started_at DESC LIMIT 1`).Scan(&last, &status)
	if errors.Is(err, pgx.ErrNoRows) {
		return true, nil
	} else if err != nil {
		return false, err
	}
	return p.cfg.due(p.s.now(), last, status == PushFailed, p.s.tz()), nil
}

// due says whether a scheduled push is due at now, the last one having started at last.
// A failed one is tried again after failedRetry (or push_every, if shorter).
func (c *DHIS2Config) due(now, last time.Time, lastFailed bool, loc *time.Location) bool {
	retry := failedRetry
	if c.PushEvery > 0 {
		retry = min(retry, c.PushEvery)
	}
	if lastFailed && now.Sub(last) >= retry {
		return true
	}
	if h, m, ok := parseClock(c.PushAt); ok {
		y, mo, d := now.In(loc).Date()
		slot := time.Date(y, mo, d, h, m, 0, 0, loc)
		if slot.After(now) {
			slot = slot.AddDate(0, 0, -1)
		}
		return last.Before(slot)
	}
	return c.PushEvery > 0 && now.Sub(last) >= c.PushEvery
}

// Run pushes the previous complete period whenever the schedule says (push_every or
// push_at), until ctx ends. Instances share the schedule through the recorded pushes: the
// first to find a push due makes it. Without a schedule it returns at once.
func (p *Pusher) Run(ctx context.Context) error {
	if p.cfg.PushEvery == 0 && p.cfg.PushAt == "" {
		return nil
	}
	t := time.NewTicker(p.checkEvery)
	defer t.Stop()
	for {
		period := PreviousPeriod(p.cfg.periodType(), p.s.now(), p.s.tz())
		run, err := p.push(ctx, period, TriggerSchedule, true)
		if err != nil && ctx.Err() == nil && mhero.ErrorCode(err) != mhero.ECONFLICT {
			p.log.ErrorContext(ctx, "scheduled DHIS2 push", "period", period.String(), "error", err)
		}
		if p.OnPush != nil && (run != nil || (err != nil && mhero.ErrorCode(err) != mhero.ECONFLICT)) {
			p.OnPush(run, err)
		}
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
	}
}

// withLock runs fn while this session holds a PostgreSQL advisory lock on key, on a
// connection of its own. It returns false without running fn when another session
// holds it.
func withLock(ctx context.Context, db *pgxpool.Pool, key int64, fn func() error) (bool, error) {
	conn, err := db.Acquire(ctx)
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
	return true, fn()
}
