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
	"maps"
	"regexp"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
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
// gathering on the way the distinct codes the rows name (workerCodes), then checks and
// upserts them with a handful of set-based statements (upsertWorkers). Memory is flat in
// the file's size: rows pass through a small channel of batches, and the gathered codes
// are capped.
func importWorkers(ctx context.Context, tx pgx.Tx, produce workerProducer, f fieldNames, opt ImportOptions, col *collector, res *ImportResult) error {
	// imp_w holds the rows; a row's skill list is its number in imp_wsc (sid), or the list
	// itself once the gathered lists reached their cap. imp_we collects row problems. The
	// staging tables have no statistics: the planner, guessing, sorts a few hundred
	// thousand rows to merge-join them with a handful of codes; hash joins are right for
	// every statement here.
	if _, err := tx.Exec(ctx, `CREATE TEMP TABLE imp_w (line int NOT NULL, ihris_id text, name text NOT NULL, msisdn text NOT NULL,
		alt_msisdn text, cadre text, facility text, sid int, skills text[], language text, active bool, opted_out bool,
		has_alt bool NOT NULL, has_cadre bool NOT NULL, has_facility bool NOT NULL, has_skills bool NOT NULL) ON COMMIT DROP;
		CREATE TEMP TABLE imp_we (line int, field text, message text) ON COMMIT DROP;
		SET LOCAL enable_mergejoin = off`); err != nil {
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
	src := &workerCopySource{ctx: pctx, batches: batches, vals: make([]any, len(workerCopyCols)), codes: newWorkerCodes()}
	col.phase("setup")
	n, cerr := tx.CopyFrom(ctx, pgx.Identifier{"imp_w"}, workerCopyCols, src)
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
	return upsertWorkers(ctx, tx, &workerStage{rows: n, codes: src.codes}, f, opt, col, res)
}

var workerCopyCols = []string{"line", "ihris_id", "name", "msisdn", "alt_msisdn", "cadre", "facility", "sid", "skills", "language",
	"active", "opted_out", "has_alt", "has_cadre", "has_facility", "has_skills"}

// workerCopySource feeds COPY from the producer's batches (pgx.CopyFromSource) and
// gathers the codes the rows name.
type workerCopySource struct {
	ctx     context.Context
	batches <-chan []workerRow
	batch   []workerRow
	i       int
	vals    []any
	codes   *workerCodes
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
	c.codes.add(r)
	var sid, skills any
	if id := c.codes.skillSet(r.skills); id > 0 {
		sid = id
	} else if len(r.skills) > 0 {
		skills = r.skills
	}
	v := c.vals
	v[0], v[1], v[2], v[3], v[4] = int32(r.line), nullText(r.ihrisID), r.name, r.msisdn, nullText(r.alt)
	v[5], v[6], v[7], v[8], v[9] = nullText(r.cadre), nullText(r.facility), sid, skills, nullText(r.language)
	v[10], v[11], v[12], v[13], v[14], v[15] = r.active, r.optedOut, r.hasAlt, r.hasCadre, r.hasFacility, r.hasSkills
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

// maxImportCodeBytes bounds the memory workerCodes may use, whatever the file holds. A
// country's cadres, skill lists and facilities take a small part of it.
const maxImportCodeBytes = 4 << 20

// workerCodes gathers, while the rows stream to COPY, the distinct cadre and facility
// codes and skill lists they name, so that the set-based statements need not scan the
// staging table for them, and numbers each skill list so that rows carry a small number
// instead of an array. What it keeps is capped (maxImportCodeBytes); a kind that passes
// the cap is marked full and the statements find its codes by scanning instead.
type workerCodes struct {
	cadres, facilities   map[string]struct{}
	sets                 map[string]int32 // skill list, codes joined by NUL -> sid (1, 2, ...)
	setSIDs              []int32          // the lists flattened, one (sid, code) pair per code
	setCodes             []string
	cadresFull, facsFull bool
	setsFull             bool
	budget               int
	key                  []byte
}

func newWorkerCodes() *workerCodes {
	return &workerCodes{cadres: map[string]struct{}{}, facilities: map[string]struct{}{}, sets: map[string]int32{},
		budget: maxImportCodeBytes}
}

// spend takes n bytes (plus a map entry's overhead) from the budget.
func (g *workerCodes) spend(n int) bool {
	n += 64
	if n > g.budget {
		g.budget = 0
		return false
	}
	g.budget -= n
	return true
}

// add records the row's cadre and facility codes.
func (g *workerCodes) add(r *workerRow) {
	addCode(g, g.cadres, r.cadre, &g.cadresFull)
	addCode(g, g.facilities, r.facility, &g.facsFull)
}

func addCode(g *workerCodes, set map[string]struct{}, code string, full *bool) {
	if code == "" || *full {
		return
	}
	if _, ok := set[code]; ok {
		return
	}
	if !g.spend(len(code)) {
		*full = true
		return
	}
	set[strings.Clone(code)] = struct{}{} // not a slice of the whole CSV line
}

// skillSet returns the number of a row's skill list, 0 for an empty list or when the
// lists are full and this one is new.
func (g *workerCodes) skillSet(skills []string) int32 {
	if len(skills) == 0 {
		return 0
	}
	g.key = g.key[:0]
	for i, k := range skills {
		if i > 0 {
			g.key = append(g.key, 0)
		}
		g.key = append(g.key, k...)
	}
	if sid, ok := g.sets[string(g.key)]; ok {
		return sid
	}
	if g.setsFull || !g.spend(2*len(g.key)+8*len(skills)) {
		g.setsFull = true
		return 0
	}
	sid := int32(len(g.sets) + 1)
	g.sets[string(g.key)] = sid
	for _, k := range skills {
		g.setSIDs = append(g.setSIDs, sid)
		g.setCodes = append(g.setCodes, strings.Clone(k))
	}
	return sid
}

func keys(m map[string]struct{}) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	return out
}

// workerStage is what upsertWorkers knows of the staged rows.
type workerStage struct {
	rows    int64 // rows in imp_w
	matched int64 // rows in imp_wr: those matching an existing worker
	codes   *workerCodes
	pruned  bool // bad rows were deleted from imp_w: codes also names theirs
}

// upsertWorkers checks the staged rows against each other and the database, then writes
// the good ones. Identity: a worker with the row's iHRIS id; else the worker holding the
// row's phone when that worker has no iHRIS id or the row gives none.
//
// Rows that clash only with each other (a phone or iHRIS id twice in the file) are what
// the unique indexes on workers refuse anyway, so when nothing else is wrong the rows are
// written at once, under a savepoint, without looking for such pairs: that search groups
// every row twice, a good part of an import. Should the indexes refuse a row, the writes
// are rolled back to the savepoint and the full checks run, so every bad row is still
// reported with its line, as if they had run first.
func upsertWorkers(ctx context.Context, tx pgx.Tx, st *workerStage, f fieldNames, opt ImportOptions, col *collector, res *ImportResult) error {
	found, err := lockFacilities(ctx, tx, st, f)
	if err != nil {
		return err
	}
	if err := classifyWorkers(ctx, tx, st); err != nil {
		return err
	}
	col.phase("resolve")
	if st.matched > 0 {
		tag, err := tx.Exec(ctx, `INSERT INTO imp_we (line, field, message)
			SELECT line, $1, 'phone number already belongs to another worker' FROM imp_wr
			WHERE holder_id IS NOT NULL AND holder_id IS DISTINCT FROM worker_id`, f.phone)
		if err != nil {
			return err
		}
		found += tag.RowsAffected()
	}
	// Without the full checks, rows must reach the unique indexes: not when other rows
	// are bad and the import is all-or-nothing (it then reports every problem).
	quick := found == 0 && (col.failed == 0 || opt.Partial || opt.DryRun)
	if quick && st.matched > 1 {
		var twice bool // two rows for one existing worker: an UPDATE would not say so
		if err := tx.QueryRow(ctx, `SELECT count(worker_id) <> count(DISTINCT worker_id) FROM imp_wr`).Scan(&twice); err != nil {
			return err
		}
		quick = !twice
	}
	if !quick {
		return checkAndWriteWorkers(ctx, tx, st, f, opt, col, res)
	}
	col.phase("check")
	sp, err := tx.Begin(ctx) // SAVEPOINT
	if err != nil {
		return err
	}
	created, updated, err := writeWorkers(ctx, sp, st, col)
	if err != nil {
		var pe *pgconn.PgError
		if !errors.As(err, &pe) || pe.Code != "23505" { // unique_violation
			return pgError(err, "Worker")
		}
		if err := sp.Rollback(ctx); err != nil {
			return err
		}
		col.phase("retry")
		return checkAndWriteWorkers(ctx, tx, st, f, opt, col, res)
	}
	if err := sp.Commit(ctx); err != nil { // RELEASE SAVEPOINT
		return err
	}
	res.Created += created
	res.Updated += updated
	return nil
}

// lockFacilities holds the facilities the file names until commit, as a foreign key
// would (see the workers table: a facility cannot be deleted under the import), and
// records a problem for every row naming an unknown one. It returns how many it recorded.
func lockFacilities(ctx context.Context, tx pgx.Tx, st *workerStage, f fieldNames) (int64, error) {
	const unknown = `INSERT INTO imp_we (line, field, message)
		SELECT line, $1, format('unknown facility %s', quote_literal(facility)) FROM imp_w s `
	if st.codes.facsFull {
		if _, err := tx.Exec(ctx, `SELECT FROM facilities WHERE code IN (SELECT facility FROM imp_w) FOR KEY SHARE`); err != nil {
			return 0, err
		}
		tag, err := tx.Exec(ctx, unknown+`WHERE facility IS NOT NULL AND NOT EXISTS (SELECT FROM facilities fa WHERE fa.code = s.facility)`, f.facility)
		return tag.RowsAffected(), err
	}
	if len(st.codes.facilities) == 0 {
		return 0, nil
	}
	rows, err := tx.Query(ctx, `SELECT code FROM facilities WHERE code = ANY ($1) FOR KEY SHARE`, keys(st.codes.facilities))
	if err != nil {
		return 0, err
	}
	known, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil || len(known) == len(st.codes.facilities) {
		return 0, err
	}
	missing := maps.Clone(st.codes.facilities)
	for _, c := range known {
		delete(missing, c)
	}
	tag, err := tx.Exec(ctx, unknown+`WHERE facility = ANY ($2)`, f.facility, keys(missing))
	return tag.RowsAffected(), err
}

// classifyWorkers finds the staged rows that match existing workers (imp_wr): the worker
// the row updates, if any, and the one holding its phone. Every other row is new.
func classifyWorkers(ctx context.Context, tx pgx.Tx, st *workerStage) error {
	tag, err := tx.Exec(ctx, `CREATE TEMP TABLE imp_wr ON COMMIT DROP AS
		SELECT s.line, COALESCE(bi.id, CASE WHEN s.ihris_id IS NULL OR bp.ihris_id IS NULL THEN bp.id END) AS worker_id, bp.id AS holder_id
		FROM imp_w s
		LEFT JOIN workers bi ON bi.ihris_id = s.ihris_id
		LEFT JOIN workers bp ON bp.msisdn = s.msisdn
		WHERE bi.id IS NOT NULL OR bp.id IS NOT NULL`)
	st.matched = tag.RowsAffected()
	return err
}

// checkAndWriteWorkers runs the checks that need every row (phones and iHRIS ids
// repeated in the file, rows matching the same worker), collects the problems and, unless
// the import is all-or-nothing and something is wrong, writes the good rows.
func checkAndWriteWorkers(ctx context.Context, tx pgx.Tx, st *workerStage, f fieldNames, opt ImportOptions, col *collector, res *ImportResult) error {
	if _, err := tx.Exec(ctx, `INSERT INTO imp_we (line, field, message)
		SELECT r.line, $1, format('duplicate phone number: also on line %s', d.first)
			FROM (SELECT msisdn, min(line) AS first FROM imp_w GROUP BY msisdn HAVING count(*) > 1) d
			JOIN imp_w r ON r.msisdn = d.msisdn AND r.line <> d.first
		UNION ALL
		SELECT r.line, $2, format('duplicate iHRIS id: also on line %s', d.first)
			FROM (SELECT ihris_id, min(line) AS first FROM imp_w WHERE ihris_id IS NOT NULL GROUP BY ihris_id HAVING count(*) > 1) d
			JOIN imp_w r ON r.ihris_id = d.ihris_id AND r.line <> d.first`, f.phone, f.ihrisID); err != nil {
		return err
	}
	if st.matched > 1 {
		if _, err := tx.Exec(ctx, `INSERT INTO imp_we (line, field, message)
			SELECT r.line, $1, format('matches the same existing worker as line %s', d.first)
			FROM (SELECT worker_id, min(line) AS first FROM imp_wr WHERE worker_id IS NOT NULL GROUP BY worker_id HAVING count(*) > 1) d
			JOIN imp_wr r ON r.worker_id = d.worker_id AND r.line <> d.first
			WHERE NOT EXISTS (SELECT FROM imp_we e WHERE e.line = r.line)`, f.ihrisID); err != nil {
			return err
		}
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
		tag, err := tx.Exec(ctx, `DELETE FROM imp_w s USING imp_we e WHERE s.line = e.line`)
		if err != nil {
			return err
		}
		st.rows -= tag.RowsAffected()
		if tag, err = tx.Exec(ctx, `DELETE FROM imp_wr r USING imp_we e WHERE r.line = e.line`); err != nil {
			return err
		}
		st.matched -= tag.RowsAffected()
		st.pruned = true
	}
	created, updated, err := writeWorkers(ctx, tx, st, col)
	if err != nil {
		return pgError(err, "Worker")
	}
	res.Created += created
	res.Updated += updated
	return nil
}

// writeWorkers creates the cadres and skills the rows name, then updates the matched
// workers and inserts the new ones. Every matched worker counts as updated, but only rows
// whose values change are written: a re-sync of an unchanged iHRIS export writes nothing.
func writeWorkers(ctx context.Context, tx pgx.Tx, st *workerStage, col *collector) (created, updated int, err error) {
	if err := writeCodes(ctx, tx, st); err != nil {
		return 0, 0, err
	}
	col.phase("codes")
	// The staged rows with their codes resolved to ids.
	const resolved = `SELECT s.*, c.id AS cadre_id, fa.id AS facility_id, l.path AS path,
			COALESCE(ws.skill_ids, '{}') AS skill_ids, COALESCE(ws.skill_mask, 0) AS skill_mask`
	const codes = ` LEFT JOIN cadres c ON c.code = s.cadre LEFT JOIN facilities fa ON fa.code = s.facility
		LEFT JOIN locations l ON l.id = fa.location_id LEFT JOIN imp_ws ws ON ws.sid = s.sid`
	if st.matched > 0 {
		if _, err := tx.Exec(ctx, `UPDATE workers w SET `+workerUpdateSet+`, updated_at = now()
			FROM (`+resolved+`, m.worker_id FROM imp_w s JOIN imp_wr m ON m.line = s.line`+codes+`) g
			WHERE w.id = g.worker_id AND `+workerUpdateChanges); err != nil {
			return 0, 0, err
		}
		col.phase("update")
	}
	if st.rows == st.matched {
		return 0, int(st.matched), nil
	}
	// New rows. No ORDER BY line: the scan of the staging table returns them in the order
	// COPY wrote them, so ids follow the file in practice, and nothing depends on it enough
	// to sort a few hundred thousand rows for it.
	src := ` FROM imp_w s` + codes
	if st.matched > 0 {
		src += ` WHERE NOT EXISTS (SELECT FROM imp_wr m WHERE m.line = s.line)`
	}
	tag, err := tx.Exec(ctx, `INSERT INTO workers (ihris_id, name, msisdn, alt_msisdn, cadre_id, facility_id, location_path, skill_ids, skill_mask,
			language, active, opted_out)
		SELECT g.ihris_id, g.name, g.msisdn, g.alt_msisdn, g.cadre_id, g.facility_id, COALESCE(g.path, '{}'), g.skill_ids, g.skill_mask,
			COALESCE(g.language, 'en'), COALESCE(g.active, true), COALESCE(g.opted_out, false)
		FROM (`+resolved+src+`) g`)
	if err != nil {
		return 0, 0, err
	}
	col.phase("insert")
	return int(tag.RowsAffected()), int(st.matched), nil
}

// workerUpdate is what an import writes to a matched worker (w) from its row (g): the
// row's values, except that a column the source does not speak about keeps the stored
// value, and active and language are kept when not given; a worker who opted out (an SMS
// STOP) stays so whatever the file says. The expressions read w itself, not a copy
// joined in, so that a concurrent change (a STOP by SMS) committed while the import runs
// is what they keep.
var workerUpdate = []struct{ col, expr string }{
	{"ihris_id", "COALESCE(g.ihris_id, w.ihris_id)"},
	{"name", "g.name"},
	{"msisdn", "g.msisdn"},
	{"alt_msisdn", "CASE WHEN g.has_alt THEN g.alt_msisdn ELSE w.alt_msisdn END"},
	{"cadre_id", "CASE WHEN g.has_cadre THEN g.cadre_id ELSE w.cadre_id END"},
	{"facility_id", "CASE WHEN g.has_facility THEN g.facility_id ELSE w.facility_id END"},
	{"location_path", "CASE WHEN g.has_facility THEN COALESCE(g.path, '{}') ELSE w.location_path END"},
	{"skill_ids", "CASE WHEN g.has_skills THEN g.skill_ids ELSE w.skill_ids END"},
	{"language", "COALESCE(g.language, w.language)"},
	{"active", "COALESCE(g.active, w.active)"},
	{"opted_out", "w.opted_out OR COALESCE(g.opted_out, false)"},                     // an import opts out, never back in (only the worker's START does)
	{"skill_mask", "CASE WHEN g.has_skills THEN g.skill_mask ELSE w.skill_mask END"}, // follows skill_ids
}

// workerUpdateSet is the SET list; workerUpdateChanges the condition that a row changes
// something (skill_mask follows skill_ids and is not compared).
var workerUpdateSet, workerUpdateChanges = func() (string, string) {
	var set, cols, exprs []string
	for _, u := range workerUpdate {
		set = append(set, u.col+" = "+u.expr)
		if u.col != "skill_mask" {
			cols, exprs = append(cols, "w."+u.col), append(exprs, u.expr)
		}
	}
	return strings.Join(set, ", "), "(" + strings.Join(cols, ", ") + ") IS DISTINCT FROM (" + strings.Join(exprs, ", ") + ")"
}()

// writeCodes creates the cadres and skills the remaining rows name that the registry
// does not have yet (iHRIS is the source of truth for them), and resolves each skill list
// to ids and a mask once (imp_ws, by sid). New codes take ids in code order; a code that
// exists takes none (ON CONFLICT alone would use up a sequence number per code and
// import, and skill ids past 63 have no bit in the skill mask).
func writeCodes(ctx context.Context, tx pgx.Tx, st *workerStage) error {
	g := st.codes
	// The gathered codes describe the staged rows unless rows were removed or a kind
	// passed its cap: then the rows themselves say which codes are needed.
	cadres, args := `SELECT unnest($1::text[])`, []any{keys(g.cadres)}
	if g.cadresFull || st.pruned {
		cadres, args = `SELECT DISTINCT cadre FROM imp_w WHERE cadre IS NOT NULL`, nil
	}
	if len(g.cadres) > 0 || g.cadresFull {
		if _, err := tx.Exec(ctx, `INSERT INTO cadres (code, name) SELECT x.c, x.c FROM (`+cadres+`) x(c)
			WHERE NOT EXISTS (SELECT FROM cadres k WHERE k.code = x.c) ORDER BY 1 ON CONFLICT (code) DO NOTHING`, args...); err != nil {
			return err
		}
	}
	if _, err := tx.Exec(ctx, `CREATE TEMP TABLE imp_wsc ON COMMIT DROP AS SELECT * FROM unnest($1::int[], $2::text[]) AS t(sid, code)`,
		g.setSIDs, g.setCodes); err != nil {
		return err
	}
	skills := `SELECT code FROM imp_wsc`
	if st.pruned {
		skills += ` WHERE sid IN (SELECT sid FROM imp_w)`
	}
	if g.setsFull {
		skills += ` UNION ALL SELECT k FROM (SELECT DISTINCT skills FROM imp_w WHERE skills IS NOT NULL) x, unnest(x.skills) k`
	}
	if len(g.setCodes) > 0 || g.setsFull {
		if _, err := tx.Exec(ctx, `INSERT INTO skills (code, name) SELECT DISTINCT x.k, x.k FROM (`+skills+`) x(k)
			WHERE x.k <> '' AND NOT EXISTS (SELECT FROM skills s WHERE s.code = x.k) ORDER BY 1 ON CONFLICT (code) DO NOTHING`); err != nil {
			return err
		}
	}
	const lists = `, LATERAL (SELECT ARRAY(SELECT k.id FROM skills k WHERE k.code = ANY (c.codes) ORDER BY k.id) AS ids) x`
	if _, err := tx.Exec(ctx, `CREATE TEMP TABLE imp_ws ON COMMIT DROP AS
		SELECT c.sid, x.ids AS skill_ids, skill_mask(x.ids) AS skill_mask
		FROM (SELECT sid, array_agg(code) AS codes FROM imp_wsc GROUP BY sid) c`+lists); err != nil {
		return err
	}
	if !g.setsFull {
		return nil
	}
	// Lists past the cap: number them after the gathered ones and point their rows at them.
	_, err := tx.Exec(ctx, `CREATE TEMP TABLE imp_wsx ON COMMIT DROP AS
			SELECT skills AS codes, `+strconv.Itoa(len(g.sets))+` + row_number() OVER () AS sid FROM (SELECT DISTINCT skills FROM imp_w WHERE skills IS NOT NULL) d;
		INSERT INTO imp_ws SELECT c.sid, x.ids, skill_mask(x.ids) FROM imp_wsx c`+lists+`;
		UPDATE imp_w s SET sid = c.sid FROM imp_wsx c WHERE s.skills = c.codes`)
	return err
}

// --- Phone numbers ---------------------------------------------------------------------

// phoneParser reads phone numbers like ParseMSISDN, with a fast path for the common
// shapes an iHRIS export holds ("0886 123 456", "+231886123456", "00231..."): it
// normalises the digits itself and leaves only the validity check to the phone-number
// library's metadata (what IsValidNumber decides), which is far cheaper than a full
// Parse. Anything unusual (letters, extensions, other countries, national-prefix rules
// beyond a plain prefix) and every number the fast path would refuse go through
// ParseMSISDN, so results and error messages are the library's own.
type phoneParser struct {
	region string
	cc     string
	ccNum  int32
	*regionRules
}

func newPhoneParser(region string) *phoneParser {
	p := &phoneParser{region: strings.ToUpper(region)}
	cc := phonenumbers.GetCountryCodeForRegion(p.region)
	if cc == 0 {
		p.regionRules = &regionRules{}
		return p
	}
	p.cc, p.ccNum = strconv.Itoa(cc), int32(cc)
	p.regionRules = rulesFor(p.region, cc)
	return p
}

// regionRules is what the fast path needs to know of a region, read once from the
// library's metadata.
type regionRules struct {
	natPrefix string
	fast      bool             // stripping natPrefix is all the library does to a national number
	valid     *numberValidator // nil: ask phonenumbers.IsValidNumber
}

var regionCache sync.Map // region -> *regionRules

// rulesFor returns the region's national prefix, whether stripping it is all the library
// does (no prefix-for-parsing pattern or transform rule), and its number patterns when
// the region is the only one with its calling code (else IsValidNumber may judge a number
// by another region's patterns, and the fast path asks it).
func rulesFor(region string, cc int) *regionRules {
	if v, ok := regionCache.Load(region); ok {
		return v.(*regionRules)
	}
	r := &regionRules{}
	if coll, err := phonenumbers.MetadataCollection(); err == nil {
		for _, md := range coll.GetMetadata() {
			if md.GetId() == region {
				r.natPrefix = md.GetNationalPrefix()
				pfp := md.GetNationalPrefixForParsing()
				r.fast = r.natPrefix != "" && (pfp == "" || pfp == r.natPrefix) && md.GetNationalPrefixTransformRule() == "" &&
					!md.GetLeadingZeroPossible()
				if regions := phonenumbers.GetRegionCodesForCountryCode(cc); len(regions) == 1 && regions[0] == region {
					r.valid = newNumberValidator(md)
				}
				break
			}
		}
	}
	v, _ := regionCache.LoadOrStore(region, r)
	return v.(*regionRules)
}

// numberValidator decides what phonenumbers.IsValidNumber decides for a national
// significant number of one region, the same way: the number matches the region's
// general pattern and the pattern of at least one number type (getNumberTypeHelper is
// not UNKNOWN), where matching a pattern means having one of its possible lengths, when
// it lists any, and matching its regular expression whole. The library builds each
// pattern's string and looks it up in a locked cache for every check, twice per type and
// up to eleven types per number; here each pattern is compiled once, mobile and fixed-line
// numbers (nearly all of a health workforce) are tried first, and the answer is the same.
type numberValidator struct {
	general numberPattern
	types   []numberPattern
}

type numberPattern struct {
	lengths []int32
	re      *regexp.Regexp
}

func newNumberValidator(md *phonenumbers.PhoneMetadata) *numberValidator {
	pattern := func(d *phonenumbers.PhoneNumberDesc) numberPattern {
		return numberPattern{lengths: d.GetPossibleLength(), re: regexp.MustCompile("^(?:" + d.GetNationalNumberPattern() + ")$")}
	}
	v := &numberValidator{general: pattern(md.GetGeneralDesc())}
	descs := []*phonenumbers.PhoneNumberDesc{md.GetFixedLine()}
	if !md.GetSameMobileAndFixedLinePattern() {
		descs = append([]*phonenumbers.PhoneNumberDesc{md.GetMobile()}, descs...)
	}
	descs = append(descs, md.GetPremiumRate(), md.GetTollFree(), md.GetSharedCost(), md.GetVoip(), md.GetPersonalNumber(),
		md.GetPager(), md.GetUan(), md.GetVoicemail())
	for _, d := range descs {
		if d != nil {
			v.types = append(v.types, pattern(d))
		}
	}
	return v
}

func (p *numberPattern) match(nsn string) bool {
	if len(p.lengths) > 0 && !slices.Contains(p.lengths, int32(len(nsn))) {
		return false
	}
	return p.re.MatchString(nsn)
}

func (v *numberValidator) isValid(nsn string) bool {
	if !v.general.match(nsn) {
		return false
	}
	for i := range v.types {
		if v.types[i].match(nsn) {
			return true
		}
	}
	return false
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
	// The E.164 digits are the calling code and the national significant number.
	var e164 string
	if plus {
		d := buf[:n]
		if !bytes.HasPrefix(d, []byte(p.cc)) || bytes.HasPrefix(d[len(p.cc):], []byte(p.natPrefix)) {
			return "", false
		}
		e164 = string(d)
	} else {
		d := buf[:n]
		if !bytes.HasPrefix(d, []byte(p.natPrefix)) {
			return "", false
		}
		e164 = p.cc + string(d[len(p.natPrefix):])
	}
	nsn := e164[len(p.cc):]
	if len(nsn) < 2 || len(nsn) > 17 || nsn[0] == '0' {
		return "", false
	}
	if p.valid != nil {
		if !p.valid.isValid(nsn) {
			return "", false
		}
		return mhero.MSISDN(e164), true
	}
	nn, err := strconv.ParseUint(nsn, 10, 64)
	if err != nil {
		return "", false
	}
	cc := p.ccNum
	if !phonenumbers.IsValidNumber(&phonenumbers.PhoneNumber{CountryCode: &cc, NationalNumber: &nn}) {
		return "", false
	}
	return mhero.MSISDN(e164), true
}
