package registry_test

import (
	"context"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/mhero-health/mhero"
	"github.com/mhero-health/mhero/registry"
	"github.com/mhero-health/mhero/registry/registrytest"
	"github.com/nyaruka/phonenumbers"
)

func importFile(t *testing.T, s *registry.Store, name string, opt registry.ImportOptions) (*registry.ImportResult, error) {
	t.Helper()
	f, err := os.Open(filepath.Join("testdata", "import", name))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if opt.Source == "" {
		opt.Source = name
	}
	return s.Import(context.Background(), f, opt)
}

func mustImportFile(t *testing.T, s *registry.Store, name string, opt registry.ImportOptions) *registry.ImportResult {
	t.Helper()
	res, err := importFile(t, s, name, opt)
	if err != nil {
		t.Fatalf("Import(%s) = %v; errors %v", name, err, mhero.ErrorDetails(err))
	}
	return res
}

func mustImportString(t *testing.T, s *registry.Store, csv string, opt registry.ImportOptions) *registry.ImportResult {
	t.Helper()
	res, err := s.Import(context.Background(), strings.NewReader(csv), opt)
	if err != nil {
		t.Fatalf("Import = %v; errors %v", err, mhero.ErrorDetails(err))
	}
	return res
}

// seedTree imports the Liberian test tree and its facilities.
func seedTree(t *testing.T, s *registry.Store) {
	t.Helper()
	mustImportFile(t, s, "locations.csv", registry.ImportOptions{})
	mustImportFile(t, s, "facilities.csv", registry.ImportOptions{})
}

func count(t *testing.T, s *registry.Store, sql string, args ...any) int {
	t.Helper()
	var n int
	if err := s.DB().QueryRow(context.Background(), sql, args...).Scan(&n); err != nil {
		t.Fatalf("%s: %v", sql, err)
	}
	return n
}

func checkCounts(t *testing.T, res *registry.ImportResult, status string, total, failed, created, updated int) {
	t.Helper()
	if res.Status != status || res.RowsTotal != total || res.RowsFailed != failed || res.RowsOK != total-failed ||
		res.Created != created || res.Updated != updated {
		t.Errorf("result = %s total %d ok %d failed %d created %d updated %d; want %s total %d failed %d created %d updated %d (errors %v)",
			res.Status, res.RowsTotal, res.RowsOK, res.RowsFailed, res.Created, res.Updated, status, total, failed, created, updated, res.Errors)
	}
}

func TestImportCSVHappyPaths(t *testing.T) {
	t.Parallel()
	s := registrytest.NewStore(t)
	ctx := context.Background()
	steps := []struct {
		file   string
		format registry.ImportFormat
		total  int
	}{
		{"locations.csv", registry.FormatCSVLocations, 8},
		{"facilities.csv", registry.FormatCSVFacilities, 4},
		{"workers.csv", registry.FormatCSVWorkers, 5},
	}
	for _, st := range steps {
		res := mustImportFile(t, s, st.file, registry.ImportOptions{})
		if res.Format != st.format || res.ID == 0 {
			t.Errorf("%s: format %q id %d, want %q and an id", st.file, res.Format, res.ID, st.format)
		}
		checkCounts(t, res, registry.ImportSucceeded, st.total, 0, st.total, 0)
	}
	lr, _ := s.FindLocation(ctx, "LR")
	mont, _ := s.FindLocation(ctx, "montserrado")
	gm, err := s.FindLocation(ctx, "greater-monrovia")
	if err != nil {
		t.Fatal(err)
	}
	if want := registryPath(lr.ID, mont.ID, gm.ID); gm.Path != want || gm.Level != 2 || gm.ParentID != mont.ID {
		t.Errorf("greater-monrovia = %+v, want path %s level 2", gm, want)
	}
	f, err := s.FindFacility(ctx, "redemption")
	if err != nil || f.LocationID != gm.ID || f.DHIS2UID != "fJ9oQ7LbQn2" || f.DHIS2Code != "OU_101" {
		t.Errorf("facility redemption = %+v, %v", f, err)
	}
	w, err := s.FindWorker(ctx, "P-1001")
	if err != nil {
		t.Fatal(err)
	}
	if w.MSISDN != "231886123456" || w.Cadre != "nurse" || !slices.Equal(w.Skills, []string{"ebola-ipc", "imci"}) ||
		w.FacilityID != f.ID || !w.Active || w.OptedOut || w.Language != "en" {
		t.Errorf("worker P-1001 = %+v", w)
	}
	if n := count(t, s, `SELECT count(*) FROM workers WHERE ihris_id = 'P-1001' AND location_path = $1`, []int64{int64(lr.ID), int64(mont.ID), int64(gm.ID)}); n != 1 {
		t.Errorf("P-1001 location_path is not its facility's location path")
	}
	tests := []struct {
		ref, msisdn, alt, name, lang string
		active                       bool
	}{
		{"P-1002", "231770123456", "231880001111", "Joseph Flomo", "en", true},
		{"P-1003", "231770223344", "", "Comfort Dolo", "fr", true},
		{"P-1004", "231888765432", "", "Sumo, Emmanuel", "en", true},
	}
	for _, tt := range tests {
		w, err := s.FindWorker(ctx, tt.ref)
		if err != nil || string(w.MSISDN) != tt.msisdn || string(w.AltMSISDN) != tt.alt || w.Name != tt.name || w.Language != tt.lang || w.Active != tt.active {
			t.Errorf("FindWorker(%s) = %+v, %v; want msisdn %s alt %s name %q lang %s", tt.ref, w, err, tt.msisdn, tt.alt, tt.name, tt.lang)
		}
	}
	if w, err := s.FindWorkerByMSISDN(ctx, "231776555000"); err != nil || w.IHRISID != "" || w.Name != "Grace Tokpa" {
		t.Errorf("worker without iHRIS id = %+v, %v", w, err)
	}
	if n := count(t, s, `SELECT count(*) FROM audit_log WHERE action = 'import' AND entity = 'import'`); n != 3 {
		t.Errorf("audit rows = %d, want 3 (one per import)", n)
	}
	got, err := s.FindImport(ctx, 3)
	if err != nil || got.Status != registry.ImportSucceeded || got.Created != 5 || got.RowsTotal != 5 || got.Format != registry.FormatCSVWorkers {
		t.Errorf("FindImport(3) = %+v, %v", got, err)
	}
	if _, err := s.FindImport(ctx, 999); mhero.ErrorCode(err) != mhero.ENOTFOUND {
		t.Errorf("FindImport(999) err = %v, want not found", err)
	}
}

func TestImportIdempotent(t *testing.T) {
	t.Parallel()
	s := registrytest.NewStore(t)
	for run := 1; run <= 2; run++ {
		for _, f := range []struct {
			name  string
			total int
		}{{"locations.csv", 8}, {"facilities.csv", 4}, {"workers.csv", 5}} {
			res := mustImportFile(t, s, f.name, registry.ImportOptions{})
			created, updated := f.total, 0
			if run == 2 {
				created, updated = 0, f.total
			}
			checkCounts(t, res, registry.ImportSucceeded, f.total, 0, created, updated)
		}
	}
	if n := count(t, s, `SELECT count(*) FROM workers`); n != 5 {
		t.Errorf("workers after two imports = %d, want 5", n)
	}
	if n := count(t, s, `SELECT count(*) FROM locations`); n != 8 {
		t.Errorf("locations after two imports = %d, want 8", n)
	}
	if n := count(t, s, `SELECT count(*) FROM cadres`); n != 3 {
		t.Errorf("cadres = %d, want 3 (nurse, chw, midwife)", n)
	}
	// Codes that exist take no new id, so the next new one follows: skill ids past 63 have
	// no bit in the skill mask.
	mustImportString(t, s, "name,phone,cadre,skills\nNew Codes,0886999111,new-cadre,new-skill\n", registry.ImportOptions{})
	if n := count(t, s, `SELECT max(id) - count(*) FROM skills`) + count(t, s, `SELECT max(id) - count(*) FROM cadres`); n != 0 {
		t.Errorf("re-importing used up %d cadre and skill ids", n)
	}
}

func TestImportUpsertIdentity(t *testing.T) {
	t.Parallel()
	s := registrytest.NewStore(t)
	ctx := context.Background()
	seedTree(t, s)
	const hdr = "ihris_id,name,phone,facility_code\n"
	mustImportString(t, s, hdr+"X1,Ann Kpan,0886000001,jfk\n", registry.ImportOptions{})
	// By iHRIS id: a new phone number and facility.
	res := mustImportString(t, s, hdr+"X1,Ann Kpan,0886000002,phebe\n", registry.ImportOptions{})
	checkCounts(t, res, registry.ImportSucceeded, 1, 0, 0, 1)
	w, err := s.FindWorker(ctx, "X1")
	if err != nil || w.MSISDN != "231886000002" {
		t.Fatalf("after upsert by iHRIS id: %+v, %v", w, err)
	}
	phebe, _ := s.FindFacility(ctx, "phebe")
	if w.FacilityID != phebe.ID {
		t.Errorf("facility = %d, want phebe %d", w.FacilityID, phebe.ID)
	}
	// By phone, without an iHRIS id: the same worker, renamed; its iHRIS id stays.
	res = mustImportString(t, s, "name,phone\nAnn Kpan-Sirleaf,0886000002\n", registry.ImportOptions{})
	checkCounts(t, res, registry.ImportSucceeded, 1, 0, 0, 1)
	if w, _ := s.FindWorker(ctx, "X1"); w.Name != "Ann Kpan-Sirleaf" || w.FacilityID != phebe.ID {
		t.Errorf("after upsert by phone: %+v (facility must be kept: no facility column)", w)
	}
	// A worker registered through the API (no iHRIS id) is adopted by its phone.
	if _, err := s.CreateWorker(ctx, registry.WorkerInput{Name: "Ben Toe", MSISDN: "0776000003"}); err != nil {
		t.Fatal(err)
	}
	res = mustImportString(t, s, hdr+"X3,Ben Toe,0776000003,jfk\n", registry.ImportOptions{})
	checkCounts(t, res, registry.ImportSucceeded, 1, 0, 0, 1)
	if w, err := s.FindWorker(ctx, "X3"); err != nil || w.MSISDN != "231776000003" {
		t.Errorf("adopted worker = %+v, %v", w, err)
	}
	// A worker's STOP is theirs: a file saying opted_out=false does not undo it, while
	// one saying true opts a worker out.
	if err := s.SetOptOut(ctx, "231886000002", true); err != nil {
		t.Fatal(err)
	}
	mustImportString(t, s, "ihris_id,name,phone,opted_out\nX1,Ann Kpan-Sirleaf,0886000002,false\nX3,Ben Toe,0776000003,true\n", registry.ImportOptions{})
	for id, want := range map[string]bool{"X1": true, "X3": true} {
		if w, err := s.FindWorker(ctx, id); err != nil || w.OptedOut != want {
			t.Errorf("%s after import: %+v, %v; want opted out %v", id, w, err, want)
		}
	}
	// Another iHRIS id on a phone that belongs to X1 is refused.
	_, err = s.Import(ctx, strings.NewReader(hdr+"X9,Cee Doe,0886000002,jfk\n"), registry.ImportOptions{})
	if d := mhero.ErrorDetails(err); mhero.ErrorCode(err) != mhero.EVALIDATION || len(d) != 1 || d[0].Field != "phone" ||
		!strings.Contains(d[0].Message, "another worker") {
		t.Errorf("phone of another worker: err %v details %v", err, d)
	}
	if n := count(t, s, `SELECT count(*) FROM workers`); n != 2 {
		t.Errorf("workers = %d, want 2", n)
	}
}

func TestImportAllOrNothing(t *testing.T) {
	t.Parallel()
	s := registrytest.NewStore(t)
	ctx := context.Background()
	seedTree(t, s)
	mustImportString(t, s, "ihris_id,name,phone\nOLD,Old Timer,0886999999\n", registry.ImportOptions{})
	file := "ihris_id,name,phone,facility_code,active\n" + // line 1
		"A1,Good One,0886100001,jfk,true\n" + // 2 good
		"A2,,0886100002,jfk,true\n" + // 3 missing name
		"A3,Bad Phone,12345,jfk,true\n" + // 4 invalid phone
		"A4,Dup Phone,0886100001,jfk,true\n" + // 5 phone of line 2
		"A1,Dup Id,0886100005,jfk,true\n" + // 6 iHRIS id of line 2
		"A6,Nowhere,0886100006,atlantis,true\n" + // 7 unknown facility
		"A7,Short Row,0886100007\n" + // 8 wrong field count
		"A8,Taken,0886999999,jfk,true\n" + // 9 phone of worker OLD
		"A9,Maybe,0886100009,jfk,perhaps\n" + // 10 bad boolean
		"A10,Good Two,0776100010,,\n" // 11 good
	want := []mhero.ErrorDetail{
		{Line: 3, Field: "name"}, {Line: 4, Field: "phone"}, {Line: 5, Field: "phone"}, {Line: 6, Field: "ihris_id"},
		{Line: 7, Field: "facility_code"}, {Line: 8}, {Line: 9, Field: "phone"}, {Line: 10, Field: "active"},
	}
	check := func(t *testing.T, res *registry.ImportResult) {
		t.Helper()
		if len(res.Errors) != len(want) {
			t.Fatalf("errors = %v, want %d", res.Errors, len(want))
		}
		for i, w := range want {
			if g := res.Errors[i]; g.Line != w.Line || g.Field != w.Field || g.Message == "" {
				t.Errorf("error %d = %+v, want line %d field %q", i, g, w.Line, w.Field)
			}
		}
	}
	t.Run("strict", func(t *testing.T) {
		res, err := s.Import(ctx, strings.NewReader(file), registry.ImportOptions{Source: "bad.csv"})
		if mhero.ErrorCode(err) != mhero.EVALIDATION || res == nil || len(mhero.ErrorDetails(err)) != len(want) {
			t.Fatalf("Import = %v, %v; want validation error with the result", res, err)
		}
		checkCounts(t, res, registry.ImportFailed, 10, 8, 0, 0)
		check(t, res)
		if n := count(t, s, `SELECT count(*) FROM workers`); n != 1 {
			t.Errorf("workers = %d after a failed import, want 1 (nothing written)", n)
		}
		got, err := s.FindImport(ctx, res.ID)
		if err != nil || got.Status != registry.ImportFailed || got.RowsFailed != 8 {
			t.Fatalf("FindImport = %+v, %v", got, err)
		}
		check(t, got)
		if n := count(t, s, `SELECT count(*) FROM audit_log WHERE entity = 'import' AND entity_id = $1`, strconv.FormatInt(res.ID, 10)); n != 1 {
			t.Errorf("audit rows for the failed import = %d, want 1", n)
		}
		for _, e := range res.Errors {
			if strings.Contains(e.Message, "12345") {
				t.Errorf("error message shows the phone number unmasked: %q", e.Message)
			}
		}
	})
	t.Run("partial", func(t *testing.T) {
		res, err := s.Import(ctx, strings.NewReader(file), registry.ImportOptions{Partial: true})
		if err != nil {
			t.Fatalf("partial Import: %v", err)
		}
		checkCounts(t, res, registry.ImportPartial, 10, 8, 2, 0)
		check(t, res)
		if n := count(t, s, `SELECT count(*) FROM workers WHERE ihris_id IN ('A1', 'A10')`); n != 2 {
			t.Errorf("good rows written = %d, want 2", n)
		}
	})
	t.Run("dry run", func(t *testing.T) {
		res, err := s.Import(ctx, strings.NewReader("name,phone\nNew Person,0776100099\n"), registry.ImportOptions{DryRun: true})
		if err != nil || res.ID != 0 || res.Created != 1 || res.Status != registry.ImportSucceeded {
			t.Fatalf("dry run = %+v, %v", res, err)
		}
		if n := count(t, s, `SELECT count(*) FROM workers WHERE msisdn = '231776100099'`); n != 0 {
			t.Errorf("dry run wrote a worker")
		}
	})
}

func TestImportAliasesBOMSemicolonCRLF(t *testing.T) {
	t.Parallel()
	s := registrytest.NewStore(t)
	ctx := context.Background()
	seedTree(t, s)
	res := mustImportFile(t, s, "workers-ihris-alias.csv", registry.ImportOptions{})
	checkCounts(t, res, registry.ImportSucceeded, 2, 0, 2, 0)
	tests := []struct {
		ref, name, msisdn, cadre string
		skills                   []string
		active                   bool
	}{
		{"P-2001", "Musu Kamara", "231886200001", "nurse", []string{"hiv", "imci"}, true},
		{"P-2002", "Amos Gbor; Jr.", "231776200002", "CHW", []string{}, false},
	}
	for _, tt := range tests {
		w, err := s.FindWorker(ctx, tt.ref)
		if err != nil || w.Name != tt.name || string(w.MSISDN) != tt.msisdn || w.Cadre != tt.cadre || !slices.Equal(w.Skills, tt.skills) || w.Active != tt.active {
			t.Errorf("FindWorker(%s) = %+v, %v; want %+v", tt.ref, w, err, tt)
		}
	}
}

func TestImportStructuralErrors(t *testing.T) {
	t.Parallel()
	s := registrytest.NewStore(t)
	ctx := context.Background()
	tests := []struct {
		name string
		in   string
		opt  registry.ImportOptions
	}{
		{"empty", "", registry.ImportOptions{}},
		{"not csv", "\x00\x01\x02PK\x03\x04 binary", registry.ImportOptions{}},
		{"unknown header", "foo,bar\n1,2\n", registry.ImportOptions{}},
		{"missing columns", "name,phone\nA,0886000001\n", registry.ImportOptions{Format: registry.FormatCSVFacilities}},
		{"unknown format", "name,phone\n", registry.ImportOptions{Format: "xlsx"}},
		{"invalid json", `{"resourceType": "Bundle", "entry": [ {"resource": `, registry.ImportOptions{}},
		{"not a bundle", `{"resourceType": "Patient", "id": "x"}`, registry.ImportOptions{}},
		{"entry not an array", `{"resourceType": "Bundle", "entry": {}}`, registry.ImportOptions{}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			res, err := s.Import(ctx, strings.NewReader(tt.in), tt.opt)
			if mhero.ErrorCode(err) != mhero.EINVALID {
				t.Fatalf("Import(%q) err = %v, want invalid", tt.in, err)
			}
			if res == nil || res.Status != registry.ImportFailed || len(res.Errors) == 0 {
				t.Fatalf("result = %+v, want failed with the reason", res)
			}
			if got, err := s.FindImport(ctx, res.ID); err != nil || got.Status != registry.ImportFailed {
				t.Errorf("recorded import = %+v, %v", got, err)
			}
		})
	}
}

func TestImportLocationProblems(t *testing.T) {
	t.Parallel()
	s := registrytest.NewStore(t)
	ctx := context.Background()
	mustImportString(t, s, "code,name,parent_code\nLR,Liberia,\nbong,Bong,LR\n", registry.ImportOptions{})
	file := "code,name,parent_code\n" +
		"a,A,b\n" + // 2 cycle a -> b -> a
		"b,B,a\n" + // 3
		"c,C,a\n" + // 4 under the cycle
		"d,D,nowhere\n" + // 5 unknown parent
		"LR,Liberia,bong\n" + // 6 cycle through the database: bong is under LR
		"e,E,bong\n" + // 7 fine, but LR is bad: bong's ancestor... bong itself is stored and unchanged
		"e,E again,LR\n" // 8 duplicate code
	res, err := s.Import(ctx, strings.NewReader(file), registry.ImportOptions{})
	if mhero.ErrorCode(err) != mhero.EVALIDATION {
		t.Fatalf("err = %v, want validation", err)
	}
	lines := map[int]string{}
	for _, e := range res.Errors {
		lines[e.Line] = e.Message
	}
	for line, want := range map[int]string{2: "cycle", 3: "cycle", 4: "has errors", 5: "unknown parent", 6: "cycle", 8: "duplicate"} {
		if !strings.Contains(lines[line], want) {
			t.Errorf("line %d: %q, want it to mention %q (all: %v)", line, lines[line], want, res.Errors)
		}
	}
	if n := count(t, s, `SELECT count(*) FROM locations`); n != 2 {
		t.Errorf("locations = %d, want 2 (nothing written)", n)
	}
	// Moving a district moves its facilities' workers' paths.
	mustImportString(t, s, "code,name,parent_code\nnimba,Nimba,LR\nd1,District 1,bong\n", registry.ImportOptions{})
	mustImportString(t, s, "code,name,location_code\nf1,Facility 1,d1\n", registry.ImportOptions{})
	mustImportString(t, s, "name,phone,facility\nWalker,0886300001,f1\n", registry.ImportOptions{})
	res = mustImportString(t, s, "code,name,parent_code\nd1,District 1,nimba\n", registry.ImportOptions{})
	checkCounts(t, res, registry.ImportSucceeded, 1, 0, 0, 1)
	nimba, _ := s.FindLocation(ctx, "nimba")
	if n := count(t, s, `SELECT count(*) FROM workers WHERE location_path @> ARRAY[$1]::bigint[]`, int64(nimba.ID)); n != 1 {
		t.Errorf("worker did not follow its district to nimba")
	}
}

func TestImportFHIRBundle(t *testing.T) {
	t.Parallel()
	s := registrytest.NewStore(t)
	ctx := context.Background()
	res, err := importFile(t, s, "ihris-bundle.json", registry.ImportOptions{})
	if mhero.ErrorCode(err) != mhero.EVALIDATION || res.Format != registry.FormatFHIRBundle {
		t.Fatalf("strict import of a bundle with a phoneless practitioner: %+v, %v", res, err)
	}
	if len(res.Errors) != 1 || res.Errors[0].Line != 11 || res.Errors[0].Field != "Practitioner.telecom" || !strings.Contains(res.Errors[0].Message, "prac-3") {
		t.Errorf("errors = %v, want entry 11 Practitioner prac-3 without a phone", res.Errors)
	}
	if n := count(t, s, `SELECT count(*) FROM locations`); n != 0 {
		t.Errorf("strict failure wrote %d locations", n)
	}
	res = mustImportFile(t, s, "ihris-bundle.json", registry.ImportOptions{Partial: true})
	// 3 jurisdictions + 2 facilities + 2 workers created; 11 mapped entries, 1 Basic ignored.
	checkCounts(t, res, registry.ImportPartial, 11, 1, 7, 0)
	if res.Ignored != 1 {
		t.Errorf("ignored = %d, want 1", res.Ignored)
	}
	gm, err := s.FindLocation(ctx, "greater-monrovia")
	if err != nil || gm.Level != 2 {
		t.Errorf("greater-monrovia = %+v, %v", gm, err)
	}
	f, err := s.FindFacility(ctx, "fac-redemption")
	if err != nil || f.LocationID != gm.ID || f.DHIS2UID != "fJ9oQ7LbQn2" || f.DHIS2Code != "OU_101" {
		t.Errorf("facility = %+v, %v", f, err)
	}
	w, err := s.FindWorker(ctx, "prac-1")
	if err != nil || w.Name != "Mary T. Kollie" || w.MSISDN != "231886123456" || w.AltMSISDN != "231770129999" ||
		w.Cadre != "nurse" || w.FacilityID != f.ID || !slices.Equal(w.Skills, []string{"ebola-ipc", "imci"}) || w.Language != "en" {
		t.Errorf("prac-1 = %+v, %v", w, err)
	}
	jfk, _ := s.FindFacility(ctx, "fac-jfk")
	if w, err := s.FindWorker(ctx, "prac-2"); err != nil || w.Cadre != "chw" || w.FacilityID != jfk.ID || w.MSISDN != "231770223344" {
		t.Errorf("prac-2 = %+v, %v", w, err)
	}
	// Re-import: everything matched, nothing new.
	res = mustImportFile(t, s, "ihris-bundle.json", registry.ImportOptions{Partial: true})
	checkCounts(t, res, registry.ImportPartial, 11, 1, 0, 7)
}

// repeatReader yields the same byte forever.
type repeatReader byte

func (r repeatReader) Read(p []byte) (int, error) {
	for i := range p {
		p[i] = byte(r)
	}
	return len(p), nil
}

func TestImportFHIRHugeEntryRefused(t *testing.T) {
	t.Parallel()
	s := registrytest.NewStore(t)
	// A 64 MiB name inside one entry: refused once the entry passes the per-entry limit.
	in := io.MultiReader(strings.NewReader(`{"resourceType":"Bundle","entry":[{"resource":{"resourceType":"Practitioner","id":"x","name":[{"text":"`),
		io.LimitReader(repeatReader('a'), 64<<20), strings.NewReader(`"}]}}]}`))
	res, err := s.Import(context.Background(), in, registry.ImportOptions{})
	if mhero.ErrorCode(err) != mhero.EINVALID || res == nil || !strings.Contains(res.Errors[0].Message, "larger than") {
		t.Fatalf("Import of a huge entry = %+v, %v; want invalid (entry too large)", res, err)
	}
}

// TestImportDuplicatesWithinFile covers rows that only clash with other rows of the same
// file (no existing worker is involved in the clash): the import must report each of them,
// whichever way it checks them.
func TestImportDuplicatesWithinFile(t *testing.T) {
	t.Parallel()
	s := registrytest.NewStore(t)
	ctx := context.Background()
	seedTree(t, s)
	mustImportString(t, s, "ihris_id,name,phone\nE1,Existing,0886200001\n", registry.ImportOptions{})
	file := "ihris_id,name,phone,facility_code,cadre,skills\n" + // line 1
		"N1,New One,0886200010,jfk,nurse,imci\n" + // 2 good
		"N2,New Two,0886200010,jfk,nurse,imci\n" + // 3 phone of line 2
		"N3,New Three,0886200011,jfk,chw,\n" + // 4 good
		"N3,New Three Again,0886200012,jfk,chw,\n" + // 5 iHRIS id of line 4
		"E1,Existing Moved,0886200020,jfk,,\n" + // 6 good: E1 takes a new phone
		"N7,New Seven,0886200020,jfk,,\n" + // 7 the phone line 6 gives E1
		"N8,New Eight,0886200030,phebe,dup-cadre,dup-skill;imci\n" + // 8 good, new cadre and skill
		"N9,New Nine,0886200030,phebe,bad-cadre,bad-skill\n" // 9 phone of line 8: its codes are not created
	want := []mhero.ErrorDetail{
		{Line: 3, Field: "phone", Message: "duplicate phone number: also on line 2"},
		{Line: 5, Field: "ihris_id", Message: "duplicate iHRIS id: also on line 4"},
		{Line: 7, Field: "phone", Message: "duplicate phone number: also on line 6"},
		{Line: 9, Field: "phone", Message: "duplicate phone number: also on line 8"},
	}
	check := func(t *testing.T, got []mhero.ErrorDetail) {
		t.Helper()
		if !slices.Equal(got, want) {
			t.Errorf("errors = %v, want %v", got, want)
		}
	}
	t.Run("strict", func(t *testing.T) {
		res, err := s.Import(ctx, strings.NewReader(file), registry.ImportOptions{})
		if mhero.ErrorCode(err) != mhero.EVALIDATION {
			t.Fatalf("Import = %+v, %v; want validation error", res, err)
		}
		checkCounts(t, res, registry.ImportFailed, 8, 4, 0, 0)
		check(t, res.Errors)
		if n := count(t, s, `SELECT count(*) FROM workers`); n != 1 {
			t.Errorf("workers = %d after a failed import, want 1", n)
		}
		if w, err := s.FindWorker(ctx, "E1"); err != nil || w.MSISDN != "231886200001" {
			t.Errorf("E1 = %+v, %v; want it unchanged", w, err)
		}
	})
	t.Run("dry run", func(t *testing.T) {
		res, err := s.Import(ctx, strings.NewReader(file), registry.ImportOptions{DryRun: true, Partial: true})
		if err != nil {
			t.Fatalf("dry run: %v", err)
		}
		checkCounts(t, res, registry.ImportPartial, 8, 4, 3, 1)
		check(t, res.Errors)
		if n := count(t, s, `SELECT count(*) FROM workers`); n != 1 {
			t.Errorf("workers = %d after a dry run, want 1", n)
		}
	})
	t.Run("partial", func(t *testing.T) {
		res, err := s.Import(ctx, strings.NewReader(file), registry.ImportOptions{Partial: true})
		if err != nil {
			t.Fatalf("partial Import: %v", err)
		}
		checkCounts(t, res, registry.ImportPartial, 8, 4, 3, 1)
		check(t, res.Errors)
		if n := count(t, s, `SELECT count(*) FROM workers WHERE ihris_id IN ('N1', 'N3', 'N8', 'E1')`); n != 4 {
			t.Errorf("good rows written = %d, want 4", n)
		}
		if w, err := s.FindWorker(ctx, "N3"); err != nil || w.Name != "New Three" {
			t.Errorf("N3 = %+v, %v; want line 4's row", w, err)
		}
		if w, err := s.FindWorker(ctx, "E1"); err != nil || w.MSISDN != "231886200020" || w.Name != "Existing Moved" {
			t.Errorf("E1 = %+v, %v; want it moved to line 6's phone", w, err)
		}
		if w, err := s.FindWorker(ctx, "N8"); err != nil || w.Cadre != "dup-cadre" || !slices.Equal(w.Skills, []string{"dup-skill", "imci"}) {
			t.Errorf("N8 = %+v, %v", w, err)
		}
		if n := count(t, s, `SELECT count(*) FROM cadres WHERE code = 'bad-cadre'`) + count(t, s, `SELECT count(*) FROM skills WHERE code = 'bad-skill'`); n != 0 {
			t.Errorf("the codes of a bad row were created")
		}
	})
}

// TestImportSameWorkerTwice: two rows that match one existing worker, one by iHRIS id and
// one by phone, are refused; the first is not.
func TestImportSameWorkerTwice(t *testing.T) {
	t.Parallel()
	s := registrytest.NewStore(t)
	ctx := context.Background()
	mustImportString(t, s, "ihris_id,name,phone\nW1,Wanda,0886300001\n", registry.ImportOptions{})
	file := "ihris_id,name,phone\nW1,Wanda New Phone,0886300002\n,Wanda By Phone,0886300001\n,Someone New,0886300003\n"
	res, err := s.Import(ctx, strings.NewReader(file), registry.ImportOptions{Partial: true})
	if err != nil {
		t.Fatal(err)
	}
	checkCounts(t, res, registry.ImportPartial, 3, 1, 1, 1)
	want := []mhero.ErrorDetail{{Line: 3, Field: "ihris_id", Message: "matches the same existing worker as line 2"}}
	if !slices.Equal(res.Errors, want) {
		t.Errorf("errors = %v, want %v", res.Errors, want)
	}
	if w, err := s.FindWorker(ctx, "W1"); err != nil || w.MSISDN != "231886300002" || w.Name != "Wanda New Phone" {
		t.Errorf("W1 = %+v, %v", w, err)
	}
}

// TestImportManyDistinctCodes: a file naming more (and longer) distinct cadres, skill
// lists and facilities than the import gathers in memory is imported all the same.
func TestImportManyDistinctCodes(t *testing.T) {
	t.Parallel()
	s := registrytest.NewStore(t)
	ctx := context.Background()
	seedTree(t, s)
	const n = 2200
	long := strings.Repeat("x", 2000)
	var b strings.Builder
	b.WriteString("ihris_id,name,phone,cadre,skills,facility_code\n")
	for i := range n {
		fmt.Fprintf(&b, "M%d,Worker %d,0886%06d,c%d-%s,s%d-%s;imci,\n", i, i, 400000+i, i, long, i, long)
	}
	// Past what is gathered in memory: a new skill list, a facility not seen before, an
	// unknown facility and a new cadre.
	b.WriteString("Z1,Zed One,0776400001,nurse,late-a;late-b,jfk\n")
	b.WriteString("Z2,Zed Two,0776400002,nurse,,atlantis\n")
	b.WriteString("Z3,Zed Three,0776400003,late-cadre,late-b,phebe\n")
	for run := 1; run <= 2; run++ {
		res, err := s.Import(ctx, strings.NewReader(b.String()), registry.ImportOptions{Partial: true})
		if err != nil {
			t.Fatalf("run %d: %v", run, err)
		}
		created, updated := n+2, 0
		if run == 2 {
			created, updated = 0, n+2
		}
		checkCounts(t, res, registry.ImportPartial, n+3, 1, created, updated)
		if len(res.Errors) != 1 || res.Errors[0].Line != n+3 || res.Errors[0].Field != "facility_code" || res.Errors[0].Message != "unknown facility 'atlantis'" {
			t.Errorf("run %d: errors = %v, want line %d unknown facility 'atlantis'", run, res.Errors, n+3)
		}
	}
	if c := count(t, s, `SELECT count(*) FROM cadres`); c != n+2 {
		t.Errorf("cadres = %d, want %d", c, n+2)
	}
	if c := count(t, s, `SELECT count(*) FROM skills`); c != n+3 {
		t.Errorf("skills = %d, want %d", c, n+3)
	}
	w, err := s.FindWorker(ctx, "M7")
	if err != nil || w.Cadre != "c7-"+long || !slices.Equal(w.Skills, []string{"imci", "s7-" + long}) || w.FacilityID != 0 {
		t.Errorf("M7 = cadre %.10q skills %d %v", w.Cadre, len(w.Skills), err)
	}
	jfk, _ := s.FindFacility(ctx, "jfk")
	if w, err := s.FindWorker(ctx, "Z1"); err != nil || w.Cadre != "nurse" || w.FacilityID != jfk.ID || len(w.Skills) != 2 {
		t.Errorf("Z1 = %+v, %v", w, err)
	}
	if w, err := s.FindWorker(ctx, "Z3"); err != nil || w.Cadre != "late-cadre" || !slices.Equal(w.Skills, []string{"late-b"}) {
		t.Errorf("Z3 = %+v, %v", w, err)
	}
	if c := count(t, s, `SELECT count(*) FROM workers w JOIN facilities f ON f.id = w.facility_id JOIN locations l ON l.id = f.location_id
		WHERE w.location_path = l.path`); c != 2 {
		t.Errorf("workers with their facility's path = %d, want 2", c)
	}
}

// TestImportPhonesAsParseMSISDN: the import reads every phone number exactly as
// ParseMSISDN does, in a country with its own calling code and in one that shares it.
func TestImportPhonesAsParseMSISDN(t *testing.T) {
	t.Parallel()
	for _, region := range []string{"LR", "KE", "NG", "GB", "US", "FR", "IN"} {
		t.Run(region, func(t *testing.T) {
			t.Parallel()
			s := registry.NewStore(registrytest.NewDB(t), region, nil)
			var b strings.Builder
			b.WriteString("name,phone\n")
			want := map[int]string{} // line -> msisdn, "" when refused
			seen := map[string]bool{}
			line := 1
			rng := uint64(len(region)) * 0x9E3779B97F4A7C15
			next := func(n uint64) uint64 { rng ^= rng << 13; rng ^= rng >> 7; rng ^= rng << 17; return rng % n }
			var examples []string // national significant numbers of every type the region has
			for _, typ := range []phonenumbers.PhoneNumberType{phonenumbers.MOBILE, phonenumbers.FIXED_LINE, phonenumbers.TOLL_FREE,
				phonenumbers.VOIP, phonenumbers.PREMIUM_RATE, phonenumbers.UAN, phonenumbers.PAGER, phonenumbers.PERSONAL_NUMBER} {
				if ex := phonenumbers.GetExampleNumberForType(region, typ); ex != nil {
					examples = append(examples, phonenumbers.GetNationalSignificantNumber(ex))
				}
			}
			cc := strconv.Itoa(phonenumbers.GetCountryCodeForRegion(region))
			for len(want) < 600 {
				// An example number with its last digits changed, a digit more or less now
				// and then, written the ways an iHRIS export writes numbers.
				nsn := []byte(examples[next(uint64(len(examples)))])
				for i := len(nsn) - 1 - int(next(6)); i >= 0 && i < len(nsn); i++ {
					nsn[i] = byte('0' + next(10))
				}
				switch next(8) {
				case 0:
					nsn = append(nsn, byte('0'+next(10)))
				case 1:
					nsn = nsn[:len(nsn)-1]
				}
				var raw string
				switch next(5) {
				case 0:
					raw = "0" + string(nsn)
				case 1:
					raw = "+" + cc + string(nsn)
				case 2:
					raw = "00" + cc + " " + string(nsn[:2]) + " " + string(nsn[2:])
				case 3:
					raw = string(nsn)
				default:
					raw = "0" + string(nsn[:3]) + "-" + string(nsn[3:])
				}
				m, err := registry.ParseMSISDN(raw, region)
				if err == nil && seen[string(m)] {
					continue
				}
				line++
				if err == nil {
					seen[string(m)] = true
					want[line] = string(m)
				} else {
					want[line] = ""
				}
				fmt.Fprintf(&b, "P%d,%s\n", line, raw)
			}
			res, err := s.Import(context.Background(), strings.NewReader(b.String()), registry.ImportOptions{Partial: true})
			if err != nil {
				t.Fatal(err)
			}
			refused := map[int]bool{}
			for _, e := range res.Errors {
				refused[e.Line] = true
			}
			rows, err := s.DB().Query(context.Background(), `SELECT substr(name, 2)::int, msisdn FROM workers`)
			if err != nil {
				t.Fatal(err)
			}
			got := map[int]string{}
			for rows.Next() {
				var l int
				var m string
				if err := rows.Scan(&l, &m); err != nil {
					t.Fatal(err)
				}
				got[l] = m
			}
			for l, m := range want {
				if got[l] != m || refused[l] != (m == "") {
					t.Errorf("line %d: imported %q (refused %v), ParseMSISDN gives %q", l, got[l], refused[l], m)
				}
			}
			if valid := len(seen); valid < 200 || valid > 580 {
				t.Errorf("%d of 600 numbers valid: the generator no longer tests both sides", valid)
			}
		})
	}
}
