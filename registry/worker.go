package registry

import (
	"context"
	"strconv"
	"strings"

	"github.com/jackc/pgx/v5"
	"github.com/mhero-health/mhero"
)

const workerCols = `w.id, COALESCE(w.ihris_id, ''), w.name, w.msisdn, COALESCE(w.alt_msisdn, ''), COALESCE(c.code, ''),
	COALESCE(w.facility_id, 0), ARRAY(SELECT s.code FROM skills s WHERE s.id = ANY (w.skill_ids) ORDER BY s.code),
	w.language, w.active, w.opted_out, w.updated_at, w.location_path`

const workerFrom = ` FROM workers w LEFT JOIN cadres c ON c.id = w.cadre_id `

// byMSISDN picks the worker whose primary or second phone is $1, the primary first.
const byMSISDN = ` WHERE w.msisdn = $1 OR w.alt_msisdn = $1 ORDER BY (w.msisdn = $1) DESC LIMIT 1`

// scanWorker scans workerCols, then any columns after them into more.
func scanWorker(row pgx.Row, more ...any) (*mhero.Worker, []int64, error) {
	var w mhero.Worker
	var path []int64
	err := row.Scan(append([]any{&w.ID, &w.IHRISID, &w.Name, &w.MSISDN, &w.AltMSISDN, &w.Cadre, &w.FacilityID, &w.Skills,
		&w.Language, &w.Active, &w.OptedOut, &w.UpdatedAt, &path}, more...)...)
	if w.Skills == nil {
		w.Skills = []string{}
	}
	return &w, path, err
}

// FindWorker returns a worker by internal id or iHRIS id, within the caller's scope.
func (s *Store) FindWorker(ctx context.Context, ref string) (*mhero.Worker, error) {
	w, path, err := scanWorker(s.db.QueryRow(ctx, `SELECT `+workerCols+workerFrom+`
		WHERE w.ihris_id = $1 OR ($2 > 0 AND w.id = $2) ORDER BY (w.ihris_id = $1) DESC NULLS LAST LIMIT 1`, ref, refID(ref)))
	if err != nil {
		return nil, pgError(err, "Worker "+strconv.Quote(ref))
	}
	if !inScope(ctx, path) {
		return nil, errOutOfScope("Worker")
	}
	return w, nil
}

// FindWorkerByMSISDN returns the worker whose primary or second phone is m. It is what
// the USSD and SMS channels call for every inbound message; ENOTFOUND for strangers.
func (s *Store) FindWorkerByMSISDN(ctx context.Context, m mhero.MSISDN) (*mhero.Worker, error) {
	w, path, err := scanWorker(s.db.QueryRow(ctx, `SELECT `+workerCols+workerFrom+byMSISDN, string(m)))
	if err != nil {
		return nil, pgError(err, "Worker with this phone number")
	}
	if !inScope(ctx, path) {
		return nil, errOutOfScope("Worker")
	}
	return w, nil
}

// FindWorkerAndFacility is FindWorkerByMSISDN with the worker's facility (nil when they
// have none) in the same query: a USSD session's first hop needs both, and one round trip
// to PostgreSQL instead of two. Both must be within the caller's scope.
func (s *Store) FindWorkerAndFacility(ctx context.Context, m mhero.MSISDN) (*mhero.Worker, *mhero.Facility, error) {
	var f mhero.Facility
	var fpath []int64
	w, wpath, err := scanWorker(s.db.QueryRow(ctx, `SELECT `+workerCols+`, COALESCE(f.id, 0), COALESCE(f.code, ''), COALESCE(f.name, ''),
			COALESCE(f.location_id, 0), COALESCE(f.dhis2_uid, ''), COALESCE(f.dhis2_code, ''), l.path`+workerFrom+`
		LEFT JOIN facilities f ON f.id = w.facility_id LEFT JOIN locations l ON l.id = f.location_id`+byMSISDN, string(m)),
		&f.ID, &f.Code, &f.Name, &f.LocationID, &f.DHIS2UID, &f.DHIS2Code, &fpath)
	if err != nil {
		return nil, nil, pgError(err, "Worker with this phone number")
	}
	if !inScope(ctx, wpath) {
		return nil, nil, errOutOfScope("Worker")
	}
	if f.ID == 0 {
		return w, nil, nil
	}
	if !inScope(ctx, fpath) {
		return nil, nil, errOutOfScope("Facility")
	}
	return w, &f, nil
}

// WorkerInput is what a caller may set on a worker. Phones may be national-format; they
// are read with the deployment's country. Cadre, facility and skills are named by code
// (or facility id).
type WorkerInput struct {
	IHRISID   string   `json:"ihris_id,omitempty"`
	Name      string   `json:"name"`
	MSISDN    string   `json:"msisdn"`
	AltMSISDN string   `json:"alt_msisdn,omitempty"`
	Cadre     string   `json:"cadre,omitempty"`
	Facility  string   `json:"facility,omitempty"`
	Skills    []string `json:"skills,omitempty"`
	Language  string   `json:"language,omitempty"`
	Active    *bool    `json:"active,omitempty"`
	OptedOut  *bool    `json:"opted_out,omitempty"`
}

// resolved is a WorkerInput with every reference turned into ids.
type resolvedWorker struct {
	w          mhero.Worker
	cadreID    *int32
	facilityID *int64
	skillIDs   []int32
	path       []int64
}

func (s *Store) resolveWorker(ctx context.Context, q querier, in WorkerInput) (*resolvedWorker, error) {
	r := &resolvedWorker{w: mhero.Worker{IHRISID: strings.TrimSpace(in.IHRISID), Name: strings.TrimSpace(in.Name),
		Language: strings.ToLower(strings.TrimSpace(in.Language)), Active: true, Skills: in.Skills}, path: []int64{}}
	if r.w.Language == "" {
		r.w.Language = "en"
	}
	if in.Active != nil {
		r.w.Active = *in.Active
	}
	if in.OptedOut != nil {
		r.w.OptedOut = *in.OptedOut
	}
	var d []mhero.ErrorDetail
	if m, err := ParseMSISDN(in.MSISDN, s.Country); err != nil {
		d = append(d, mhero.ErrorDetail{Field: "msisdn", Message: mhero.ErrorMessage(err)})
	} else {
		r.w.MSISDN = m
	}
	if in.AltMSISDN != "" {
		if m, err := ParseMSISDN(in.AltMSISDN, s.Country); err != nil {
			d = append(d, mhero.ErrorDetail{Field: "alt_msisdn", Message: mhero.ErrorMessage(err)})
		} else {
			r.w.AltMSISDN = m
		}
	}
	if in.Cadre != "" {
		var id int32
		if err := q.QueryRow(ctx, `SELECT id FROM cadres WHERE code = $1`, in.Cadre).Scan(&id); err != nil {
			d = append(d, mhero.ErrorDetail{Field: "cadre", Message: "unknown cadre " + strconv.Quote(in.Cadre)})
		} else {
			r.cadreID, r.w.Cadre = &id, in.Cadre
		}
	}
	if in.Facility != "" {
		f, path, err := resolveFacility(ctx, q, in.Facility)
		if err == nil {
			// Held until commit, as a foreign key would (see the workers table).
			err = q.QueryRow(ctx, `SELECT id FROM facilities WHERE id = $1 FOR KEY SHARE`, f.ID).Scan(new(int64))
		}
		if err != nil {
			d = append(d, mhero.ErrorDetail{Field: "facility", Message: "unknown facility " + strconv.Quote(in.Facility)})
		} else {
			id := int64(f.ID)
			r.facilityID, r.w.FacilityID, r.path = &id, f.ID, path
		}
	}
	if len(in.Skills) > 0 {
		ids, missing, err := lookupCodes(ctx, q, "skills", in.Skills)
		if err != nil {
			return nil, err
		}
		for _, m := range missing {
			d = append(d, mhero.ErrorDetail{Field: "skills", Message: "unknown skill " + strconv.Quote(m)})
		}
		r.skillIDs = ids
	}
	if err := r.w.Validate(); err != nil {
		for _, e := range mhero.ErrorDetails(err) {
			if e.Field != "msisdn" || r.w.MSISDN != "" || !hasField(d, "msisdn") {
				d = append(d, e)
			}
		}
	}
	if len(d) > 0 {
		return nil, &mhero.Error{Code: mhero.EVALIDATION, Message: "Worker is not valid.", Details: d}
	}
	if r.skillIDs == nil {
		r.skillIDs = []int32{}
	}
	return r, nil
}

func hasField(d []mhero.ErrorDetail, field string) bool {
	for _, e := range d {
		if e.Field == field {
			return true
		}
	}
	return false
}

// lookupCodes maps codes of a small reference table (cadres, skills) to ids and reports
// those it does not know.
func lookupCodes(ctx context.Context, q querier, table string, codes []string) (ids []int32, missing []string, err error) {
	rows, err := q.Query(ctx, `SELECT code, id FROM `+pgx.Identifier{table}.Sanitize()+` WHERE code = ANY ($1)`, codes)
	if err != nil {
		return nil, nil, err
	}
	found := map[string]int32{}
	for rows.Next() {
		var code string
		var id int32
		if err := rows.Scan(&code, &id); err != nil {
			return nil, nil, err
		}
		found[code] = id
	}
	if err := rows.Err(); err != nil {
		return nil, nil, err
	}
	seen := map[string]bool{}
	for _, c := range codes {
		if seen[c] {
			continue
		}
		seen[c] = true
		if id, ok := found[c]; ok {
			ids = append(ids, id)
		} else {
			missing = append(missing, c)
		}
	}
	return ids, missing, nil
}

// CreateWorker registers a worker at a facility inside the caller's scope.
func (s *Store) CreateWorker(ctx context.Context, in WorkerInput) (*mhero.Worker, error) {
	var out *mhero.Worker
	err := s.tx(ctx, func(tx pgx.Tx) error {
		r, err := s.resolveWorker(ctx, tx, in)
		if err != nil {
			return err
		}
		if !inScope(ctx, r.path) {
			return errOutOfScope("The worker's facility")
		}
		if err := tx.QueryRow(ctx, `INSERT INTO workers (ihris_id, name, msisdn, alt_msisdn, cadre_id, facility_id, location_path, skill_ids, language, active, opted_out, skill_mask)
			VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12) RETURNING id, updated_at`,
			nullable(r.w.IHRISID), r.w.Name, string(r.w.MSISDN), nullable(string(r.w.AltMSISDN)), r.cadreID, r.facilityID,
			r.path, r.skillIDs, r.w.Language, r.w.Active, r.w.OptedOut, skillMask(r.skillIDs)).Scan(&r.w.ID, &r.w.UpdatedAt); err != nil {
			return pgError(err, "Worker")
		}
		out = &r.w
		return audit(ctx, tx, "create", "worker", strconv.FormatInt(int64(r.w.ID), 10), redactWorker(in))
	})
	return out, err
}

// UpdateWorker replaces a worker's details (PUT semantics: omitted optional fields are
// cleared, except active and opted_out, which keep their value when omitted).
func (s *Store) UpdateWorker(ctx context.Context, ref string, in WorkerInput) (*mhero.Worker, error) {
	var out *mhero.Worker
	err := s.tx(ctx, func(tx pgx.Tx) error {
		cur, curPath, err := scanWorker(tx.QueryRow(ctx, `SELECT `+workerCols+workerFrom+`
			WHERE w.ihris_id = $1 OR ($2 > 0 AND w.id = $2) ORDER BY (w.ihris_id = $1) DESC NULLS LAST LIMIT 1 FOR UPDATE OF w`, ref, refID(ref)))
		if err != nil {
			return pgError(err, "Worker "+strconv.Quote(ref))
		}
		if !inScope(ctx, curPath) {
			return errOutOfScope("Worker")
		}
		if in.Active == nil {
			in.Active = &cur.Active
		}
		if in.OptedOut == nil {
			in.OptedOut = &cur.OptedOut
		}
		r, err := s.resolveWorker(ctx, tx, in)
		if err != nil {
			return err
		}
		if !inScope(ctx, r.path) {
			return errOutOfScope("The worker's new facility")
		}
		if err := tx.QueryRow(ctx, `UPDATE workers SET ihris_id = $1, name = $2, msisdn = $3, alt_msisdn = $4, cadre_id = $5,
			facility_id = $6, location_path = $7, skill_ids = $8, language = $9, active = $10, opted_out = $11, skill_mask = $13,
			updated_at = now() WHERE id = $12 RETURNING updated_at`,
			nullable(r.w.IHRISID), r.w.Name, string(r.w.MSISDN), nullable(string(r.w.AltMSISDN)), r.cadreID, r.facilityID,
			r.path, r.skillIDs, r.w.Language, r.w.Active, r.w.OptedOut, cur.ID, skillMask(r.skillIDs)).Scan(&r.w.UpdatedAt); err != nil {
			return pgError(err, "Worker")
		}
		r.w.ID = cur.ID
		out = &r.w
		return audit(ctx, tx, "update", "worker", strconv.FormatInt(int64(cur.ID), 10), redactWorker(in))
	})
	return out, err
}

// DeactivateWorker marks a worker inactive. Workers are never hard-deleted: messages,
// reports and referrals keep pointing at them.
func (s *Store) DeactivateWorker(ctx context.Context, ref string) error {
	return s.tx(ctx, func(tx pgx.Tx) error {
		var id int64
		var path []int64
		err := tx.QueryRow(ctx, `SELECT id, location_path FROM workers
			WHERE ihris_id = $1 OR ($2 > 0 AND id = $2) ORDER BY (ihris_id = $1) DESC NULLS LAST LIMIT 1 FOR UPDATE`, ref, refID(ref)).Scan(&id, &path)
		if err != nil {
			return pgError(err, "Worker "+strconv.Quote(ref))
		}
		if !inScope(ctx, path) {
			return errOutOfScope("Worker")
		}
		if _, err := tx.Exec(ctx, `UPDATE workers SET active = false, updated_at = now() WHERE id = $1`, id); err != nil {
			return err
		}
		return audit(ctx, tx, "deactivate", "worker", strconv.FormatInt(id, 10), nil)
	})
}

// SetOptOut records a worker's STOP (true) or START (false), found by phone number.
func (s *Store) SetOptOut(ctx context.Context, m mhero.MSISDN, optedOut bool) error {
	return s.tx(ctx, func(tx pgx.Tx) error {
		var id int64
		err := tx.QueryRow(ctx, `UPDATE workers SET opted_out = $2, updated_at = now()
			WHERE msisdn = $1 OR alt_msisdn = $1 RETURNING id`, string(m), optedOut).Scan(&id)
		if err != nil {
			return pgError(err, "Worker with this phone number")
		}
		action := "opt_in"
		if optedOut {
			action = "opt_out"
		}
		return audit(ctx, tx, action, "worker", strconv.FormatInt(id, 10), nil)
	})
}

// skillMask is the SQL function skill_mask in Go: bit n for skill id n, ids 1..63.
func skillMask(ids []int32) int64 {
	var m int64
	for _, id := range ids {
		if id >= 1 && id <= 63 {
			m |= 1 << id
		}
	}
	return m
}

// redactWorker keeps phone numbers out of the audit detail's clear text (masked), as logs
// do; the worker row itself holds the number.
func redactWorker(in WorkerInput) WorkerInput {
	in.MSISDN = mhero.MaskDigits(in.MSISDN)
	in.AltMSISDN = mhero.MaskDigits(in.AltMSISDN)
	return in
}

// Code is a cadre or skill: a code from iHRIS and a display name.
type Code struct {
	ID   int32  `json:"id"`
	Code string `json:"code"`
	Name string `json:"name"`
}

// ListCodes lists the cadres ("cadres") or skills ("skills").
func (s *Store) ListCodes(ctx context.Context, table string) ([]Code, error) {
	if table != "cadres" && table != "skills" {
		return nil, mhero.Errorf(mhero.EINVALID, "unknown code list %q", table)
	}
	rows, err := s.db.Query(ctx, `SELECT id, code, name FROM `+table+` ORDER BY code`)
	if err != nil {
		return nil, err
	}
	return pgx.CollectRows(rows, pgx.RowToStructByPos[Code])
}

// UpsertCode creates or renames a cadre or skill by code.
func (s *Store) UpsertCode(ctx context.Context, table string, c Code) (Code, error) {
	if table != "cadres" && table != "skills" {
		return c, mhero.Errorf(mhero.EINVALID, "unknown code list %q", table)
	}
	c.Code, c.Name = strings.TrimSpace(c.Code), strings.TrimSpace(c.Name)
	if c.Code == "" {
		return c, &mhero.Error{Code: mhero.EVALIDATION, Message: "Code is required.", Details: []mhero.ErrorDetail{{Field: "code", Message: "code is required"}}}
	}
	if c.Name == "" {
		c.Name = c.Code
	}
	err := s.tx(ctx, func(tx pgx.Tx) error {
		if err := tx.QueryRow(ctx, `INSERT INTO `+table+` (code, name) VALUES ($1, $2)
			ON CONFLICT (code) DO UPDATE SET name = EXCLUDED.name RETURNING id`, c.Code, c.Name).Scan(&c.ID); err != nil {
			return err
		}
		return audit(ctx, tx, "upsert", strings.TrimSuffix(table, "s"), c.Code, c)
	})
	return c, err
}

// SetLanguage records the language a worker chose on their phone (USSD menu), for
// every message and screen after it.
func (s *Store) SetLanguage(ctx context.Context, id mhero.WorkerID, language string) error {
	language = strings.ToLower(strings.TrimSpace(language))
	if len(language) != 2 || strings.Trim(language, "abcdefghijklmnopqrstuvwxyz") != "" {
		return mhero.Errorf(mhero.EVALIDATION, "language must be an ISO 639-1 code such as en or fr.")
	}
	return s.tx(ctx, func(tx pgx.Tx) error {
		tag, err := tx.Exec(ctx, `UPDATE workers SET language = $2, updated_at = now() WHERE id = $1 AND language <> $2`, int64(id), language)
		if err != nil {
			return pgError(err, "Worker")
		}
		if tag.RowsAffected() == 0 {
			return nil // unchanged (or no such worker: the caller found it a moment ago)
		}
		return audit(ctx, tx, "update", "worker", strconv.FormatInt(int64(id), 10), map[string]string{"language": language})
	})
}
