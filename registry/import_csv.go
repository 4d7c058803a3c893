package registry

// CSV imports.
//
// Three kinds of CSV file can be imported; the header decides which (or ImportOptions.Format
// / `--format` forces one). Header names are case-insensitive; spaces and dashes count as
// underscores; a UTF-8 BOM is skipped; the delimiter (`,`, `;` or tab) is taken from the
// header line; fields may be quoted (RFC 4180, quotes doubled inside); lines may end in
// CRLF. Columns not listed are ignored, so a full iHRIS export can be imported as it is.
// A file with a phone column is read as workers, else one with a code and a location
// column as facilities, else one with a code and a name as locations.
//
//	| kind (format)                  | column        | also accepted as                                      | required | meaning |
//	|--------------------------------|---------------|-------------------------------------------------------|----------|---------|
//	| locations (`csv-locations`)    | code          | location_code, id                                     | yes      | iHRIS code, unique |
//	|                                | name          | location_name                                         | yes      | display name |
//	|                                | parent_code   | parent, parent_id                                     | no       | empty for a root; resolved within the file (any order) or from the registry; cycles and unknown parents are row errors |
//	| facilities (`csv-facilities`)  | code          | facility_code, facility_id, id                        | yes      | iHRIS code, unique |
//	|                                | name          | facility_name                                         | yes      | display name |
//	|                                | location_code | location, location_id                                 | yes      | the location (code) it belongs to |
//	|                                | dhis2_uid     | dhis2_id, orgunit, orgunit_uid, org_unit              | no       | DHIS2 org-unit uid; column absent = keep |
//	|                                | dhis2_code    | orgunit_code                                          | no       | DHIS2 org-unit code; column absent = keep |
//	| workers (`csv-workers`)        | ihris_id      | id, person_id, practitioner_id, ihris                 | no       | identity for upserts; else the primary phone |
//	|                                | name          | full_name, fullname; or firstname + othername + surname (first_name, given_name, middle_name, last_name, family_name) | yes | |
//	|                                | phone         | mobile, msisdn, telephone, phone_number, mobile_phone, tel | yes | national format read with the deployment's country, or international |
//	|                                | phone2        | alt_phone, alt_msisdn, mobile2, phone_2, other_phone, secondary_phone | no | second phone |
//	|                                | cadre         | cadre_code, job, job_code                             | no       | cadre code; unknown codes are created |
//	|                                | facility_code | facility, facility_id                                 | no       | must exist (import facilities first) |
//	|                                | skills        | skill, specialties, specialty                         | no       | codes separated by `;` or `\|`; unknown codes are created |
//	|                                | language      | lang, preferred_language                              | no       | ISO 639-1 (`en`, `fr`; `en-LR` reads as `en`); empty = keep / `en` |
//	|                                | active        | is_active                                             | no       | true/false, yes/no, 1/0; empty = keep / true |
//	|                                | opted_out     | optout, opt_out                                       | no       | same; empty = keep / false (an SMS STOP is never undone by an import) |
//
// For workers, a column that is present but empty clears phone2, cadre, facility and
// skills; a column that is absent keeps what the registry has. Row errors (reported with
// line number and column): wrong field count, missing name, missing, unreadable or
// invalid phone, second phone equal to the first, phone repeated within the file or held
// by a different worker, iHRIS id repeated in the file, unknown facility, bad boolean or
// language. Updating a worker's facility updates its targeting location path.

import (
	"bufio"
	"bytes"
	"context"
	"encoding/csv"
	"errors"
	"fmt"
	"io"
	"strings"

	"github.com/jackc/pgx/v5"
	"github.com/mhero-health/mhero"
)

// Canonical column names.
const (
	colCode       = "code"
	colName       = "name"
	colParent     = "parent_code"
	colLocation   = "location_code"
	colDHIS2UID   = "dhis2_uid"
	colDHIS2Code  = "dhis2_code"
	colIHRISID    = "ihris_id"
	colFirstName  = "firstname"
	colMiddleName = "othername"
	colSurname    = "surname"
	colPhone      = "phone"
	colPhone2     = "phone2"
	colCadre      = "cadre"
	colFacility   = "facility_code"
	colSkills     = "skills"
	colLanguage   = "language"
	colActive     = "active"
	colOptedOut   = "opted_out"
)

// csvAliases maps a normalised header name to its canonical column, per kind.
var csvAliases = map[ImportFormat]map[string]string{
	FormatCSVLocations: aliases(map[string][]string{
		colCode:   {"code", "location_code", "id"},
		colName:   {"name", "location_name"},
		colParent: {"parent_code", "parent", "parent_id"},
	}),
	FormatCSVFacilities: aliases(map[string][]string{
		colCode:      {"code", "facility_code", "facility_id", "id"},
		colName:      {"name", "facility_name"},
		colLocation:  {"location_code", "location", "location_id"},
		colDHIS2UID:  {"dhis2_uid", "dhis2_id", "orgunit", "orgunit_uid", "org_unit"},
		colDHIS2Code: {"dhis2_code", "orgunit_code"},
	}),
	FormatCSVWorkers: aliases(map[string][]string{
		colIHRISID:    {"ihris_id", "id", "person_id", "practitioner_id", "ihris"},
		colName:       {"name", "full_name", "fullname"},
		colFirstName:  {"firstname", "first_name", "given_name"},
		colMiddleName: {"othername", "middle_name", "other_name"},
		colSurname:    {"surname", "last_name", "family_name", "lastname"},
		colPhone:      {"phone", "mobile", "msisdn", "telephone", "phone_number", "mobile_phone", "tel"},
		colPhone2:     {"phone2", "alt_phone", "alt_msisdn", "mobile2", "phone_2", "other_phone", "secondary_phone"},
		colCadre:      {"cadre", "cadre_code", "job", "job_code"},
		colFacility:   {"facility_code", "facility", "facility_id"},
		colSkills:     {"skills", "skill", "specialties", "specialty"},
		colLanguage:   {"language", "lang", "preferred_language"},
		colActive:     {"active", "is_active"},
		colOptedOut:   {"opted_out", "optout", "opt_out"},
	}),
}

func aliases(m map[string][]string) map[string]string {
	out := map[string]string{}
	for canon, names := range m {
		for _, n := range names {
			out[n] = canon
		}
	}
	return out
}

// csvHeader is a file's header mapped to canonical columns.
type csvHeader struct {
	kind   ImportFormat
	n      int               // fields per record
	idx    map[string]int    // canonical column -> field index
	label  map[string]string // canonical column -> the name the file uses
	fields fieldNames
}

func (h *csvHeader) has(col string) bool { _, ok := h.idx[col]; return ok }

// get returns a trimmed cell, "" when the column is absent.
func (h *csvHeader) get(rec []string, col string) string {
	if i, ok := h.idx[col]; ok && i < len(rec) {
		return strings.TrimSpace(rec[i])
	}
	return ""
}

// name is the file's own name for a canonical column, for error reports.
func (h *csvHeader) name(col string) string {
	if l, ok := h.label[col]; ok {
		return l
	}
	return col
}

func normaliseHeader(s string) string {
	s = strings.TrimPrefix(strings.TrimSpace(s), "\uFEFF")
	s = strings.ToLower(strings.Trim(s, `"' `))
	return strings.NewReplacer(" ", "_", "-", "_", ".", "_").Replace(s)
}

// newCSVHeader maps a header record for one kind; missing lists absent required columns.
func newCSVHeader(rec []string, kind ImportFormat) (h *csvHeader, missing []string) {
	h = &csvHeader{kind: kind, n: len(rec), idx: map[string]int{}, label: map[string]string{}}
	for i, raw := range rec {
		if canon, ok := csvAliases[kind][normaliseHeader(raw)]; ok {
			if _, dup := h.idx[canon]; !dup {
				h.idx[canon], h.label[canon] = i, strings.TrimSpace(raw)
			}
		}
	}
	switch kind {
	case FormatCSVLocations:
		missing = h.require(colCode, colName)
	case FormatCSVFacilities:
		missing = h.require(colCode, colName, colLocation)
	case FormatCSVWorkers:
		missing = h.require(colPhone)
		if !h.has(colName) && !h.has(colFirstName) && !h.has(colSurname) {
			missing = append(missing, colName)
		}
	}
	h.fields = fieldNames{code: h.name(colCode), name: h.name(colName), parent: h.name(colParent), location: h.name(colLocation),
		facility: h.name(colFacility), phone: h.name(colPhone), ihrisID: h.name(colIHRISID)}
	return h, missing
}

func (h *csvHeader) require(cols ...string) (missing []string) {
	for _, c := range cols {
		if !h.has(c) {
			missing = append(missing, c)
		}
	}
	return missing
}

// detectCSVKind picks the kind whose required columns the header has: workers (a phone
// column), then facilities (code and location), then locations (code and name).
func detectCSVKind(rec []string) (*csvHeader, error) {
	for _, kind := range []ImportFormat{FormatCSVWorkers, FormatCSVFacilities, FormatCSVLocations} {
		if h, missing := newCSVHeader(rec, kind); len(missing) == 0 {
			return h, nil
		}
	}
	return nil, &mhero.Error{Code: mhero.EINVALID, Message: "The CSV header is not one mhero knows: expected a workers file " +
		"(name, phone, ...), a facilities file (code, name, location_code) or a locations file (code, name, parent_code).",
		Details: []mhero.ErrorDetail{{Line: 1, Message: "header: " + truncate(strings.Join(rec, ","), 200)}}}
}

func truncate(s string, n int) string {
	if len(s) > n {
		return s[:n] + "…"
	}
	return s
}

// sniffDelimiter picks ',', ';' or tab: whichever occurs most, outside quotes, on the
// header line.
func sniffDelimiter(br *bufio.Reader) rune {
	head, _ := br.Peek(64 << 10)
	if i := bytes.IndexByte(head, '\n'); i >= 0 {
		head = head[:i]
	}
	counts := map[byte]int{}
	quoted := false
	for _, c := range head {
		switch {
		case c == '"':
			quoted = !quoted
		case !quoted && (c == ',' || c == ';' || c == '\t'):
			counts[c]++
		}
	}
	best := byte(',')
	for _, c := range []byte{';', '\t'} {
		if counts[c] > counts[best] {
			best = c
		}
	}
	return rune(best)
}

// newCSVReader sets up encoding/csv on the stream, past a BOM, with the sniffed delimiter.
func newCSVReader(br *bufio.Reader) *csv.Reader {
	if b, _ := br.Peek(3); bytes.Equal(b, utf8BOM) {
		_, _ = br.Discard(3)
	}
	cr := csv.NewReader(br)
	cr.Comma = sniffDelimiter(br)
	cr.FieldsPerRecord = -1 // a wrong field count is a row error, not a file error
	cr.ReuseRecord = true
	return cr
}

// importCSV reads the header, then hands the rows to the kind's pipeline.
func (s *Store) importCSV(ctx context.Context, tx pgx.Tx, br *bufio.Reader, opt ImportOptions, col *collector, res *ImportResult) error {
	cr := newCSVReader(br)
	rec, err := cr.Read()
	if err != nil {
		var pe *csv.ParseError
		if errors.Is(err, io.EOF) || errors.As(err, &pe) {
			return &mhero.Error{Code: mhero.EINVALID, Message: "The file is not a CSV file mhero can read.",
				Details: []mhero.ErrorDetail{{Line: 1, Message: "no readable header line"}}}
		}
		return fmt.Errorf("read import: %w", err)
	}
	var h *csvHeader
	if opt.Format == FormatDetect {
		if h, err = detectCSVKind(rec); err != nil {
			return err
		}
	} else {
		var missing []string
		if h, missing = newCSVHeader(rec, opt.Format); len(missing) > 0 {
			d := make([]mhero.ErrorDetail, len(missing))
			for i, m := range missing {
				d[i] = mhero.ErrorDetail{Line: 1, Field: m, Message: "required column is missing"}
			}
			return &mhero.Error{Code: mhero.EINVALID, Message: fmt.Sprintf("The CSV header lacks required %s columns: %s.",
				opt.Format, strings.Join(missing, ", ")), Details: d}
		}
	}
	res.Format = h.kind
	rows := func(fn func(rec []string, line int)) error { return readCSVRows(ctx, cr, h, col, res, fn) }
	switch h.kind {
	case FormatCSVLocations:
		var locs []locationRow
		if err := rows(func(rec []string, line int) {
			if r, d := h.parseLocation(rec, line); len(d) > 0 {
				col.row(line, d...)
			} else {
				locs = append(locs, r)
			}
		}); err != nil {
			return err
		}
		return importLocations(ctx, tx, locs, h.fields, opt, col, res)
	case FormatCSVFacilities:
		var facs []facilityRow
		if err := rows(func(rec []string, line int) {
			if r, d := h.parseFacility(rec, line); len(d) > 0 {
				col.row(line, d...)
			} else {
				facs = append(facs, r)
			}
		}); err != nil {
			return err
		}
		return importFacilities(ctx, tx, facs, h.fields, opt, col, res)
	}
	phones := newPhoneParser(s.Country)
	return importWorkers(ctx, tx, func(ctx context.Context, emit func(workerRow) error) error {
		var emitErr error
		err := readCSVRows(ctx, cr, h, col, res, func(rec []string, line int) {
			if emitErr != nil {
				return
			}
			if r, d := h.parseWorker(rec, line, phones); len(d) > 0 {
				col.row(line, d...)
			} else {
				emitErr = emit(r)
			}
		})
		return errors.Join(err, emitErr)
	}, h.fields, opt, col, res)
}

// readCSVRows calls fn for every well-formed data record with its line number, counting
// rows; malformed records (bad quoting, wrong field count) are row errors.
func readCSVRows(ctx context.Context, cr *csv.Reader, h *csvHeader, col *collector, res *ImportResult, fn func(rec []string, line int)) error {
	for n := 0; ; n++ {
		if n%4096 == 0 && ctx.Err() != nil {
			return ctx.Err()
		}
		rec, err := cr.Read()
		if errors.Is(err, io.EOF) {
			return nil
		}
		var pe *csv.ParseError
		if errors.As(err, &pe) {
			res.RowsTotal++
			col.row(pe.StartLine, mhero.ErrorDetail{Message: "malformed CSV: " + pe.Err.Error()})
			continue
		} else if err != nil {
			return fmt.Errorf("read import: %w", err)
		}
		line, _ := cr.FieldPos(0)
		if len(rec) == 1 && strings.TrimSpace(rec[0]) == "" {
			continue // a blank line (whitespace only)
		}
		res.RowsTotal++
		if len(rec) != h.n {
			col.row(line, mhero.ErrorDetail{Message: fmt.Sprintf("has %d fields, the header has %d", len(rec), h.n)})
			continue
		}
		fn(rec, line)
	}
}

func required(d []mhero.ErrorDetail, field, v string) []mhero.ErrorDetail {
	if v == "" {
		d = append(d, mhero.ErrorDetail{Field: field, Message: field + " is required"})
	}
	return d
}

func (h *csvHeader) parseLocation(rec []string, line int) (locationRow, []mhero.ErrorDetail) {
	r := locationRow{line: line, code: h.get(rec, colCode), name: h.get(rec, colName), parent: h.get(rec, colParent)}
	d := required(nil, h.name(colCode), r.code)
	d = required(d, h.name(colName), r.name)
	if r.parent == r.code && r.code != "" {
		d = append(d, mhero.ErrorDetail{Field: h.name(colParent), Message: "a location cannot be its own parent"})
	}
	return r, d
}

func (h *csvHeader) parseFacility(rec []string, line int) (facilityRow, []mhero.ErrorDetail) {
	r := facilityRow{line: line, code: h.get(rec, colCode), name: h.get(rec, colName), location: h.get(rec, colLocation),
		dhis2UID: h.get(rec, colDHIS2UID), dhis2Code: h.get(rec, colDHIS2Code), hasUID: h.has(colDHIS2UID), hasCode: h.has(colDHIS2Code)}
	d := required(nil, h.name(colCode), r.code)
	d = required(d, h.name(colName), r.name)
	d = required(d, h.name(colLocation), r.location)
	return r, d
}

// parseWorker validates one worker record: the per-row parser (fuzzed by FuzzCSVRow).
func (h *csvHeader) parseWorker(rec []string, line int, phones *phoneParser) (workerRow, []mhero.ErrorDetail) {
	r := workerRow{line: line, ihrisID: h.get(rec, colIHRISID), name: h.get(rec, colName),
		cadre: h.get(rec, colCadre), facility: h.get(rec, colFacility),
		hasAlt: h.has(colPhone2), hasCadre: h.has(colCadre), hasFacility: h.has(colFacility), hasSkills: h.has(colSkills)}
	var d []mhero.ErrorDetail
	nameField := h.name(colName)
	if r.name == "" && !h.has(colName) {
		r.name = strings.Join(strings.Fields(h.get(rec, colFirstName)+" "+h.get(rec, colMiddleName)+" "+h.get(rec, colSurname)), " ")
		nameField = h.name(colFirstName)
	}
	d = required(d, nameField, r.name)
	if len(r.name) > 200 {
		d = append(d, mhero.ErrorDetail{Field: nameField, Message: "name is longer than 200 characters"})
	}
	if len(r.ihrisID) > 200 {
		d = append(d, mhero.ErrorDetail{Field: h.name(colIHRISID), Message: "iHRIS id is longer than 200 characters"})
	}
	if raw := h.get(rec, colPhone); raw == "" {
		d = append(d, mhero.ErrorDetail{Field: h.name(colPhone), Message: "phone number is required"})
	} else if m, err := phones.parse(raw); err != nil {
		d = append(d, mhero.ErrorDetail{Field: h.name(colPhone), Message: mhero.ErrorMessage(err)})
	} else {
		r.msisdn = string(m)
	}
	if raw := h.get(rec, colPhone2); raw != "" {
		if m, err := phones.parse(raw); err != nil {
			d = append(d, mhero.ErrorDetail{Field: h.name(colPhone2), Message: mhero.ErrorMessage(err)})
		} else if string(m) == r.msisdn {
			d = append(d, mhero.ErrorDetail{Field: h.name(colPhone2), Message: "second phone repeats the first"})
		} else {
			r.alt = string(m)
		}
	}
	r.skills = splitCodes(h.get(rec, colSkills))
	var msg string
	if r.language, msg = parseLanguage(h.get(rec, colLanguage)); msg != "" {
		d = append(d, mhero.ErrorDetail{Field: h.name(colLanguage), Message: msg})
	}
	for _, b := range []struct {
		col string
		dst **bool
	}{{colActive, &r.active}, {colOptedOut, &r.optedOut}} {
		v, ok := parseBool(h.get(rec, b.col))
		if !ok {
			d = append(d, mhero.ErrorDetail{Field: h.name(b.col), Message: "must be true/false, yes/no or 1/0"})
		}
		*b.dst = v
	}
	return r, d
}

// splitCodes splits a list of codes on ';' or '|' (or ',' inside a quoted field), trimming
// and dropping empty and repeated ones.
func splitCodes(s string) []string {
	if s == "" {
		return nil
	}
	parts := strings.FieldsFunc(s, func(r rune) bool { return r == ';' || r == '|' || r == ',' })
	out := parts[:0]
	for _, p := range parts {
		if p = strings.TrimSpace(p); p != "" && !contains(out, p) {
			out = append(out, p)
		}
	}
	return out
}

func contains(list []string, s string) bool {
	for _, v := range list {
		if v == s {
			return true
		}
	}
	return false
}

// parseLanguage reads "en", "EN", "en-LR", "fr_FR" as an ISO 639-1 code; "" keeps.
func parseLanguage(s string) (string, string) {
	if s == "" {
		return "", ""
	}
	s = strings.ToLower(s)
	if len(s) > 2 && (s[2] == '-' || s[2] == '_') {
		s = s[:2]
	}
	if len(s) != 2 || s[0] < 'a' || s[0] > 'z' || s[1] < 'a' || s[1] > 'z' {
		return "", "language must be a two-letter ISO 639-1 code"
	}
	return s, ""
}

// parseBool reads true/false, yes/no, y/n, t/f, 1/0; "" is nil (not given).
func parseBool(s string) (*bool, bool) {
	var v bool
	switch strings.ToLower(s) {
	case "":
		return nil, true
	case "true", "yes", "y", "t", "1":
		v = true
	case "false", "no", "n", "f", "0":
		v = false
	default:
		return nil, false
	}
	return &v, true
}
