package registry

// FHIR R4 mCSD bundle imports (what iHRIS 5 publishes).
//
// The bundle is read as a stream: the decoder walks tokens to Bundle.entry and decodes one
// entry at a time into a small struct; no entry may exceed maxFHIREntry bytes. Only small
// per-worker structs are held (practitioners and roles are joined by id at the end), never
// the raw JSON. "line" in the reported problems is the 1-based position of the entry in
// Bundle.entry.
//
//	| FHIR resource    | becomes     | mapping |
//	|------------------|-------------|---------|
//	| Location (jurisdiction) | location | code = resource id; name; parent = partOf reference. A Location is a jurisdiction unless it is marked a facility (below); mCSD type `jurisdiction`, iHRIS profile `ihris-jurisdiction` and physicalType `jdn` mark it explicitly. |
//	| Location (facility) | facility | marked by mCSD type code `facility` (system `https://profiles.ihe.net/ITI/mCSD/CodeSystem/IHE.mCSD.Organization.Location.Types`, or `urn:ihe:iti:mcsd:2019:facility`), or a meta.profile naming a facility (iHRIS `ihris-facility`, mCSD `FacilityLocation`). code = resource id; name; location = partOf (required); dhis2_uid / dhis2_code = identifier whose system mentions `dhis2` (a system mentioning `code` gives dhis2_code). |
//	| Organization     | (counted)   | read and counted; mhero has no organisations. |
//	| Practitioner     | worker      | ihris_id = resource id; name = the `official` (else first) HumanName: text, else given + family; phone / phone2 = the first two telecoms with system `phone` or `sms` (use `mobile` first, then rank); language = first communication coding (`en-LR` reads `en`); active. A practitioner without a phone is a row error. |
//	| PractitionerRole | worker's job | joined by practitioner reference; cadre = code[0].coding[0].code; facility = location[0] (resource id); skills = every specialty coding code; active (false makes the worker inactive). With several roles, the first active one wins. Roles of practitioners not in the bundle are skipped. |
//	| anything else    | (ignored)   | counted in `ignored`. |
//
// Locations are written first (parents before children, in any order in the bundle), then
// facilities, then workers, all in the one transaction. Unknown cadre and skill codes are
// created. A worker without a role keeps its stored cadre, facility and skills.

import (
	"bufio"
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"slices"
	"strings"

	"github.com/jackc/pgx/v5"
	"github.com/mhero-health/mhero"
)

// maxFHIREntry bounds the bytes read for one bundle entry (or any other single value), so
// memory stays bounded whatever the input.
const maxFHIREntry = 8 << 20

var fhirFields = fieldNames{code: "Location.id", name: "name", parent: "Location.partOf", location: "Location.partOf",
	facility: "PractitionerRole.location", phone: "Practitioner.telecom", ihrisID: "Practitioner.id"}

type fhirRef struct {
	Reference string `json:"reference"`
}

// id returns the logical id a reference points at: "Location/abc", a full URL or a
// versioned reference all give "abc".
func (r *fhirRef) id(typ string) string {
	if r == nil {
		return ""
	}
	s := r.Reference
	if i := strings.Index(s, "/_history/"); i >= 0 {
		s = s[:i]
	}
	if i := strings.LastIndex(s, typ+"/"); i >= 0 {
		s = s[i+len(typ)+1:]
	}
	return strings.TrimSpace(s)
}

type fhirCoding struct {
	System string `json:"system"`
	Code   string `json:"code"`
}

type fhirConcept struct {
	Coding []fhirCoding `json:"coding"`
	Text   string       `json:"text"`
}

// first returns the concept's first coding code.
func (c *fhirConcept) first() string {
	if c == nil {
		return ""
	}
	for _, cd := range c.Coding {
		if v := strings.TrimSpace(cd.Code); v != "" {
			return v
		}
	}
	return ""
}

type fhirIdentifier struct {
	System string `json:"system"`
	Value  string `json:"value"`
}

type fhirContact struct {
	System string `json:"system"`
	Value  string `json:"value"`
	Use    string `json:"use"`
	Rank   int    `json:"rank"`
}

type fhirHumanName struct {
	Use    string   `json:"use"`
	Text   string   `json:"text"`
	Family string   `json:"family"`
	Given  []string `json:"given"`
}

// fhirResource holds the elements mhero reads from the four resource types it maps.
type fhirResource struct {
	ResourceType string `json:"resourceType"`
	ID           string `json:"id"`
	Meta         struct {
		Profile []string `json:"profile"`
	} `json:"meta"`
	Name          json.RawMessage  `json:"name"` // a string for Location, HumanName[] for Practitioner
	Active        *bool            `json:"active"`
	PartOf        *fhirRef         `json:"partOf"`
	Type          []fhirConcept    `json:"type"`
	PhysicalType  *fhirConcept     `json:"physicalType"`
	Identifier    []fhirIdentifier `json:"identifier"`
	Telecom       []fhirContact    `json:"telecom"`
	Communication []fhirConcept    `json:"communication"`
	Practitioner  *fhirRef         `json:"practitioner"`
	Location      []fhirRef        `json:"location"`
	Code          []fhirConcept    `json:"code"`
	Specialty     []fhirConcept    `json:"specialty"`
}

// fhirWorker is what is kept per practitioner until the roles are joined.
type fhirWorker struct {
	line                  int
	id, name, msisdn, alt string
	language              string
	active                *bool
	role                  *fhirRole
}

type fhirRole struct {
	cadre, facility string
	skills          []string
	active          *bool
}

// fhirBundle is what the streaming reader collects.
type fhirBundle struct {
	locations  []locationRow
	facilities []facilityRow
	workers    []*fhirWorker
	byID       map[string]*fhirWorker
	roles      map[string]*fhirRole // by practitioner id, for practitioners seen later
}

func (s *Store) importFHIR(ctx context.Context, tx pgx.Tx, br *bufio.Reader, opt ImportOptions, col *collector, res *ImportResult) error {
	b := &fhirBundle{byID: map[string]*fhirWorker{}, roles: map[string]*fhirRole{}}
	phones := newPhoneParser(s.Country)
	err := readFHIRBundle(ctx, br, func(line int, r *fhirResource) {
		b.add(line, r, phones, col, res)
	})
	if err != nil {
		return err
	}
	if err := importLocations(ctx, tx, b.locations, fhirFields, opt, col, res); err != nil {
		return err
	}
	if err := importFacilities(ctx, tx, b.facilities, fhirFields, opt, col, res); err != nil {
		return err
	}
	return importWorkers(ctx, tx, func(ctx context.Context, emit func(workerRow) error) error {
		for _, w := range b.workers {
			if err := emit(w.row()); err != nil {
				return err
			}
		}
		return nil
	}, fhirFields, opt, col, res)
}

// readFHIRBundle walks a Bundle's tokens and calls fn for every entry's resource, one at
// a time. Problems with the JSON itself are EINVALID; an entry whose values have the wrong
// JSON types is skipped with fn not called (reported by the caller as nil resource).
func readFHIRBundle(ctx context.Context, r io.Reader, fn func(line int, r *fhirResource)) error {
	lim := &limitedReader{r: r, max: maxFHIREntry}
	dec := json.NewDecoder(lim)
	if err := expectDelim(dec, '{', 0); err != nil {
		return err
	}
	for dec.More() {
		tok, err := dec.Token()
		if err != nil {
			return jsonError(err, 0)
		}
		key, _ := tok.(string)
		switch key {
		case "resourceType":
			var rt string
			if err := dec.Decode(&rt); err != nil {
				return jsonError(err, 0)
			}
			if rt != "Bundle" {
				return mhero.Errorf(mhero.EINVALID, "The JSON is a FHIR %s, not a Bundle.", truncate(rt, 40))
			}
		case "entry":
			if err := readEntries(ctx, dec, lim, fn); err != nil {
				return err
			}
		default:
			lim.reset()
			if err := skipValue(dec); err != nil {
				return jsonError(err, 0)
			}
		}
	}
	if err := expectDelim(dec, '}', 0); err != nil {
		return err
	}
	if _, err := dec.Token(); !errors.Is(err, io.EOF) {
		return mhero.Errorf(mhero.EINVALID, "The bundle has data after its closing brace.")
	}
	return nil
}

func readEntries(ctx context.Context, dec *json.Decoder, lim *limitedReader, fn func(line int, r *fhirResource)) error {
	if err := expectDelim(dec, '[', 0); err != nil {
		return err
	}
	for line := 1; dec.More(); line++ {
		if line%1024 == 0 && ctx.Err() != nil {
			return ctx.Err()
		}
		lim.reset()
		var e struct {
			Resource json.RawMessage `json:"resource"`
		}
		if err := dec.Decode(&e); err != nil {
			return jsonError(err, line)
		}
		fn(line, decodeResource(e.Resource))
	}
	return expectDelim(dec, ']', 0)
}

// decodeResource decodes the elements mhero maps, only for the resource types it maps; an
// entry without a resource (a deleted one in a history bundle) is nil.
func decodeResource(raw json.RawMessage) *fhirResource {
	var head struct {
		ResourceType string `json:"resourceType"`
	}
	if len(raw) == 0 || string(raw) == "null" {
		return nil
	}
	if err := json.Unmarshal(raw, &head); err != nil {
		return &fhirResource{ResourceType: "!resourceType"}
	}
	switch head.ResourceType {
	case "Location", "Organization", "Practitioner", "PractitionerRole":
	default:
		return &fhirResource{ResourceType: head.ResourceType}
	}
	var r fhirResource
	if err := json.Unmarshal(raw, &r); err != nil {
		var te *json.UnmarshalTypeError
		field := "resource"
		if errors.As(err, &te) {
			field = head.ResourceType + "." + te.Field
		}
		return &fhirResource{ResourceType: "!" + field}
	}
	return &r
}

func expectDelim(dec *json.Decoder, want json.Delim, line int) error {
	tok, err := dec.Token()
	if err != nil {
		return jsonError(err, line)
	}
	if d, ok := tok.(json.Delim); !ok || d != want {
		return &mhero.Error{Code: mhero.EINVALID, Message: fmt.Sprintf("The file is not a FHIR Bundle: expected %q in the JSON.", string(want)),
			Details: lineDetail(line)}
	}
	return nil
}

// skipValue consumes one JSON value token by token.
func skipValue(dec *json.Decoder) error {
	depth := 0
	for {
		tok, err := dec.Token()
		if err != nil {
			return err
		}
		if d, ok := tok.(json.Delim); ok {
			if d == '{' || d == '[' {
				depth++
			} else {
				depth--
			}
		}
		if depth == 0 {
			return nil
		}
	}
}

func jsonError(err error, line int) error {
	if errors.Is(err, errEntryTooLarge) {
		return &mhero.Error{Code: mhero.EINVALID, Message: fmt.Sprintf("A bundle entry is larger than %d MiB.", maxFHIREntry>>20), Details: lineDetail(line)}
	}
	var se *json.SyntaxError
	if errors.As(err, &se) || errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, io.EOF) {
		return &mhero.Error{Code: mhero.EINVALID, Message: "The file is not valid JSON: " + err.Error(), Details: lineDetail(line)}
	}
	var te *json.UnmarshalTypeError
	if errors.As(err, &te) {
		return &mhero.Error{Code: mhero.EINVALID, Message: "The bundle has a value of the wrong type: " + te.Error(), Details: lineDetail(line)}
	}
	return fmt.Errorf("read import: %w", err)
}

func lineDetail(line int) []mhero.ErrorDetail {
	if line == 0 {
		return nil
	}
	return []mhero.ErrorDetail{{Line: line, Message: "in this bundle entry"}}
}

var errEntryTooLarge = errors.New("bundle entry too large")

// limitedReader fails once more than max bytes are read since the last reset (one entry).
type limitedReader struct {
	r   io.Reader
	n   int
	max int
}

func (l *limitedReader) reset() { l.n = 0 }

func (l *limitedReader) Read(p []byte) (int, error) {
	if l.n >= l.max {
		return 0, errEntryTooLarge
	}
	if len(p) > l.max-l.n {
		p = p[:l.max-l.n]
	}
	n, err := l.r.Read(p)
	l.n += n
	return n, err
}

// add maps one entry.
func (b *fhirBundle) add(line int, r *fhirResource, phones *phoneParser, col *collector, res *ImportResult) {
	if r == nil {
		res.Ignored++
		return
	}
	if strings.HasPrefix(r.ResourceType, "!") {
		res.RowsTotal++
		col.row(line, mhero.ErrorDetail{Field: strings.TrimPrefix(r.ResourceType, "!"), Message: "value has the wrong JSON type"})
		return
	}
	switch r.ResourceType {
	case "Location", "Organization", "Practitioner", "PractitionerRole":
		res.RowsTotal++
	default:
		res.Ignored++
		return
	}
	id := strings.TrimSpace(r.ID)
	if id == "" {
		col.row(line, mhero.ErrorDetail{Field: r.ResourceType + ".id", Message: r.ResourceType + " has no id"})
		return
	}
	switch r.ResourceType {
	case "Location":
		b.addLocation(line, id, r, col)
	case "Practitioner":
		b.addPractitioner(line, id, r, phones, col)
	case "PractitionerRole":
		b.addRole(r)
	}
}

func (b *fhirBundle) addLocation(line int, id string, r *fhirResource, col *collector) {
	var name string
	_ = json.Unmarshal(r.Name, &name)
	name = strings.TrimSpace(name)
	if name == "" {
		col.row(line, mhero.ErrorDetail{Field: "Location.name", Message: fmt.Sprintf("Location %s has no name", id)})
		return
	}
	parent := r.PartOf.id("Location")
	if !isFacility(r) {
		if parent == id {
			col.row(line, mhero.ErrorDetail{Field: "Location.partOf", Message: "a location cannot be part of itself"})
			return
		}
		b.locations = append(b.locations, locationRow{line: line, code: id, name: name, parent: parent})
		return
	}
	if parent == "" {
		col.row(line, mhero.ErrorDetail{Field: "Location.partOf", Message: fmt.Sprintf("facility %s has no partOf (the jurisdiction it belongs to)", id)})
		return
	}
	f := facilityRow{line: line, code: id, name: name, location: parent, hasUID: true, hasCode: true}
	for _, ident := range r.Identifier {
		sys := strings.ToLower(ident.System)
		switch {
		case !strings.Contains(sys, "dhis"):
		case strings.Contains(sys, "code") && f.dhis2Code == "":
			f.dhis2Code = strings.TrimSpace(ident.Value)
		case !strings.Contains(sys, "code") && f.dhis2UID == "":
			f.dhis2UID = strings.TrimSpace(ident.Value)
		}
	}
	b.facilities = append(b.facilities, f)
}

// isFacility decides whether a Location is a facility (see the table above).
func isFacility(r *fhirResource) bool {
	for _, p := range r.Meta.Profile {
		p = strings.ToLower(p)
		if strings.HasSuffix(p, "ihris-facility") || strings.Contains(p, "facilitylocation") || strings.HasSuffix(p, "mcsd.facility") {
			return true
		}
		if strings.HasSuffix(p, "ihris-jurisdiction") || strings.Contains(p, "jurisdiction") {
			return false
		}
	}
	for _, t := range r.Type {
		for _, c := range t.Coding {
			switch c.Code {
			case "facility", "urn:ihe:iti:mcsd:2019:facility":
				return true
			case "jurisdiction", "urn:ihe:iti:mcsd:2019:jurisdiction":
				return false
			}
		}
	}
	return false
}

func (b *fhirBundle) addPractitioner(line int, id string, r *fhirResource, phones *phoneParser, col *collector) {
	if first, dup := b.byID[id]; dup {
		col.row(line, mhero.ErrorDetail{Field: "Practitioner.id", Message: fmt.Sprintf("duplicate Practitioner %s: also entry %d", id, first.line)})
		return
	}
	w := &fhirWorker{line: line, id: id, name: practitionerName(r.Name), active: r.Active}
	var d []mhero.ErrorDetail
	if w.name == "" {
		d = append(d, mhero.ErrorDetail{Field: "Practitioner.name", Message: fmt.Sprintf("Practitioner %s has no name", id)})
	}
	if len(id) > 200 {
		d = append(d, mhero.ErrorDetail{Field: "Practitioner.id", Message: "id is longer than 200 characters"})
	}
	nums := practitionerPhones(r.Telecom)
	if len(nums) == 0 {
		d = append(d, mhero.ErrorDetail{Field: "Practitioner.telecom", Message: fmt.Sprintf("Practitioner %s has no phone number (telecom with system phone or sms)", id)})
	}
	for i, raw := range nums {
		m, err := phones.parse(raw)
		switch {
		case err != nil && i == 0:
			d = append(d, mhero.ErrorDetail{Field: "Practitioner.telecom", Message: mhero.ErrorMessage(err)})
		case err != nil, string(m) == w.msisdn:
			continue
		case w.msisdn == "":
			w.msisdn = string(m)
		case w.alt == "":
			w.alt = string(m)
		}
	}
	if len(r.Communication) > 0 {
		w.language, _ = parseLanguage(r.Communication[0].first())
	}
	b.byID[id] = w // even when bad, so its roles are not misattributed and duplicates are caught
	if len(d) > 0 {
		col.row(line, d...)
		return
	}
	if role := b.roles[id]; role != nil {
		w.role = role
		delete(b.roles, id)
	}
	b.workers = append(b.workers, w)
}

func practitionerName(raw json.RawMessage) string {
	var names []fhirHumanName
	if json.Unmarshal(raw, &names) != nil || len(names) == 0 {
		return ""
	}
	n := names[0]
	for _, c := range names {
		if c.Use == "official" {
			n = c
			break
		}
	}
	s := n.Text
	if strings.TrimSpace(s) == "" {
		s = strings.Join(n.Given, " ") + " " + n.Family
	}
	s = strings.Join(strings.Fields(s), " ")
	if len(s) > 200 {
		s = s[:200]
	}
	return s
}

// practitionerPhones orders the phone-like telecoms: mobile first, then by rank.
func practitionerPhones(ts []fhirContact) []string {
	var c []fhirContact
	for _, t := range ts {
		if (t.System == "phone" || t.System == "sms") && strings.TrimSpace(t.Value) != "" {
			c = append(c, t)
		}
	}
	slices.SortStableFunc(c, func(a, b fhirContact) int {
		am, bm := a.Use != "mobile", b.Use != "mobile"
		if am != bm {
			if !am {
				return -1
			}
			return 1
		}
		return cmp.Compare(rankOf(a.Rank), rankOf(b.Rank))
	})
	out := make([]string, 0, 2)
	for _, t := range c {
		if len(out) < 2 {
			out = append(out, t.Value)
		}
	}
	return out
}

func rankOf(r int) int {
	if r <= 0 {
		return 1 << 30
	}
	return r
}

func (b *fhirBundle) addRole(r *fhirResource) {
	pid := r.Practitioner.id("Practitioner")
	if pid == "" {
		return
	}
	role := &fhirRole{active: r.Active}
	if len(r.Code) > 0 {
		role.cadre = r.Code[0].first()
	}
	if len(r.Location) > 0 {
		role.facility = r.Location[0].id("Location")
	}
	for _, sp := range r.Specialty {
		for _, c := range sp.Coding {
			if v := strings.TrimSpace(c.Code); v != "" && !contains(role.skills, v) {
				role.skills = append(role.skills, v)
			}
		}
	}
	isActive := func(x *fhirRole) bool { return x.active == nil || *x.active }
	if w := b.byID[pid]; w != nil {
		if w.role == nil || (!isActive(w.role) && isActive(role)) {
			w.role = role
		}
		return
	}
	if cur := b.roles[pid]; cur == nil || (!isActive(cur) && isActive(role)) {
		b.roles[pid] = role
	}
}

// row turns a joined practitioner into a worker row.
func (w *fhirWorker) row() workerRow {
	r := workerRow{line: w.line, ihrisID: w.id, name: w.name, msisdn: w.msisdn, alt: w.alt, language: w.language, hasAlt: true}
	active := w.active
	if w.role != nil {
		r.cadre, r.facility, r.skills = w.role.cadre, w.role.facility, w.role.skills
		r.hasCadre, r.hasFacility, r.hasSkills = true, true, true
		if w.role.active != nil && !*w.role.active {
			f := false
			active = &f
		}
	}
	r.active = active
	return r
}
