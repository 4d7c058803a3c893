package sms

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/mhero-health/mhero"
	"github.com/mhero-health/mhero/outbox"
)

// SchedulerConfig tunes a Scheduler. Zero values take defaults.
type SchedulerConfig struct {
	Tick time.Duration // how often it looks for due work; default 30 s
	// CatchUp is how late a slot may still fire (after a restart, say); a slot missed by
	// more is recorded as missed. Default 1 h.
	CatchUp time.Duration
	// Reminders sent per transaction; default 500.
	Batch int
	// Wake nudges the outbox dispatcher once something is queued; may be nil.
	Wake func()
}

func (c SchedulerConfig) withDefaults() SchedulerConfig {
	if c.Tick <= 0 {
		c.Tick = 30 * time.Second
	}
	if c.CatchUp <= 0 {
		c.CatchUp = time.Hour
	}
	if c.Batch <= 0 {
		c.Batch = 500
	}
	return c
}

// A Scheduler does the time-driven work: it fires due schedules, finishes sending surveys
// that an interrupted request left half-sent, reminds survey participants and closes
// surveys at their deadline. State is in PostgreSQL, so it survives restarts, and several
// schedulers (one per instance) share it: each due schedule is taken by one
// (FOR UPDATE SKIP LOCKED), a slot's broadcast has the idempotency key
// "schedule:<id>:<slot>" (a second firing of the same slot gets the same broadcast) and a
// slot is recorded once (schedule_runs' primary key), so a slot fires once.
type Scheduler struct {
	s   *Store
	cfg SchedulerConfig
	log *slog.Logger
}

// NewScheduler returns a scheduler of the store's schedules and surveys.
func (s *Store) NewScheduler(cfg SchedulerConfig) *Scheduler {
	return &Scheduler{s: s, cfg: cfg.withDefaults(), log: s.log.With("comp", "scheduler")}
}

// Run ticks until ctx is done, then returns nil once the tick in hand has finished.
func (sc *Scheduler) Run(ctx context.Context) error {
	t := time.NewTicker(sc.cfg.Tick)
	defer t.Stop()
	for {
		if err := sc.Tick(context.WithoutCancel(ctx)); err != nil {
			sc.log.Error("scheduler tick", "error", err)
		}
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
	}
}

// Tick does what is due now, once. Each part's error is reported; the others still run.
func (sc *Scheduler) Tick(ctx context.Context) error {
	var errs []error
	fired, err := sc.fireDue(ctx)
	errs = append(errs, err)
	errs = append(errs, sc.resumeSurveys(ctx), sc.closeSurveys(ctx))
	reminded, err := sc.remind(ctx)
	errs = append(errs, err)
	if (fired > 0 || reminded > 0) && sc.cfg.Wake != nil {
		sc.cfg.Wake()
	}
	return errors.Join(errs...)
}

// fireDue fires the due schedules one by one.
func (sc *Scheduler) fireDue(ctx context.Context) (int, error) {
	n := 0
	for {
		ok, err := sc.fireOne(ctx)
		if err != nil || !ok {
			return n, err
		}
		n++
	}
}

// fireOne takes one due schedule, fires its latest due slot (earlier ones, and one missed
// by more than CatchUp, are recorded as missed) and moves it to its next slot, all while
// holding the schedule's row.
func (sc *Scheduler) fireOne(ctx context.Context) (bool, error) {
	now := sc.s.now()
	took := false
	err := sc.s.tx(ctx, func(tx pgx.Tx) error {
		sch, err := scanSchedule(tx.QueryRow(ctx, `SELECT `+scheduleCols+` FROM schedules
			WHERE next_run_at <= $1 AND NOT paused AND deleted_at IS NULL
			ORDER BY next_run_at LIMIT 1 FOR UPDATE SKIP LOCKED`, now))
		if errors.Is(err, pgx.ErrNoRows) {
			return nil
		}
		if err != nil {
			return err
		}
		took = true
		first, latest, missed := sch.NextRunAt, sch.NextRunAt, 0
		for range 1_000_000 { // the slots since: a week of minutes is 10,080
			next, err := sc.s.nextSlot(sch, latest)
			if err != nil || next.After(now) {
				break
			}
			latest, missed = next, missed+1
		}
		var runs []ScheduleRun
		if missed > 0 {
			runs = append(runs, ScheduleRun{Slot: first, Outcome: "missed",
				Note: fmt.Sprintf("%d slots from here passed while no scheduler ran; only the latest was considered", missed)})
		}
		if now.Sub(latest) > sc.cfg.CatchUp {
			runs = append(runs, ScheduleRun{Slot: latest, Outcome: "missed", Note: "more than the catch-up window late"})
		} else {
			run, err := sc.fire(ctx, sch, latest)
			if err != nil {
				return err // passing: the next tick tries again
			}
			runs = append(runs, run)
		}
		b := &pgx.Batch{}
		for _, r := range runs {
			b.Queue(`INSERT INTO schedule_runs (schedule_id, slot, outcome, broadcast_id, recipients, note)
				VALUES ($1, $2, $3, NULLIF($4, 0), $5, $6) ON CONFLICT DO NOTHING`,
				sch.ID, r.Slot, r.Outcome, r.BroadcastID, r.Recipients, r.Note)
		}
		next, err := sc.s.nextSlot(sch, latest)
		if err != nil {
			sc.log.Error("schedule has no next slot; pausing it", "schedule", sch.ID, "error", err)
			b.Queue(`UPDATE schedules SET paused = true, last_run_at = $2, updated_at = now() WHERE id = $1`, sch.ID, latest)
		} else {
			b.Queue(`UPDATE schedules SET next_run_at = $2, last_run_at = $3 WHERE id = $1`, sch.ID, next, latest)
		}
		return tx.SendBatch(ctx, b).Close()
	})
	return took, err
}

// fire creates the broadcast of one slot, as the schedule's creator: their key's scope
// still bounds the target.
func (sc *Scheduler) fire(ctx context.Context, sch *Schedule, slot time.Time) (ScheduleRun, error) {
	run := ScheduleRun{Slot: slot}
	actx := asPrincipal(ctx, sch.principal)
	aud := &countingAudience{inner: sc.s.deps.Audience}
	if sch.Reporting != nil {
		ex, err := sc.reported(ctx, sch, slot)
		if err != nil {
			if mhero.ErrorCode(err) == mhero.EUNAVAILABLE {
				run.Outcome, run.Note = "failed", mhero.ErrorMessage(err)
				return run, nil
			}
			return run, err
		}
		aud.exclude = ex
	}
	in := sch.broadcastInput(sch.ID, slot)
	b, _, err := sc.s.deps.Outbox.CreateBroadcast(actx, aud, in)
	switch code := mhero.ErrorCode(err); {
	case err == nil:
		run.Outcome, run.BroadcastID, run.Recipients = "sent", b.ID, b.Recipients
	case aud.n.Load() == 0 && code == mhero.EVALIDATION:
		run.Outcome, run.Note = "nobody", "no one to send to"
		if sch.Reporting != nil {
			run.Note = fmt.Sprintf("every targeted worker's facility had reported (%d left out)", len(aud.exclude))
		}
	case code == mhero.ECONFLICT:
		// The slot's key was used with another request: the broadcast exists.
		run.Outcome, run.Note = "sent", "broadcast made by an earlier firing of this slot"
		if err := sc.s.db.QueryRow(ctx, `SELECT id, recipients FROM broadcasts WHERE idempotency_key = $1`, in.IdempotencyKey).
			Scan(&run.BroadcastID, &run.Recipients); err != nil {
			return run, err
		}
	case code == mhero.EVALIDATION || code == mhero.EFORBIDDEN || code == mhero.EINVALID || code == mhero.ENOTFOUND:
		// The target names something gone, or the key's scope no longer covers it: the
		// slot cannot fire; say why and move on.
		run.Outcome, run.Note = "failed", truncateRunes(mhero.ErrorMessage(err), 300)
		sc.log.Warn("schedule slot refused", "schedule", sch.ID, "slot", slot, "error", err)
	default:
		return run, err
	}
	sc.log.Info("schedule fired", "schedule", sch.ID, "slot", slot, "outcome", run.Outcome, "broadcast", run.BroadcastID,
		"recipients", run.Recipients)
	return run, nil
}

// reported returns the workers a reporting reminder leaves out: those whose facility has a
// stock report in the slot's period.
func (sc *Scheduler) reported(ctx context.Context, sch *Schedule, slot time.Time) (map[mhero.WorkerID]bool, error) {
	if sc.s.deps.Reported == nil {
		return nil, mhero.Errorf(mhero.EUNAVAILABLE, "no reporting check is configured")
	}
	zone, err := time.LoadLocation(sch.TimeZone)
	if err != nil {
		return nil, err
	}
	from, to := period(sch.Reporting, slot, zone)
	facilities, err := sc.s.deps.Reported.FacilitiesReported(ctx, from, to)
	if err != nil || len(facilities) == 0 {
		return nil, err
	}
	ids := make([]int64, len(facilities))
	for i, f := range facilities {
		ids[i] = int64(f)
	}
	rows, err := sc.s.db.Query(ctx, `SELECT id FROM workers WHERE facility_id = ANY($1)`, ids)
	if err != nil {
		return nil, err
	}
	list, err := pgx.CollectRows(rows, pgx.RowTo[int64])
	if err != nil {
		return nil, err
	}
	out := make(map[mhero.WorkerID]bool, len(list))
	for _, id := range list {
		out[mhero.WorkerID(id)] = true
	}
	return out, nil
}

// asPrincipal returns ctx acting as the stored API caller (JSON of *mhero.Principal);
// "{}" or nothing is a trusted internal caller.
func asPrincipal(ctx context.Context, stored []byte) context.Context {
	var p mhero.Principal
	if len(stored) == 0 || json.Unmarshal(stored, &p) != nil || p.Role == "" {
		return ctx
	}
	return mhero.NewContextWithPrincipal(ctx, &p)
}

// resumeSurveys finishes sending surveys whose creating request stopped half-way (the
// instance died, the database blinked).
func (sc *Scheduler) resumeSurveys(ctx context.Context) error {
	rows, err := sc.s.db.Query(ctx, `SELECT id, principal FROM surveys WHERE state = 'sending' AND created_at < $1`,
		sc.s.now().Add(-2*time.Minute))
	if err != nil {
		return err
	}
	type pending struct {
		ID        int64
		Principal []byte
	}
	list, err := pgx.CollectRows(rows, pgx.RowToStructByPos[pending])
	if err != nil {
		return err
	}
	var errs []error
	for _, p := range list {
		sv, err := sc.s.loadSurvey(ctx, p.ID)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		err = sc.s.sendSurvey(asPrincipal(ctx, p.Principal), sv)
		switch code := mhero.ErrorCode(err); {
		case err == nil:
			sc.log.Info("survey sent after an interruption", "survey", sv.ID)
		case code == mhero.EVALIDATION || code == mhero.EFORBIDDEN:
			sc.log.Error("survey cannot be sent; closing it", "survey", sv.ID, "error", err)
			errs = append(errs, sc.s.close(ctx, sv.ID, sc.s.now()))
		default:
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// closeSurveys closes the surveys whose deadline passed.
func (sc *Scheduler) closeSurveys(ctx context.Context) error {
	rows, err := sc.s.db.Query(ctx, `SELECT id, deadline FROM surveys WHERE state <> 'closed' AND deadline <= $1`, sc.s.now())
	if err != nil {
		return err
	}
	type due struct {
		ID       int64
		Deadline time.Time
	}
	list, err := pgx.CollectRows(rows, pgx.RowToStructByPos[due])
	if err != nil {
		return err
	}
	var errs []error
	for _, d := range list {
		errs = append(errs, sc.s.close(ctx, d.ID, d.Deadline))
	}
	return errors.Join(errs...)
}

// remind sends the due survey reminders, a batch per transaction, outside quiet hours.
func (sc *Scheduler) remind(ctx context.Context) (int, error) {
	if inQuiet(sc.s.cfg.Quiet, sc.s.now()) {
		return 0, nil
	}
	total := 0
	for {
		n, err := sc.remindBatch(ctx)
		total += n
		if err != nil || n < sc.cfg.Batch {
			return total, err
		}
	}
}

// remindBatch reminds up to Batch participants of the question they were last sent, once
// per survey. Participants who opted out or were deactivated since are marked reminded
// without a message.
func (sc *Scheduler) remindBatch(ctx context.Context) (int, error) {
	now := sc.s.now()
	n := 0
	err := sc.s.tx(ctx, func(tx pgx.Tx) error {
		rows, err := tx.Query(ctx, `SELECT p.survey_id, p.worker_id, p.current_no, p.language, w.msisdn, w.active AND NOT w.opted_out
			FROM survey_participants p JOIN surveys s ON s.id = p.survey_id JOIN workers w ON w.id = p.worker_id
			WHERE s.state = 'open' AND LEAST(s.deadline, s.closed_at) > $1
			  AND p.reminded_at IS NULL AND p.state IN ('sent', 'started') AND p.remind_at <= $1
			LIMIT $2
			FOR UPDATE OF p SKIP LOCKED`, now, sc.cfg.Batch)
		if err != nil {
			return err
		}
		type due struct {
			Survey, Worker int64
			No             int
			Lang, MSISDN   string
			Reachable      bool
		}
		list, err := pgx.CollectRows(rows, pgx.RowToStructByPos[due])
		if err != nil || len(list) == 0 {
			return err
		}
		n = len(list)
		var msgs []outbox.NewMessage
		surveys, workers := make([]int64, n), make([]int64, n)
		for i, d := range list {
			surveys[i], workers[i] = d.Survey, d.Worker
			if !d.Reachable {
				continue
			}
			sv, err := sc.s.survey(ctx, d.Survey)
			if err != nil {
				return err
			}
			prio := outbox.PriorityNormal
			if sv.Priority == "bulk" {
				prio = outbox.PriorityBulk
			}
			l := sc.s.lang(d.Lang)
			msgs = append(msgs, outbox.NewMessage{WorkerID: mhero.WorkerID(d.Worker), To: mhero.MSISDN(d.MSISDN), Priority: prio,
				Body:           fill(l.texts.SurveyReminder, map[string]string{"question": sc.s.render(sv, d.No, d.Lang)}),
				IdempotencyKey: fmt.Sprintf("survey:%d:remind:%d", d.Survey, d.Worker)})
		}
		if _, err := sc.s.deps.Outbox.EnqueueBatch(ctx, tx, msgs); err != nil {
			return err
		}
		_, err = tx.Exec(ctx, `UPDATE survey_participants p SET reminded_at = $3, remind_at = NULL
			FROM unnest($1::bigint[], $2::bigint[]) AS d(survey, worker)
			WHERE p.survey_id = d.survey AND p.worker_id = d.worker`, surveys, workers, now)
		return err
	})
	if n > 0 && err == nil {
		sc.log.Info("survey reminders queued", "participants", n)
	}
	return n, err
}

// inQuiet reports whether t is inside the quiet hours q.
func inQuiet(q outbox.QuietHours, t time.Time) bool {
	if q.IsZero() {
		return false
	}
	lt := t.In(q.Zone)
	since := time.Duration(lt.Hour())*time.Hour + time.Duration(lt.Minute())*time.Minute
	if q.Start < q.End {
		return since >= q.Start && since < q.End
	}
	return since >= q.Start || since < q.End
}
