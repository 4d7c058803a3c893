package registry_test

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/url"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/mhero-health/mhero"
	"github.com/mhero-health/mhero/api"
	"github.com/mhero-health/mhero/api/apitest"
	"github.com/mhero-health/mhero/registry"
	"github.com/mhero-health/mhero/registry/registrytest"
)

// fhirServer is a FHIR server in the test: it keeps every version of every resource and
// answers searches, _history?_since= and paging as HAPI (iHRIS 5's server) does, with its
// own clock in the Date header and Bundle.meta.lastUpdated. Its next links name another
// host, as a server behind a proxy does.
type fhirServer struct {
	mu       sync.Mutex
	now      time.Time
	versions []fhirVersion // oldest first
	requests []string
	fail     map[string]int // path -> status to answer
	entered  chan string    // when set, each request's path is sent here first...
	release  chan struct{}  // ...and the request waits for this
	srv      *httptest.Server
}

type fhirVersion struct {
	typ, id string
	at      time.Time
	deleted bool
	res     map[string]any
}

const fhirToken = "test-token"

func newFHIRServer(t *testing.T, now time.Time) *fhirServer {
	f := &fhirServer{now: now, fail: map[string]int{}}
	f.srv = httptest.NewServer(f)
	t.Cleanup(f.srv.Close)
	return f
}

func (f *fhirServer) url() string { return f.srv.URL + "/fhir" }

func (f *fhirServer) setNow(t time.Time) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.now = t
}

func (f *fhirServer) put(at time.Time, res map[string]any) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.versions = append(f.versions, fhirVersion{typ: res["resourceType"].(string), id: res["id"].(string), at: at, res: res})
}

func (f *fhirServer) del(at time.Time, typ, id string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.versions = append(f.versions, fhirVersion{typ: typ, id: id, at: at, deleted: true})
}

func (f *fhirServer) takeRequests() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	r := f.requests
	f.requests = nil
	return r
}

func (f *fhirServer) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if f.entered != nil {
		f.entered <- r.URL.Path
		<-f.release
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	f.requests = append(f.requests, r.URL.RequestURI())
	w.Header().Set("Date", f.now.UTC().Format(http.TimeFormat))
	if r.Header.Get("Authorization") != "Bearer "+fhirToken {
		http.Error(w, `{"resourceType":"OperationOutcome"}`, http.StatusUnauthorized)
		return
	}
	if code := f.fail[r.URL.Path]; code != 0 {
		http.Error(w, `{"resourceType":"OperationOutcome","issue":[{"severity":"error","diagnostics":"HAPI-0389: boom"}]}`, code)
		return
	}
	parts := strings.Split(strings.TrimPrefix(r.URL.Path, "/fhir/"), "/")
	q := r.URL.Query()
	var entries []map[string]any
	kind := "searchset"
	if len(parts) == 2 && parts[1] == "_history" {
		kind = "history"
		since, err := time.Parse(time.RFC3339Nano, q.Get("_since"))
		if err != nil {
			http.Error(w, "bad _since", http.StatusBadRequest)
			return
		}
		for i := len(f.versions) - 1; i >= 0; i-- { // newest first
			if v := f.versions[i]; v.typ == parts[0] && !v.at.Before(since) {
				entries = append(entries, f.entry(v, true))
			}
		}
	} else {
		for _, v := range f.current(parts[0]) {
			if f.matches(v, q) {
				entries = append(entries, f.entry(v, false))
			}
		}
	}
	size, _ := strconv.Atoi(q.Get("_count"))
	page, _ := strconv.Atoi(q.Get("_page"))
	start, end := min(page*size, len(entries)), min((page+1)*size, len(entries))
	b := map[string]any{"resourceType": "Bundle", "type": kind, "meta": map[string]any{"lastUpdated": f.now.Format(time.RFC3339)}}
	if end > start {
		b["entry"] = entries[start:end] // HAPI leaves an empty page's entry out
	}
	if end < len(entries) {
		q.Set("_page", strconv.Itoa(page+1))
		b["link"] = []map[string]any{{"relation": "self", "url": r.URL.String()},
			{"relation": "next", "url": "http://ihris.internal:8080" + r.URL.Path + "?" + q.Encode()}}
	}
	w.Header().Set("Content-Type", "application/fhir+json")
	_ = json.NewEncoder(w).Encode(b)
}

// current is the latest version of each resource of a type, deleted ones left out.
func (f *fhirServer) current(typ string) []fhirVersion {
	latest := map[string]fhirVersion{}
	for _, v := range f.versions {
		if v.typ == typ {
			latest[v.id] = v
		}
	}
	var out []fhirVersion
	for _, v := range latest {
		if !v.deleted {
			out = append(out, v)
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].id < out[j].id })
	return out
}

func (f *fhirServer) matches(v fhirVersion, q url.Values) bool {
	if lu := q.Get("_lastUpdated"); lu != "" {
		t, err := time.Parse(time.RFC3339Nano, strings.TrimPrefix(lu, "gt"))
		if err != nil || !strings.HasPrefix(lu, "gt") || !v.at.After(t) {
			return false
		}
	}
	if ids := q.Get("_id"); ids != "" && !slices.Contains(strings.Split(ids, ","), v.id) {
		return false
	}
	if refs := q.Get("practitioner"); refs != "" {
		p, _ := v.res["practitioner"].(map[string]any)
		if ref, _ := p["reference"].(string); !slices.Contains(strings.Split(refs, ","), ref) {
			return false
		}
	}
	return true
}

func (f *fhirServer) entry(v fhirVersion, history bool) map[string]any {
	e := map[string]any{"fullUrl": "http://ihris.internal:8080/fhir/" + v.typ + "/" + v.id}
	if !v.deleted {
		res := map[string]any{}
		for k, x := range v.res {
			res[k] = x
		}
		meta := map[string]any{"lastUpdated": v.at.Format(time.RFC3339Nano)}
		if m, ok := v.res["meta"].(map[string]any); ok {
			meta["profile"] = m["profile"]
		}
		res["meta"] = meta
		e["resource"] = res
	}
	if history {
		method := "PUT"
		if v.deleted {
			method = "DELETE"
		}
		e["request"] = map[string]any{"method": method, "url": v.typ + "/" + v.id}
		e["response"] = map[string]any{"status": "200 OK", "lastModified": v.at.Format(time.RFC3339Nano)}
	}
	return e
}

// FHIR resources as iHRIS 5 writes them.

func jurisdiction(id, name, parent string) map[string]any {
	l := map[string]any{"resourceType": "Location", "id": id, "name": name,
		"type": []any{map[string]any{"coding": []any{map[string]any{"code": "jurisdiction"}}}}}
	if parent != "" {
		l["partOf"] = map[string]any{"reference": "Location/" + parent}
	}
	return l
}

func facility(id, name, parent, uid string) map[string]any {
	return map[string]any{"resourceType": "Location", "id": id, "name": name,
		"meta":       map[string]any{"profile": []any{"http://ihris.org/fhir/StructureDefinition/ihris-facility"}},
		"partOf":     map[string]any{"reference": "Location/" + parent},
		"identifier": []any{map[string]any{"system": "https://dhis2.moh.gov.lr/api/organisationUnits", "value": uid}}}
}

func practitionerRes(id, given, family, phone string, active bool) map[string]any {
	p := map[string]any{"resourceType": "Practitioner", "id": id, "active": active,
		"name": []any{map[string]any{"use": "official", "given": []any{given}, "family": family}}}
	if phone != "" {
		p["telecom"] = []any{map[string]any{"system": "phone", "value": phone, "use": "mobile"}}
	}
	return p
}

func roleRes(id, prac, cadre, fac string, active bool) map[string]any {
	return map[string]any{"resourceType": "PractitionerRole", "id": id, "active": active,
		"practitioner": map[string]any{"reference": "Practitioner/" + prac},
		"code":         []any{map[string]any{"coding": []any{map[string]any{"code": cadre}}}},
		"location":     []any{map[string]any{"reference": "Location/" + fac}}}
}

// t0 is when the test's iHRIS was filled.
var t0 = time.Date(2026, 11, 2, 8, 0, 0, 0, time.UTC)

// seedIHRIS writes a small country: Liberia > Bomi > two facilities; four practitioners
// with a role each; an organisation.
func seedIHRIS(f *fhirServer) {
	for _, r := range []map[string]any{
		jurisdiction("LR", "Liberia", ""), jurisdiction("bomi", "Bomi", "LR"),
		facility("fac-klay", "Klay HC", "bomi", "DiszpKrYNg8"), facility("fac-tub", "Tubmanburg Hospital", "bomi", "Rp268JB6Ne4"),
		{"resourceType": "Organization", "id": "moh", "name": "Ministry of Health"},
		practitionerRes("p1", "Mary", "Kollie", "0886000001", true), roleRes("r1", "p1", "nurse", "fac-klay", true),
		practitionerRes("p2", "John", "Doe", "0886000002", true), roleRes("r2", "p2", "chw", "fac-klay", true),
		practitionerRes("p3", "Ann", "Weah", "0886000003", true), roleRes("r3", "p3", "chw", "fac-tub", true),
		practitionerRes("p4", "Joe", "Sumo", "0886000004", true), roleRes("r4", "p4", "chw", "fac-tub", true),
		roleRes("r4b", "p4", "nurse", "fac-klay", true),
	} {
		f.put(t0, r)
	}
}

func newSyncer(t *testing.T, s *registry.Store, f *fhirServer, edit func(*registry.MCSDConfig)) *registry.Syncer {
	t.Helper()
	cfg := registry.MCSDConfig{FHIRURL: f.url(), TokenEnv: "IHRIS_TOKEN", PageSize: 2}
	if edit != nil {
		edit(&cfg)
	}
	if err := cfg.Validate(func(k string) string { return map[string]string{"IHRIS_TOKEN": fhirToken}[k] }); err != nil {
		t.Fatal(err)
	}
	sy, err := registry.NewSyncer(s, cfg, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	return sy
}

func mustSync(t *testing.T, sy *registry.Syncer, want string) *registry.SyncRun {
	t.Helper()
	run, err := sy.Sync(context.Background())
	if err != nil {
		t.Fatalf("Sync: %v", err)
	}
	if run.Status != want {
		t.Fatalf("sync status = %s (%s; errors %v), want %s", run.Status, run.Error, run.Errors, want)
	}
	return run
}

func worker(t *testing.T, s *registry.Store, ihris string) *mhero.Worker {
	t.Helper()
	w, err := s.FindWorker(context.Background(), ihris)
	if err != nil {
		t.Fatalf("FindWorker(%s): %v", ihris, err)
	}
	return w
}

func TestMCSDSyncFullThenHistory(t *testing.T) {
	t.Parallel()
	s := registrytest.NewStore(t)
	ctx := context.Background()
	f := newFHIRServer(t, t0.Add(time.Hour))
	seedIHRIS(f)
	sy := newSyncer(t, s, f, nil)

	// The first sync has no cursor: current versions, by search.
	run := mustSync(t, sy, registry.SyncSucceeded)
	if run.Mode != registry.ModeFull || run.Since != nil || run.NextSince == nil || !run.NextSince.Equal(t0.Add(59*time.Minute)) {
		t.Errorf("first sync: mode %s since %v next %v; want full, none, the server's time minus 1m", run.Mode, run.Since, run.NextSince)
	}
	if c := run.Counts["Practitioner"]; c.Changed != 4 || run.Counts["PractitionerRole"].Changed != 5 || run.Counts["Organization"].Changed != 1 {
		t.Errorf("first sync counts = %+v", run.Counts)
	}
	for _, r := range f.takeRequests() {
		if strings.Contains(r, "_history") || strings.Contains(r, "_lastUpdated") {
			t.Errorf("the first sync asked %s; it has no cursor", r)
		}
	}
	if w := worker(t, s, "p4"); w.Cadre != "chw" || !w.Active {
		t.Errorf("p4 = %+v, want its first active role (chw)", w)
	}
	fac, err := s.FindFacility(ctx, "fac-klay")
	if err != nil || fac.DHIS2UID != "DiszpKrYNg8" {
		t.Fatalf("facility = %+v, %v", fac, err)
	}

	// Changes in iHRIS: a name changed twice, a practitioner deleted, one deactivated, a
	// role-only change (p4 is not in the history), a new worker, a location deleted.
	t1 := t0.Add(2 * time.Hour)
	f.put(t1, practitionerRes("p1", "Mary", "Kollie-Smith", "0886000001", true))
	f.put(t1.Add(time.Second), practitionerRes("p1", "Mary", "Kollie-Weah", "0886000001", true))
	f.del(t1, "Practitioner", "p2")
	f.put(t1, practitionerRes("p3", "Ann", "Weah", "0886000003", false))
	f.put(t1, roleRes("r4", "p4", "midwife", "fac-tub", true))
	f.put(t1, practitionerRes("p5", "Sia", "Kamara", "0776000005", true))
	f.put(t1, roleRes("r5", "p5", "chw", "fac-tub", true))
	f.put(t1, jurisdiction("old", "Old district", "bomi"))
	f.del(t1.Add(time.Second), "Location", "old")
	f.setNow(t1.Add(30 * time.Second))

	run = mustSync(t, sy, registry.SyncSucceeded)
	if run.Mode != registry.ModeHistory || !run.Since.Equal(t0.Add(59*time.Minute)) || !run.NextSince.Equal(t1.Add(-30*time.Second)) {
		t.Errorf("second sync: mode %s since %v next %v", run.Mode, run.Since, run.NextSince)
	}
	reqs := strings.Join(f.takeRequests(), "\n")
	for _, want := range []string{"/fhir/Practitioner/_history?_count=2&_since=2026-11-02T08%3A59%3A00.000Z",
		"/fhir/PractitionerRole?_count=2&practitioner=Practitioner%2Fp4%2CPractitioner%2Fp5", "/fhir/Practitioner?_count=2&_id=p4",
		"_page=1"} {
		if !strings.Contains(reqs, want) {
			t.Errorf("requests lack %s:\n%s", want, reqs)
		}
	}
	if got := worker(t, s, "p1").Name; got != "Mary Kollie-Weah" {
		t.Errorf("p1 name = %q, want the newest version's", got)
	}
	if worker(t, s, "p2").Active || worker(t, s, "p3").Active {
		t.Error("the deleted and the deactivated practitioners' workers are still active")
	}
	if w := worker(t, s, "p4"); w.Cadre != "midwife" || !w.Active {
		t.Errorf("p4 = %+v, want the changed role's cadre", w)
	}
	if w := worker(t, s, "p5"); w.Cadre != "chw" || string(w.MSISDN) != "231776000005" {
		t.Errorf("p5 = %+v", w)
	}
	if run.Deactivated != 2 || run.Counts["Practitioner"].Deleted != 1 || run.Counts["Practitioner"].Changed != 3 ||
		run.Counts["Practitioner"].Fetched != 1 || run.Counts["Location"].Deleted != 1 {
		t.Errorf("second sync = deactivated %d, counts %+v", run.Deactivated, run.Counts)
	}
	if len(run.Warnings) != 1 || !strings.Contains(run.Warnings[0], "Location/old was deleted") {
		t.Errorf("warnings = %q", run.Warnings)
	}

	// Within the overlap the same changes come again: applying them twice changes nothing.
	before := worker(t, s, "p5").UpdatedAt
	run = mustSync(t, sy, registry.SyncSucceeded)
	if run.Counts["Practitioner"].Changed == 0 || run.Deactivated != 0 || run.Created != 0 {
		t.Errorf("overlapping sync = %+v", run)
	}
	if after := worker(t, s, "p5").UpdatedAt; !after.Equal(before) {
		t.Errorf("re-applying unchanged resources rewrote the worker (%v -> %v)", before, after)
	}

	runs, err := s.ListSyncs(ctx, 0, 10)
	if err != nil || len(runs) != 3 || runs[0].ID != run.ID || runs[2].Mode != registry.ModeFull {
		t.Fatalf("ListSyncs = %d runs, %v", len(runs), err)
	}
}

func TestMCSDSyncAllOrNothing(t *testing.T) {
	t.Parallel()
	s := registrytest.NewStore(t)
	f := newFHIRServer(t, t0.Add(time.Hour))
	seedIHRIS(f)
	sy := newSyncer(t, s, f, nil)
	first := mustSync(t, sy, registry.SyncSucceeded)

	t1 := t0.Add(2 * time.Hour)
	f.put(t1, practitionerRes("p1", "Mary", "Renamed", "0886000001", true))
	f.put(t1, practitionerRes("p6", "No", "Phone", "", true))
	f.put(t1, roleRes("r6", "p6", "chw", "fac-klay", true))
	f.setNow(t1.Add(time.Hour))

	run := mustSync(t, sy, registry.SyncFailed)
	if run.NextSince != nil || run.RowsFailed != 1 || len(run.Errors) != 1 || !strings.HasPrefix(run.Errors[0].Message, "Practitioner/p6: ") {
		t.Errorf("strict sync = next %v, failed %d, errors %+v", run.NextSince, run.RowsFailed, run.Errors)
	}
	if worker(t, s, "p1").Name != "Mary Kollie" {
		t.Error("a failed sync wrote the good changes")
	}
	// The cursor did not move: the next sync asks from the same place.
	again := mustSync(t, sy, registry.SyncFailed)
	if !again.Since.Equal(*first.NextSince) {
		t.Errorf("after a failure the cursor is %v, want %v", again.Since, first.NextSince)
	}

	partial := newSyncer(t, s, f, func(c *registry.MCSDConfig) { c.Partial = true })
	run = mustSync(t, partial, registry.SyncPartial)
	if run.NextSince == nil || run.RowsFailed != 1 || worker(t, s, "p1").Name != "Mary Renamed" {
		t.Errorf("partial sync = %+v", run)
	}
}

func TestMCSDSyncServerFailure(t *testing.T) {
	t.Parallel()
	s := registrytest.NewStore(t)
	f := newFHIRServer(t, t0.Add(time.Hour))
	seedIHRIS(f)
	f.fail["/fhir/PractitionerRole"] = http.StatusInternalServerError
	sy := newSyncer(t, s, f, nil)

	run := mustSync(t, sy, registry.SyncFailed)
	if !strings.Contains(run.Error, "answered 500") || !strings.Contains(run.Error, "HAPI-0389") {
		t.Errorf("error = %q", run.Error)
	}
	// Locations and practitioners read before the failure are not written either.
	if _, err := s.FindLocation(context.Background(), "LR"); mhero.ErrorCode(err) != mhero.ENOTFOUND {
		t.Errorf("a failed sync wrote locations (%v)", err)
	}
	delete(f.fail, "/fhir/PractitionerRole")
	run = mustSync(t, sy, registry.SyncSucceeded)
	if run.Mode != registry.ModeFull {
		t.Errorf("after a failed first sync the next is %s, want full", run.Mode)
	}

	bad := newSyncer(t, s, f, func(c *registry.MCSDConfig) { c.TokenEnv = "" })
	run = mustSync(t, bad, registry.SyncFailed)
	if !strings.Contains(run.Error, "answered 401") {
		t.Errorf("without the token: %q", run.Error)
	}
}

func TestMCSDSyncLastUpdated(t *testing.T) {
	t.Parallel()
	s := registrytest.NewStore(t)
	f := newFHIRServer(t, t0.Add(time.Hour))
	seedIHRIS(f)
	sy := newSyncer(t, s, f, func(c *registry.MCSDConfig) { c.Mode = registry.ModeLastUpdated })
	mustSync(t, sy, registry.SyncSucceeded)
	f.takeRequests()
	t1 := t0.Add(2 * time.Hour)
	f.put(t1, practitionerRes("p3", "Ann", "Weah", "0886000003", false))
	f.setNow(t1.Add(time.Hour))
	run := mustSync(t, sy, registry.SyncSucceeded)
	if run.Mode != registry.ModeLastUpdated || run.Deactivated != 1 || worker(t, s, "p3").Active {
		t.Errorf("lastUpdated sync = %+v", run)
	}
	for _, r := range f.takeRequests() {
		if strings.Contains(r, "_history") || !strings.Contains(r, "_lastUpdated=gt2026-11-02T08%3A59%3A00.000Z") {
			t.Errorf("lastUpdated sync asked %s", r)
		}
	}
}

// TestMCSDSyncOneAtATime: while one sync runs, another (here or on another instance) is
// refused, not run alongside.
func TestMCSDSyncOneAtATime(t *testing.T) {
	t.Parallel()
	s := registrytest.NewStore(t)
	f := newFHIRServer(t, t0.Add(time.Hour))
	seedIHRIS(f)
	f.entered, f.release = make(chan string), make(chan struct{})
	sy := newSyncer(t, s, f, nil)
	done := make(chan error, 1)
	go func() {
		_, err := sy.Sync(context.Background())
		done <- err
	}()
	<-f.entered // the first sync holds the lock and waits on the server
	other := newSyncer(t, s, f, nil)
	if _, err := other.Sync(context.Background()); mhero.ErrorCode(err) != mhero.ECONFLICT {
		t.Errorf("a second sync while one runs: %v, want conflict", err)
	}
	go func() {
		for range f.entered {
		}
	}()
	close(f.release)
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	close(f.entered)
}

// TestMCSDRunSyncsAtStartAndStops: the loop syncs at once (nothing recorded yet) and
// returns when its context ends.
func TestMCSDRunSyncsAtStartAndStops(t *testing.T) {
	t.Parallel()
	s := registrytest.NewStore(t)
	f := newFHIRServer(t, t0.Add(time.Hour))
	seedIHRIS(f)
	sy := newSyncer(t, s, f, nil)
	synced := make(chan *registry.SyncRun, 1)
	sy.OnSync = func(r *registry.SyncRun, err error) {
		if err == nil {
			select {
			case synced <- r:
			default:
			}
		}
	}
	ctx, cancel := context.WithCancel(context.Background())
	stopped := make(chan error, 1)
	go func() { stopped <- sy.Run(ctx) }()
	if r := <-synced; r.Trigger != registry.TriggerSchedule || r.Actor != "schedule" || r.Status != registry.SyncSucceeded {
		t.Errorf("scheduled sync = %+v", r)
	}
	cancel()
	if err := <-stopped; err != nil {
		t.Errorf("Run = %v", err)
	}
}

func TestMCSDSyncHTTP(t *testing.T) {
	t.Parallel()
	s := registrytest.NewStore(t)
	f := newFHIRServer(t, t0.Add(time.Hour))
	seedIHRIS(f)
	call := func(srv *api.Server, method string) *httptest.ResponseRecorder {
		req := httptest.NewRequest(method, "/api/v1/syncs", nil)
		req.Header.Set("Authorization", "Bearer x")
		w := httptest.NewRecorder()
		srv.ServeHTTP(w, req)
		return w
	}
	off := api.New(api.Options{Auth: adminKey{}})
	s.SyncRoutes(off, nil)
	if w := call(off, http.MethodPost); w.Code != http.StatusNotImplemented {
		t.Errorf("POST /syncs without iHRIS = %d %s", w.Code, w.Body)
	}
	srv := api.New(api.Options{Auth: adminKey{}})
	s.SyncRoutes(srv, newSyncer(t, s, f, nil))
	w := call(srv, http.MethodPost)
	var run registry.SyncRun
	if w.Code != http.StatusOK || json.Unmarshal(w.Body.Bytes(), &run) != nil || run.Status != registry.SyncSucceeded || run.Actor != "test" {
		t.Fatalf("POST /syncs = %d %s", w.Code, w.Body)
	}
	scoped := api.New(api.Options{Auth: scopedAdmin{}})
	s.SyncRoutes(scoped, newSyncer(t, s, f, nil))
	for _, m := range []string{http.MethodGet, http.MethodPost} {
		if w := call(scoped, m); w.Code != http.StatusForbidden {
			t.Errorf("%s /syncs with a scoped admin key = %d %s", m, w.Code, w.Body)
		}
	}
	w = call(srv, http.MethodGet)
	var page api.Page[registry.SyncRun]
	if w.Code != http.StatusOK || json.Unmarshal(w.Body.Bytes(), &page) != nil || len(page.Items) != 1 || page.Items[0].ID != run.ID {
		t.Errorf("GET /syncs = %d %s", w.Code, w.Body)
	}
}

// scopedAdmin is an admin key limited to a county.
type scopedAdmin struct{}

func (scopedAdmin) Authenticate(context.Context, string) (*mhero.Principal, error) {
	return &mhero.Principal{Name: "county", Role: mhero.RoleAdmin, Scope: &mhero.Location{ID: 1, Code: "bomi"}}, nil
}

func TestMCSDConfigValidate(t *testing.T) {
	t.Parallel()
	env := func(k string) string { return map[string]string{"TOK": "secret"}[k] }
	for _, tt := range []struct {
		name string
		cfg  registry.MCSDConfig
		want []string // substrings of the error; none: valid
	}{
		{"minimal", registry.MCSDConfig{FHIRURL: "https://ihris.example.org/fhir/"}, nil},
		{"token", registry.MCSDConfig{FHIRURL: "http://127.0.0.1:8080/fhir", TokenEnv: "TOK", Mode: "lastUpdated"}, nil},
		{"everything wrong", registry.MCSDConfig{FHIRURL: "ftp://x", TokenEnv: "NOPE", Mode: "delta", Every: time.Second,
			PageSize: 5000}, []string{"ihris.fhir_url", "NOPE", `mode "delta"`, "every must be", "page_size"}},
		{"credentials in the URL", registry.MCSDConfig{FHIRURL: "https://u:p@ihris.example.org/fhir"}, []string{"no credentials"}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			err := tt.cfg.Validate(env)
			if len(tt.want) == 0 {
				if err != nil {
					t.Fatalf("Validate = %v", err)
				}
				if tt.cfg.Every != 15*time.Minute || tt.cfg.Overlap != time.Minute || tt.cfg.Mode == "" || strings.HasSuffix(tt.cfg.FHIRURL, "/") {
					t.Errorf("defaults = %+v", tt.cfg)
				}
				return
			}
			for _, w := range tt.want {
				if err == nil || !strings.Contains(err.Error(), w) {
					t.Errorf("Validate = %v, want it to mention %q", err, w)
				}
			}
			if err != nil && strings.Contains(err.Error(), "secret") {
				t.Error("the error shows the token")
			}
			if s := fmt.Sprintf("%v %+v", tt.cfg, &tt.cfg); strings.Contains(s, "secret") {
				t.Errorf("printing the configuration shows the token: %s", s)
			}
		})
	}
}

// TestOpenAPIDocumentsTheSyncRoutes keeps api/openapi.yaml true for /api/v1/syncs (cmd/mhero
// checks the whole router the same way once everything is wired).
func TestOpenAPIDocumentsTheSyncRoutes(t *testing.T) {
	t.Parallel()
	srv := api.New(api.Options{})
	(&registry.Store{}).SyncRoutes(srv, nil)
	routes, missing, extra, err := apitest.RouteDrift(srv.Root, func(path string) bool { return strings.HasPrefix(path, "/api/v1/syncs") })
	if err != nil {
		t.Fatal(err)
	}
	if len(missing) > 0 || len(extra) > 0 || routes != 2 {
		t.Errorf("OpenAPI out of step with the %d sync routes:\n  not documented: %v\n  documented, not routed: %v", routes, missing, extra)
	}
}
