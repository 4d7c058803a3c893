// Package reports keeps what health workers report from their phones — stock levels of
// commodities, patient referrals, and the check of their own registry details — and
// answers the ministry's views of it: latest stock, stock-outs, trends, reporting rates,
// referrals and validation results, for any place of the location tree and any DHIS2
// period, as JSON or CSV streamed row by row.
//
// Reports are history: every submission is a new row, attached to the worker who sent it,
// and carries a short reference number the worker sees on the phone ("S-7K3Q9"). The USSD
// and SMS flows call the Submit functions; a repeated submission with the same
// idempotency key (the USSD engine passes session id and hop) returns the first result.
//
// The tables live in PostgreSQL beside the registry's and point at its workers and
// facilities; places and scope are the registry's to decide (see Places).
package reports

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/mhero-health/mhero"
)

// Places finds locations and facilities by id or code within the caller's scope, with
// ENOTFOUND and EFORBIDDEN as the registry answers them. *registry.Store is one.
type Places interface {
	FindLocation(ctx context.Context, ref string) (*mhero.Location, error)
	FindFacility(ctx context.Context, ref string) (*mhero.Facility, error)
}

// Store is the reports' PostgreSQL adapter. It is safe for concurrent use; set the
// exported fields before the first call.
type Store struct {
	db     *pgxpool.Pool
	places Places
	Log    *slog.Logger
	// TimeZone is where the country's days start: periods and trend buckets begin at its
	// midnight. Default UTC.
	TimeZone *time.Location
	// ReferralDue is how long a referral may stay "sent" (not yet received) before the
	// views call it overdue, by urgency. Missing urgencies take DefaultReferralDue's.
	ReferralDue map[Urgency]time.Duration
	// Now is the clock of submissions, report ages and overdue referrals; default
	// time.Now.
	Now func() time.Time
}

// NewStore returns a Store on an open pool whose database has the registry's and the
// reports' migrations. places resolves locations and facilities for the views (pass the
// registry store).
func NewStore(db *pgxpool.Pool, places Places, log *slog.Logger) *Store {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &Store{db: db, places: places, Log: log, TimeZone: time.UTC, Now: time.Now}
}

func (s *Store) now() time.Time {
	if s.Now == nil {
		return time.Now()
	}
	return s.Now()
}

func (s *Store) tz() *time.Location {
	if s.TimeZone == nil {
		return time.UTC
	}
	return s.TimeZone
}

// ParsePeriod reads a DHIS2 period in the store's time zone.
func (s *Store) ParsePeriod(p string) (Period, error) { return ParsePeriod(p, s.tz()) }

// sqlArgs numbers the arguments of a query as it is written, so that conditions are added
// only when a filter is set: a query with "$1 = 0 OR ..." branches gets one generic plan
// for every filter, and that plan is bad for most of them.
type sqlArgs []any

func (a *sqlArgs) add(v any) string {
	*a = append(*a, v)
	return "$" + strconv.Itoa(len(*a))
}

// scope is a view's filter resolved to ids: the subtree, facility and commodity it covers
// and the depth its counts are grouped at.
type scope struct {
	location  int64 // 0: every location (an unscoped caller who named none)
	level     int   // the depth counts are grouped at
	facility  int64
	commodity int16
	period    Period
}

// Filter says what a view covers. Each view documents the fields it reads.
type Filter struct {
	// Location is a location id or code: the view covers its subtree. Empty means the
	// caller's scope, which is the whole country for an unscoped caller.
	Location string
	// Level is the depth of the tree counts are grouped at (the country is 0). Nil means
	// one below Location: a district's facilities' locations, a county's districts, the
	// country's counties. Facilities above that depth count at their own location.
	Level *int
	// Period limits the view to reports in it; zero means no limit, for the views that
	// allow that.
	Period Period
	// Commodity is a commodity code; empty means all.
	Commodity string
	// Facility is a facility id or code; empty means every facility in Location.
	Facility string
}

// resolve turns a filter into ids, within the caller's scope.
func (s *Store) resolve(ctx context.Context, f Filter) (*scope, error) {
	sc := &scope{period: f.Period, level: 1}
	base := -1
	if f.Location != "" {
		l, err := s.places.FindLocation(ctx, f.Location)
		if err != nil {
			return nil, err
		}
		sc.location, base = int64(l.ID), l.Level
	} else if p := mhero.PrincipalFromContext(ctx); p != nil && p.Scope != nil {
		sc.location, base = int64(p.Scope.ID), p.Scope.Level
	}
	if base >= 0 {
		sc.level = base + 1
	}
	if f.Level != nil {
		if *f.Level < max(base, 0) || *f.Level > 50 {
			return nil, &mhero.Error{Code: mhero.EINVALID, Message: "Level is out of range.",
				Details: []mhero.ErrorDetail{{Field: "level", Message: fmt.Sprintf("level must be from %d (the location's own depth) to 50", max(base, 0))}}}
		}
		sc.level = *f.Level
	}
	if f.Facility != "" {
		fac, err := s.places.FindFacility(ctx, f.Facility)
		if err != nil {
			return nil, err
		}
		sc.facility = int64(fac.ID)
	}
	if f.Commodity != "" {
		id, err := s.commodityID(ctx, f.Commodity)
		if err != nil {
			return nil, err
		}
		sc.commodity = id
	}
	return sc, nil
}

// facilities writes the SELECT of the facilities a scope covers, with grp, the location
// at the scope's level each one counts under.
func (sc *scope) facilities(a *sqlArgs) string {
	var b strings.Builder
	b.WriteString(`SELECT f.id, f.code, f.name, l.code AS location_code,
		COALESCE(l.path[` + a.add(sc.level+1) + `::int], l.id) AS grp
		FROM facilities f JOIN locations l ON l.id = f.location_id WHERE true`)
	if sc.location != 0 {
		b.WriteString(` AND l.path @> ARRAY[` + a.add(sc.location) + `::bigint]`)
	}
	if sc.facility != 0 {
		b.WriteString(` AND f.id = ` + a.add(sc.facility) + `::bigint`)
	}
	return b.String()
}

// inPeriod writes "col >= start AND col < end" for a scope with a period, else "true".
func (sc *scope) inPeriod(a *sqlArgs, col string) string {
	if sc.period.IsZero() {
		return "true"
	}
	return col + ` >= ` + a.add(sc.period.Start) + `::timestamptz AND ` + col + ` < ` + a.add(sc.period.End) + `::timestamptz`
}

func needPeriod(f Filter) error {
	if f.Period.IsZero() {
		return &mhero.Error{Code: mhero.EINVALID, Message: "This view needs a period.",
			Details: []mhero.ErrorDetail{{Field: "period", Message: "period is required, e.g. 202611 or 2026W48"}}}
	}
	return nil
}

// pgError maps driver errors to application errors; others pass through and become
// EINTERNAL at the edge.
func pgError(err error, what string) error {
	var pe *pgconn.PgError
	switch {
	case errors.Is(err, pgx.ErrNoRows):
		return mhero.Errorf(mhero.ENOTFOUND, "%s not found.", what)
	case errors.As(err, &pe) && (pe.Code == "23514" || pe.Code == "22003"): // check_violation, out of range
		return mhero.Errorf(mhero.EVALIDATION, "%s has a value out of range.", what)
	case errors.As(err, &pe) && pe.Code == "23503": // a facility or worker went away meanwhile
		return mhero.Errorf(mhero.EVALIDATION, "%s refers to a facility or worker that no longer exists.", what)
	}
	return fmt.Errorf("%s: %w", strings.ToLower(what), err)
}

// invalid builds the EVALIDATION error of a submission from its details.
func invalid(what string, d []mhero.ErrorDetail) error {
	return &mhero.Error{Code: mhero.EVALIDATION, Message: what + " is not valid.", Details: d}
}

// nullKey stores an empty idempotency key as NULL, so it never matches another.
func nullKey(k string) any {
	if k == "" {
		return nil
	}
	return k
}

// refID reads a facility reference as an internal id when it is all digits, as the
// registry does; a code always wins over an id when both match.
func refID(ref string) int64 {
	n, err := strconv.ParseInt(ref, 10, 64)
	if err != nil || n <= 0 {
		return 0
	}
	return n
}

// maxKeyLen bounds idempotency keys: session id and hop fit easily.
const maxKeyLen = 200
