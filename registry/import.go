package registry

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/mhero-health/mhero"
	"github.com/nyaruka/phonenumbers"
)

// ImportFormat names what an import file holds.
type ImportFormat string

// The import formats. An empty format asks Import to detect it: a file whose first
// non-blank byte is '{' is a FHIR bundle, anything else is CSV whose header decides the kind.
const (
	FormatDetect        ImportFormat = ""
	FormatCSVLocations  ImportFormat = "csv-locations"
	FormatCSVFacilities ImportFormat = "csv-facilities"
	FormatCSVWorkers    ImportFormat = "csv-workers"
	FormatFHIRBundle    ImportFormat = "fhir-bundle"
)

// ImportOptions says how to run an import.
type ImportOptions struct {
	Format  ImportFormat // "" = detect
	Partial bool         // commit the good rows and report the bad ones; default all-or-nothing
	Source  string       // file name or "api", recorded
	DryRun  bool         // validate everything, write nothing (not even the imports row)
}

// ImportResult is the outcome of one import, as recorded in the imports table.
type ImportResult struct {
	ID         int64               `json:"id"` // 0 for a dry run
	Format     ImportFormat        `json:"format"`
	Status     string              `json:"status"` // succeeded | failed | partial
	RowsTotal  int                 `json:"rows_total"`
	RowsOK     int                 `json:"rows_ok"`
	RowsFailed int                 `json:"rows_failed"`
	Created    int                 `json:"created"`
	Updated    int                 `json:"updated"` // existing records the file matched, changed or not
	Ignored    int                 `json:"ignored,omitempty"`
	Errors     []mhero.ErrorDetail `json:"errors"` // the first MaxImportErrors problems, by line
}

// Import statuses.
const (
	ImportSucceeded = "succeeded"
	ImportFailed    = "failed"
	ImportPartial   = "partial"
)

// MaxImportErrors caps the problems an import reports and records; RowsFailed has the total.
const MaxImportErrors = 1000

// Import reads a CSV file or a FHIR mCSD bundle from r and upserts what it holds into the
// registry: workers by iHRIS id, else by primary phone; locations and facilities by code.
// The file is streamed, never held whole in memory.
//
// By default the import is all-or-nothing: when any row is bad nothing is written, the
// imports row records status failed with every problem (line, column, why), and Import
// returns the result together with an EVALIDATION error carrying the same details. With
// Partial the good rows are committed. A file that cannot be read as the format at all
// (not CSV, missing required columns, invalid JSON) fails with EINVALID. Every import
// writes one imports row and one audit_log row, unless DryRun.
func (s *Store) Import(ctx context.Context, r io.Reader, opt ImportOptions) (*ImportResult, error) {
	start := time.Now()
	res := &ImportResult{Errors: []mhero.ErrorDetail{}}
	br := bufio.NewReaderSize(r, 64<<10)
	format, err := detectFormat(br, opt.Format)
	res.Format = format
	if !opt.DryRun {
		id, berr := s.beginImport(ctx, opt, format)
		if berr != nil {
			return nil, berr
		}
		res.ID = id
	}
	if err == nil {
		err = s.runImport(ctx, br, opt, res) // commits the data and the record on success
	}
	if err != nil {
		res.Status, res.RowsOK, res.Created, res.Updated = ImportFailed, 0, 0, 0
		if mhero.ErrorCode(err) == mhero.EINVALID {
			res.Errors = append([]mhero.ErrorDetail{{Line: lineOf(err), Message: mhero.ErrorMessage(err)}}, nonLine(err)...)
		}
	}
	if res.Status == ImportFailed && !opt.DryRun {
		// The data transaction rolled back; record the failure on its own, even when the
		// caller's context is already cancelled.
		rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
		defer cancel()
		if ferr := s.finishImport(rctx, nil, opt, res); ferr != nil {
			err = errors.Join(err, ferr)
		}
	}
	s.Log.Info("import finished", "status", res.Status, "elapsed", time.Since(start),
		"format", string(res.Format), "rows", res.RowsTotal, "failed", res.RowsFailed)
	switch {
	case err != nil:
		return res, err
	case res.Status == ImportFailed:
		return res, &mhero.Error{Code: mhero.EVALIDATION,
			Message: fmt.Sprintf("Import has %d bad rows; nothing was written.", res.RowsFailed), Details: res.Errors}
	}
	return res, nil
}

// nonLine returns an error's details other than a single line pointer (see lineOf).
func nonLine(err error) []mhero.ErrorDetail {
	if d := mhero.ErrorDetails(err); len(d) > 1 {
		return d
	}
	return nil
}

// lineOf returns the line an EINVALID error points at, when it has a single detail line.
func lineOf(err error) int {
	if d := mhero.ErrorDetails(err); len(d) == 1 {
		return d[0].Line
	}
	return 0
}

// runImport runs the import's data transaction. When the data commits, the imports row
// and audit row are finished in the same transaction; otherwise the caller records the
// failure after the rollback.
func (s *Store) runImport(ctx context.Context, br *bufio.Reader, opt ImportOptions, res *ImportResult) error {
	tx, err := s.db.Begin(ctx)
	if err != nil {
		return err
	}
	defer tx.Rollback(context.Background()) //nolint:errcheck // after Commit it is a no-op
	// The set-based statements run once over many rows: JIT compilation costs more than it
	// saves here, and sorts and hashes of a few hundred thousand rows should stay in memory.
	if _, err := tx.Exec(ctx, `SET LOCAL jit = off; SET LOCAL work_mem = '64MB'`); err != nil {
		return err
	}
	col := &collector{log: s.Log, last: time.Now()}
	switch res.Format {
	case FormatFHIRBundle:
		err = s.importFHIR(ctx, tx, br, opt, col, res)
	default:
		err = s.importCSV(ctx, tx, br, opt, col, res)
	}
	if err != nil {
		return err
	}
	res.RowsFailed = col.failed
	res.RowsOK = res.RowsTotal - res.RowsFailed
	res.Errors = col.sorted()
	switch {
	case res.RowsFailed == 0:
		res.Status = ImportSucceeded
	case opt.Partial && res.RowsOK > 0:
		res.Status = ImportPartial
	default:
		res.Status = ImportFailed
	}
	if res.Status == ImportFailed {
		res.Created, res.Updated = 0, 0
		return nil // rolled back by the deferred Rollback
	}
	if opt.DryRun {
		return nil
	}
	if err := s.finishImport(ctx, tx, opt, res); err != nil {
		return err
	}
	return tx.Commit(ctx)
}

// beginImport records the start of an import and returns its id.
func (s *Store) beginImport(ctx context.Context, opt ImportOptions, format ImportFormat) (int64, error) {
	actor := "cli"
	if p := mhero.PrincipalFromContext(ctx); p != nil {
		actor = p.Name
	}
	source := opt.Source
	if source == "" {
		source = "api"
	}
	var id int64
	err := s.db.QueryRow(ctx, `INSERT INTO imports (source, format, partial, actor) VALUES ($1, $2, $3, $4) RETURNING id`,
		source, string(format), opt.Partial, actor).Scan(&id)
	return id, err
}

// importSummary is the audit detail of an import.
type importSummary struct {
	Source     string       `json:"source"`
	Format     ImportFormat `json:"format"`
	Partial    bool         `json:"partial"`
	Status     string       `json:"status"`
	RowsTotal  int          `json:"rows_total"`
	RowsOK     int          `json:"rows_ok"`
	RowsFailed int          `json:"rows_failed"`
	Created    int          `json:"created"`
	Updated    int          `json:"updated"`
	Ignored    int          `json:"ignored"`
}

// finishImport writes the outcome to the imports row and one audit row, in tx or, when tx
// is nil, in a transaction of its own (after a rollback).
func (s *Store) finishImport(ctx context.Context, tx pgx.Tx, opt ImportOptions, res *ImportResult) error {
	write := func(tx pgx.Tx) error {
		errs, err := json.Marshal(res.Errors)
		if err != nil {
			return err
		}
		if _, err := tx.Exec(ctx, `UPDATE imports SET finished_at = now(), status = $2, rows_total = $3, rows_ok = $4,
			rows_failed = $5, errors = $6, format = $7, created = $8, updated = $9, ignored = $10 WHERE id = $1`,
			res.ID, res.Status, res.RowsTotal, res.RowsOK, res.RowsFailed, errs, string(res.Format),
			res.Created, res.Updated, res.Ignored); err != nil {
			return err
		}
		return audit(ctx, tx, "import", "import", strconv.FormatInt(res.ID, 10), importSummary{
			Source: opt.Source, Format: res.Format, Partial: opt.Partial, Status: res.Status, RowsTotal: res.RowsTotal,
			RowsOK: res.RowsOK, RowsFailed: res.RowsFailed, Created: res.Created, Updated: res.Updated, Ignored: res.Ignored})
	}
	if tx != nil {
		return write(tx)
	}
	return s.tx(ctx, write)
}

// FindImport returns a recorded import. Created and updated counts come from its audit
// row (the imports table has no columns for them).
func (s *Store) FindImport(ctx context.Context, id int64) (*ImportResult, error) {
	res := &ImportResult{ID: id}
	var format string
	var errs []byte
	err := s.db.QueryRow(ctx, `SELECT format, status, rows_total, rows_ok, rows_failed, created, updated, ignored, errors
		FROM imports WHERE id = $1`, id).Scan(&format, &res.Status, &res.RowsTotal, &res.RowsOK, &res.RowsFailed,
		&res.Created, &res.Updated, &res.Ignored, &errs)
	if err != nil {
		return nil, pgError(err, "Import "+strconv.FormatInt(id, 10))
	}
	res.Format = ImportFormat(format)
	if err := json.Unmarshal(errs, &res.Errors); err != nil {
		return nil, fmt.Errorf("import %d errors: %w", id, err)
	}
	if res.Errors == nil {
		res.Errors = []mhero.ErrorDetail{}
	}
	return res, nil
}

// detectFormat peeks at the start of the stream: '{' means a FHIR bundle, anything else
// CSV (whose kind the header decides later). A UTF-8 BOM and leading blanks are skipped.
func detectFormat(br *bufio.Reader, want ImportFormat) (ImportFormat, error) {
	switch want {
	case FormatDetect, FormatCSVLocations, FormatCSVFacilities, FormatCSVWorkers, FormatFHIRBundle:
	default:
		return want, mhero.Errorf(mhero.EINVALID, "Unknown import format %q: use csv-locations, csv-facilities, csv-workers or fhir-bundle.", string(want))
	}
	if want != FormatDetect {
		return want, nil
	}
	head, err := br.Peek(4096)
	if err != nil && !errors.Is(err, io.EOF) && !errors.Is(err, bufio.ErrBufferFull) {
		return "", fmt.Errorf("read import: %w", err)
	}
	head = bytes.TrimPrefix(head, utf8BOM)
	head = bytes.TrimLeft(head, " \t\r\n")
	switch {
	case len(head) == 0:
		return "", mhero.Errorf(mhero.EINVALID, "The import file is empty.")
	case head[0] == '{':
		return FormatFHIRBundle, nil
	}
	return FormatDetect, nil // CSV; the header decides the kind
}

var utf8BOM = []byte{0xEF, 0xBB, 0xBF}

// collector gathers row problems found while reading: it keeps the first MaxImportErrors
// and counts the bad rows, so memory stays flat however bad the file is.
type collector struct {
	errs   []mhero.ErrorDetail
	failed int
	log    *slog.Logger // phase timings at debug level
	last   time.Time
}

// phase logs how long the step that just ended took (debug level).
func (c *collector) phase(name string) {
	now := time.Now()
	if c.log != nil && !c.last.IsZero() {
		c.log.Debug("import phase", "phase", name, "elapsed", now.Sub(c.last))
	}
	c.last = now
}

// row records that one row is bad, with its problems.
func (c *collector) row(line int, d ...mhero.ErrorDetail) {
	c.failed++
	for _, e := range d {
		if len(c.errs) >= MaxImportErrors {
			return
		}
		e.Line = line
		c.errs = append(c.errs, e)
	}
}

// merge adds problems found in SQL (already sorted, capped) and their bad-row count.
func (c *collector) merge(failed int, d []mhero.ErrorDetail) {
	c.failed += failed
	c.errs = append(c.errs, d...)
}

// sorted returns the first MaxImportErrors problems in line order.
func (c *collector) sorted() []mhero.ErrorDetail {
	sort.SliceStable(c.errs, func(i, j int) bool { return c.errs[i].Line < c.errs[j].Line })
	if len(c.errs) > MaxImportErrors {
		c.errs = c.errs[:MaxImportErrors]
	}
	if c.errs == nil {
		return []mhero.ErrorDetail{}
	}
	return c.errs
}

// sqlErrors reads the problems the set-based checks left in a temporary table (line,
// field, message) and merges them into col.
func sqlErrors(ctx context.Context, tx pgx.Tx, table string, col *collector) error {
	var failed int
	if err := tx.QueryRow(ctx, `SELECT count(DISTINCT line) FROM `+table).Scan(&failed); err != nil {
		return err
	}
	if failed == 0 {
		return nil
	}
	rows, err := tx.Query(ctx, `SELECT line, field, message FROM `+table+` ORDER BY line, field LIMIT $1`, MaxImportErrors)
	if err != nil {
		return err
	}
	d, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (mhero.ErrorDetail, error) {
		var e mhero.ErrorDetail
		err := r.Scan(&e.Line, &e.Field, &e.Message)
		return e, err
	})
	if err != nil {
		return err
	}
	col.merge(failed, d)
	return nil
}

// --- Rows shared by the CSV and FHIR readers ---------------------------------------------

// locationRow is one location to upsert; line is the CSV line or FHIR entry number.
type locationRow struct {
	line               int
	code, name, parent string
}

// facilityRow is one facility to upsert. hasUID/hasCode say whether the file carries the
// DHIS2 columns at all; when it does not, an update keeps the stored values.
type facilityRow struct {
	line                                      int
	code, name, location, dhis2UID, dhis2Code string
	hasUID, hasCode                           bool
}

// workerRow is one validated worker to upsert. Empty optional strings are "not given".
// The has* flags say whether the source speaks about that field at all: when it does not,
// an update keeps the stored value; when it does, an empty value clears it. Active,
// opted-out and language are only changed when given (nil/empty keeps them), so a STOP a
// worker sent by SMS survives a re-import from iHRIS, which knows nothing of it.
type workerRow struct {
	line                                     int
	ihrisID, name, msisdn, alt               string
	cadre, facility, language                string
	skills                                   []string
	active, optedOut                         *bool
	hasAlt, hasCadre, hasFacility, hasSkills bool
}

// fieldNames are the names problems are reported under, so a CSV user sees their column
// and a FHIR user the element.
type fieldNames struct {
	code, name, parent, location, facility, phone, ihrisID string
}

// --- Locations -------------------------------------------------------------------------

// importLocations upserts a location tree given in any order. Parents resolve within the
// rows or from the database; missing parents, cycles and rows under a bad parent are row
// errors. Locations are country-sized (thousands), so they are checked in memory.
func importLocations(ctx context.Context, tx pgx.Tx, rows []locationRow, f fieldNames, opt ImportOptions, col *collector, res *ImportResult) error {
	good := make(map[string]*locationRow, len(rows))
	bad := map[string]int{} // code -> line of a bad row
	for i := range rows {
		r := &rows[i]
		if first, dup := good[r.code]; dup {
			col.row(r.line, mhero.ErrorDetail{Field: f.code, Message: fmt.Sprintf("duplicate code %q: also on line %d", r.code, first.line)})
			continue
		}
		good[r.code] = r
	}
	dbParent, err := loadLocationParents(ctx, tx)
	if err != nil {
		return err
	}
	parentOf := func(code string) (string, bool) {
		if r, ok := good[code]; ok {
			return r.parent, true
		}
		p, ok := dbParent[code]
		return p, ok
	}
	state := map[string]int{} // 0 unsettled, 1 on the current walk, 2 ok, 3 failed
	for i := range rows {
		r := &rows[i]
		if good[r.code] != r || state[r.code] != 0 {
			continue // a duplicate (reported above) or already settled
		}
		// Walk up until a settled node, a root or a problem; then settle the whole walk.
		var path []string
		cur, failed, cause, cycleFrom := r.code, false, "", -1
		for {
			if st := state[cur]; st == 2 || st == 3 {
				failed = st == 3
				if failed {
					cause = fmt.Sprintf("parent %q has errors", cur)
				}
				break
			} else if st == 1 {
				failed, cycleFrom = true, slices.Index(path, cur)
				cause = "part of a cycle: " + strings.Join(append(path[cycleFrom:], cur), " → ")
				break
			}
			state[cur] = 1
			path = append(path, cur)
			p, _ := parentOf(cur)
			if p == "" {
				break
			}
			if _, known := parentOf(p); !known {
				failed, cause = true, fmt.Sprintf("unknown parent %q", p)
				break
			}
			cur = p
		}
		for j, c := range path {
			state[c] = 2
			if !failed {
				continue
			}
			state[c] = 3
			msg := cause
			if j < len(path)-1 && (cycleFrom < 0 || j < cycleFrom) {
				msg = fmt.Sprintf("parent %q has errors", path[j+1])
			}
			if fr, inFile := good[c]; inFile {
				col.row(fr.line, mhero.ErrorDetail{Field: f.parent, Message: msg})
				bad[c] = fr.line
			}
		}
	}
	// Good rows are written even when others are bad: later stages (facilities, workers)
	// validate against them, and an all-or-nothing import rolls the whole transaction back.
	return writeLocations(ctx, tx, rows, good, bad, res)
}

// loadLocationParents returns every stored location's parent code ("" for roots).
func loadLocationParents(ctx context.Context, tx pgx.Tx) (map[string]string, error) {
	rows, err := tx.Query(ctx, `SELECT l.code, COALESCE(p.code, '') FROM locations l LEFT JOIN locations p ON p.id = l.parent_id`)
	if err != nil {
		return nil, err
	}
	m := map[string]string{}
	for rows.Next() {
		var c, p string
		if err := rows.Scan(&c, &p); err != nil {
			return nil, err
		}
		m[c] = p
	}
	return m, rows.Err()
}

func writeLocations(ctx context.Context, tx pgx.Tx, rows []locationRow, good map[string]*locationRow, bad map[string]int, res *ImportResult) error {
	var src [][]any
	for _, r := range good {
		if _, isBad := bad[r.code]; !isBad {
			src = append(src, []any{r.line, r.code, r.name, r.parent})
		}
	}
	if len(src) == 0 {
		return nil
	}
	if _, err := tx.Exec(ctx, `CREATE TEMP TABLE imp_l (line int, code text, name text, parent text) ON COMMIT DROP`); err != nil {
		return err
	}
	if _, err := tx.CopyFrom(ctx, pgx.Identifier{"imp_l"}, []string{"line", "code", "name", "parent"}, pgx.CopyFromRows(src)); err != nil {
		return err
	}
	var created, updated int
	if err := tx.QueryRow(ctx, `WITH u AS (
			INSERT INTO locations (code, name, path) SELECT code, name, '{}' FROM imp_l ORDER BY line
			ON CONFLICT (code) DO UPDATE SET name = EXCLUDED.name, updated_at = now() RETURNING (xmax = 0) AS ins)
		SELECT count(*) FILTER (WHERE ins), count(*) FILTER (WHERE NOT ins) FROM u`).Scan(&created, &updated); err != nil {
		return pgError(err, "Location")
	}
	res.Created += created
	res.Updated += updated
	if _, err := tx.Exec(ctx, `UPDATE locations l SET parent_id = p.id FROM imp_l t LEFT JOIN locations p ON p.code = NULLIF(t.parent, '')
		WHERE l.code = t.code AND l.parent_id IS DISTINCT FROM p.id`); err != nil {
		return err
	}
	tag, err := tx.Exec(ctx, `WITH RECURSIVE t AS (
			SELECT id, ARRAY[id] AS path FROM locations WHERE parent_id IS NULL
			UNION ALL
			SELECT c.id, t.path || c.id FROM locations c JOIN t ON c.parent_id = t.id)
		UPDATE locations l SET path = t.path, level = cardinality(t.path) - 1 FROM t WHERE l.id = t.id AND l.path <> t.path`)
	if err != nil {
		return err
	}
	if tag.RowsAffected() > int64(created) { // something moved: workers follow their facility's location
		return syncWorkerPaths(ctx, tx, "")
	}
	return nil
}

// syncWorkerPaths sets workers' location_path from their facility's location, for every
// worker or (with a staging table name) those at the facilities it lists.
func syncWorkerPaths(ctx context.Context, tx pgx.Tx, facilityTable string) error {
	cond := ""
	if facilityTable != "" {
		cond = ` AND f.code IN (SELECT code FROM ` + facilityTable + `)`
	}
	_, err := tx.Exec(ctx, `UPDATE workers w SET location_path = l.path, updated_at = now()
		FROM facilities f JOIN locations l ON l.id = f.location_id
		WHERE w.facility_id = f.id AND w.location_path <> l.path`+cond)
	return err
}

// --- Facilities ------------------------------------------------------------------------

// importFacilities upserts facilities by code; unknown locations are row errors. A
// facility that moves takes its workers' targeting paths with it.
func importFacilities(ctx context.Context, tx pgx.Tx, rows []facilityRow, f fieldNames, opt ImportOptions, col *collector, res *ImportResult) error {
	seen := make(map[string]int, len(rows))
	var src [][]any
	for _, r := range rows {
		if first, dup := seen[r.code]; dup {
			col.row(r.line, mhero.ErrorDetail{Field: f.code, Message: fmt.Sprintf("duplicate code %q: also on line %d", r.code, first)})
			continue
		}
		seen[r.code] = r.line
		src = append(src, []any{r.line, r.code, r.name, r.location, r.dhis2UID, r.dhis2Code, r.hasUID, r.hasCode})
	}
	if len(src) == 0 {
		return nil
	}
	if _, err := tx.Exec(ctx, `CREATE TEMP TABLE imp_f (line int, code text, name text, location text, dhis2_uid text, dhis2_code text,
		has_uid bool, has_code bool) ON COMMIT DROP;
		CREATE TEMP TABLE imp_fe (line int, field text, message text) ON COMMIT DROP`); err != nil {
		return err
	}
	if _, err := tx.CopyFrom(ctx, pgx.Identifier{"imp_f"}, []string{"line", "code", "name", "location", "dhis2_uid", "dhis2_code", "has_uid", "has_code"},
		pgx.CopyFromRows(src)); err != nil {
		return err
	}
	if _, err := tx.Exec(ctx, `INSERT INTO imp_fe SELECT t.line, $1, format('unknown location %s', quote_literal(t.location))
		FROM imp_f t WHERE NOT EXISTS (SELECT 1 FROM locations l WHERE l.code = t.location)`, f.location); err != nil {
		return err
	}
	before := col.failed
	if err := sqlErrors(ctx, tx, "imp_fe", col); err != nil {
		return err
	}
	if col.failed > before {
		if _, err := tx.Exec(ctx, `DELETE FROM imp_f t USING imp_fe e WHERE t.line = e.line`); err != nil {
			return err
		}
	}
	var created, updated int
	if err := tx.QueryRow(ctx, `WITH u AS (
			INSERT INTO facilities AS f (code, name, location_id, dhis2_uid, dhis2_code)
			SELECT t.code, t.name, l.id, NULLIF(t.dhis2_uid, ''), NULLIF(t.dhis2_code, '') FROM imp_f t JOIN locations l ON l.code = t.location ORDER BY t.line
			ON CONFLICT (code) DO UPDATE SET name = EXCLUDED.name, location_id = EXCLUDED.location_id,
				dhis2_uid = CASE WHEN (SELECT has_uid FROM imp_f WHERE code = EXCLUDED.code) THEN EXCLUDED.dhis2_uid ELSE f.dhis2_uid END,
				dhis2_code = CASE WHEN (SELECT has_code FROM imp_f WHERE code = EXCLUDED.code) THEN EXCLUDED.dhis2_code ELSE f.dhis2_code END,
				updated_at = now()
			RETURNING (xmax = 0) AS ins)
		SELECT count(*) FILTER (WHERE ins), count(*) FILTER (WHERE NOT ins) FROM u`).Scan(&created, &updated); err != nil {
		return pgError(err, "Facility")
	}
	res.Created += created
	res.Updated += updated
	if updated > 0 {
		return syncWorkerPaths(ctx, tx, "imp_f")
	}
	return nil
}

// --- Workers ---------------------------------------------------------------------------

// workerProducer reads the source and emits validated rows; it records bad rows in the
// collector and counts res.RowsTotal itself. It runs on its own goroutine, concurrently
// with COPY, and owns col and res until it returns.
type workerProducer func(ctx context.Context, emit func(workerRow) error) error

const copyBatch = 512

// importWorkers streams the producer's rows into a temporary staging table with COPY,
// then checks and upserts them with a handful of set-based statements: facility lookup,
// duplicates within the file, phones held by another worker, cadres and skills created on
// the fly, then UPDATE ... FROM for known workers and INSERT ... SELECT for new ones.
// Memory is flat in the file's size: rows pass through a small channel of batches.
func importWorkers(ctx context.Context, tx pgx.Tx, produce workerProducer, f fieldNames, opt ImportOptions, col *collector, res *ImportResult) error {
	if _, err := tx.Exec(ctx, `CREATE TEMP TABLE imp_w (line int NOT NULL, ihris_id text, name text NOT NULL, msisdn text NOT NULL,
		alt_msisdn text, cadre text, facility text, skills text[], language text, active bool, opted_out bool,
		has_alt bool NOT NULL, has_cadre bool NOT NULL, has_facility bool NOT NULL, has_skills bool NOT NULL) ON COMMIT DROP`); err != nil {
		return err
	}
	pctx, cancel := context.WithCancel(ctx)
	defer cancel()
	batches := make(chan []workerRow, 8)
	perr := make(chan error, 1)
	go func() {
		defer close(batches)
		batch := make([]workerRow, 0, copyBatch)
		send := func() error {
			select {
			case batches <- batch:
				batch = make([]workerRow, 0, copyBatch)
				return nil
			case <-pctx.Done():
				return pctx.Err()
			}
		}
		err := produce(pctx, func(r workerRow) error {
			batch = append(batch, r)
			if len(batch) == copyBatch {
				return send()
			}
			return nil
		})
		if err == nil && len(batch) > 0 {
			err = send()
		}
		perr <- err
	}()
	src := &workerCopySource{ctx: pctx, batches: batches, vals: make([]any, 15)}
	col.phase("setup")
	_, cerr := tx.CopyFrom(ctx, pgx.Identifier{"imp_w"}, workerCopyCols, src)
	cancel()
	for range batches { // let the producer finish if COPY stopped early
	}
	if err := <-perr; err != nil && !(cerr != nil && errors.Is(err, context.Canceled)) {
		return err
	}
	if cerr != nil {
		return cerr
	}
	col.phase("copy")
	return upsertWorkers(ctx, tx, f, opt, col, res)
}

var workerCopyCols = []string{"line", "ihris_id", "name", "msisdn", "alt_msisdn", "cadre", "facility", "skills", "language",
	"active", "opted_out", "has_alt", "has_cadre", "has_facility", "has_skills"}

// workerCopySource feeds COPY from the producer's batches (pgx.CopyFromSource).
type workerCopySource struct {
	ctx     context.Context
	batches <-chan []workerRow
	batch   []workerRow
	i       int
	vals    []any
	err     error
}

func (c *workerCopySource) Next() bool {
	for c.i >= len(c.batch) {
		select {
		case b, ok := <-c.batches:
			if !ok {
				return false
			}
			c.batch, c.i = b, 0
		case <-c.ctx.Done():
			c.err = c.ctx.Err()
			return false
		}
	}
	c.i++
	return true
}

func (c *workerCopySource) Values() ([]any, error) {
	r := &c.batch[c.i-1]
	v := c.vals
	v[0], v[1], v[2], v[3], v[4] = int32(r.line), nullText(r.ihrisID), r.name, r.msisdn, nullText(r.alt)
	v[5], v[6], v[7], v[8] = nullText(r.cadre), nullText(r.facility), r.skills, nullText(r.language)
	v[9], v[10], v[11], v[12], v[13], v[14] = r.active, r.optedOut, r.hasAlt, r.hasCadre, r.hasFacility, r.hasSkills
	return v, nil
}

func (c *workerCopySource) Err() error { return c.err }

// nullText is NULL for an empty string.
func nullText(s string) any {
	if s == "" {
		return nil
	}
	return s
}

// upsertWorkers checks the staged rows against each other and the database, then writes
// the good ones. Identity: a worker with the row's iHRIS id; else the worker holding the
// row's phone when that worker has no iHRIS id or the row gives none.
func upsertWorkers(ctx context.Context, tx pgx.Tx, f fieldNames, opt ImportOptions, col *collector, res *ImportResult) error {
	// Hold the facilities the file names until commit, as a foreign key would (see the
	// workers table): a facility cannot be deleted under the import.
	if _, err := tx.Exec(ctx, `SELECT 1 FROM facilities WHERE code IN (SELECT DISTINCT facility FROM imp_w) FOR KEY SHARE`); err != nil {
		return err
	}
	if _, err := tx.Exec(ctx, `CREATE TEMP TABLE imp_wr ON COMMIT DROP AS
		SELECT s.*, COALESCE(bi.id, CASE WHEN s.ihris_id IS NULL OR bp.ihris_id IS NULL THEN bp.id END) AS worker_id,
			bp.id AS holder_id, fa.id AS facility_id, l.path AS path
		FROM imp_w s
		LEFT JOIN workers bi ON bi.ihris_id = s.ihris_id
		LEFT JOIN workers bp ON bp.msisdn = s.msisdn
		LEFT JOIN facilities fa ON fa.code = s.facility
		LEFT JOIN locations l ON l.id = fa.location_id;
		CREATE TEMP TABLE imp_we (line int, field text, message text) ON COMMIT DROP`); err != nil {
		return err
	}
	col.phase("resolve")
	if _, err := tx.Exec(ctx, `INSERT INTO imp_we (line, field, message)
		SELECT line, $1, format('unknown facility %s', quote_literal(facility)) FROM imp_wr WHERE facility IS NOT NULL AND facility_id IS NULL
		UNION ALL
		SELECT line, $2, 'phone number already belongs to another worker' FROM imp_wr WHERE holder_id IS NOT NULL AND holder_id IS DISTINCT FROM worker_id
		UNION ALL
		SELECT r.line, $2, format('duplicate phone number: also on line %s', d.first)
			FROM (SELECT msisdn, min(line) AS first FROM imp_wr GROUP BY msisdn HAVING count(*) > 1) d
			JOIN imp_wr r ON r.msisdn = d.msisdn AND r.line <> d.first
		UNION ALL
		SELECT r.line, $3, format('duplicate iHRIS id: also on line %s', d.first)
			FROM (SELECT ihris_id, min(line) AS first FROM imp_wr WHERE ihris_id IS NOT NULL GROUP BY ihris_id HAVING count(*) > 1) d
			JOIN imp_wr r ON r.ihris_id = d.ihris_id AND r.line <> d.first`,
		f.facility, f.phone, f.ihrisID); err != nil {
		return err
	}
	if _, err := tx.Exec(ctx, `INSERT INTO imp_we (line, field, message)
		SELECT r.line, $1, format('matches the same existing worker as line %s', d.first)
		FROM (SELECT worker_id, min(line) AS first FROM imp_wr WHERE worker_id IS NOT NULL GROUP BY worker_id HAVING count(*) > 1) d
		JOIN imp_wr r ON r.worker_id = d.worker_id AND r.line <> d.first
		WHERE NOT EXISTS (SELECT 1 FROM imp_we e WHERE e.line = r.line)`, f.ihrisID); err != nil {
		return err
	}
	before := col.failed
	if err := sqlErrors(ctx, tx, "imp_we", col); err != nil {
		return err
	}
	col.phase("check")
	if col.failed > 0 && !opt.Partial && !opt.DryRun {
		return nil // nothing will be committed; skip the writes
	}
	if col.failed > before {
		if _, err := tx.Exec(ctx, `DELETE FROM imp_wr r USING imp_we e WHERE r.line = e.line`); err != nil {
			return err
		}
	}
	// iHRIS is the source of truth for cadres and skills: unknown codes are created.
	if _, err := tx.Exec(ctx, `INSERT INTO cadres (code, name) SELECT DISTINCT cadre, cadre FROM imp_wr WHERE cadre IS NOT NULL ORDER BY 1
		ON CONFLICT (code) DO NOTHING`); err != nil {
		return err
	}
	if _, err := tx.Exec(ctx, `INSERT INTO skills (code, name) SELECT DISTINCT k, k FROM imp_wr, unnest(skills) k WHERE k <> '' ORDER BY 1
		ON CONFLICT (code) DO NOTHING`); err != nil {
		return err
	}
	// Skill lists repeat across workers: resolve each distinct list once.
	if _, err := tx.Exec(ctx, `CREATE TEMP TABLE imp_ws ON COMMIT DROP AS
		SELECT c.skills, x.ids AS skill_ids, skill_mask(x.ids) AS skill_mask
		FROM (SELECT DISTINCT skills FROM imp_wr WHERE skills IS NOT NULL) c,
			LATERAL (SELECT ARRAY(SELECT k.id FROM skills k WHERE k.code = ANY (c.skills) ORDER BY k.id) AS ids) x`); err != nil {
		return err
	}
	const resolved = `SELECT r.*, c.id AS cadre_id, COALESCE(ws.skill_ids, '{}') AS skill_ids, COALESCE(ws.skill_mask, 0) AS skill_mask
		FROM imp_wr r LEFT JOIN cadres c ON c.code = r.cadre LEFT JOIN imp_ws ws ON ws.skills = r.skills`
	col.phase("codes")
	// Every matched worker counts as updated, but only rows whose values change are written:
	// a re-sync of an unchanged iHRIS export writes nothing.
	var matched int
	if err := tx.QueryRow(ctx, `SELECT count(*) FROM imp_wr WHERE worker_id IS NOT NULL`).Scan(&matched); err != nil {
		return err
	}
	_, err := tx.Exec(ctx, `UPDATE workers w SET ihris_id = n.ihris_id, name = n.name, msisdn = n.msisdn, alt_msisdn = n.alt_msisdn,
			cadre_id = n.cadre_id, facility_id = n.facility_id, location_path = n.location_path, skill_ids = n.skill_ids, skill_mask = n.skill_mask,
			language = n.language, active = n.active, opted_out = n.opted_out, updated_at = now()
		FROM (SELECT o.id, COALESCE(g.ihris_id, o.ihris_id) AS ihris_id, g.name, g.msisdn,
				CASE WHEN g.has_alt THEN g.alt_msisdn ELSE o.alt_msisdn END AS alt_msisdn,
				CASE WHEN g.has_cadre THEN g.cadre_id ELSE o.cadre_id END AS cadre_id,
				CASE WHEN g.has_facility THEN g.facility_id ELSE o.facility_id END AS facility_id,
				CASE WHEN g.has_facility THEN COALESCE(g.path, '{}') ELSE o.location_path END AS location_path,
				CASE WHEN g.has_skills THEN g.skill_ids ELSE o.skill_ids END AS skill_ids,
				CASE WHEN g.has_skills THEN g.skill_mask ELSE o.skill_mask END AS skill_mask,
				COALESCE(g.language, o.language) AS language, COALESCE(g.active, o.active) AS active,
				COALESCE(g.opted_out, o.opted_out) AS opted_out
			FROM (`+resolved+` WHERE r.worker_id IS NOT NULL) g JOIN workers o ON o.id = g.worker_id) n
		WHERE w.id = n.id AND (w.ihris_id, w.name, w.msisdn, w.alt_msisdn, w.cadre_id, w.facility_id, w.location_path, w.skill_ids,
			w.language, w.active, w.opted_out) IS DISTINCT FROM (n.ihris_id, n.name, n.msisdn, n.alt_msisdn, n.cadre_id, n.facility_id,
			n.location_path, n.skill_ids, n.language, n.active, n.opted_out)`)
	if err != nil {
		return pgError(err, "Worker")
	}
	res.Updated += matched
	col.phase("update")
	tag, err := tx.Exec(ctx, `INSERT INTO workers (ihris_id, name, msisdn, alt_msisdn, cadre_id, facility_id, location_path, skill_ids, skill_mask,
			language, active, opted_out)
		SELECT g.ihris_id, g.name, g.msisdn, g.alt_msisdn, g.cadre_id, g.facility_id, COALESCE(g.path, '{}'), g.skill_ids, g.skill_mask,
			COALESCE(g.language, 'en'), COALESCE(g.active, true), COALESCE(g.opted_out, false)
		FROM (`+resolved+` WHERE r.worker_id IS NULL) g ORDER BY g.line`)
	if err != nil {
		return pgError(err, "Worker")
	}
	res.Created += int(tag.RowsAffected())
	col.phase("insert")
	return nil
}

// --- Phone numbers ---------------------------------------------------------------------

// phoneParser reads phone numbers like ParseMSISDN, with a fast path for the common
// shapes an iHRIS export holds ("0886 123 456", "+231886123456", "00231..."): it
// normalises the digits itself and leaves only the validity check to the phone-number
// library (IsValidNumber on the country's metadata), which is ten times cheaper than a full
// Parse. Anything unusual (letters, extensions, other countries, national-prefix rules
// beyond a plain prefix) and every number the fast path would refuse go through
// ParseMSISDN, so results and error messages are the library's own.
type phoneParser struct {
	region    string
	cc        string
	ccNum     int32
	natPrefix string
	fast      bool
}

func newPhoneParser(region string) *phoneParser {
	p := &phoneParser{region: strings.ToUpper(region)}
	cc := phonenumbers.GetCountryCodeForRegion(p.region)
	if cc == 0 {
		return p
	}
	p.cc, p.ccNum = strconv.Itoa(cc), int32(cc)
	p.natPrefix, p.fast = simpleNationalPrefix(p.region)
	return p
}

var nationalPrefixes sync.Map // region -> [2]string{prefix, "1" when simple}

// simpleNationalPrefix returns the region's national prefix and whether stripping it is
// all the library does (no prefix-for-parsing pattern or transform rule).
func simpleNationalPrefix(region string) (string, bool) {
	if v, ok := nationalPrefixes.Load(region); ok {
		a := v.([2]string)
		return a[0], a[1] == "1"
	}
	prefix, simple := "", false
	if coll, err := phonenumbers.MetadataCollection(); err == nil {
		for _, md := range coll.GetMetadata() {
			if md.GetId() == region {
				prefix = md.GetNationalPrefix()
				pfp := md.GetNationalPrefixForParsing()
				simple = prefix != "" && (pfp == "" || pfp == prefix) && md.GetNationalPrefixTransformRule() == "" &&
					!md.GetLeadingZeroPossible()
				break
			}
		}
	}
	a := [2]string{prefix, ""}
	if simple {
		a[1] = "1"
	}
	nationalPrefixes.Store(region, a)
	return prefix, simple
}

// parse returns the E.164 digits of raw, or an EVALIDATION error whose message masks
// the number (import errors are stored).
func (p *phoneParser) parse(raw string) (mhero.MSISDN, error) {
	if m, ok := p.quick(raw); ok {
		return m, nil
	}
	m, err := ParseMSISDN(raw, p.region)
	if err != nil {
		msg := strings.ReplaceAll(mhero.ErrorMessage(err), strconv.Quote(raw), strconv.Quote(mhero.MaskDigits(raw)))
		return "", &mhero.Error{Code: mhero.EVALIDATION, Message: msg}
	}
	return m, nil
}

// quick is the fast path; ok is false whenever the library must decide.
func (p *phoneParser) quick(raw string) (mhero.MSISDN, bool) {
	if !p.fast {
		return "", false
	}
	s := strings.TrimSpace(raw)
	if len(s) < 4 || len(s) > 40 {
		return "", false
	}
	var buf [20]byte
	n, plus := 0, false
	if strings.HasPrefix(s, "00") {
		plus, s = true, s[2:]
	} else if s[0] == '+' {
		plus, s = true, s[1:]
	}
	for i := 0; i < len(s); i++ {
		switch c := s[i]; {
		case c >= '0' && c <= '9':
			if n == len(buf) {
				return "", false
			}
			buf[n] = c
			n++
		case c == ' ' || c == '-' || c == '.' || c == '(' || c == ')':
		default:
			return "", false
		}
	}
	d := string(buf[:n])
	var nsn string
	if plus {
		if !strings.HasPrefix(d, p.cc) || strings.HasPrefix(d[len(p.cc):], p.natPrefix) {
			return "", false
		}
		nsn = d[len(p.cc):]
	} else {
		if !strings.HasPrefix(d, p.natPrefix) {
			return "", false
		}
		nsn = d[len(p.natPrefix):]
	}
	if len(nsn) < 2 || len(nsn) > 17 || nsn[0] == '0' {
		return "", false
	}
	nn, err := strconv.ParseUint(nsn, 10, 64)
	if err != nil {
		return "", false
	}
	cc := p.ccNum
	if !phonenumbers.IsValidNumber(&phonenumbers.PhoneNumber{CountryCode: &cc, NationalNumber: &nn}) {
		return "", false
	}
	return mhero.MSISDN(p.cc + nsn), true
}
