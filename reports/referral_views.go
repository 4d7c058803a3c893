package reports

import (
	"context"
	"iter"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/mhero-health/mhero"
)

// ReferralFilter is a Filter (Location, Level, Period on the sending time) with the side
// of the referral that places it.
type ReferralFilter struct {
	Filter
	// ByReceiver places a referral at its receiving facility; by default it is placed at
	// the referring one.
	ByReceiver bool
}

func (f *ReferralFilter) facilityColumn() string {
	if f.ByReceiver {
		return "r.to_facility_id"
	}
	return "r.from_facility_id"
}

// overdue writes the condition "still sent past its due time", with the due times as
// arguments (one cut-off per urgency, from the store's clock).
func (s *Store) overdue(a *sqlArgs, now time.Time) string {
	return `(r.state = 'sent' AND r.sent_at < CASE r.urgency
		WHEN 'emergency' THEN ` + a.add(now.Add(-s.due(Emergency))) + `::timestamptz
		WHEN 'urgent' THEN ` + a.add(now.Add(-s.due(Urgent))) + `::timestamptz
		ELSE ` + a.add(now.Add(-s.due(Routine))) + `::timestamptz END)`
}

// ReferralCount counts the referrals of one location, reason, urgency and state.
type ReferralCount struct {
	LocationCount
	Reason  string        `json:"reason"`
	Urgency Urgency       `json:"urgency"`
	State   ReferralState `json:"state"`
	Count   int           `json:"count"`
	Overdue int           `json:"overdue"` // of them, still sent past their due time
}

// ReferralCounts counts the referrals sent in the Period (required) for each location at
// the filter's Level under Location, by reason, urgency and state.
func (s *Store) ReferralCounts(ctx context.Context, f ReferralFilter) iter.Seq2[ReferralCount, error] {
	return view(ctx, s, f.Filter, needPeriod, func(sc *scope, a *sqlArgs) (string, error) {
		return `WITH fac AS MATERIALIZED (` + sc.facilities(a) + `)
			SELECT g.code, g.name, g.level, r.reason, r.urgency, r.state, count(*), count(*) FILTER (WHERE ` + s.overdue(a, s.now()) + `)
			FROM referrals r JOIN fac ON fac.id = ` + f.facilityColumn() + ` JOIN locations g ON g.id = fac.grp
			WHERE ` + sc.inPeriod(a, "r.sent_at") + `
			GROUP BY g.id, r.reason, r.urgency, r.state
			ORDER BY g.code, r.reason, r.urgency, r.state`, nil
	}, func(rows pgx.Rows, r *ReferralCount) error {
		return rows.Scan(&r.LocationCode, &r.LocationName, &r.Level, &r.Reason, &r.Urgency, &r.State, &r.Count, &r.Overdue)
	})
}

// OverdueReferral is a referral still waiting to be received past its due time.
type OverdueReferral struct {
	Ref              string         `json:"ref"`
	Reason           string         `json:"reason"`
	Urgency          Urgency        `json:"urgency"`
	FromFacilityCode string         `json:"from_facility_code"`
	FromFacilityName string         `json:"from_facility_name"`
	ToFacilityCode   string         `json:"to_facility_code"`
	ToFacilityName   string         `json:"to_facility_name"`
	WorkerID         mhero.WorkerID `json:"worker_id"` // who referred
	SentAt           time.Time      `json:"sent_at"`
	DueAt            time.Time      `json:"due_at"`
	OverdueHours     int            `json:"overdue_hours"` // whole hours past DueAt
}

// OverdueReferrals lists the referrals in the filter's place that are still sent past
// their due time, oldest first; Period, when set, limits them to those sent in it.
func (s *Store) OverdueReferrals(ctx context.Context, f ReferralFilter) iter.Seq2[OverdueReferral, error] {
	now := s.now()
	var id int64
	return view(ctx, s, f.Filter, nil, func(sc *scope, a *sqlArgs) (string, error) {
		return `WITH fac AS MATERIALIZED (` + sc.facilities(a) + `)
			SELECT r.id, r.reason, r.urgency, rf.code, rf.name, rt.code, rt.name, r.worker_id, r.sent_at
			FROM referrals r JOIN fac ON fac.id = ` + f.facilityColumn() + `
			JOIN facilities rf ON rf.id = r.from_facility_id JOIN facilities rt ON rt.id = r.to_facility_id
			WHERE ` + s.overdue(a, now) + ` AND ` + sc.inPeriod(a, "r.sent_at") + `
			ORDER BY r.sent_at, r.id`, nil
	}, func(rows pgx.Rows, r *OverdueReferral) error {
		err := rows.Scan(&id, &r.Reason, &r.Urgency, &r.FromFacilityCode, &r.FromFacilityName, &r.ToFacilityCode,
			&r.ToFacilityName, &r.WorkerID, &r.SentAt)
		r.Ref = Ref(RefReferral, id)
		r.DueAt = r.SentAt.Add(s.due(r.Urgency))
		r.OverdueHours = max(0, int(now.Sub(r.DueAt)/time.Hour))
		return err
	})
}
