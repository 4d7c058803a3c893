package sms

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"strings"
	"sync/atomic"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/mhero-health/mhero"
	"github.com/mhero-health/mhero/outbox"
)

// ScheduleInput is what a sender asks for (the body of POST /schedules).
type ScheduleInput struct {
	Name   string          `json:"name,omitempty"`
	Spec   string          `json:"spec"`   // "0 8 * * MON" or "weekly MON 08:00", in the deployment's time zone
	Text   string          `json:"text"`   // as a broadcast's: {name}, {first_name}, {facility}, {cadre}
	Target json.RawMessage `json:"target"` // resolved afresh at every slot
	// Priority: normal (default), bulk or alert.
	Priority   string `json:"priority,omitempty"`
	ValidFor   string `json:"valid_for,omitempty"`
	SpreadOver string `json:"spread_over,omitempty"`
	// Reporting makes it a reporting reminder: it goes only to the workers whose facility
	// has no stock report in the period.
	Reporting *Reporting `json:"reporting,omitempty"`
	Paused    bool       `json:"paused,omitempty"`
}

// Reporting is the period a reporting reminder checks.
type Reporting struct {
	Period   string `json:"period"`             // day, week (ISO, from Monday) or month, containing the slot
	Previous bool   `json:"previous,omitempty"` // the period before the one containing the slot
}

// Schedule is a recurring send.
type Schedule struct {
	ID         int64           `json:"id"`
	Name       string          `json:"name,omitempty"`
	Spec       string          `json:"spec"` // as five cron fields
	TimeZone   string          `json:"time_zone"`
	Text       string          `json:"text"`
	Target     json.RawMessage `json:"target"`
	Priority   string          `json:"priority"`
	ValidFor   string          `json:"valid_for,omitempty"`
	SpreadOver string          `json:"spread_over,omitempty"`
	Reporting  *Reporting      `json:"reporting,omitempty"`
	Paused     bool            `json:"paused"`
	NextRunAt  time.Time       `json:"next_run_at"`
	LastRunAt  time.Time       `json:"last_run_at,omitzero"`
	CreatedBy  string          `json:"created_by,omitempty"`
	CreatedAt  time.Time       `json:"created_at"`
	UpdatedAt  time.Time       `json:"updated_at"`
	Runs       []ScheduleRun   `json:"runs,omitempty"` // the latest, newest first (one schedule read)

	scopePath string
	principal []byte
}

// ScheduleRun is what one slot of a schedule did.
type ScheduleRun struct {
	Slot        time.Time `json:"slot"`
	Outcome     string    `json:"outcome"` // sent, nobody (everyone had reported, or no one matched), missed, failed
	BroadcastID int64     `json:"broadcast_id,omitempty"`
	Recipients  int       `json:"recipients"`
	Note        string    `json:"note,omitempty"`
	FiredAt     time.Time `json:"fired_at"`
}

// CreateSchedule checks a schedule (its text and target with a dry-run broadcast, which
// may reach no one today) and stores it; its first slot is the next one after now.
func (s *Store) CreateSchedule(ctx context.Context, in ScheduleInput) (*Schedule, error) {
	if s.deps.Audience == nil {
		return nil, mhero.Errorf(mhero.EUNAVAILABLE, "Schedules need the registry (no audience is configured).")
	}
	var d []mhero.ErrorDetail
	bad := func(field, msg string) { d = append(d, mhero.ErrorDetail{Field: field, Message: msg}) }
	sp, err := ParseSpec(in.Spec)
	if err != nil {
		bad("spec", err.Error())
	}
	if len(in.Name) > maxSurveyName {
		bad("name", "name is longer than 200 characters")
	}
	if in.Reporting != nil {
		switch in.Reporting.Period {
		case "day", "week", "month":
		default:
			bad("reporting.period", "period must be day, week or month")
		}
		if s.deps.Reported == nil {
			return nil, mhero.Errorf(mhero.EUNAVAILABLE, "Reporting reminders need the reports (not configured).")
		}
	}
	if t := bytes.TrimSpace(in.Target); len(t) == 0 || bytes.Equal(t, []byte("null")) {
		bad("target", "target is required, as for a broadcast")
	}
	if err := validation("Schedule", d); err != nil {
		return nil, err
	}
	sc := &Schedule{Name: strings.TrimSpace(in.Name), Spec: sp.String(), TimeZone: s.cfg.TimeZone.String(),
		Text: strings.TrimSpace(in.Text), Target: in.Target, Priority: cmpOr(in.Priority, "normal"), ValidFor: in.ValidFor,
		SpreadOver: in.SpreadOver, Reporting: in.Reporting, Paused: in.Paused}
	// The text and target are checked as a broadcast checks them; reaching no one today is
	// fine (a reporting reminder often will not).
	aud := &countingAudience{inner: s.deps.Audience}
	bin := sc.broadcastInput(0, time.Time{})
	bin.DryRun = true
	if _, _, err := s.deps.Outbox.CreateBroadcast(ctx, aud, bin); err != nil && !(aud.n.Load() == 0 && mhero.ErrorCode(err) == mhero.EVALIDATION &&
		len(mhero.ErrorDetails(err)) == 0) {
		return nil, err
	}
	sc.NextRunAt = sp.Next(s.now(), s.cfg.TimeZone)
	p := mhero.PrincipalFromContext(ctx)
	principal := []byte("{}")
	if p != nil {
		principal, _ = json.Marshal(p)
		sc.CreatedBy = p.Name
		if p.Scope != nil {
			sc.scopePath = p.Scope.Path
		}
	}
	var period *string
	var previous bool
	if in.Reporting != nil {
		period, previous = &in.Reporting.Period, in.Reporting.Previous
	}
	err = s.db.QueryRow(ctx, `INSERT INTO schedules (name, spec, time_zone, text, target, priority, valid_for, spread_over,
			report_period, report_previous, paused, next_run_at, principal, scope_path, created_by)
		VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, NULLIF($14, ''), $15)
		RETURNING id, created_at, updated_at`,
		sc.Name, sc.Spec, sc.TimeZone, sc.Text, string(sc.Target), sc.Priority, sc.ValidFor, sc.SpreadOver, period, previous,
		sc.Paused, sc.NextRunAt, principal, sc.scopePath, sc.CreatedBy).Scan(&sc.ID, &sc.CreatedAt, &sc.UpdatedAt)
	if err != nil {
		return nil, pgError(err, "Schedule")
	}
	s.log.Info("schedule created", "schedule", sc.ID, "spec", sc.Spec, "next_run_at", sc.NextRunAt, "by", sc.CreatedBy)
	return sc, nil
}

// broadcastInput is the broadcast of one slot. Its name and idempotency key come from the
// slot alone, so any instance firing the same slot asks for the same broadcast.
func (sc *Schedule) broadcastInput(id int64, slot time.Time) outbox.BroadcastInput {
	in := outbox.BroadcastInput{Text: sc.Text, Target: sc.Target, Priority: sc.Priority, ValidFor: sc.ValidFor,
		SpreadOver: sc.SpreadOver}
	if id != 0 {
		in.Name = truncateRunes(fmt.Sprintf("Schedule %d: %s (%s)", id, sc.Name, slot.UTC().Format(time.RFC3339)), 200)
		in.IdempotencyKey = "schedule:" + itoa(id) + ":" + slot.UTC().Format(time.RFC3339)
	}
	return in
}

// countingAudience counts the recipients it yields, to tell "reaches no one" from other
// refusals.
type countingAudience struct {
	inner   outbox.Audience
	exclude map[mhero.WorkerID]bool // workers left out (their facility reported)
	n       atomic.Int64
}

func (a *countingAudience) Recipients(ctx context.Context, target []byte, fn func(mhero.Recipient) error) error {
	return a.inner.Recipients(ctx, target, func(r mhero.Recipient) error {
		if a.exclude[r.WorkerID] {
			return nil
		}
		a.n.Add(1)
		return fn(r)
	})
}

const scheduleCols = `id, name, spec, time_zone, text, target, priority, valid_for, spread_over, report_period, report_previous,
	paused, next_run_at, last_run_at, created_by, created_at, updated_at, COALESCE(scope_path, ''), principal`

func scanSchedule(row pgx.Row) (*Schedule, error) {
	var sc Schedule
	var target []byte
	var period *string
	var previous bool
	var last *time.Time
	err := row.Scan(&sc.ID, &sc.Name, &sc.Spec, &sc.TimeZone, &sc.Text, &target, &sc.Priority, &sc.ValidFor, &sc.SpreadOver,
		&period, &previous, &sc.Paused, &sc.NextRunAt, &last, &sc.CreatedBy, &sc.CreatedAt, &sc.UpdatedAt, &sc.scopePath, &sc.principal)
	if err != nil {
		return nil, err
	}
	sc.Target = target
	if period != nil {
		sc.Reporting = &Reporting{Period: *period, Previous: previous}
	}
	if last != nil {
		sc.LastRunAt = *last
	}
	return &sc, nil
}

// FindSchedule returns a schedule with its latest runs, within the caller's scope.
func (s *Store) FindSchedule(ctx context.Context, id int64) (*Schedule, error) {
	sc, err := scanSchedule(s.db.QueryRow(ctx, `SELECT `+scheduleCols+` FROM schedules WHERE id = $1 AND deleted_at IS NULL`, id))
	if err != nil {
		return nil, pgError(err, "Schedule")
	}
	if !visible(ctx, sc.scopePath) {
		return nil, mhero.Errorf(mhero.ENOTFOUND, "Schedule not found.")
	}
	rows, err := s.db.Query(ctx, `SELECT slot, outcome, COALESCE(broadcast_id, 0), recipients, note, fired_at
		FROM schedule_runs WHERE schedule_id = $1 ORDER BY slot DESC LIMIT 20`, id)
	if err != nil {
		return nil, pgError(err, "Schedule runs")
	}
	sc.Runs, err = pgx.CollectRows(rows, pgx.RowToStructByPos[ScheduleRun])
	if err != nil {
		return nil, pgError(err, "Schedule runs")
	}
	return sc, nil
}

// ListSchedules lists the schedules the caller may see, newest first, before the cursor.
func (s *Store) ListSchedules(ctx context.Context, before int64, n int) ([]*Schedule, error) {
	if before <= 0 {
		before = math.MaxInt64
	}
	scope := ""
	if p := mhero.PrincipalFromContext(ctx); p != nil && p.Scope != nil {
		scope = p.Scope.Path
	}
	rows, err := s.db.Query(ctx, `SELECT `+scheduleCols+` FROM schedules
		WHERE id < $1 AND deleted_at IS NULL AND ($3 = '' OR scope_path = $3 OR scope_path LIKE $3 || '/%')
		ORDER BY id DESC LIMIT $2`, before, n, scope)
	if err != nil {
		return nil, pgError(err, "Schedules")
	}
	list, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (*Schedule, error) { return scanSchedule(r) })
	return list, pgError(err, "Schedules")
}

// PauseSchedule pauses (true) or resumes (false) a schedule. A resumed schedule fires at
// its next slot after now: the slots it was paused over are not sent late.
func (s *Store) PauseSchedule(ctx context.Context, id int64, paused bool) (*Schedule, error) {
	err := s.tx(ctx, func(tx pgx.Tx) error {
		sc, err := scanSchedule(tx.QueryRow(ctx, `SELECT `+scheduleCols+` FROM schedules WHERE id = $1 AND deleted_at IS NULL FOR UPDATE`, id))
		if err != nil {
			return err
		}
		if !visible(ctx, sc.scopePath) {
			return mhero.Errorf(mhero.ENOTFOUND, "Schedule not found.")
		}
		if sc.Paused == paused {
			return nil
		}
		next := sc.NextRunAt
		if !paused {
			next, err = s.nextSlot(sc, s.now())
			if err != nil {
				return err
			}
		}
		_, err = tx.Exec(ctx, `UPDATE schedules SET paused = $2, next_run_at = $3, updated_at = now() WHERE id = $1`, id, paused, next)
		return err
	})
	if err != nil {
		return nil, pgError(err, "Schedule")
	}
	s.log.Info("schedule paused or resumed", "schedule", id, "paused", paused)
	return s.FindSchedule(ctx, id)
}

// DeleteSchedule stops a schedule for good. Its runs and broadcasts stay.
func (s *Store) DeleteSchedule(ctx context.Context, id int64) error {
	var scope string
	err := s.db.QueryRow(ctx, `SELECT COALESCE(scope_path, '') FROM schedules WHERE id = $1 AND deleted_at IS NULL`, id).Scan(&scope)
	if err != nil {
		return pgError(err, "Schedule")
	}
	if !visible(ctx, scope) {
		return mhero.Errorf(mhero.ENOTFOUND, "Schedule not found.")
	}
	if _, err := s.db.Exec(ctx, `UPDATE schedules SET deleted_at = now(), updated_at = now() WHERE id = $1`, id); err != nil {
		return pgError(err, "Schedule")
	}
	s.log.Info("schedule deleted", "schedule", id)
	return nil
}

// nextSlot is the schedule's first slot after t, in its time zone.
func (s *Store) nextSlot(sc *Schedule, t time.Time) (time.Time, error) {
	sp, err := ParseSpec(sc.Spec)
	if err != nil {
		return time.Time{}, err
	}
	zone, err := time.LoadLocation(sc.TimeZone)
	if err != nil {
		return time.Time{}, fmt.Errorf("schedule %d: time zone %q: %w", sc.ID, sc.TimeZone, err)
	}
	next := sp.Next(t, zone)
	if next.IsZero() {
		return next, errors.New("the schedule has no slot in the next five years")
	}
	return next, nil
}

// period is the reporting period of a slot: the day, ISO week or month containing it in
// zone, or the one before.
func period(r *Reporting, slot time.Time, zone *time.Location) (from, to time.Time) {
	t := slot.In(zone)
	day := time.Date(t.Year(), t.Month(), t.Day(), 0, 0, 0, 0, zone)
	var back func(time.Time) time.Time
	switch r.Period {
	case "week":
		from = day.AddDate(0, 0, -((int(t.Weekday()) + 6) % 7)) // Monday
		to = from.AddDate(0, 0, 7)
		back = func(x time.Time) time.Time { return x.AddDate(0, 0, -7) }
	case "month":
		from = time.Date(t.Year(), t.Month(), 1, 0, 0, 0, 0, zone)
		to = from.AddDate(0, 1, 0)
		back = func(x time.Time) time.Time { return x.AddDate(0, -1, 0) }
	default:
		from, to = day, day.AddDate(0, 0, 1)
		back = func(x time.Time) time.Time { return x.AddDate(0, 0, -1) }
	}
	if r.Previous {
		from, to = back(from), from
	}
	return from, to
}
