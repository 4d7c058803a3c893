package sms

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"slices"
	"strings"
	"sync/atomic"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/mhero-health/mhero"
	"github.com/mhero-health/mhero/outbox"
)

// CreateSurvey stores a survey and sends its first question: one broadcast per survey
// language, to the workers of the target asked in that language (so the survey inherits a
// broadcast's targeting, scope, pacing, quiet hours and cost estimate), and freezes the
// participants from those broadcasts' messages. Later questions are replies to answers.
//
// The target must reach someone, and the first question's estimated cost, every language
// together, must not be above MaxCost (EVALIDATION, nothing created). DryRun only
// estimates. A repeat with the same idempotency key returns the survey the key made
// (created false), or ECONFLICT when the request differs. If sending fails for a passing
// reason the survey is kept in state "sending" and the Scheduler finishes it.
func (s *Store) CreateSurvey(ctx context.Context, in SurveyInput) (sv *Survey, created bool, err error) {
	if s.deps.Audience == nil {
		return nil, false, mhero.Errorf(mhero.EUNAVAILABLE, "Surveys need the registry (no audience is configured).")
	}
	sv, err = s.planSurvey(in, s.now())
	if err != nil {
		return nil, false, err
	}
	sv.hash = requestHash(in)
	key := strings.TrimSpace(in.IdempotencyKey)
	if key != "" && !in.DryRun {
		if old, err := s.surveyByKey(ctx, key); err == nil {
			if !bytes.Equal(old.hash, sv.hash) {
				return nil, false, mhero.Errorf(mhero.ECONFLICT, "Idempotency key %q was already used for a different survey.", key)
			}
			found, err := s.FindSurvey(ctx, old.ID)
			return found, false, err
		} else if mhero.ErrorCode(err) != mhero.ENOTFOUND {
			return nil, false, err
		}
	}
	if err := s.estimate(ctx, sv); err != nil {
		return nil, false, err
	}
	if in.MaxCost != nil && sv.EstimatedCost > *in.MaxCost {
		return nil, false, &mhero.Error{Code: mhero.EVALIDATION,
			Message: fmt.Sprintf("The first question's estimated cost %.4f is above max_cost %.4f.", sv.EstimatedCost, *in.MaxCost),
			Details: []mhero.ErrorDetail{{Field: "max_cost", Message: fmt.Sprintf("estimate %.4f for %d recipients", sv.EstimatedCost, sv.Recipients)}}}
	}
	if in.DryRun {
		sv.DryRun = true
		return sv, false, nil
	}
	p := mhero.PrincipalFromContext(ctx)
	if p != nil {
		sv.CreatedBy = p.Name
		if p.Scope != nil {
			sv.scopePath = p.Scope.Path
		}
	}
	if err := s.insertSurvey(ctx, sv, key, p); err != nil {
		if errors.Is(err, errRaced) { // another request with the same key won
			return s.CreateSurvey(ctx, in)
		}
		return nil, false, err
	}
	est := sv.Estimate
	if err := s.sendSurvey(ctx, sv); err != nil {
		if code := mhero.ErrorCode(err); code == mhero.EVALIDATION || code == mhero.EFORBIDDEN {
			s.discardSurvey(ctx, sv)
			return nil, false, err
		}
		// Passing: the scheduler finishes sending it.
		s.log.Warn("survey not sent yet; the scheduler will finish it", "survey", sv.ID, "error", err)
	}
	s.log.Info("survey created", "survey", sv.ID, "questions", len(sv.Questions), "languages", sv.Languages,
		"recipients", sv.Recipients, "deadline", sv.Deadline, "by", sv.CreatedBy)
	found, err := s.FindSurvey(ctx, sv.ID)
	if err != nil {
		return nil, false, err
	}
	found.Recipients, found.Estimate, found.EstimatedCost = found.Progress.Recipients, est, sv.EstimatedCost
	return found, true, nil
}

var errRaced = errors.New("idempotency key raced")

// requestHash is what makes two requests the same survey, for the idempotency key.
func requestHash(in SurveyInput) []byte {
	h := sha256.New()
	in.DryRun, in.IdempotencyKey = false, ""
	_ = json.NewEncoder(h).Encode(in)
	return h.Sum(nil)
}

// languageAudience is the part of a target asked in one survey language: workers of that
// language, and for the survey's first language also those whose language it lacks.
type languageAudience struct {
	inner outbox.Audience
	sv    *Survey
	lang  string
	n     atomic.Int64
}

func (a *languageAudience) Recipients(ctx context.Context, target []byte, fn func(mhero.Recipient) error) error {
	return a.inner.Recipients(ctx, target, func(r mhero.Recipient) error {
		if a.sv.askIn(r.Language) != a.lang {
			return nil
		}
		a.n.Add(1)
		return fn(r)
	})
}

// broadcastInput is the first question's broadcast in survey language lang.
func (s *Store) broadcastInput(sv *Survey, lang string, dryRun bool) (outbox.BroadcastInput, error) {
	in := outbox.BroadcastInput{Name: truncateRunes(fmt.Sprintf("Survey %d: %s (%s)", sv.ID, sv.Name, lang), 200),
		Text: s.firstMessage(sv, lang), Target: sv.Target, Priority: sv.Priority, SpreadOver: sv.SpreadOver,
		ValidFor: sv.ValidFor, DryRun: dryRun}
	if sv.SendAt.After(s.now()) {
		at := sv.SendAt
		in.SendAt = &at
	}
	if !dryRun {
		in.IdempotencyKey = fmt.Sprintf("survey:%d:%s", sv.ID, lang)
	}
	if in.ValidFor == "" {
		// A question that cannot arrive before the deadline is not worth sending: each
		// message expires by then at the latest (24 h when the survey is open longer).
		spread, _ := time.ParseDuration(sv.SpreadOver)
		room := sv.Deadline.Sub(sv.SendAt) - spread
		if room < time.Minute {
			return in, &mhero.Error{Code: mhero.EVALIDATION, Message: "Survey is not valid.",
				Details: []mhero.ErrorDetail{{Field: "deadline", Message: "the deadline leaves no time to send the first question after spread_over"}}}
		}
		in.ValidFor = min(room, outbox.DefaultValidity).Truncate(time.Second).String()
	}
	return in, nil
}

// estimate dry-runs the broadcasts of every survey language and adds up their estimates.
func (s *Store) estimate(ctx context.Context, sv *Survey) error {
	byMNO := map[string]*outbox.MNOEstimate{}
	sv.Recipients, sv.EstimatedCost, sv.Estimate = 0, 0, nil
	for _, lang := range sv.Languages {
		aud := &languageAudience{inner: s.deps.Audience, sv: sv, lang: lang}
		in, err := s.broadcastInput(sv, lang, true)
		if err != nil {
			return err
		}
		b, _, err := s.deps.Outbox.CreateBroadcast(ctx, aud, in)
		if err != nil {
			if aud.n.Load() == 0 && mhero.ErrorCode(err) == mhero.EVALIDATION {
				continue // nobody of the target is asked in this language
			}
			return err
		}
		sv.Recipients += b.Recipients
		for _, e := range b.Estimate {
			x := byMNO[e.MNO]
			if x == nil {
				x = &outbox.MNOEstimate{MNO: e.MNO, Rate: e.Rate}
				byMNO[e.MNO] = x
			}
			x.Recipients, x.Segments, x.Cost = x.Recipients+e.Recipients, x.Segments+e.Segments, x.Cost+e.Cost
		}
	}
	if sv.Recipients == 0 {
		return mhero.Errorf(mhero.EVALIDATION, "The target reaches no one who can be messaged (no active worker who has not opted out matches it).")
	}
	for _, e := range byMNO {
		sv.Estimate = append(sv.Estimate, *e)
		sv.EstimatedCost += e.Cost
	}
	slices.SortFunc(sv.Estimate, func(a, b outbox.MNOEstimate) int { return strings.Compare(a.MNO, b.MNO) })
	sv.EstimatedCost = math.Round(sv.EstimatedCost*1e4) / 1e4
	return nil
}

func (s *Store) insertSurvey(ctx context.Context, sv *Survey, key string, p *mhero.Principal) error {
	principal, _ := json.Marshal(p)
	if p == nil {
		principal = []byte("{}")
	}
	intro, _ := json.Marshal(orEmpty(sv.Intro))
	closing, _ := json.Marshal(orEmpty(sv.Closing))
	var reminder *int64
	if sv.reminder > 0 {
		r := int64(sv.reminder.Seconds())
		reminder = &r
	}
	err := s.tx(ctx, func(tx pgx.Tx) error {
		err := tx.QueryRow(ctx, `INSERT INTO surveys (name, intro, closing, languages, target, priority, send_at, deadline,
				reminder_seconds, spread_over, valid_for, principal, scope_path, created_by, idempotency_key, request_hash)
			VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, NULLIF($13, ''), $14, NULLIF($15, ''), $16)
			ON CONFLICT (idempotency_key) DO NOTHING
			RETURNING id, created_at`,
			sv.Name, intro, closing, sv.Languages, string(sv.Target), sv.Priority, sv.SendAt, sv.Deadline, reminder,
			sv.SpreadOver, sv.ValidFor, principal, sv.scopePath, sv.CreatedBy, key, sv.hash).Scan(&sv.ID, &sv.CreatedAt)
		if errors.Is(err, pgx.ErrNoRows) {
			return errRaced
		}
		if err != nil {
			return err
		}
		b := &pgx.Batch{}
		for _, q := range sv.Questions {
			text, _ := json.Marshal(q.Text)
			choices, _ := json.Marshal(orEmptyList(q.Choices))
			var maxLen *int
			if q.Kind == KindText {
				maxLen = &q.MaxLength
			}
			b.Queue(`INSERT INTO survey_questions (survey_id, no, kind, text, choices, min_value, max_value, max_length)
				VALUES ($1, $2, $3, $4, $5, $6, $7, $8)`, sv.ID, q.No, string(q.Kind), text, choices, q.Min, q.Max, maxLen)
		}
		return tx.SendBatch(ctx, b).Close()
	})
	if errors.Is(err, errRaced) {
		return err
	}
	return pgError(err, "Survey")
}

func orEmpty(t Text) Text {
	if t == nil {
		return Text{}
	}
	return t
}

func orEmptyList(c []Choice) []Choice {
	if c == nil {
		return []Choice{}
	}
	return c
}

// sendSurvey creates the first question's broadcasts (again: they are idempotent) and
// freezes their recipients as the participants, then opens the survey.
func (s *Store) sendSurvey(ctx context.Context, sv *Survey) error {
	var ids []int64
	total := 0
	for _, lang := range sv.Languages {
		aud := &languageAudience{inner: s.deps.Audience, sv: sv, lang: lang}
		in, err := s.broadcastInput(sv, lang, false)
		if err != nil {
			return err
		}
		var id int64
		b, _, err := s.deps.Outbox.CreateBroadcast(ctx, aud, in)
		switch {
		case err == nil:
			id = b.ID
		case mhero.ErrorCode(err) == mhero.ECONFLICT:
			// Made before, when send_at was still ahead (the request differs only by it).
			if err := s.db.QueryRow(ctx, `SELECT id FROM broadcasts WHERE idempotency_key = $1`, in.IdempotencyKey).Scan(&id); err != nil {
				return pgError(err, "Survey broadcast")
			}
		case aud.n.Load() == 0 && mhero.ErrorCode(err) == mhero.EVALIDATION:
			continue // nobody of the target is asked in this language now
		default:
			return err
		}
		ids = append(ids, id)
		var reminder int64
		if sv.reminder > 0 {
			reminder = int64(sv.reminder.Seconds())
		}
		tag, err := s.db.Exec(ctx, `INSERT INTO survey_participants (survey_id, worker_id, language, message_id, top_location_id,
				prompted_at, remind_at)
			SELECT $1, m.worker_id, $3, m.id, w.top_location_id, m.next_attempt_at,
				CASE WHEN $4::bigint > 0 AND m.next_attempt_at + $4::bigint * interval '1 second' < $5
					THEN m.next_attempt_at + $4::bigint * interval '1 second' END
			FROM messages m JOIN workers w ON w.id = m.worker_id
			WHERE m.broadcast_id = $2
			ON CONFLICT DO NOTHING`, sv.ID, id, lang, reminder, sv.Deadline)
		if err != nil {
			return pgError(err, "Survey participants")
		}
		total += int(tag.RowsAffected())
	}
	if len(ids) == 0 {
		return mhero.Errorf(mhero.EVALIDATION, "The target reaches no one who can be messaged (no active worker who has not opted out matches it).")
	}
	_, err := s.db.Exec(ctx, `UPDATE surveys SET state = 'open', broadcast_ids = $2 WHERE id = $1 AND state = 'sending'`, sv.ID, ids)
	if err != nil {
		return pgError(err, "Survey")
	}
	sv.State, sv.BroadcastIDs = "open", ids
	s.log.Debug("survey sent", "survey", sv.ID, "broadcasts", ids, "participants", total)
	return nil
}

// discardSurvey removes a survey whose first question could not be sent, with whatever
// of its broadcasts was made.
func (s *Store) discardSurvey(ctx context.Context, sv *Survey) {
	for _, lang := range sv.Languages {
		var id int64
		if err := s.db.QueryRow(ctx, `SELECT id FROM broadcasts WHERE idempotency_key = $1`,
			fmt.Sprintf("survey:%d:%s", sv.ID, lang)).Scan(&id); err == nil {
			if _, err := s.deps.Outbox.CancelBroadcast(context.WithoutCancel(ctx), id); err != nil {
				s.log.Error("cancelling the broadcast of a survey not sent", "survey", sv.ID, "broadcast", id, "error", err)
			}
		}
	}
	if _, err := s.db.Exec(context.WithoutCancel(ctx), `DELETE FROM surveys WHERE id = $1`, sv.ID); err != nil {
		s.log.Error("removing a survey not sent", "survey", sv.ID, "error", err)
	}
}

// surveyCols are the columns loadSurvey scans.
const surveyCols = `s.id, s.name, s.intro, s.closing, s.languages, s.target, s.priority, s.state, s.send_at, s.deadline,
	s.reminder_seconds, s.spread_over, s.valid_for, s.broadcast_ids, COALESCE(s.scope_path, ''), s.created_by, s.created_at,
	s.closed_at, s.request_hash`

func scanSurvey(row pgx.Row) (*Survey, error) {
	var sv Survey
	var reminder *int64
	var closed *time.Time
	var target []byte
	err := row.Scan(&sv.ID, &sv.Name, &sv.Intro, &sv.Closing, &sv.Languages, &target, &sv.Priority, &sv.State, &sv.SendAt,
		&sv.Deadline, &reminder, &sv.SpreadOver, &sv.ValidFor, &sv.BroadcastIDs, &sv.scopePath, &sv.CreatedBy, &sv.CreatedAt,
		&closed, &sv.hash)
	if err != nil {
		return nil, err
	}
	sv.Target = target
	if reminder != nil {
		sv.reminder = time.Duration(*reminder) * time.Second
		sv.ReminderAfter = sv.reminder.String()
	}
	if closed != nil {
		sv.ClosedAt = *closed
	}
	if sv.BroadcastIDs == nil {
		sv.BroadcastIDs = []int64{}
	}
	return &sv, nil
}

// loadSurvey reads a survey with its questions.
func (s *Store) loadSurvey(ctx context.Context, id int64) (*Survey, error) {
	sv, err := scanSurvey(s.db.QueryRow(ctx, `SELECT `+surveyCols+` FROM surveys s WHERE s.id = $1`, id))
	if err != nil {
		return nil, pgError(err, "Survey")
	}
	rows, err := s.db.Query(ctx, `SELECT no, kind, text, choices, min_value, max_value, COALESCE(max_length, 0)
		FROM survey_questions WHERE survey_id = $1 ORDER BY no`, id)
	if err != nil {
		return nil, pgError(err, "Survey questions")
	}
	sv.Questions, err = pgx.CollectRows(rows, func(r pgx.CollectableRow) (Question, error) {
		var q Question
		err := r.Scan(&q.No, &q.Kind, &q.Text, &q.Choices, &q.Min, &q.Max, &q.MaxLength)
		return q, err
	})
	if err != nil {
		return nil, pgError(err, "Survey questions")
	}
	if len(sv.Questions) == 0 || len(sv.Languages) == 0 {
		return nil, fmt.Errorf("survey %d has no questions or no languages", id)
	}
	return sv, nil
}

// survey returns a survey's definition (questions, texts, reminder), which never changes
// once created, from a cache. Its state and closing time are not kept: read them fresh.
func (s *Store) survey(ctx context.Context, id int64) (*Survey, error) {
	s.surveysMu.RLock()
	sv := s.surveys[id]
	s.surveysMu.RUnlock()
	if sv != nil {
		return sv, nil
	}
	sv, err := s.loadSurvey(ctx, id)
	if err != nil {
		return nil, err
	}
	s.surveysMu.Lock()
	if len(s.surveys) > 10_000 { // a long-lived instance: start the cache over
		clear(s.surveys)
	}
	s.surveys[id] = sv
	s.surveysMu.Unlock()
	return sv, nil
}

func (s *Store) surveyByKey(ctx context.Context, key string) (*Survey, error) {
	sv, err := scanSurvey(s.db.QueryRow(ctx, `SELECT `+surveyCols+` FROM surveys s WHERE s.idempotency_key = $1`, key))
	return sv, pgError(err, "Survey")
}

// visible reports whether the caller may see something made under scopePath: a scoped
// key sees what keys scoped inside its subtree made; a national key sees all.
func visible(ctx context.Context, scopePath string) bool {
	p := mhero.PrincipalFromContext(ctx)
	if p == nil || p.Scope == nil {
		return true
	}
	return scopePath == p.Scope.Path || strings.HasPrefix(scopePath, p.Scope.Path+"/")
}

// CloseSurvey closes a survey before its deadline: answers from now on are late, and its
// first questions not yet sent are cancelled. Closing a closed survey changes nothing.
func (s *Store) CloseSurvey(ctx context.Context, id int64) (*Survey, error) {
	sv, err := s.loadSurvey(ctx, id)
	if err != nil {
		return nil, err
	}
	if !visible(ctx, sv.scopePath) {
		return nil, mhero.Errorf(mhero.ENOTFOUND, "Survey not found.")
	}
	if err := s.close(ctx, id, s.now()); err != nil {
		return nil, err
	}
	return s.FindSurvey(ctx, id)
}

// close marks a survey closed at (the deadline when that is earlier) and cancels what
// of its first question is still queued.
func (s *Store) close(ctx context.Context, id int64, at time.Time) error {
	var ids []int64
	err := s.db.QueryRow(ctx, `UPDATE surveys SET state = 'closed', closed_at = LEAST(deadline, $2)
		WHERE id = $1 AND state <> 'closed' RETURNING broadcast_ids`, id, at).Scan(&ids)
	if errors.Is(err, pgx.ErrNoRows) {
		return nil // closed already
	}
	if err != nil {
		return pgError(err, "Survey")
	}
	for _, b := range ids {
		if _, err := s.deps.Outbox.CancelBroadcast(context.WithoutCancel(ctx), b); err != nil {
			return err
		}
	}
	s.log.Info("survey closed", "survey", id)
	return nil
}
