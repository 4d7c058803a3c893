package registry

import (
	"context"
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
	locations       []int64 // deeper locations: matched on the path (GIN)
	facilities      []int64
	languages       []string
	scope           int64
	includeInactive bool
}

// resolve turns codes into ids, reports every unknown name at once, and narrows the
// target to the caller's scope (a scoped key may only name places inside its subtree).
func (s *Store) resolveTarget(ctx context.Context, t Target) (*resolvedTarget, error) {
	r := &resolvedTarget{languages: t.Languages, scope: int64(scopeRoot(ctx)), includeInactive: t.IncludeInactive}
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
		switch l.Level {
		case 0: // a root: every top-level location under it, and itself
			r.tops = append(r.tops, int64(l.ID))
			kids, err := s.db.Query(ctx, `SELECT id FROM locations WHERE parent_id = $1`, l.ID)
			if err != nil {
				return nil, err
			}
			ids, err := pgx.CollectRows(kids, pgx.RowTo[int64])
			if err != nil {
				return nil, err
			}
			r.tops = append(r.tops, ids...)
		case 1:
			r.tops = append(r.tops, int64(l.ID))
		default:
			r.locations = append(r.locations, int64(l.ID))
		}
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
	}
	for i, l := range r.languages {
		r.languages[i] = strings.ToLower(strings.TrimSpace(l))
	}
	if len(d) > 0 {
		return nil, &mhero.Error{Code: mhero.EVALIDATION, Message: "Target names something unknown.", Details: d}
	}
	return r, nil
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
	if r.scope != 0 {
		conds = append(conds, "w.location_path @> ARRAY["+arg(r.scope)+"::bigint]")
	}
	// The place filter: any of the named subtrees or facilities.
	var place []string
	if len(r.tops) > 0 {
		place = append(place, "w.top_location_id = ANY ("+arg(r.tops)+"::bigint[])")
	}
	if len(r.locations) > 0 {
		place = append(place, "w.location_path && "+arg(r.locations)+"::bigint[]")
	}
	if len(r.facilities) > 0 {
		place = append(place, "w.facility_id = ANY ("+arg(r.facilities)+"::bigint[])")
	}
	if len(place) == 1 {
		conds = append(conds, place[0])
	} else if len(place) > 1 {
		conds = append(conds, "("+strings.Join(place, " OR ")+")")
	}
	if len(r.cadres) > 0 {
		conds = append(conds, "w.cadre_id = ANY ("+arg(r.cadres)+"::int[])")
	}
	if len(r.skills) > 0 {
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
	err = s.countTarget(ctx, p, cond, args)
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

func (s *Store) countTarget(ctx context.Context, p *Preview, cond string, args []any) error {
	rows, err := s.db.Query(ctx, `WITH g AS (SELECT w.cadre_id, w.top_location_id AS top, count(*) AS n
			FROM workers w WHERE `+cond+` GROUP BY 1, 2)
		SELECT COALESCE(c.code, ''), COALESCE(c.name, ''), COALESCE(l.code, ''), COALESCE(l.name, ''), g.n
		FROM g LEFT JOIN cadres c ON c.id = g.cadre_id LEFT JOIN locations l ON l.id = g.top`, args...)
	if err != nil {
		return err
	}
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
