package registry

import (
	"bytes"
	"context"
	"encoding/json"
	"sort"
	"strconv"
	"strings"
	"sync"

	"github.com/jackc/pgx/v5"
	"github.com/mhero-health/mhero"
)

// Target selects workers. It is the one targeting query used everywhere: listing
// workers, previewing an audience, and (later) freezing a broadcast's recipients.
// Within a field the values are alternatives (any of); across fields they all apply;
// Locations and Facilities together form one place filter (in any of those subtrees or
// at any of those facilities). Everything is named by code or internal id.
type Target struct {
	Cadres     []string `json:"cadres,omitempty"`
	Locations  []string `json:"locations,omitempty"` // each includes its whole subtree
	Facilities []string `json:"facilities,omitempty"`
	Skills     []string `json:"skills,omitempty"` // has any of these skills
	Languages  []string `json:"languages,omitempty"`
	// IncludeInactive also lists inactive and opted-out workers; administrators use it to
	// browse the registry. Messaging never sets it.
	IncludeInactive bool `json:"include_inactive,omitempty"`
}

// resolvedTarget is a Target with every name turned into ids, ready for SQL.
type resolvedTarget struct {
	cadres, skills  []int32
	tops            []int64 // top-level locations (and roots): matched on top_location_id
	locations       []int64 // every location inside the deeper named subtrees: matched on location_id
	facilities      []int64
	facilityLocs    []int64 // the facilities' locations, so workers_place_idx finds them
	languages       []string
	scope           int64
	scopeLevel      int
	scopeTops       []int64 // the scope as top-level locations (a root or a county scope)
	scopeDeep       []int64 // the scope as its locations (a scope below the top level)
	includeInactive bool
}

// skillMask returns the skills as a bit set and whether every one fits in it (ids 1..63).
func (r *resolvedTarget) skillMask() (int64, bool) {
	var m int64
	for _, id := range r.skills {
		if id < 1 || id > 63 {
			return 0, false
		}
		m |= 1 << id
	}
	return m, true
}

// summarizable reports whether the worker_counts summary can answer the target's counts:
// it knows top-level locations, cadres, languages and skill sets of reachable workers,
// but nothing below the top level and no facilities.
func (r *resolvedTarget) summarizable() bool {
	_, masked := r.skillMask()
	return masked && !r.includeInactive && len(r.locations) == 0 && len(r.facilities) == 0 &&
		(r.scope == 0 || r.scopeLevel <= 1)
}

// resolve turns codes into ids, reports every unknown name at once, and narrows the
// target to the caller's scope (a scoped key may only name places inside its subtree).
func (s *Store) resolveTarget(ctx context.Context, t Target) (*resolvedTarget, error) {
	r := &resolvedTarget{languages: t.Languages, scope: int64(scopeRoot(ctx)), includeInactive: t.IncludeInactive}
	if p := mhero.PrincipalFromContext(ctx); p != nil && p.Scope != nil {
		r.scopeLevel = p.Scope.Level
		var err error
		if r.scopeTops, r.scopeDeep, err = s.placeIDs(ctx, p.Scope); err != nil {
			return nil, err
		}
	}
	var d []mhero.ErrorDetail
	var err error
	var missing []string
	if len(t.Cadres) > 0 {
		if r.cadres, missing, err = lookupCodes(ctx, s.db, "cadres", t.Cadres); err != nil {
			return nil, err
		}
		for _, m := range missing {
			d = append(d, mhero.ErrorDetail{Field: "cadres", Message: "unknown cadre " + strconv.Quote(m)})
		}
	}
	if len(t.Skills) > 0 {
		if r.skills, missing, err = lookupCodes(ctx, s.db, "skills", t.Skills); err != nil {
			return nil, err
		}
		for _, m := range missing {
			d = append(d, mhero.ErrorDetail{Field: "skills", Message: "unknown skill " + strconv.Quote(m)})
		}
	}
	for _, ref := range t.Locations {
		l, path, err := resolveLocation(ctx, s.db, ref)
		if mhero.ErrorCode(err) == mhero.ENOTFOUND {
			d = append(d, mhero.ErrorDetail{Field: "locations", Message: "unknown location " + strconv.Quote(ref)})
			continue
		} else if err != nil {
			return nil, err
		}
		if !inScope(ctx, path) {
			return nil, errOutOfScope("Location " + strconv.Quote(ref))
		}
		tops, deep, err := s.placeIDs(ctx, l)
		if err != nil {
			return nil, err
		}
		r.tops, r.locations = append(r.tops, tops...), append(r.locations, deep...)
	}
	for _, ref := range t.Facilities {
		f, path, err := resolveFacility(ctx, s.db, ref)
		if mhero.ErrorCode(err) == mhero.ENOTFOUND {
			d = append(d, mhero.ErrorDetail{Field: "facilities", Message: "unknown facility " + strconv.Quote(ref)})
			continue
		} else if err != nil {
			return nil, err
		}
		if !inScope(ctx, path) {
			return nil, errOutOfScope("Facility " + strconv.Quote(ref))
		}
		r.facilities = append(r.facilities, int64(f.ID))
		r.facilityLocs = append(r.facilityLocs, int64(f.LocationID))
	}
	for i, l := range r.languages {
		r.languages[i] = strings.ToLower(strings.TrimSpace(l))
	}
	if len(d) > 0 {
		return nil, &mhero.Error{Code: mhero.EVALIDATION, Message: "Target names something unknown.", Details: d}
	}
	return r, nil
}

// placeIDs says how to find the workers of a location's subtree: by top_location_id for a
// root (its children and itself) or a top-level location, else by location_id over every
// location in the subtree (a few dozen at district level), which workers_place_idx serves.
func (s *Store) placeIDs(ctx context.Context, l *mhero.Location) (tops, deep []int64, err error) {
	q := `SELECT id FROM locations WHERE path @> ARRAY[$1]::bigint[]`
	switch l.Level {
	case 0:
		q = `SELECT id FROM locations WHERE parent_id = $1 OR id = $1`
	case 1:
		return []int64{int64(l.ID)}, nil, nil
	}
	rows, err := s.db.Query(ctx, q, l.ID)
	if err != nil {
		return nil, nil, err
	}
	ids, err := pgx.CollectRows(rows, pgx.RowTo[int64])
	if l.Level == 0 {
		return ids, nil, err
	}
	return nil, ids, err
}

// where returns the SQL condition on workers w and its arguments, numbered from $1.
func (r *resolvedTarget) where() (string, []any) {
	var conds []string
	var args []any
	arg := func(v any) string {
		args = append(args, v)
		return "$" + strconv.Itoa(len(args))
	}
	if !r.includeInactive {
		conds = append(conds, "w.active AND NOT w.opted_out")
	}
	if len(r.scopeTops) > 0 {
		conds = append(conds, "w.top_location_id = ANY ("+arg(r.scopeTops)+"::bigint[])")
	} else if r.scope != 0 {
		conds = append(conds, "w.location_id = ANY ("+arg(r.scopeDeep)+"::bigint[])")
	}
	// The place filter: any of the named subtrees or facilities.
	var place []string
	if len(r.tops) > 0 {
		place = append(place, "w.top_location_id = ANY ("+arg(r.tops)+"::bigint[])")
	}
	if len(r.locations) > 0 {
		place = append(place, "w.location_id = ANY ("+arg(r.locations)+"::bigint[])")
	}
	if len(r.facilities) > 0 {
		place = append(place, "(w.location_id = ANY ("+arg(r.facilityLocs)+"::bigint[]) AND w.facility_id = ANY ("+arg(r.facilities)+"::bigint[]))")
	}
	if len(place) == 1 {
		conds = append(conds, place[0])
	} else if len(place) > 1 {
		conds = append(conds, "("+strings.Join(place, " OR ")+")")
	}
	if len(r.cadres) > 0 {
		conds = append(conds, "w.cadre_id = ANY ("+arg(r.cadres)+"::int[])")
	}
	if m, ok := r.skillMask(); ok && len(r.skills) > 0 {
		conds = append(conds, "w.skill_mask & "+arg(m)+"::bigint <> 0")
	} else if len(r.skills) > 0 {
		conds = append(conds, "w.skill_ids && "+arg(r.skills)+"::int[]")
	}
	if len(r.languages) > 0 {
		conds = append(conds, "w.language = ANY ("+arg(r.languages)+"::text[])")
	}
	if len(conds) == 0 {
		return "true", nil
	}
	return strings.Join(conds, " AND "), args
}

// ListWorkers lists the workers a target selects, in id order after the cursor.
func (s *Store) ListWorkers(ctx context.Context, t Target, after int64, n int) ([]*mhero.Worker, error) {
	r, err := s.resolveTarget(ctx, t)
	if err != nil {
		return nil, err
	}
	cond, args := r.where()
	args = append(args, after, limit(n))
	q := `SELECT ` + workerCols + workerFrom + ` WHERE ` + cond +
		` AND w.id > $` + strconv.Itoa(len(args)-1) + ` ORDER BY w.id LIMIT $` + strconv.Itoa(len(args))
	rows, err := s.db.Query(ctx, q, args...)
	if err != nil {
		return nil, err
	}
	return pgx.CollectRows(rows, func(row pgx.CollectableRow) (*mhero.Worker, error) {
		w, _, err := scanWorker(row)
		return w, err
	})
}

// Preview summarises who a target reaches before anything is sent.
type Preview struct {
	Count      int             `json:"count"`
	ByCadre    []CountBy       `json:"by_cadre"`
	ByLocation []CountBy       `json:"by_location"` // by top-level location (the country's children)
	Sample     []*mhero.Worker `json:"sample"`
}

// CountBy is one group of a preview.
type CountBy struct {
	Code  string `json:"code"`
	Name  string `json:"name"`
	Count int    `json:"count"`
}

// PreviewTarget counts a target's workers by cadre and by top-level location and returns
// a small sample. The counts come from one grouped scan (an index-only scan for the
// common filters); the sample is fetched at the same time on a second connection.
func (s *Store) PreviewTarget(ctx context.Context, t Target, sample int) (*Preview, error) {
	r, err := s.resolveTarget(ctx, t)
	if err != nil {
		return nil, err
	}
	cond, args := r.where()
	p := &Preview{ByCadre: []CountBy{}, ByLocation: []CountBy{}, Sample: []*mhero.Worker{}}
	var sampleErr error
	var wg sync.WaitGroup
	if sample > 0 {
		wg.Go(func() {
			// Any matching workers will do for a sample; no ORDER BY lets the planner stop
			// at the first rows its chosen scan finds.
			rows, err := s.db.Query(ctx, `SELECT `+workerCols+workerFrom+` WHERE `+cond+
				` LIMIT `+strconv.Itoa(min(sample, 100)), args...)
			if err != nil {
				sampleErr = err
				return
			}
			p.Sample, sampleErr = pgx.CollectRows(rows, func(row pgx.CollectableRow) (*mhero.Worker, error) {
				w, _, err := scanWorker(row)
				return w, err
			})
		})
	}
	if r.summarizable() {
		err = s.countSummary(ctx, p, r)
	} else {
		err = s.countTarget(ctx, p, cond, args)
	}
	wg.Wait()
	if err != nil {
		return nil, err
	}
	if sampleErr != nil {
		return nil, sampleErr
	}
	if p.Sample == nil {
		p.Sample = []*mhero.Worker{}
	}
	sort.Slice(p.ByCadre, func(i, j int) bool { return p.ByCadre[i].Count > p.ByCadre[j].Count })
	sort.Slice(p.ByLocation, func(i, j int) bool { return p.ByLocation[i].Count > p.ByLocation[j].Count })
	return p, nil
}

// countTarget counts the target's workers by cadre and top-level location from the
// workers themselves.
func (s *Store) countTarget(ctx context.Context, p *Preview, cond string, args []any) error {
	rows, err := s.db.Query(ctx, `WITH g AS (SELECT w.cadre_id, w.top_location_id AS top, count(*) AS n
			FROM workers w WHERE `+cond+` GROUP BY 1, 2)
		SELECT COALESCE(c.code, ''), COALESCE(c.name, ''), COALESCE(l.code, ''), COALESCE(l.name, ''), g.n
		FROM g LEFT JOIN cadres c ON c.id = g.cadre_id LEFT JOIN locations l ON l.id = g.top`, args...)
	if err != nil {
		return err
	}
	return scanCounts(p, rows)
}

// countSummary answers the same counts from the worker_counts summary (see the
// migration), for targets it can answer exactly.
func (s *Store) countSummary(ctx context.Context, p *Preview, r *resolvedTarget) error {
	var conds []string
	var args []any
	arg := func(v any) string {
		args = append(args, v)
		return "$" + strconv.Itoa(len(args))
	}
	if len(r.scopeTops) > 0 {
		conds = append(conds, "k.top_location_id = ANY ("+arg(r.scopeTops)+"::bigint[])")
	}
	if len(r.tops) > 0 {
		conds = append(conds, "k.top_location_id = ANY ("+arg(r.tops)+"::bigint[])")
	}
	if len(r.cadres) > 0 {
		conds = append(conds, "k.cadre_id = ANY ("+arg(r.cadres)+"::int[])")
	}
	if m, _ := r.skillMask(); len(r.skills) > 0 {
		conds = append(conds, "k.skill_mask & "+arg(m)+"::bigint <> 0")
	}
	if len(r.languages) > 0 {
		conds = append(conds, "k.language = ANY ("+arg(r.languages)+"::text[])")
	}
	where := "k.n <> 0"
	if len(conds) > 0 {
		where += " AND " + strings.Join(conds, " AND ")
	}
	rows, err := s.db.Query(ctx, `WITH g AS (SELECT k.cadre_id, k.top_location_id AS top, sum(k.n)::bigint AS n
			FROM worker_counts k WHERE `+where+` GROUP BY 1, 2)
		SELECT COALESCE(c.code, ''), COALESCE(c.name, ''), COALESCE(l.code, ''), COALESCE(l.name, ''), g.n
		FROM g LEFT JOIN cadres c ON c.id = g.cadre_id LEFT JOIN locations l ON l.id = g.top WHERE g.n > 0`, args...)
	if err != nil {
		return err
	}
	return scanCounts(p, rows)
}

func scanCounts(p *Preview, rows pgx.Rows) error {
	defer rows.Close()
	cadres, locs := map[string]int{}, map[string]int{}
	for rows.Next() {
		var cc, cn, lc, ln string
		var n int
		if err := rows.Scan(&cc, &cn, &lc, &ln, &n); err != nil {
			return err
		}
		p.Count += n
		addCount(&p.ByCadre, cadres, cc, cn, n)
		addCount(&p.ByLocation, locs, lc, ln, n)
	}
	return rows.Err()
}

func addCount(list *[]CountBy, index map[string]int, code, name string, n int) {
	if i, ok := index[code]; ok {
		(*list)[i].Count += n
		return
	}
	index[code] = len(*list)
	*list = append(*list, CountBy{Code: code, Name: name, Count: n})
}

// Empty reports whether the target names nothing (and so selects every worker).
func (t Target) Empty() bool {
	return len(t.Cadres)+len(t.Locations)+len(t.Facilities)+len(t.Skills)+len(t.Languages) == 0
}

// DecodeTarget reads a target from JSON, strictly: an unknown field or a wrong type is an
// EINVALID error naming it.
func DecodeTarget(raw []byte) (Target, error) {
	var t Target
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&t); err != nil {
		return t, mhero.Errorf(mhero.EINVALID, "target is not valid: %s.", strings.TrimPrefix(err.Error(), "json: "))
	}
	if dec.More() {
		return t, mhero.Errorf(mhero.EINVALID, "target is not valid: more than one JSON value.")
	}
	return t, nil
}

// Recipients streams to fn, in worker id order, the workers a target (JSON, as
// DecodeTarget reads it) selects among those who can be messaged (active, not opted out),
// within the caller's scope. The rows are read as they come, so a national target
// never sits in memory; fn's error stops the stream and is returned.
func (s *Store) Recipients(ctx context.Context, target []byte, fn func(mhero.Recipient) error) error {
	t, err := DecodeTarget(target)
	if err != nil {
		return err
	}
	if t.Empty() {
		return &mhero.Error{Code: mhero.EVALIDATION, Message: "The target names no one.", Details: []mhero.ErrorDetail{{Field: "target",
			Message: "name cadres, locations, facilities, skills or languages; to reach everyone, name the country's location code"}}}
	}
	t.IncludeInactive = false
	r, err := s.resolveTarget(ctx, t)
	if err != nil {
		return err
	}
	cond, args := r.where()
	rows, err := s.db.Query(ctx, `SELECT w.id, w.name, w.msisdn, COALESCE(f.name, ''), COALESCE(c.name, ''), w.language
		FROM workers w LEFT JOIN facilities f ON f.id = w.facility_id LEFT JOIN cadres c ON c.id = w.cadre_id
		WHERE `+cond+` ORDER BY w.id`, args...)
	if err != nil {
		return err
	}
	defer rows.Close()
	for rows.Next() {
		var rc mhero.Recipient
		if err := rows.Scan(&rc.WorkerID, &rc.Name, &rc.MSISDN, &rc.Facility, &rc.Cadre, &rc.Language); err != nil {
			return err
		}
		if err := fn(rc); err != nil {
			return err
		}
	}
	return rows.Err()
}
