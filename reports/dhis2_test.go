package reports_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/url"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/mhero-health/mhero"
	"github.com/mhero-health/mhero/api"
	"github.com/mhero-health/mhero/api/apitest"
	"github.com/mhero-health/mhero/registry"
	"github.com/mhero-health/mhero/reports"
)

// The DHIS2 metadata of the tests: a data set, two commodities' data elements (ORS with a
// category option combo), stock-out days, and two facilities' org units (F3 has none).
const (
	dataSet   = "pBOMPrpg1QX"
	deORS     = "uL3WTPcjcBJ"
	cocORS    = "HllvX50cXC0"
	deZinc    = "Jtf34kNZhzP"
	deOutDays = "hMbtS1mOyhk"
	ouF1      = "DiszpKrYNg8"
	ouF2      = "Rp268JB6Ne4"
	dhis2PAT  = "d2pat_5xVA12xyUbWNedQxy4ohH77WlxRGVvZZ1151814092"
)

// dhis2Server is DHIS2 in the test: it checks the payload as DHIS2 does (auth, parameters,
// the data value set's fields, ids, period format) and answers an import summary, the
// 2.36+ WebMessage or, with legacy, the bare summary of earlier versions. Values for org
// units it does not know are conflicts (E7617), ignored.
type dhis2Server struct {
	t        *testing.T
	mu       sync.Mutex
	known    map[string]bool   // org units
	stored   map[string]string // dataElement/coc/orgUnit/period -> value
	requests []dhis2Request
	answer   func(r *http.Request) (int, string) // when set, answers instead
	legacy   bool
	block    chan struct{} // when set, requests wait for it
	entered  chan struct{}
	srv      *httptest.Server
}

type dhis2Request struct {
	query url.Values
	body  []byte
}

type dvs struct {
	DataSet              string `json:"dataSet"`
	Period               string `json:"period"`
	AttributeOptionCombo string `json:"attributeOptionCombo"`
	DataValues           []struct {
		DataElement         string `json:"dataElement"`
		CategoryOptionCombo string `json:"categoryOptionCombo"`
		OrgUnit             string `json:"orgUnit"`
		Value               string `json:"value"`
	} `json:"dataValues"`
}

func newDHIS2Server(t *testing.T) *dhis2Server {
	d := &dhis2Server{t: t, known: map[string]bool{ouF1: true, ouF2: true}, stored: map[string]string{}}
	d.srv = httptest.NewServer(d)
	t.Cleanup(d.srv.Close)
	return d
}

func (d *dhis2Server) hits() int { return len(d.reqs()) }

// reqs is what the server received so far.
func (d *dhis2Server) reqs() []dhis2Request {
	d.mu.Lock()
	defer d.mu.Unlock()
	return append([]dhis2Request(nil), d.requests...)
}

// locked runs fn with the server's state to itself.
func (d *dhis2Server) locked(fn func()) {
	d.mu.Lock()
	defer d.mu.Unlock()
	fn()
}

var (
	uidRE     = regexp.MustCompile(`^[A-Za-z][A-Za-z0-9]{10}$`)
	monthlyRE = regexp.MustCompile(`^[0-9]{4}(0[1-9]|1[0-2])$`)
	valueRE   = regexp.MustCompile(`^(0|[1-9][0-9]*)$`)
)

func (d *dhis2Server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if d.entered != nil {
		d.entered <- struct{}{}
		<-d.block
	}
	body := new(bytes.Buffer)
	_, _ = body.ReadFrom(r.Body)
	d.mu.Lock()
	defer d.mu.Unlock()
	d.requests = append(d.requests, dhis2Request{query: r.URL.Query(), body: body.Bytes()})
	if d.answer != nil {
		code, b := d.answer(r)
		w.WriteHeader(code)
		_, _ = w.Write([]byte(b))
		return
	}
	if r.Header.Get("Authorization") != "ApiToken "+dhis2PAT {
		w.WriteHeader(http.StatusUnauthorized)
		_, _ = w.Write([]byte(`{"httpStatus":"Unauthorized","httpStatusCode":401,"status":"ERROR","message":"Unauthorized"}`))
		return
	}
	if problem := d.check(r, body.Bytes()); problem != "" {
		d.t.Errorf("DHIS2 would refuse this payload: %s\n%s", problem, body)
		http.Error(w, problem, http.StatusBadRequest)
		return
	}
	var set dvs
	_ = json.Unmarshal(body.Bytes(), &set)
	dry := r.URL.Query().Get("dryRun") == "true"
	var count reports.ImportCount
	var conflicts []map[string]any
	for i, v := range set.DataValues {
		if !d.known[v.OrgUnit] {
			count.Ignored++
			c := map[string]any{"object": v.OrgUnit, "value": "Organisation unit not found or not accessible"}
			if !d.legacy {
				c["objects"] = map[string]any{"orgUnit": v.OrgUnit}
				c["errorCode"], c["property"], c["indexes"] = "E7617", "orgUnit", []int{i}
			}
			conflicts = append(conflicts, c)
			continue
		}
		key := v.DataElement + "/" + v.CategoryOptionCombo + "/" + v.OrgUnit + "/" + set.Period
		if _, ok := d.stored[key]; ok {
			count.Updated++
		} else {
			count.Imported++
		}
		if !dry {
			d.stored[key] = v.Value
		}
	}
	status := "SUCCESS"
	if len(conflicts) > 0 {
		status = "WARNING"
	}
	summary := map[string]any{"responseType": "ImportSummary", "status": status, "description": "Import process completed successfully",
		"importCount": map[string]int{"imported": count.Imported, "updated": count.Updated, "ignored": count.Ignored, "deleted": 0},
		"conflicts":   conflicts, "dataSetComplete": "false"}
	var answer any = summary
	if !d.legacy {
		top := "OK"
		if status == "WARNING" {
			top = "WARNING"
		}
		answer = map[string]any{"httpStatus": "OK", "httpStatusCode": 200, "status": top, "message": "Import was successful.",
			"response": summary}
	}
	w.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode(answer)
}

// check refuses what DHIS2 would: the request's shape and every value.
func (d *dhis2Server) check(r *http.Request, body []byte) string {
	q := r.URL.Query()
	switch {
	case r.Method != http.MethodPost || r.URL.Path != "/api/dataValueSets":
		return r.Method + " " + r.URL.Path
	case !strings.HasPrefix(r.Header.Get("Content-Type"), "application/json"):
		return "Content-Type " + r.Header.Get("Content-Type")
	case q.Get("dryRun") != "true" && q.Get("dryRun") != "false", q.Get("idScheme") != "UID",
		q.Get("orgUnitIdScheme") != "UID", q.Get("importStrategy") != "CREATE_AND_UPDATE":
		return "parameters " + q.Encode()
	}
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.DisallowUnknownFields()
	var set dvs
	if err := dec.Decode(&set); err != nil {
		return err.Error()
	}
	if !uidRE.MatchString(set.DataSet) || !monthlyRE.MatchString(set.Period) || len(set.DataValues) == 0 {
		return fmt.Sprintf("data set %q, period %q, %d values", set.DataSet, set.Period, len(set.DataValues))
	}
	for i, v := range set.DataValues {
		if !uidRE.MatchString(v.DataElement) || !uidRE.MatchString(v.OrgUnit) || !valueRE.MatchString(v.Value) ||
			(v.CategoryOptionCombo != "" && !uidRE.MatchString(v.CategoryOptionCombo)) {
			return fmt.Sprintf("value %d: %+v", i, v)
		}
	}
	return ""
}

func dhis2Config(url string) reports.DHIS2Config {
	return reports.DHIS2Config{URL: url, TokenEnv: "DHIS2_PAT", DataSet: dataSet, PeriodType: "monthly",
		Commodities: map[string]reports.DHIS2Mapping{
			"ors":  {DataElement: deORS, CategoryOptionCombo: cocORS},
			"ZINC": {DataElement: deZinc},
		},
		StockoutDaysElement: deOutDays, Attempts: 3, RetryBackoff: time.Millisecond, BreakerFailures: 3}
}

func (c *country) pusher(t *testing.T, cfg reports.DHIS2Config) *reports.Pusher {
	t.Helper()
	if err := cfg.Validate(func(k string) string { return map[string]string{"DHIS2_PAT": dhis2PAT}[k] }); err != nil {
		t.Fatal(err)
	}
	p, err := reports.NewPusher(c.rep, cfg, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// stockCountry is the test country with DHIS2 org units on F1 and F2, and November's
// reports: F1 counts ORS twice and zinc twice (a stock-out between), F2 counts ORS once,
// F3 (no org unit) counts ORS, and F1 counts ACT (no data element). October has one.
func stockCountry(t *testing.T) *country {
	t.Helper()
	c := newCountry(t)
	ctx := context.Background()
	for _, f := range []registry.FacilityInput{{Code: "F1", Name: "Klay HC", Location: "d1", DHIS2UID: ouF1},
		{Code: "F2", Name: "Tubmanburg Hospital", Location: "d1", DHIS2UID: ouF2}} {
		if _, err := c.reg.UpdateFacility(ctx, f.Code, f); err != nil {
			t.Fatal(err)
		}
	}
	c.stock(t, "A", "ors", 99, 0, day(2026, 10, 30))
	c.stock(t, "A", "ors", 20, 0, day(2026, 11, 3))
	c.stock(t, "B", "ors", 5, 2, day(2026, 11, 17)) // B works at F1 too: the latest count wins
	c.stock(t, "A", "zinc", 0, 4, day(2026, 11, 10))
	c.stock(t, "A", "zinc", 10, 3, day(2026, 11, 18))
	c.stock(t, "A", "act", 7, 0, day(2026, 11, 4))
	c.stock(t, "C", "ors", 30, 0, day(2026, 11, 5))
	c.stock(t, "D", "ors", 12, 0, day(2026, 11, 6))
	return c
}

// dhis2Keys authenticates "admin", "reader", and "nimba" and "nimba-admin" (scoped to
// Nimba).
type dhis2Keys struct{ nimba *mhero.Location }

func (k dhis2Keys) Authenticate(_ context.Context, key string) (*mhero.Principal, error) {
	switch key {
	case "admin":
		return &mhero.Principal{Name: "admin", Role: mhero.RoleAdmin}, nil
	case "reader":
		return &mhero.Principal{Name: "reader", Role: mhero.RoleReader}, nil
	case "nimba":
		return &mhero.Principal{Name: "nimba", Role: mhero.RoleReader, Scope: k.nimba}, nil
	case "nimba-admin":
		return &mhero.Principal{Name: "nimba-admin", Role: mhero.RoleAdmin, Scope: k.nimba}, nil
	}
	return nil, mhero.Errorf(mhero.EUNAUTHORIZED, "Invalid API key.")
}

func (c *country) exportServer(t *testing.T, p *reports.Pusher) *api.Server {
	t.Helper()
	nimba, err := c.reg.FindLocation(context.Background(), "nimba")
	if err != nil {
		t.Fatal(err)
	}
	srv := api.New(api.Options{Auth: dhis2Keys{nimba}})
	c.rep.ExportRoutes(srv, p)
	return srv
}

func call(t *testing.T, srv http.Handler, method, key, target string) *httptest.ResponseRecorder {
	t.Helper()
	req := httptest.NewRequest(method, target, nil)
	req.Header.Set("Authorization", "Bearer "+key)
	w := httptest.NewRecorder()
	srv.ServeHTTP(w, req)
	return w
}

func compact(t *testing.T, s string) string {
	t.Helper()
	var b bytes.Buffer
	if err := json.Compact(&b, []byte(s)); err != nil {
		t.Fatalf("not JSON: %v\n%s", err, s)
	}
	return b.String()
}

// wantNovember is November's payload: latest counts, summed stock-out days.
const wantNovember = `{"dataSet":"pBOMPrpg1QX","period":"202611","dataValues":[
	{"dataElement":"uL3WTPcjcBJ","categoryOptionCombo":"HllvX50cXC0","orgUnit":"DiszpKrYNg8","value":"5"},
	{"dataElement":"hMbtS1mOyhk","categoryOptionCombo":"HllvX50cXC0","orgUnit":"DiszpKrYNg8","value":"2"},
	{"dataElement":"Jtf34kNZhzP","orgUnit":"DiszpKrYNg8","value":"10"},
	{"dataElement":"hMbtS1mOyhk","orgUnit":"DiszpKrYNg8","value":"7"},
	{"dataElement":"uL3WTPcjcBJ","categoryOptionCombo":"HllvX50cXC0","orgUnit":"Rp268JB6Ne4","value":"30"},
	{"dataElement":"hMbtS1mOyhk","categoryOptionCombo":"HllvX50cXC0","orgUnit":"Rp268JB6Ne4","value":"0"}]`

const wantWarnings = `"warnings":[
	{"commodity":"act","skipped":1,"message":"commodity act has no data element in dhis2.commodities: its stock is not exported"},
	{"facility":"F3","skipped":1,"message":"facility F3 (Ganta HC) has no DHIS2 uid (dhis2_uid): its stock is not exported"}]}`

func TestDHIS2ExportPayload(t *testing.T) {
	t.Parallel()
	c := stockCountry(t)
	srv := c.exportServer(t, c.pusher(t, dhis2Config("http://127.0.0.1:1")))

	w := call(t, srv, http.MethodGet, "reader", "/api/v1/exports/dhis2?period=202611")
	if w.Code != http.StatusOK || w.Header().Get("X-Period") != "202611" {
		t.Fatalf("export = %d %s", w.Code, w.Body)
	}
	if got, want := compact(t, w.Body.String()), compact(t, wantNovember+","+wantWarnings); got != want {
		t.Errorf("export =\n%s\nwant\n%s", got, want)
	}
	// Without a period: the previous complete month (the test's now is 20 November).
	w = call(t, srv, http.MethodGet, "reader", "/api/v1/exports/dhis2")
	if got := compact(t, w.Body.String()); w.Code != http.StatusOK || !strings.Contains(got, `"period":"202610"`) ||
		!strings.Contains(got, `"orgUnit":"DiszpKrYNg8","value":"99"`) {
		t.Errorf("default period = %d %s", w.Code, got)
	}
	// A key scoped to Nimba exports Nimba: F3, which has no org unit.
	w = call(t, srv, http.MethodGet, "nimba", "/api/v1/exports/dhis2?period=202611")
	if got := compact(t, w.Body.String()); w.Code != http.StatusOK || !strings.Contains(got, `"dataValues":[],"warnings":[{"facility":"F3"`) {
		t.Errorf("Nimba's export = %d %s", w.Code, got)
	}
	for _, tt := range []struct {
		target string
		status int
	}{
		{"/api/v1/exports/dhis2?period=2026W47", http.StatusBadRequest}, // a weekly period for a monthly data set
		{"/api/v1/exports/dhis2?period=2026-11", http.StatusBadRequest},
		{"/api/v1/exports/dhis2?period=202611&format=csv", http.StatusBadRequest},
		{"/api/v1/exports/dhis2?perod=202611", http.StatusBadRequest},
		{"/api/v1/exports/dhis2?period=202611&location=atlantis", http.StatusNotFound},
	} {
		if w := call(t, srv, http.MethodGet, "reader", tt.target); w.Code != tt.status || !strings.Contains(w.Body.String(), `"error"`) {
			t.Errorf("GET %s = %d %s, want %d", tt.target, w.Code, w.Body, tt.status)
		}
	}
	// A weekly data set: ISO weeks, stock-out days of the week's reports only.
	weekly := dhis2Config("http://127.0.0.1:1")
	weekly.PeriodType = "weekly"
	wsrv := c.exportServer(t, c.pusher(t, weekly))
	w = call(t, wsrv, http.MethodGet, "reader", "/api/v1/exports/dhis2?period=2026W47")
	if got := compact(t, w.Body.String()); w.Code != http.StatusOK || !strings.HasPrefix(got, `{"dataSet":"pBOMPrpg1QX","period":"2026W47","dataValues":[`+
		`{"dataElement":"uL3WTPcjcBJ","categoryOptionCombo":"HllvX50cXC0","orgUnit":"DiszpKrYNg8","value":"5"},`+
		`{"dataElement":"hMbtS1mOyhk","categoryOptionCombo":"HllvX50cXC0","orgUnit":"DiszpKrYNg8","value":"2"},`+
		`{"dataElement":"Jtf34kNZhzP","orgUnit":"DiszpKrYNg8","value":"10"},{"dataElement":"hMbtS1mOyhk","orgUnit":"DiszpKrYNg8","value":"3"}],`) {
		t.Errorf("weekly export = %d %s", w.Code, got)
	}
	if w := call(t, wsrv, http.MethodGet, "reader", "/api/v1/exports/dhis2?period=202611"); w.Code != http.StatusBadRequest {
		t.Errorf("a month for a weekly data set = %d", w.Code)
	}

	off := api.New(api.Options{Auth: dhis2Keys{}})
	c.rep.ExportRoutes(off, nil)
	if w := call(t, off, http.MethodGet, "reader", "/api/v1/exports/dhis2?period=202611"); w.Code != http.StatusNotImplemented {
		t.Errorf("export without DHIS2 = %d %s", w.Code, w.Body)
	}
	if w := call(t, off, http.MethodGet, "reader", "/api/v1/exports/dhis2/runs"); w.Code != http.StatusOK {
		t.Errorf("runs without DHIS2 = %d %s", w.Code, w.Body)
	}
}

// TestDHIS2PushRecordsConflicts: DHIS2 does not know F2's org unit; its two values are
// ignored, and the push says so, naming the facility and commodity.
func TestDHIS2PushRecordsConflicts(t *testing.T) {
	t.Parallel()
	c := stockCountry(t)
	d := newDHIS2Server(t)
	d.locked(func() { delete(d.known, ouF2) })
	srv := c.exportServer(t, c.pusher(t, dhis2Config(d.srv.URL)))

	w := call(t, srv, http.MethodPost, "admin", "/api/v1/exports/dhis2/push?period=202611")
	var run reports.PushRunDetail
	if w.Code != http.StatusOK || json.Unmarshal(w.Body.Bytes(), &run) != nil {
		t.Fatalf("push = %d %s", w.Code, w.Body)
	}
	if run.Status != reports.PushWarning || run.Imported != 4 || run.Ignored != 2 || run.Conflicts != 2 || run.ValuesSent != 6 ||
		run.Skipped != 2 || len(run.Warnings) != 2 || run.DHIS2Status != reports.DHIS2StatusWarning || run.Actor != "admin" || run.DryRun != nil {
		t.Errorf("push = %+v", run.PushRun)
	}
	// What DHIS2 received is exactly the export, without the warnings.
	if got := compact(t, string(d.reqs()[0].body)); got != compact(t, wantNovember+"}") {
		t.Errorf("payload =\n%s", got)
	}
	w = call(t, srv, http.MethodGet, "reader", "/api/v1/exports/dhis2/runs/"+strconv.FormatInt(run.ID, 10))
	var got reports.PushRunDetail
	if w.Code != http.StatusOK || json.Unmarshal(w.Body.Bytes(), &got) != nil || len(got.ConflictDetails) != 2 {
		t.Fatalf("GET run = %d %s", w.Code, w.Body)
	}
	c0 := got.ConflictDetails[0]
	if c0.Phase != "import" || c0.Object != ouF2 || c0.ErrorCode != "E7617" || len(c0.Indexes) != 1 || c0.Indexes[0] != 4 ||
		len(c0.Values) != 1 || c0.Values[0].Facility != "F2" || c0.Values[0].Commodity != "ors" || c0.Values[0].Kind != reports.KindStock ||
		c0.Values[0].Value != "30" || got.ConflictDetails[1].Values[0].Kind != reports.KindStockoutDays {
		t.Errorf("conflicts = %+v", got.ConflictDetails)
	}

	// Pushed again, DHIS2 updates what it has.
	d.locked(func() { d.known[ouF2] = true })
	w = call(t, srv, http.MethodPost, "admin", "/api/v1/exports/dhis2/push?period=202611")
	if json.Unmarshal(w.Body.Bytes(), &run) != nil || run.Status != reports.PushSucceeded || run.Updated != 4 || run.Imported != 2 {
		t.Errorf("second push = %d %s", w.Code, w.Body)
	}
	w = call(t, srv, http.MethodGet, "reader", "/api/v1/exports/dhis2/runs?limit=1")
	var page api.Page[reports.PushRun]
	if w.Code != http.StatusOK || json.Unmarshal(w.Body.Bytes(), &page) != nil || len(page.Items) != 1 || page.Items[0].ID != run.ID ||
		page.NextCursor == "" {
		t.Errorf("runs = %d %s", w.Code, w.Body)
	}
	w = call(t, srv, http.MethodGet, "reader", "/api/v1/exports/dhis2/runs?cursor="+page.NextCursor)
	if json.Unmarshal(w.Body.Bytes(), &page) != nil || len(page.Items) != 1 || page.Items[0].Conflicts != 2 {
		t.Errorf("runs, page 2 = %d %s", w.Code, w.Body)
	}
	for _, key := range []string{"reader", "nimba-admin"} {
		if w := call(t, srv, http.MethodPost, key, "/api/v1/exports/dhis2/push?period=202611"); w.Code != http.StatusForbidden {
			t.Errorf("push with the %s key = %d", key, w.Code)
		}
	}
	if w := call(t, srv, http.MethodGet, "reader", "/api/v1/exports/dhis2/runs/9999"); w.Code != http.StatusNotFound {
		t.Errorf("unknown run = %d", w.Code)
	}
}

func TestDHIS2LegacySummary(t *testing.T) {
	t.Parallel()
	c := stockCountry(t)
	d := newDHIS2Server(t)
	d.legacy = true
	d.locked(func() { delete(d.known, ouF2) })
	run, err := c.pusher(t, dhis2Config(d.srv.URL)).Push(context.Background(), period(t, "202611"))
	if err != nil {
		t.Fatal(err)
	}
	if run.Status != reports.PushWarning || run.Imported != 4 || run.Ignored != 2 || len(run.ConflictDetails) != 2 {
		t.Fatalf("push = %+v", run)
	}
	// No indexes in the old shape: the conflict's object names the org unit, and every
	// value sent for it is listed.
	if v := run.ConflictDetails[0].Values; len(v) != 2 || v[0].Facility != "F2" || v[1].Kind != reports.KindStockoutDays {
		t.Errorf("conflict values = %+v", v)
	}
}

func TestDHIS2DryRunFirst(t *testing.T) {
	t.Parallel()
	c := stockCountry(t)
	d := newDHIS2Server(t)
	cfg := dhis2Config(d.srv.URL)
	cfg.DryRunFirst = true
	p := c.pusher(t, cfg)

	run, err := p.Push(context.Background(), period(t, "202611"))
	if err != nil || run.Status != reports.PushSucceeded || run.DryRun == nil || run.DryRun.Imported != 6 || run.Imported != 6 {
		t.Fatalf("push = %+v, %v", run, err)
	}
	if r := d.reqs(); len(r) != 2 || r[0].query.Get("dryRun") != "true" || r[1].query.Get("dryRun") != "false" ||
		!bytes.Equal(r[0].body, r[1].body) {
		t.Errorf("requests: %d, dry run first %v", len(r), r)
	}

	// A dry run with conflicts stops the push: nothing is imported.
	d.locked(func() {
		delete(d.known, ouF2)
		clear(d.stored)
	})
	run, err = p.Push(context.Background(), period(t, "202611"))
	stored := 0
	d.locked(func() { stored = len(d.stored) })
	if err != nil || run.Status != reports.PushFailed || run.Conflicts != 2 || !strings.Contains(run.Error, "nothing was imported") ||
		run.ConflictDetails[0].Phase != "dry_run" || d.hits() != 3 || stored != 0 {
		t.Errorf("push after a dry run with conflicts = %+v, %v (%d requests)", run, err, d.hits())
	}
}

func TestDHIS2Retries5xxThenBreakerOpens(t *testing.T) {
	t.Parallel()
	c := stockCountry(t)
	d := newDHIS2Server(t)
	d.answer = func(*http.Request) (int, string) { return http.StatusBadGateway, "<html>Bad Gateway</html>" }
	p := c.pusher(t, dhis2Config(d.srv.URL))

	run, err := p.Push(context.Background(), period(t, "202611"))
	if err != nil || run.Status != reports.PushFailed || !strings.Contains(run.Error, "DHIS2 answered 502") || d.hits() != 3 {
		t.Fatalf("push = %+v, %v after %d requests; want failed after 3 attempts", run, err, d.hits())
	}
	// Three failures in a row opened the breaker: the next push does not reach DHIS2.
	run, err = p.Push(context.Background(), period(t, "202611"))
	if err != nil || run.Status != reports.PushFailed || !strings.Contains(run.Error, "circuit breaker") || d.hits() != 3 {
		t.Errorf("push with the breaker open = %+v, %v after %d requests", run, err, d.hits())
	}
}

func TestDHIS2DoesNotRetry4xx(t *testing.T) {
	t.Parallel()
	for _, tt := range []struct {
		name   string
		code   int
		body   string
		status string
		want   string
	}{
		{"bad request", http.StatusBadRequest, `{"httpStatus":"Bad Request","status":"ERROR","message":"Invalid period"}`,
			reports.PushFailed, "DHIS2 answered 400: DHIS2's answer has no import count: Invalid period"},
		{"credentials", http.StatusUnauthorized, "", reports.PushFailed, "refused the credentials (401)"},
		{"login page", http.StatusFound, "", reports.PushFailed, "a redirect"},
		{"import refused", http.StatusConflict, `{"httpStatus":"Conflict","httpStatusCode":409,"status":"ERROR","message":"An error occurred",` +
			`"response":{"responseType":"ImportSummary","status":"ERROR","description":"Data set not found or not accessible",` +
			`"importCount":{"imported":0,"updated":0,"ignored":6,"deleted":0},` +
			`"conflicts":[{"object":"pBOMPrpg1QX","objects":{"dataSet":"pBOMPrpg1QX"},"value":"Data set not found or not accessible","errorCode":"E7600","property":"dataSet"}]}}`,
			reports.PushFailed, "DHIS2 refused the import: Data set not found"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			c := stockCountry(t)
			d := newDHIS2Server(t)
			d.answer = func(*http.Request) (int, string) { return tt.code, tt.body }
			run, err := c.pusher(t, dhis2Config(d.srv.URL)).Push(context.Background(), period(t, "202611"))
			if err != nil || run.Status != tt.status || !strings.Contains(run.Error, tt.want) || d.hits() != 1 {
				t.Errorf("push = %s %q, %v after %d requests; want %s %q after 1", run.Status, run.Error, err, d.hits(), tt.status, tt.want)
			}
			if strings.Contains(run.Error, dhis2PAT) {
				t.Error("the error shows the token")
			}
		})
	}
}

func TestDHIS2PushNothingToSend(t *testing.T) {
	t.Parallel()
	c := newCountry(t)
	d := newDHIS2Server(t)
	run, err := c.pusher(t, dhis2Config(d.srv.URL)).Push(context.Background(), period(t, "202611"))
	if err != nil || run.Status != reports.PushSkipped || d.hits() != 0 {
		t.Errorf("push of an empty month = %+v, %v", run, err)
	}
	if _, err := c.pusher(t, dhis2Config(d.srv.URL)).Push(context.Background(), period(t, "2026W47")); mhero.ErrorCode(err) != mhero.EINVALID {
		t.Errorf("a weekly period for a monthly data set: %v", err)
	}
}

// TestDHIS2OnePushAtATime: a push while another runs (on any instance) is refused.
func TestDHIS2OnePushAtATime(t *testing.T) {
	t.Parallel()
	c := stockCountry(t)
	d := newDHIS2Server(t)
	d.entered, d.block = make(chan struct{}), make(chan struct{})
	p := c.pusher(t, dhis2Config(d.srv.URL))
	done := make(chan error, 1)
	go func() {
		_, err := p.Push(context.Background(), period(t, "202611"))
		done <- err
	}()
	<-d.entered
	if _, err := c.pusher(t, dhis2Config(d.srv.URL)).Push(context.Background(), period(t, "202611")); mhero.ErrorCode(err) != mhero.ECONFLICT {
		t.Errorf("a second push = %v, want conflict", err)
	}
	close(d.block)
	if err := <-done; err != nil {
		t.Fatal(err)
	}
}

// TestDHIS2ScheduledPush: with push_every, Run pushes the previous month at once (no push
// recorded yet) and stops with its context.
func TestDHIS2ScheduledPush(t *testing.T) {
	t.Parallel()
	c := stockCountry(t)
	d := newDHIS2Server(t)
	cfg := dhis2Config(d.srv.URL)
	cfg.PushEvery = 24 * time.Hour
	p := c.pusher(t, cfg)
	pushed := make(chan *reports.PushRunDetail, 1)
	p.OnPush = func(r *reports.PushRunDetail, err error) {
		if err != nil {
			t.Errorf("scheduled push: %v", err)
		}
		select {
		case pushed <- r:
		default:
		}
	}
	ctx, cancel := context.WithCancel(context.Background())
	stopped := make(chan error, 1)
	go func() { stopped <- p.Run(ctx) }()
	r := <-pushed
	cancel()
	if err := <-stopped; err != nil {
		t.Errorf("Run = %v", err)
	}
	if r == nil || r.Period != "202610" || r.Trigger != reports.TriggerSchedule || r.Actor != "schedule" || r.Status != reports.PushSucceeded {
		t.Errorf("scheduled push = %+v", r)
	}
}

func TestDHIS2ConfigValidate(t *testing.T) {
	t.Parallel()
	env := func(k string) string { return map[string]string{"PAT": "secret-token", "PW": "secret-pw"}[k] }
	valid := dhis2Config("https://dhis2.example.org")
	valid.TokenEnv = "PAT"
	for _, tt := range []struct {
		name string
		edit func(*reports.DHIS2Config)
		want []string
	}{
		{"valid", func(*reports.DHIS2Config) {}, nil},
		{"basic auth", func(c *reports.DHIS2Config) { c.TokenEnv, c.Username, c.PasswordEnv = "", "mhero", "PW" }, nil},
		{"weekly by code", func(c *reports.DHIS2Config) {
			c.PeriodType, c.IDScheme, c.DataElementIDScheme, c.PushAt = "weekly", "code", "code", "02:00"
			c.DataSet, c.StockoutDaysElement = "LMIS_WEEKLY", "STOCKOUT_DAYS"
			c.Commodities = map[string]reports.DHIS2Mapping{"ors": {DataElement: "ORS_SOH"}}
		}, nil},
		{"no auth", func(c *reports.DHIS2Config) { c.TokenEnv = "" }, []string{"needs token_env"}},
		{"unset secret", func(c *reports.DHIS2Config) { c.TokenEnv = "NOPE" }, []string{"NOPE (token_env) is not set"}},
		{"bad ids", func(c *reports.DHIS2Config) {
			c.DataSet = "not-a-uid"
			c.Commodities = map[string]reports.DHIS2Mapping{"ors": {DataElement: ""}, "zinc": {DataElement: deZinc, CategoryOptionCombo: "x"}}
		}, []string{"dhis2.data_set", "commodities.ors.data_element is required", "commodities.zinc.category_option_combo"}},
		{"colliding values", func(c *reports.DHIS2Config) {
			c.Commodities = map[string]reports.DHIS2Mapping{"ors": {DataElement: deORS}, "zinc": {DataElement: deZinc}}
			c.StockoutDaysElement = deORS
		}, []string{"go to the same data element"}},
		{"schedule", func(c *reports.DHIS2Config) { c.PushEvery, c.PushAt = time.Hour, "25:00" }, []string{"push_at", "not both"}},
		{"everything else", func(c *reports.DHIS2Config) {
			c.URL, c.IDScheme, c.PeriodType, c.Commodities = "https://u:p@dhis2.example.org", "name", "yearly", nil
		}, []string{"no credentials", "id_scheme", "period_type", "at least one commodity"}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			cfg := valid
			cfg.Commodities = map[string]reports.DHIS2Mapping{}
			for k, v := range valid.Commodities {
				cfg.Commodities[k] = v
			}
			tt.edit(&cfg)
			err := cfg.Validate(env)
			if len(tt.want) == 0 && err != nil {
				t.Fatalf("Validate = %v", err)
			}
			for _, w := range tt.want {
				if err == nil || !strings.Contains(err.Error(), w) {
					t.Errorf("Validate = %v, want it to mention %q", err, w)
				}
			}
			if err != nil && strings.Contains(err.Error(), "secret") {
				t.Error("the error shows a secret")
			}
			if s := fmt.Sprintf("%v %+v", cfg, &cfg); strings.Contains(s, "secret") {
				t.Errorf("printing the configuration shows a secret: %s", s)
			}
		})
	}
}

// TestOpenAPIDocumentsTheExportRoutes keeps api/openapi.yaml true for /api/v1/exports.
func TestOpenAPIDocumentsTheExportRoutes(t *testing.T) {
	t.Parallel()
	srv := api.New(api.Options{})
	(&reports.Store{}).ExportRoutes(srv, nil)
	routes, missing, extra, err := apitest.RouteDrift(srv.Root, func(path string) bool { return strings.HasPrefix(path, "/api/v1/exports/") })
	if err != nil {
		t.Fatal(err)
	}
	if len(missing) > 0 || len(extra) > 0 || routes != 5 {
		t.Errorf("OpenAPI out of step with the %d export routes:\n  not documented: %v\n  documented, not routed: %v", routes, missing, extra)
	}
}
