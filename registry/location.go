package registry

import (
	"context"
	"strconv"
	"strings"

	"github.com/jackc/pgx/v5"
	"github.com/mhero-health/mhero"
)

const locationCols = `id, code, name, COALESCE(parent_id, 0), level, path`

func scanLocation(row pgx.Row) (*mhero.Location, []int64, error) {
	var l mhero.Location
	var path []int64
	if err := row.Scan(&l.ID, &l.Code, &l.Name, &l.ParentID, &l.Level, &path); err != nil {
		return nil, nil, err
	}
	l.Path = joinPath(path)
	return &l, path, nil
}

func joinPath(path []int64) string {
	var b strings.Builder
	for i, id := range path {
		if i > 0 {
			b.WriteByte('/')
		}
		b.WriteString(strconv.FormatInt(id, 10))
	}
	return b.String()
}

// resolveLocation finds a location by internal id ("17") or by its iHRIS code, without
// scope checks (callers check).
func resolveLocation(ctx context.Context, q querier, ref string) (*mhero.Location, []int64, error) {
	l, path, err := scanLocation(q.QueryRow(ctx, `SELECT `+locationCols+` FROM locations
		WHERE code = $1 OR ($2 > 0 AND id = $2) ORDER BY (code = $1) DESC LIMIT 1`, ref, refID(ref)))
	if err != nil {
		return nil, nil, pgError(err, "Location "+strconv.Quote(ref))
	}
	return l, path, nil
}

// refID reads a reference as an internal id when it is all digits; a code always wins
// over an id when both match (see the ORDER BY in the resolvers).
func refID(ref string) int64 {
	n, err := strconv.ParseInt(ref, 10, 64)
	if err != nil || n <= 0 {
		return 0
	}
	return n
}

// FindLocation returns a location by id or code, within the caller's scope.
func (s *Store) FindLocation(ctx context.Context, ref string) (*mhero.Location, error) {
	l, path, err := resolveLocation(ctx, s.db, ref)
	if err != nil {
		return nil, err
	}
	if !inScope(ctx, path) {
		return nil, errOutOfScope("Location")
	}
	return l, nil
}

// LocationInput is what a caller may set on a location.
type LocationInput struct {
	Code   string `json:"code"`
	Name   string `json:"name"`
	Parent string `json:"parent,omitempty"` // id or code; empty for a root
}

func (in *LocationInput) validate() error {
	var d []mhero.ErrorDetail
	if strings.TrimSpace(in.Code) == "" {
		d = append(d, mhero.ErrorDetail{Field: "code", Message: "code is required"})
	}
	if strings.TrimSpace(in.Name) == "" {
		d = append(d, mhero.ErrorDetail{Field: "name", Message: "name is required"})
	}
	if len(d) > 0 {
		return &mhero.Error{Code: mhero.EVALIDATION, Message: "Location is not valid.", Details: d}
	}
	return nil
}

// CreateLocation adds a location under its parent. A scoped key can only add inside its
// subtree, so never a root.
func (s *Store) CreateLocation(ctx context.Context, in LocationInput) (*mhero.Location, error) {
	if err := in.validate(); err != nil {
		return nil, err
	}
	var out *mhero.Location
	err := s.tx(ctx, func(tx pgx.Tx) error {
		var parentID *int64
		parentPath := []int64{}
		if in.Parent != "" {
			p, path, err := resolveLocation(ctx, tx, in.Parent)
			if err != nil {
				return err
			}
			parentID, parentPath = (*int64)(&p.ID), path
		}
		if !inScope(ctx, parentPath) {
			return errOutOfScope("The parent location")
		}
		var id int64
		err := tx.QueryRow(ctx, `INSERT INTO locations (code, name, parent_id, level, path)
			VALUES ($1, $2, $3, $4, '{}') RETURNING id`, in.Code, in.Name, parentID, len(parentPath)).Scan(&id)
		if err != nil {
			return pgError(err, "Location")
		}
		path := append(append([]int64{}, parentPath...), id)
		if _, err := tx.Exec(ctx, `UPDATE locations SET path = $1 WHERE id = $2`, path, id); err != nil {
			return err
		}
		out = &mhero.Location{ID: mhero.LocationID(id), Code: in.Code, Name: in.Name, Level: len(parentPath), Path: joinPath(path)}
		if parentID != nil {
			out.ParentID = mhero.LocationID(*parentID)
		}
		return audit(ctx, tx, "create", "location", strconv.FormatInt(id, 10), in)
	})
	return out, err
}

// UpdateLocation renames or moves a location. Moving rewrites the paths of its whole
// subtree and of the workers in it, in one transaction.
func (s *Store) UpdateLocation(ctx context.Context, ref string, in LocationInput) (*mhero.Location, error) {
	if err := in.validate(); err != nil {
		return nil, err
	}
	var out *mhero.Location
	err := s.tx(ctx, func(tx pgx.Tx) error {
		cur, oldPath, err := resolveLocation(ctx, tx, ref)
		if err != nil {
			return err
		}
		if !inScope(ctx, oldPath) {
			return errOutOfScope("Location")
		}
		newPath := []int64{}
		var parentID *int64
		if in.Parent != "" {
			p, ppath, err := resolveLocation(ctx, tx, in.Parent)
			if err != nil {
				return err
			}
			for _, id := range ppath {
				if id == int64(cur.ID) {
					return mhero.Errorf(mhero.EVALIDATION, "A location cannot move under itself or its own descendants.")
				}
			}
			newPath, parentID = ppath, (*int64)(&p.ID)
		}
		newPath = append(append([]int64{}, newPath...), int64(cur.ID))
		moved := (parentID == nil) != (cur.ParentID == 0) || (parentID != nil && int64(cur.ParentID) != *parentID)
		if !inScope(ctx, newPath) || (scopeRoot(ctx) == cur.ID && moved) {
			// A scoped key may not move its own root, not even out to the top.
			return errOutOfScope("The new parent location")
		}
		if _, err := tx.Exec(ctx, `UPDATE locations SET code = $1, name = $2, parent_id = $3, updated_at = now() WHERE id = $4`,
			in.Code, in.Name, parentID, cur.ID); err != nil {
			return pgError(err, "Location")
		}
		if joinPath(newPath) != joinPath(oldPath) {
			if err := rewritePaths(ctx, tx, int64(cur.ID), len(oldPath), newPath); err != nil {
				return err
			}
		}
		out = &mhero.Location{ID: cur.ID, Code: in.Code, Name: in.Name, Level: len(newPath) - 1, Path: joinPath(newPath)}
		if parentID != nil {
			out.ParentID = mhero.LocationID(*parentID)
		}
		return audit(ctx, tx, "update", "location", strconv.FormatInt(int64(cur.ID), 10), in)
	})
	return out, err
}

// rewritePaths replaces the first oldLen elements of every path that contains id with
// newPath, for locations and for the workers below them.
func rewritePaths(ctx context.Context, tx pgx.Tx, id int64, oldLen int, newPath []int64) error {
	if _, err := tx.Exec(ctx, `UPDATE locations SET path = $1::bigint[] || path[$2 + 1:], level = cardinality($1::bigint[]) + cardinality(path) - $2 - 1
		WHERE path @> ARRAY[$3]::bigint[]`, newPath, oldLen, id); err != nil {
		return err
	}
	_, err := tx.Exec(ctx, `UPDATE workers SET location_path = $1::bigint[] || location_path[$2 + 1:], updated_at = now()
		WHERE location_id = ANY (SELECT id FROM locations WHERE path @> ARRAY[$3]::bigint[])`, newPath, oldLen, id)
	return err
}

// DeleteLocation removes a location that has no children and no facilities.
func (s *Store) DeleteLocation(ctx context.Context, ref string) error {
	return s.tx(ctx, func(tx pgx.Tx) error {
		cur, path, err := resolveLocation(ctx, tx, ref)
		if err != nil {
			return err
		}
		if !inScope(ctx, path) || scopeRoot(ctx) == cur.ID {
			return errOutOfScope("Location")
		}
		var used bool
		if err := tx.QueryRow(ctx, `SELECT EXISTS (SELECT 1 FROM locations WHERE parent_id = $1)
			OR EXISTS (SELECT 1 FROM facilities WHERE location_id = $1)
			OR EXISTS (SELECT 1 FROM api_keys WHERE scope_location_id = $1)`, cur.ID).Scan(&used); err != nil {
			return err
		}
		if used {
			return mhero.Errorf(mhero.ECONFLICT, "Location %s still has child locations, facilities or API keys.", cur.Code)
		}
		if _, err := tx.Exec(ctx, `DELETE FROM locations WHERE id = $1`, cur.ID); err != nil {
			return pgError(err, "Location")
		}
		return audit(ctx, tx, "delete", "location", strconv.FormatInt(int64(cur.ID), 10), map[string]string{"code": cur.Code})
	})
}

// LocationFilter narrows a location listing.
type LocationFilter struct {
	Under  string // id or code: only this location's subtree (inclusive)
	Level  *int   // only this depth
	After  int64  // keyset cursor: ids greater than this
	Limit  int
	Search string // case-insensitive name prefix
}

// ListLocations lists locations in id order, within the caller's scope.
func (s *Store) ListLocations(ctx context.Context, f LocationFilter) ([]*mhero.Location, error) {
	var under int64
	if f.Under != "" {
		l, path, err := resolveLocation(ctx, s.db, f.Under)
		if err != nil {
			return nil, err
		}
		if !inScope(ctx, path) {
			return nil, errOutOfScope("Location")
		}
		under = int64(l.ID)
	}
	level := -1
	if f.Level != nil {
		level = *f.Level
	}
	rows, err := s.db.Query(ctx, `SELECT `+locationCols+` FROM locations
		WHERE id > $1 AND ($2 = 0 OR path @> ARRAY[$2]::bigint[]) AND ($3 = 0 OR path @> ARRAY[$3]::bigint[])
		  AND ($4 < 0 OR level = $4) AND ($5 = '' OR name ILIKE $5 || '%')
		ORDER BY id LIMIT $6`, f.After, under, int64(scopeRoot(ctx)), level, f.Search, limit(f.Limit))
	if err != nil {
		return nil, err
	}
	return pgx.CollectRows(rows, func(r pgx.CollectableRow) (*mhero.Location, error) {
		l, _, err := scanLocation(r)
		return l, err
	})
}

func limit(n int) int {
	switch {
	case n <= 0:
		return 100
	case n > 1000:
		return 1000
	}
	return n
}
