package reports

import (
	"context"
	"errors"
	"iter"
	"strconv"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/mhero-health/mhero"
)

// ValidationState is the outcome of a worker's "my details" check.
type ValidationState string

const (
	// Confirmed: the worker agrees with the facility and cadre the registry has.
	Confirmed ValidationState = "confirmed"
	// Corrected: the worker named another facility or cadre, and it is one the registry
	// knows. The registry itself is not changed: iHRIS is its source, so the correction is
	// for the ministry to carry there (the view lists them).
	Corrected ValidationState = "corrected"
	// PendingReview: the worker's answer matches no known facility or cadre (a name typed
	// instead of a code), so a person has to read it. The worker is not made to retry on
	// a phone keypad.
	PendingReview ValidationState = "pending_review"
)

// ValidationInput is a worker's answer to the "my details" check.
type ValidationInput struct {
	WorkerID mhero.WorkerID // required
	// Facility is the facility the worker says they work at, as typed (code or id); empty
	// confirms the registry's.
	Facility string
	// Cadre is the worker's cadre as typed; empty confirms the registry's.
	Cadre          string
	IdempotencyKey string // as for StockInput
}

// Validation is a stored "my details" check.
type Validation struct {
	ID                 int64           `json:"id"`
	Ref                string          `json:"ref"` // e.g. "V-0Q7RT"
	WorkerID           mhero.WorkerID  `json:"worker_id"`
	State              ValidationState `json:"state"`
	RegistryFacility   string          `json:"registry_facility"`    // facility code the registry had, "" for none
	RegistryCadre      string          `json:"registry_cadre"`       // cadre code the registry had, "" for none
	StatedFacility     string          `json:"stated_facility"`      // as the worker typed it; "" confirmed
	StatedFacilityCode string          `json:"stated_facility_code"` // the known facility it names, "" when none
	StatedCadre        string          `json:"stated_cadre"`         // as the worker typed it; "" confirmed
	ValidatedAt        time.Time       `json:"validated_at"`
}

const maxStatedLen = 64

// SubmitValidation stores a worker's "my details" answer with its state (see
// ValidationState) and reference number. An unknown worker or an over-long answer is
// EVALIDATION; an unknown facility or cadre is not an error but pending_review.
func (s *Store) SubmitValidation(ctx context.Context, in ValidationInput) (*Validation, error) {
	in.Facility, in.Cadre = strings.TrimSpace(in.Facility), strings.TrimSpace(in.Cadre)
	if d := in.check(); len(d) > 0 {
		return nil, invalid("Validation", d)
	}
	l, err := s.lookupValidation(ctx, in)
	if err != nil {
		return nil, err
	}
	if l.existing != 0 {
		return s.findValidation(ctx, l.existing)
	}
	worker, stated := l.worker, l.stated
	if !worker.found {
		return nil, invalid("Validation", []mhero.ErrorDetail{{Field: "worker_id",
			Message: "no worker has id " + strconv.FormatInt(int64(in.WorkerID), 10)}})
	}
	v := &Validation{WorkerID: in.WorkerID, RegistryFacility: worker.facilityCode, RegistryCadre: worker.cadre,
		StatedFacility: in.Facility, StatedCadre: in.Cadre, ValidatedAt: s.now()}
	v.State = validationState(in, worker, stated, l.cadreKnown)
	var statedID *int64
	if stated != nil {
		statedID, v.StatedFacilityCode = (*int64)(&stated.ID), stated.Code
	}
	var registryFacility *int64
	if worker.facility != 0 {
		registryFacility = &worker.facility
	}
	err = s.db.QueryRow(ctx, `INSERT INTO worker_validations (worker_id, state, registry_facility_id, registry_cadre,
			stated_facility_id, stated_facility, stated_cadre, validated_at, idempotency_key)
		VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)
		ON CONFLICT (idempotency_key) WHERE idempotency_key IS NOT NULL DO NOTHING
		RETURNING id, validated_at`, in.WorkerID, string(v.State), registryFacility, v.RegistryCadre, statedID,
		v.StatedFacility, v.StatedCadre, v.ValidatedAt, nullKey(in.IdempotencyKey)).Scan(&v.ID, &v.ValidatedAt)
	if errors.Is(err, pgx.ErrNoRows) {
		return s.findValidationByKey(ctx, in.IdempotencyKey) // a racing retry stored it first
	} else if err != nil {
		return nil, pgError(err, "Validation")
	}
	v.Ref = Ref(RefValidation, v.ID)
	s.Log.DebugContext(ctx, "validation stored", "ref", v.Ref, "worker_id", v.WorkerID, "status", v.State)
	return v, nil
}

func (in *ValidationInput) check() []mhero.ErrorDetail {
	var d []mhero.ErrorDetail
	if in.WorkerID <= 0 {
		d = append(d, mhero.ErrorDetail{Field: "worker_id", Message: "the worker is required"})
	}
	if len(in.Facility) > maxStatedLen {
		d = append(d, mhero.ErrorDetail{Field: "facility", Message: "facility is longer than " + strconv.Itoa(maxStatedLen) + " bytes"})
	}
	if len(in.Cadre) > maxStatedLen {
		d = append(d, mhero.ErrorDetail{Field: "cadre", Message: "cadre is longer than " + strconv.Itoa(maxStatedLen) + " bytes"})
	}
	if len(in.IdempotencyKey) > maxKeyLen {
		d = append(d, mhero.ErrorDetail{Field: "idempotency_key", Message: "idempotency key is longer than " + strconv.Itoa(maxKeyLen) + " bytes"})
	}
	return d
}

// validationLookup is what a "my details" answer names, as found in one round trip.
type validationLookup struct {
	worker     workerInfo
	stated     *mhero.Facility
	cadreKnown bool
	existing   int64 // the answer already stored under the idempotency key
}

func (s *Store) lookupValidation(ctx context.Context, in ValidationInput) (*validationLookup, error) {
	l := &validationLookup{}
	b := &pgx.Batch{}
	queueExisting(b, "worker_validations", in.IdempotencyKey, &l.existing)
	queueWorker(b, in.WorkerID, &l.worker)
	if in.Facility != "" {
		queueFacility(b, in.Facility, 0, &l.stated)
	}
	if in.Cadre != "" {
		b.Queue(`SELECT EXISTS (SELECT 1 FROM cadres WHERE code = $1)`, normCode(in.Cadre)).QueryRow(func(row pgx.Row) error {
			return row.Scan(&l.cadreKnown)
		})
	}
	return l, s.sendBatch(ctx, b)
}

// validationState compares the worker's answer with the registry: anything unknown
// needs a person, anything different is a correction.
func validationState(in ValidationInput, worker workerInfo, stated *mhero.Facility, cadreKnown bool) ValidationState {
	cadre := normCode(in.Cadre)
	switch {
	case in.Facility != "" && stated == nil, cadre != "" && !cadreKnown:
		return PendingReview
	case stated != nil && int64(stated.ID) != worker.facility, cadre != "" && cadre != worker.cadre:
		return Corrected
	}
	return Confirmed
}

const validationSelect = `SELECT v.id, v.worker_id, v.state, COALESCE(rf.code, ''), v.registry_cadre, v.stated_facility,
		COALESCE(sf.code, ''), v.stated_cadre, v.validated_at
	FROM worker_validations v
	LEFT JOIN facilities rf ON rf.id = v.registry_facility_id LEFT JOIN facilities sf ON sf.id = v.stated_facility_id `

func scanValidation(row pgx.Row, v *Validation) error {
	err := row.Scan(&v.ID, &v.WorkerID, &v.State, &v.RegistryFacility, &v.RegistryCadre, &v.StatedFacility,
		&v.StatedFacilityCode, &v.StatedCadre, &v.ValidatedAt)
	v.Ref = Ref(RefValidation, v.ID)
	return err
}

func (s *Store) findValidation(ctx context.Context, id int64) (*Validation, error) {
	var v Validation
	if err := scanValidation(s.db.QueryRow(ctx, validationSelect+`WHERE v.id = $1`, id), &v); err != nil {
		return nil, pgError(err, "Validation")
	}
	return &v, nil
}

func (s *Store) findValidationByKey(ctx context.Context, key string) (*Validation, error) {
	var v Validation
	if err := scanValidation(s.db.QueryRow(ctx, validationSelect+`WHERE v.idempotency_key = $1`, key), &v); err != nil {
		return nil, pgError(err, "Validation")
	}
	return &v, nil
}

// workers writes the SELECT of the workers a scope covers (only the active ones when
// active is set), with grp as for facilities. Workers without a facility have no place in
// the tree and are left out.
func (sc *scope) workers(a *sqlArgs, active bool) string {
	q := `SELECT w.id, COALESCE(w.location_path[` + a.add(sc.level+1) + `::int], w.location_id) AS grp
		FROM workers w WHERE w.location_id IS NOT NULL`
	if active {
		q += ` AND w.active`
	}
	if sc.location != 0 {
		q += ` AND w.location_id IN (SELECT id FROM locations WHERE path @> ARRAY[` + a.add(sc.location) + `::bigint])`
	}
	if sc.facility != 0 {
		q += ` AND w.facility_id = ` + a.add(sc.facility) + `::bigint`
	}
	return q
}

// ValidationCount is the outcome of the "my details" checks in one location.
type ValidationCount struct {
	LocationCount
	Workers       int `json:"workers"` // active workers in the location
	Confirmed     int `json:"confirmed"`
	Corrected     int `json:"corrected"`
	PendingReview int `json:"pending_review"`
	NotValidated  int `json:"not_validated"` // no check in the period
}

// ValidationCounts counts active workers by the state of their latest check in the
// Period (any time when zero), for each location at the filter's Level under Location.
func (s *Store) ValidationCounts(ctx context.Context, f Filter) iter.Seq2[ValidationCount, error] {
	return view(ctx, s, f, nil, func(sc *scope, a *sqlArgs) (string, error) {
		return `WITH wk AS MATERIALIZED (` + sc.workers(a, true) + `),
			last AS (SELECT DISTINCT ON (v.worker_id) v.worker_id, v.state FROM worker_validations v
				WHERE v.worker_id IN (SELECT id FROM wk) AND ` + sc.inPeriod(a, "v.validated_at") + `
				ORDER BY v.worker_id, v.validated_at DESC, v.id DESC)
			SELECT g.code, g.name, g.level, count(*),
				count(*) FILTER (WHERE last.state = 'confirmed'), count(*) FILTER (WHERE last.state = 'corrected'),
				count(*) FILTER (WHERE last.state = 'pending_review'), count(*) FILTER (WHERE last.state IS NULL)
			FROM wk JOIN locations g ON g.id = wk.grp LEFT JOIN last ON last.worker_id = wk.id
			GROUP BY g.id ORDER BY g.code`, nil
	}, func(rows pgx.Rows, r *ValidationCount) error {
		return rows.Scan(&r.LocationCode, &r.LocationName, &r.Level, &r.Workers, &r.Confirmed, &r.Corrected,
			&r.PendingReview, &r.NotValidated)
	})
}

// ValidationFilter is a Filter (Location, Facility, Period on the check's time) with a
// state.
type ValidationFilter struct {
	Filter
	State ValidationState // empty: all
}

// Validations lists the checks of the workers in the filter's place, in the order they
// were made: every one, not only the latest, so a worker's history shows.
func (s *Store) Validations(ctx context.Context, f ValidationFilter) iter.Seq2[Validation, error] {
	check := func(Filter) error {
		switch f.State {
		case "", Confirmed, Corrected, PendingReview:
			return nil
		}
		return &mhero.Error{Code: mhero.EINVALID, Message: "Unknown validation state.",
			Details: []mhero.ErrorDetail{{Field: "state", Message: "state must be confirmed, corrected or pending_review"}}}
	}
	return view(ctx, s, f.Filter, check, func(sc *scope, a *sqlArgs) (string, error) {
		q := `WITH wk AS MATERIALIZED (` + sc.workers(a, false) + `) ` + validationSelect + `
			WHERE v.worker_id IN (SELECT id FROM wk) AND ` + sc.inPeriod(a, "v.validated_at")
		if f.State != "" {
			q += ` AND v.state = ` + a.add(string(f.State))
		}
		return q + ` ORDER BY v.id`, nil
	}, func(rows pgx.Rows, v *Validation) error { return scanValidation(rows, v) })
}
