package reports

import (
	"context"
	"errors"
	"regexp"
	"strconv"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/mhero-health/mhero"
)

// Urgency is how soon a referred patient must be seen.
type Urgency string

const (
	Routine   Urgency = "routine"
	Urgent    Urgency = "urgent"
	Emergency Urgency = "emergency"
)

// DefaultReferralDue is how long a referral may wait to be received before it is overdue.
var DefaultReferralDue = map[Urgency]time.Duration{
	Emergency: 6 * time.Hour,
	Urgent:    24 * time.Hour,
	Routine:   7 * 24 * time.Hour,
}

// ReferralState is where a referral stands. It only moves forward: sent, received (the
// patient arrived at the receiving facility), completed (they were seen).
type ReferralState string

const (
	Sent      ReferralState = "sent"
	Received  ReferralState = "received"
	Completed ReferralState = "completed"
)

func (st ReferralState) rank() int {
	switch st {
	case Sent:
		return 1
	case Received:
		return 2
	case Completed:
		return 3
	}
	return 0
}

// ReferralInput is a referral a worker sends.
type ReferralInput struct {
	WorkerID mhero.WorkerID // who refers; required
	From     string         // referring facility code or id; empty means the worker's own
	To       string         // receiving facility code or id; required
	// Reason is a code from the menu ("danger-sign", "malaria-severe"): never free text,
	// which could carry a patient's identity or condition.
	Reason  string
	Urgency Urgency
	// AgeBand and Sex describe the patient coarsely, as the menu asks ("1-4", "F"); both
	// are optional.
	AgeBand        string
	Sex            string
	IdempotencyKey string // as for StockInput
}

// Referral is a stored referral.
type Referral struct {
	ID          int64           `json:"id"`
	Ref         string          `json:"ref"` // shown to the worker and told to the patient, e.g. "R-4M2ZT"
	WorkerID    mhero.WorkerID  `json:"worker_id"`
	From        mhero.Facility  `json:"from"`
	To          mhero.Facility  `json:"to"` // the caller SMSes this facility's workers
	Reason      string          `json:"reason"`
	Urgency     Urgency         `json:"urgency"`
	AgeBand     string          `json:"age_band"`
	Sex         string          `json:"sex"`
	State       ReferralState   `json:"state"`
	SentAt      time.Time       `json:"sent_at"`
	ReceivedAt  *time.Time      `json:"received_at,omitempty"`
	CompletedAt *time.Time      `json:"completed_at,omitempty"`
	DueAt       time.Time       `json:"due_at"` // received by then, or overdue
	History     []ReferralEvent `json:"history"`
}

// ReferralEvent is one state a referral reached, kept forever.
type ReferralEvent struct {
	State    ReferralState  `json:"state"`
	WorkerID mhero.WorkerID `json:"worker_id,omitempty"` // 0: the ministry's own tools
	At       time.Time      `json:"at"`
}

var (
	reasonCode = regexp.MustCompile(`^[a-z0-9][a-z0-9_-]{0,39}$`)
	ageBand    = regexp.MustCompile(`^[0-9][0-9a-z+-]{0,9}$`)
)

func (in *ReferralInput) check() []mhero.ErrorDetail {
	var d []mhero.ErrorDetail
	if in.WorkerID <= 0 {
		d = append(d, mhero.ErrorDetail{Field: "worker_id", Message: "the referring worker is required"})
	}
	if in.To == "" {
		d = append(d, mhero.ErrorDetail{Field: "to", Message: "the receiving facility is required"})
	}
	if !reasonCode.MatchString(normCode(in.Reason)) {
		d = append(d, mhero.ErrorDetail{Field: "reason", Message: "reason must be a code of letters, digits, - or _ (at most 40)"})
	}
	if in.AgeBand != "" && !ageBand.MatchString(strings.ToLower(in.AgeBand)) {
		d = append(d, mhero.ErrorDetail{Field: "age_band", Message: "age band must be like 1-4 or 50+"})
	}
	if s := strings.ToUpper(in.Sex); s != "" && s != "F" && s != "M" {
		d = append(d, mhero.ErrorDetail{Field: "sex", Message: "sex must be F or M"})
	}
	if _, ok := DefaultReferralDue[in.Urgency]; !ok {
		d = append(d, mhero.ErrorDetail{Field: "urgency", Message: "urgency must be routine, urgent or emergency"})
	}
	if len(in.IdempotencyKey) > maxKeyLen {
		d = append(d, mhero.ErrorDetail{Field: "idempotency_key", Message: "idempotency key is longer than " + strconv.Itoa(maxKeyLen) + " bytes"})
	}
	return d
}

func (s *Store) due(u Urgency) time.Duration {
	if d, ok := s.ReferralDue[u]; ok {
		return d
	}
	return DefaultReferralDue[u]
}

// referralLookup is what a referral names, as found in one round trip.
type referralLookup struct {
	worker   workerInfo
	from, to *mhero.Facility
	existing int64 // the referral already stored under the idempotency key
}

func (s *Store) lookupReferral(ctx context.Context, in ReferralInput) (*referralLookup, error) {
	l := &referralLookup{}
	b := &pgx.Batch{}
	queueExisting(b, "referrals", in.IdempotencyKey, &l.existing)
	queueWorker(b, in.WorkerID, &l.worker)
	queueFacility(b, in.From, in.WorkerID, &l.from)
	queueFacility(b, in.To, 0, &l.to)
	return l, s.sendBatch(ctx, b)
}

// problems lists what the referral names that does not exist.
func (l *referralLookup) problems(in ReferralInput) []mhero.ErrorDetail {
	var d []mhero.ErrorDetail
	if !l.worker.found && in.WorkerID > 0 {
		d = append(d, mhero.ErrorDetail{Field: "worker_id", Message: "no worker has id " + strconv.FormatInt(int64(in.WorkerID), 10)})
	}
	if l.from == nil && in.From != "" {
		d = append(d, mhero.ErrorDetail{Field: "from", Message: "no facility has the code or id " + strconv.Quote(truncate(in.From, 40))})
	} else if l.from == nil && l.worker.found {
		d = append(d, mhero.ErrorDetail{Field: "from", Message: "the worker has no facility; name the referring one"})
	}
	if l.to == nil && in.To != "" {
		d = append(d, mhero.ErrorDetail{Field: "to", Message: "no facility has the code or id " + strconv.Quote(truncate(in.To, 40))})
	}
	return d
}

// SubmitReferral stores a referral in state sent and returns it with its reference number
// and both facilities, so the caller can SMS the receiving facility's workers. Unknown
// facilities or worker, a bad reason, age band, sex or urgency are EVALIDATION with a
// detail per problem.
func (s *Store) SubmitReferral(ctx context.Context, in ReferralInput) (*Referral, error) {
	l, err := s.lookupReferral(ctx, in)
	if err != nil {
		return nil, err
	}
	if l.existing != 0 {
		return s.findReferral(ctx, l.existing)
	}
	if d := append(in.check(), l.problems(in)...); len(d) > 0 {
		return nil, invalid("Referral", d)
	}
	r := &Referral{WorkerID: in.WorkerID, From: *l.from, To: *l.to, Reason: normCode(in.Reason), Urgency: in.Urgency,
		AgeBand: strings.ToLower(in.AgeBand), Sex: strings.ToUpper(in.Sex), State: Sent, SentAt: s.now(), History: []ReferralEvent{}}
	// The referral and its first event in one statement: both or neither.
	err = s.db.QueryRow(ctx, `WITH r AS (
			INSERT INTO referrals (worker_id, from_facility_id, to_facility_id, reason, urgency, age_band, sex, sent_at, idempotency_key)
			VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)
			ON CONFLICT (idempotency_key) WHERE idempotency_key IS NOT NULL DO NOTHING
			RETURNING id, sent_at)
		INSERT INTO referral_events (referral_id, state, worker_id, at) SELECT id, 'sent', $1, sent_at FROM r
		RETURNING referral_id, at`,
		in.WorkerID, l.from.ID, l.to.ID, r.Reason, string(in.Urgency), r.AgeBand, r.Sex, r.SentAt, nullKey(in.IdempotencyKey)).
		Scan(&r.ID, &r.SentAt)
	if errors.Is(err, pgx.ErrNoRows) {
		return s.findReferralByKey(ctx, in.IdempotencyKey) // a racing retry stored it first
	} else if err != nil {
		return nil, pgError(err, "Referral")
	}
	r.Ref, r.DueAt = Ref(RefReferral, r.ID), r.SentAt.Add(s.due(r.Urgency))
	r.History = append(r.History, ReferralEvent{State: Sent, WorkerID: in.WorkerID, At: r.SentAt})
	s.Log.DebugContext(ctx, "referral stored", "ref", r.Ref, "worker_id", r.WorkerID, "facility_id", r.To.ID)
	return r, nil
}

// UpdateReferralState moves a referral (by its number, as typed) to received or
// completed. by is the worker who says so, who must work at the receiving facility; 0
// stands for the ministry's own tools. Repeating the current state changes nothing;
// going back is ECONFLICT. Every change is kept in the referral's history.
func (s *Store) UpdateReferralState(ctx context.Context, ref string, state ReferralState, by mhero.WorkerID) (*Referral, error) {
	if state != Received && state != Completed {
		return nil, invalid("Referral update", []mhero.ErrorDetail{{Field: "state", Message: "state must be received or completed"}})
	}
	id, ok := parseRef(RefReferral, ref)
	if !ok {
		return nil, mhero.Errorf(mhero.ENOTFOUND, "No referral has the number %q.", truncate(ref, 20))
	}
	err := pgx.BeginFunc(ctx, s.db, func(tx pgx.Tx) error {
		var cur ReferralState
		var to int64
		var path []int64
		err := tx.QueryRow(ctx, `SELECT r.state, r.to_facility_id, l.path FROM referrals r
			JOIN facilities f ON f.id = r.to_facility_id JOIN locations l ON l.id = f.location_id
			WHERE r.id = $1 FOR UPDATE OF r`, id).Scan(&cur, &to, &path)
		if err != nil {
			return pgError(err, "Referral "+Ref(RefReferral, id))
		}
		if !inScope(ctx, path) {
			return errOutOfScope("Referral")
		}
		if err := receiverOnly(ctx, tx, by, to, id); err != nil {
			return err
		}
		switch {
		case state == cur:
			return nil
		case state.rank() < cur.rank():
			return mhero.Errorf(mhero.ECONFLICT, "Referral %s is already %s.", Ref(RefReferral, id), cur)
		}
		now := s.now()
		if _, err := tx.Exec(ctx, `UPDATE referrals SET state = $2,
				received_at = COALESCE(received_at, $3), completed_at = CASE WHEN $2 = 'completed' THEN $3 END
			WHERE id = $1`, id, string(state), now); err != nil {
			return err
		}
		var byID *int64
		if by != 0 {
			byID = (*int64)(&by)
		}
		_, err = tx.Exec(ctx, `INSERT INTO referral_events (referral_id, state, worker_id, at) VALUES ($1, $2, $3, $4)`,
			id, string(state), byID, now)
		return err
	})
	if err != nil {
		return nil, err
	}
	return s.findReferral(ctx, id)
}

// receiverOnly refuses a worker who does not work at the receiving facility: only they
// can say the patient arrived. by 0 (the ministry's own tools) may.
func receiverOnly(ctx context.Context, tx pgx.Tx, by mhero.WorkerID, to, id int64) error {
	if by == 0 {
		return nil
	}
	var at int64
	err := tx.QueryRow(ctx, `SELECT COALESCE(facility_id, 0) FROM workers WHERE id = $1`, int64(by)).Scan(&at)
	if err != nil && !errors.Is(err, pgx.ErrNoRows) {
		return err
	}
	if at != to {
		return mhero.Errorf(mhero.EFORBIDDEN, "Referral %s is for another facility.", Ref(RefReferral, id))
	}
	return nil
}

const referralSelect = `SELECT r.id, r.worker_id, r.reason, r.urgency, r.age_band, r.sex, r.state, r.sent_at, r.received_at, r.completed_at,
		` + facilityCols + `, lf.path, ` + facilityColsT + `, lt.path
	FROM referrals r
	JOIN facilities f ON f.id = r.from_facility_id JOIN locations lf ON lf.id = f.location_id
	JOIN facilities t ON t.id = r.to_facility_id JOIN locations lt ON lt.id = t.location_id `

const facilityColsT = `t.id, t.code, t.name, t.location_id, COALESCE(t.dhis2_uid, ''), COALESCE(t.dhis2_code, '')`

func (s *Store) scanReferral(ctx context.Context, row pgx.Row) (*Referral, error) {
	var r Referral
	var fromPath, toPath []int64
	f, t := &r.From, &r.To
	err := row.Scan(&r.ID, &r.WorkerID, &r.Reason, &r.Urgency, &r.AgeBand, &r.Sex, &r.State, &r.SentAt, &r.ReceivedAt, &r.CompletedAt,
		&f.ID, &f.Code, &f.Name, &f.LocationID, &f.DHIS2UID, &f.DHIS2Code, &fromPath,
		&t.ID, &t.Code, &t.Name, &t.LocationID, &t.DHIS2UID, &t.DHIS2Code, &toPath)
	if err != nil {
		return nil, pgError(err, "Referral")
	}
	if !inScope(ctx, fromPath) && !inScope(ctx, toPath) {
		return nil, errOutOfScope("Referral")
	}
	r.Ref, r.DueAt = Ref(RefReferral, r.ID), r.SentAt.Add(s.due(r.Urgency))
	rows, err := s.db.Query(ctx, `SELECT state, COALESCE(worker_id, 0), at FROM referral_events WHERE referral_id = $1 ORDER BY id`, r.ID)
	if err != nil {
		return nil, err
	}
	r.History, err = pgx.CollectRows(rows, pgx.RowToStructByPos[ReferralEvent])
	return &r, err
}

func (s *Store) findReferral(ctx context.Context, id int64) (*Referral, error) {
	return s.scanReferral(ctx, s.db.QueryRow(ctx, referralSelect+`WHERE r.id = $1`, id))
}

func (s *Store) findReferralByKey(ctx context.Context, key string) (*Referral, error) {
	return s.scanReferral(ctx, s.db.QueryRow(ctx, referralSelect+`WHERE r.idempotency_key = $1`, key))
}

// FindReferral returns a referral and its history by its number ("R-4M2ZT", typed any
// way a person types it), when either facility is within the caller's scope.
func (s *Store) FindReferral(ctx context.Context, ref string) (*Referral, error) {
	id, ok := parseRef(RefReferral, ref)
	if !ok {
		return nil, mhero.Errorf(mhero.ENOTFOUND, "No referral has the number %q.", truncate(ref, 20))
	}
	return s.findReferral(ctx, id)
}
