package registry

import (
	"context"
	"strconv"
	"strings"

	"github.com/jackc/pgx/v5"
	"github.com/mhero-health/mhero"
)

const facilityCols = `f.id, f.code, f.name, f.location_id, COALESCE(f.dhis2_uid, ''), COALESCE(f.dhis2_code, ''), l.path`

func scanFacility(row pgx.Row) (*mhero.Facility, []int64, error) {
	var f mhero.Facility
	var path []int64
	err := row.Scan(&f.ID, &f.Code, &f.Name, &f.LocationID, &f.DHIS2UID, &f.DHIS2Code, &path)
	return &f, path, err
}

func resolveFacility(ctx context.Context, q querier, ref string) (*mhero.Facility, []int64, error) {
	f, path, err := scanFacility(q.QueryRow(ctx, `SELECT `+facilityCols+` FROM facilities f JOIN locations l ON l.id = f.location_id
		WHERE f.code = $1 OR ($2 > 0 AND f.id = $2) ORDER BY (f.code = $1) DESC LIMIT 1`, ref, refID(ref)))
	if err != nil {
		return nil, nil, pgError(err, "Facility "+strconv.Quote(ref))
	}
	return f, path, nil
}

// FindFacility returns a facility by id or code, within the caller's scope.
func (s *Store) FindFacility(ctx context.Context, ref string) (*mhero.Facility, error) {
	f, path, err := resolveFacility(ctx, s.db, ref)
	if err != nil {
		return nil, err
	}
	if !inScope(ctx, path) {
		return nil, errOutOfScope("Facility")
	}
	return f, nil
}

// FacilityInput is what a caller may set on a facility.
type FacilityInput struct {
	Code      string `json:"code"`
	Name      string `json:"name"`
	Location  string `json:"location"` // id or code
	DHIS2UID  string `json:"dhis2_uid,omitempty"`
	DHIS2Code string `json:"dhis2_code,omitempty"`
}

func (in *FacilityInput) validate() error {
	var d []mhero.ErrorDetail
	if strings.TrimSpace(in.Code) == "" {
		d = append(d, mhero.ErrorDetail{Field: "code", Message: "code is required"})
	}
	if strings.TrimSpace(in.Name) == "" {
		d = append(d, mhero.ErrorDetail{Field: "name", Message: "name is required"})
	}
	if strings.TrimSpace(in.Location) == "" {
		d = append(d, mhero.ErrorDetail{Field: "location", Message: "location is required"})
	}
	if len(d) > 0 {
		return &mhero.Error{Code: mhero.EVALIDATION, Message: "Facility is not valid.", Details: d}
	}
	return nil
}

func nullable(s string) *string {
	if s == "" {
		return nil
	}
	return &s
}

// CreateFacility adds a facility to a location inside the caller's scope.
func (s *Store) CreateFacility(ctx context.Context, in FacilityInput) (*mhero.Facility, error) {
	if err := in.validate(); err != nil {
		return nil, err
	}
	var out *mhero.Facility
	err := s.tx(ctx, func(tx pgx.Tx) error {
		loc, path, err := resolveLocation(ctx, tx, in.Location)
		if err != nil {
			return err
		}
		if !inScope(ctx, path) {
			return errOutOfScope("The facility's location")
		}
		var id int64
		if err := tx.QueryRow(ctx, `INSERT INTO facilities (code, name, location_id, dhis2_uid, dhis2_code)
			VALUES ($1, $2, $3, $4, $5) RETURNING id`, in.Code, in.Name, loc.ID, nullable(in.DHIS2UID), nullable(in.DHIS2Code)).Scan(&id); err != nil {
			return pgError(err, "Facility")
		}
		out = &mhero.Facility{ID: mhero.FacilityID(id), Code: in.Code, Name: in.Name, LocationID: loc.ID, DHIS2UID: in.DHIS2UID, DHIS2Code: in.DHIS2Code}
		return audit(ctx, tx, "create", "facility", strconv.FormatInt(id, 10), in)
	})
	return out, err
}

// UpdateFacility changes a facility; moving it to another location moves its workers'
// targeting paths with it.
func (s *Store) UpdateFacility(ctx context.Context, ref string, in FacilityInput) (*mhero.Facility, error) {
	if err := in.validate(); err != nil {
		return nil, err
	}
	var out *mhero.Facility
	err := s.tx(ctx, func(tx pgx.Tx) error {
		cur, oldPath, err := resolveFacility(ctx, tx, ref)
		if err != nil {
			return err
		}
		loc, path, err := resolveLocation(ctx, tx, in.Location)
		if err != nil {
			return err
		}
		if !inScope(ctx, oldPath) || !inScope(ctx, path) {
			return errOutOfScope("Facility")
		}
		if _, err := tx.Exec(ctx, `UPDATE facilities SET code = $1, name = $2, location_id = $3, dhis2_uid = $4, dhis2_code = $5, updated_at = now()
			WHERE id = $6`, in.Code, in.Name, loc.ID, nullable(in.DHIS2UID), nullable(in.DHIS2Code), cur.ID); err != nil {
			return pgError(err, "Facility")
		}
		if loc.ID != cur.LocationID {
			if _, err := tx.Exec(ctx, `UPDATE workers SET location_path = $1, updated_at = now() WHERE location_id = $3 AND facility_id = $2`, path, cur.ID, cur.LocationID); err != nil {
				return err
			}
		}
		out = &mhero.Facility{ID: cur.ID, Code: in.Code, Name: in.Name, LocationID: loc.ID, DHIS2UID: in.DHIS2UID, DHIS2Code: in.DHIS2Code}
		return audit(ctx, tx, "update", "facility", strconv.FormatInt(int64(cur.ID), 10), in)
	})
	return out, err
}

// DeleteFacility removes a facility that no worker is attached to.
func (s *Store) DeleteFacility(ctx context.Context, ref string) error {
	return s.tx(ctx, func(tx pgx.Tx) error {
		cur, path, err := resolveFacility(ctx, tx, ref)
		if err != nil {
			return err
		}
		if !inScope(ctx, path) {
			return errOutOfScope("Facility")
		}
		// FOR UPDATE waits for writers holding FOR KEY SHARE on it (workers being attached),
		// so the check below sees them.
		if _, err := tx.Exec(ctx, `SELECT id FROM facilities WHERE id = $1 FOR UPDATE`, cur.ID); err != nil {
			return err
		}
		var used bool
		if err := tx.QueryRow(ctx, `SELECT EXISTS (SELECT 1 FROM workers WHERE location_id = $2 AND facility_id = $1)`, cur.ID, cur.LocationID).Scan(&used); err != nil {
			return err
		}
		if used {
			return mhero.Errorf(mhero.ECONFLICT, "Facility %s still has workers attached.", cur.Code)
		}
		if _, err := tx.Exec(ctx, `DELETE FROM facilities WHERE id = $1`, cur.ID); err != nil {
			return pgError(err, "Facility")
		}
		return audit(ctx, tx, "delete", "facility", strconv.FormatInt(int64(cur.ID), 10), map[string]string{"code": cur.Code})
	})
}

// FacilityFilter narrows a facility listing.
type FacilityFilter struct {
	Under  string // location id or code: facilities in its subtree
	Search string // case-insensitive name prefix
	After  int64
	Limit  int
}

// ListFacilities lists facilities in id order within the caller's scope.
func (s *Store) ListFacilities(ctx context.Context, f FacilityFilter) ([]*mhero.Facility, error) {
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
	rows, err := s.db.Query(ctx, `SELECT `+facilityCols+` FROM facilities f JOIN locations l ON l.id = f.location_id
		WHERE f.id > $1 AND ($2 = 0 OR l.path @> ARRAY[$2]::bigint[]) AND ($3 = 0 OR l.path @> ARRAY[$3]::bigint[])
		  AND ($4 = '' OR f.name ILIKE $4 || '%')
		ORDER BY f.id LIMIT $5`, f.After, under, int64(scopeRoot(ctx)), f.Search, limit(f.Limit))
	if err != nil {
		return nil, err
	}
	return pgx.CollectRows(rows, func(r pgx.CollectableRow) (*mhero.Facility, error) {
		f, _, err := scanFacility(r)
		return f, err
	})
}
