package main

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
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
	"github.com/mhero-health/mhero/registry/registrytest"
	"github.com/mhero-health/mhero/smpp"
	"github.com/mhero-health/mhero/smpp/smpptest"
)

func envMap(m map[string]string) func(string) string { return func(k string) string { return m[k] } }

func TestLoadConfigReportsEveryProblemAtOnce(t *testing.T) {
	dir := t.TempDir()
	file := filepath.Join(dir, "mhero.yaml")
	writeFile(t, file, `
country: XX
smsc:
  - name: lonestar
    host: 127.0.0.1
    system_id: mhero
    password_env: LONESTAR_PW
    binds: 2
    window: 10
    prefixes: ["+23188"]
ussd:
  gateways:
    africastalking: { allow: ["not-a-cidr"] }
commodities:
  - { code: ors, name: { en: "ORS sachets" } }
  - { code: ORS, name: { en: "again" } }
time_zone: Mars/Olympus
messaging: { quiet_hours: "9pm-7am", lease: 1s }
`)
	_, err := LoadConfig(envMap(map[string]string{
		"MHERO_CONFIG":     file,
		"MHERO_LOG_LEVEL":  "loud",
		"MHERO_HTTP_ADDR":  "8080",
		"MHERO_VALKEY_URL": "http://x",
	}))
	if err == nil {
		t.Fatal("LoadConfig accepted a broken configuration")
	}
	for _, want := range []string{"MHERO_LOG_LEVEL", "MHERO_HTTP_ADDR", "MHERO_VALKEY_URL", `country "XX"`,
		"LONESTAR_PW", "not-a-cidr", `code "ORS"`, "Mars/Olympus", "quiet_hours", "messaging.lease"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("LoadConfig error does not mention %s:\n%v", want, err)
		}
	}
}

func TestLoadConfigRejectsUnknownYAMLKeys(t *testing.T) {
	file := filepath.Join(t.TempDir(), "mhero.yaml")
	writeFile(t, file, "country: LR\ncurency: USD\n")
	_, err := LoadConfig(envMap(map[string]string{"MHERO_CONFIG": file}))
	if err == nil || !strings.Contains(err.Error(), "curency") {
		t.Fatalf("LoadConfig with a misspelt key: err = %v, want it named", err)
	}
}

func TestLoadConfigReadsTheShippedExample(t *testing.T) {
	cfg, err := LoadConfig(envMap(map[string]string{"MHERO_CONFIG": "../../mhero.yaml"}))
	if err != nil {
		t.Fatalf("the repository's mhero.yaml does not load: %v", err)
	}
	if cfg.File.Country != "LR" || len(cfg.File.SMSC) == 0 || len(cfg.File.Commodities) == 0 {
		t.Errorf("mhero.yaml = %+v, want country LR with SMSCs and commodities", cfg.File)
	}
}

func TestMissingDefaultFileIsFineButNamedFileIsNot(t *testing.T) {
	t.Chdir(t.TempDir())
	if _, err := LoadConfig(envMap(nil)); err != nil {
		t.Errorf("no mhero.yaml and no MHERO_CONFIG: %v, want defaults", err)
	}
	if _, err := LoadConfig(envMap(map[string]string{"MHERO_CONFIG": "nope.yaml"})); err == nil {
		t.Error("MHERO_CONFIG naming a missing file was accepted")
	}
}

func writeFile(t *testing.T, name, body string) {
	t.Helper()
	if err := os.WriteFile(name, []byte(body), 0o600); err != nil {
		t.Fatal(err)
	}
}

// testApp starts the whole server on a fresh database, the real Valkey/Redis, and a
// loopback port, and returns it with an admin key.
func testApp(t *testing.T) (*App, string) {
	t.Helper()
	cfg := DefaultConfig()
	cfg.DatabaseURL = registrytest.NewDatabase(t)
	cfg.ValkeyURL, cfg.ValkeyPrefix = registrytest.ValkeyURL(), registrytest.KeyPrefix(t)
	cfg.HTTPAddr = "127.0.0.1:0"
	cfg.ShutdownTimeout = 5 * time.Second
	log := slog.New(slog.DiscardHandler)
	a, err := Start(t.Context(), cfg, log)
	if err != nil {
		t.Fatalf("Start: %v", err)
	}
	t.Cleanup(func() {
		if err := a.Close(context.Background()); err != nil {
			t.Errorf("Close: %v", err)
		}
	})
	key, _, err := a.registry.CreateAPIKey(t.Context(), "test-admin", "admin", "")
	if err != nil {
		t.Fatal(err)
	}
	return a, key
}

type client struct {
	t    *testing.T
	base string
	key  string
}

func (c client) do(method, path, contentType string, body io.Reader, hdr ...string) (*http.Response, []byte) {
	c.t.Helper()
	req, err := http.NewRequestWithContext(c.t.Context(), method, c.base+path, body)
	if err != nil {
		c.t.Fatal(err)
	}
	if c.key != "" {
		req.Header.Set("Authorization", "Bearer "+c.key)
	}
	if contentType != "" {
		req.Header.Set("Content-Type", contentType)
	}
	for i := 0; i+1 < len(hdr); i += 2 {
		req.Header.Set(hdr[i], hdr[i+1])
	}
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		c.t.Fatalf("%s %s: %v", method, path, err)
	}
	defer res.Body.Close()
	b, _ := io.ReadAll(res.Body)
	return res, b
}

func (c client) json(method, path string, in any, wantStatus int, out any) []byte {
	c.t.Helper()
	var body io.Reader
	if in != nil {
		switch v := in.(type) {
		case string:
			body = strings.NewReader(v)
		default:
			b, _ := json.Marshal(v)
			body = bytes.NewReader(b)
		}
	}
	res, b := c.do(method, path, "application/json", body)
	if res.StatusCode != wantStatus {
		c.t.Fatalf("%s %s = %d %s, want %d", method, path, res.StatusCode, b, wantStatus)
	}
	if out != nil {
		if err := json.Unmarshal(b, out); err != nil {
			c.t.Fatalf("%s %s: decode %s: %v", method, path, b, err)
		}
	}
	return b
}

type apiError struct {
	Error struct {
		Code    string `json:"code"`
		Message string `json:"message"`
		Details []struct {
			Line    int    `json:"line"`
			Field   string `json:"field"`
			Message string `json:"message"`
		} `json:"details"`
	} `json:"error"`
}

func TestServerEndToEnd(t *testing.T) {
	a, key := testApp(t)
	admin := client{t: t, base: "http://" + a.Addr(), key: key}
	anon := client{t: t, base: admin.base}

	t.Run("health, readiness and metrics need no key", func(t *testing.T) {
		anon.json("GET", "/healthz", nil, 200, nil)
		var ready struct {
			Status string                    `json:"status"`
			Checks map[string]map[string]any `json:"checks"`
		}
		anon.json("GET", "/readyz", nil, 200, &ready)
		if ready.Status != "ok" || ready.Checks["postgres"]["status"] != "ok" || ready.Checks["valkey"]["status"] != "ok" {
			t.Errorf("readyz = %+v, want postgres and valkey ok", ready)
		}
		res, body := anon.do("GET", "/metrics", "", nil)
		if res.StatusCode != 200 || !bytes.Contains(body, []byte(`mhero_http_requests_total{code="200",method="GET",route="/readyz"}`)) ||
			!bytes.Contains(body, []byte("mhero_db_pool_connections")) {
			t.Errorf("metrics lack request counts by route or pool stats:\n%.2000s", body)
		}
	})

	t.Run("no key, bad key", func(t *testing.T) {
		var e apiError
		anon.json("GET", "/api/v1/workers", nil, 401, &e)
		if e.Error.Code != "unauthorized" {
			t.Errorf("no key: %+v", e)
		}
		bad := client{t: t, base: admin.base, key: "mhk_not_a_real_key"}
		bad.json("GET", "/api/v1/workers", nil, 401, nil)
	})

	// Build a small tree: LR > bomi > tubmanburg (facility), LR > nimba > ganta (facility).
	admin.json("POST", "/api/v1/locations", map[string]string{"code": "LR", "name": "Liberia"}, 201, nil)
	admin.json("POST", "/api/v1/locations", map[string]string{"code": "bomi", "name": "Bomi", "parent": "LR"}, 201, nil)
	admin.json("POST", "/api/v1/locations", map[string]string{"code": "nimba", "name": "Nimba", "parent": "LR"}, 201, nil)
	admin.json("POST", "/api/v1/facilities", map[string]string{"code": "FAC-1", "name": "Tubmanburg HC", "location": "bomi"}, 201, nil)
	admin.json("POST", "/api/v1/facilities", map[string]string{"code": "FAC-2", "name": "Ganta HC", "location": "nimba"}, 201, nil)
	admin.json("POST", "/api/v1/cadres", map[string]string{"code": "chw", "name": "Community health worker"}, 200, nil)
	admin.json("POST", "/api/v1/cadres", map[string]string{"code": "nurse", "name": "Nurse"}, 200, nil)
	admin.json("POST", "/api/v1/skills", map[string]string{"code": "ebola-ipc"}, 200, nil)

	var w1 struct {
		ID     int64    `json:"id"`
		MSISDN string   `json:"msisdn"`
		Skills []string `json:"skills"`
	}
	admin.json("POST", "/api/v1/workers", map[string]any{"name": "Musu Kollie", "msisdn": "0886123456", "cadre": "chw",
		"facility": "FAC-1", "skills": []string{"ebola-ipc"}, "ihris_id": "P-1"}, 201, &w1)
	if w1.MSISDN != "+231886123456" || len(w1.Skills) != 1 {
		t.Errorf("created worker = %+v, want the national number in E.164 and one skill", w1)
	}
	admin.json("POST", "/api/v1/workers", map[string]any{"name": "Kou Zogbay", "msisdn": "+231776123457", "cadre": "nurse", "facility": "FAC-2"}, 201, nil)

	t.Run("bad input gets a clear error", func(t *testing.T) {
		var e apiError
		admin.json("POST", "/api/v1/workers", map[string]any{"name": "Twin", "msisdn": "+231 88 612 3456", "facility": "FAC-1"}, 409, &e)
		admin.json("POST", "/api/v1/workers", `{"name": "X", "msisdn": 231886}`, 400, &e)
		if e.Error.Code != "invalid" || len(e.Error.Details) != 1 || e.Error.Details[0].Field != "msisdn" {
			t.Errorf("wrong type: %+v, want invalid naming msisdn", e)
		}
		admin.json("POST", "/api/v1/workers", `{"name": "X", "msisdn": "0886000001", "colour": "blue"}`, 400, &e)
		if len(e.Error.Details) != 1 || e.Error.Details[0].Field != "colour" {
			t.Errorf("unknown field: %+v, want it named", e)
		}
		admin.json("POST", "/api/v1/workers", `{"name": "X"`, 400, nil)
		e = apiError{}
		admin.json("POST", "/api/v1/workers", map[string]any{"name": "", "msisdn": "12", "cadre": "wizard", "facility": "FAC-9"}, 422, &e)
		fields := map[string]bool{}
		for _, d := range e.Error.Details {
			fields[d.Field] = true
		}
		for _, f := range []string{"name", "msisdn", "cadre", "facility"} {
			if !fields[f] {
				t.Errorf("validation details %+v lack %s", e.Error.Details, f)
			}
		}
		big := `{"name": "` + strings.Repeat("a", api.MaxJSONBody) + `"}`
		admin.json("POST", "/api/v1/workers", big, 413, &e)
		admin.json("GET", "/api/v1/workers/999999", nil, 404, nil)
		admin.json("GET", "/api/v1/nothing-here", nil, 404, nil)
	})

	t.Run("targeting and preview", func(t *testing.T) {
		var page struct {
			Items []struct {
				Name string `json:"name"`
			} `json:"items"`
		}
		admin.json("GET", "/api/v1/workers?location=bomi", nil, 200, &page)
		if len(page.Items) != 1 || page.Items[0].Name != "Musu Kollie" {
			t.Errorf("workers in bomi = %+v", page.Items)
		}
		admin.json("GET", "/api/v1/workers?cadre=chw,nurse&skill=ebola-ipc", nil, 200, &page)
		if len(page.Items) != 1 {
			t.Errorf("chw or nurse with ebola-ipc = %+v, want 1", page.Items)
		}
		var p struct {
			Count      int `json:"count"`
			ByLocation []struct {
				Code  string `json:"code"`
				Count int    `json:"count"`
			} `json:"by_location"`
		}
		admin.json("POST", "/api/v1/targets/preview", map[string]any{"locations": []string{"LR"}}, 200, &p)
		if p.Count != 2 || len(p.ByLocation) != 2 {
			t.Errorf("preview of LR = %+v, want 2 workers over bomi and nimba", p)
		}
		var e apiError
		admin.json("POST", "/api/v1/targets/preview", map[string]any{"cadres": []string{"wizard"}}, 422, &e)
	})

	t.Run("CSV and cursor pagination", func(t *testing.T) {
		res, body := admin.do("GET", "/api/v1/workers?limit=1", "", nil, "Accept", "text/csv")
		if ct := res.Header.Get("Content-Type"); !strings.HasPrefix(ct, "text/csv") {
			t.Fatalf("Content-Type = %q", ct)
		}
		lines := strings.Split(strings.TrimSpace(string(body)), "\n")
		if len(lines) != 2 || !strings.HasPrefix(lines[0], "id,ihris_id,name,msisdn") {
			t.Errorf("CSV = %q", body)
		}
		next := res.Header.Get("X-Next-Cursor")
		if next == "" {
			t.Fatal("no X-Next-Cursor on a full page")
		}
		_, body = admin.do("GET", "/api/v1/workers?limit=1&cursor="+next, "", nil, "Accept", "text/csv")
		if !strings.Contains(string(body), "Kou Zogbay") {
			t.Errorf("second page = %q, want the second worker", body)
		}
		admin.json("GET", "/api/v1/workers?cursor=garbage", nil, 400, nil)
	})

	t.Run("scoped keys see and change only their subtree", func(t *testing.T) {
		var k struct {
			Key string `json:"key"`
		}
		admin.json("POST", "/api/v1/apikeys", map[string]string{"name": "bomi-admin", "role": "admin", "scope": "bomi"}, 201, &k)
		scoped := client{t: t, base: admin.base, key: k.Key}
		var page struct {
			Items []map[string]any `json:"items"`
		}
		scoped.json("GET", "/api/v1/workers", nil, 200, &page)
		if len(page.Items) != 1 {
			t.Errorf("bomi key lists %d workers, want 1", len(page.Items))
		}
		scoped.json("GET", "/api/v1/workers?location=nimba", nil, 403, nil)
		scoped.json("GET", "/api/v1/facilities/FAC-2", nil, 403, nil)
		scoped.json("POST", "/api/v1/facilities", map[string]string{"code": "FAC-3", "name": "X", "location": "nimba"}, 403, nil)
		scoped.json("POST", "/api/v1/facilities", map[string]string{"code": "FAC-3", "name": "Klay HC", "location": "bomi"}, 201, nil)

		admin.json("POST", "/api/v1/apikeys", map[string]string{"name": "reader", "role": "reader"}, 201, &k)
		reader := client{t: t, base: admin.base, key: k.Key}
		reader.json("GET", "/api/v1/facilities", nil, 200, nil)
		reader.json("POST", "/api/v1/facilities", map[string]string{"code": "FAC-4", "name": "X", "location": "bomi"}, 403, nil)
	})

	t.Run("every change is audited", func(t *testing.T) {
		var page struct {
			Items []struct {
				Actor, Action, Entity string
			} `json:"items"`
		}
		admin.json("GET", "/api/v1/audit?limit=1000", nil, 200, &page)
		seen := map[string]bool{}
		for _, e := range page.Items {
			seen[e.Actor+" "+e.Action+" "+e.Entity] = true
		}
		for _, want := range []string{"test-admin create worker", "test-admin create location", "bomi-admin create facility", "test-admin create api_key"} {
			if !seen[want] {
				t.Errorf("audit log lacks %q; has %v", want, seen)
			}
		}
	})
}

// TestOpenAPIListsExactlyTheRoutes keeps the document true: every route the router has is
// in it, and it lists nothing the router lacks.
func TestOpenAPIListsExactlyTheRoutes(t *testing.T) {
	a, _ := testApp(t)
	routes, missing, extra, err := apitest.RouteDrift(a.api.Root, nil)
	if err != nil {
		t.Fatal(err)
	}
	if len(missing) > 0 || len(extra) > 0 {
		t.Errorf("OpenAPI out of step with the router:\n  routes not documented: %v\n  documented but not routed: %v", missing, extra)
	}
	if routes < 20 {
		t.Errorf("walked only %d routes; the walk is broken", routes)
	}
}

// TestServeStoresWhatTheSMSCSends runs serve against the in-process SMSC: the binds come
// up in /readyz, an MO SMS is in PostgreSQL by the time the SMSC has its deliver_sm_resp,
// and a message submitted through the pool ends delivered from its receipt.
func TestServeStoresWhatTheSMSCSends(t *testing.T) {
	sim := smpptest.NewUnstartedServer(smpptest.Config{SystemID: "mhero", Receipts: true, ReceiptDelay: 10 * time.Millisecond})
	ended := make(chan smpptest.Submit, 1)
	sim.OnSubmit(func(s smpptest.Submit) {
		if op, ok := s.USSDServiceOp(); ok && op == smpp.PSSRResponse {
			ended <- s
		}
	})
	sim.Start()
	t.Cleanup(sim.Close)
	host, port, _ := net.SplitHostPort(sim.Addr())
	p, _ := strconv.Atoi(port)
	cfg := DefaultConfig()
	cfg.DatabaseURL = registrytest.NewDatabase(t)
	cfg.ValkeyURL, cfg.ValkeyPrefix = registrytest.ValkeyURL(), registrytest.KeyPrefix(t)
	cfg.HTTPAddr = "127.0.0.1:0"
	cfg.File.SMSC = []smpp.Config{{Name: "lonestar", Host: host, Port: p, SystemID: "mhero", Binds: 2, Window: 10,
		SourceAddr: "384", Prefixes: []string{"+23188"}}}
	cfg.File.Commodities = []Commodity{{Code: "ors", Name: map[string]string{"en": "ORS sachets"}}}
	// Start's context ends at once, as main's does at SIGTERM: the binds and the dispatcher
	// must live on until Close stops them in order.
	startCtx, cancelStart := context.WithCancel(t.Context())
	a, err := Start(startCtx, cfg, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	cancelStart()
	t.Cleanup(func() { _ = a.Close(context.Background()) })
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	if err := a.smpp.WaitBound(ctx); err != nil {
		t.Fatalf("binds never came up: %v", err)
	}
	anon := client{t: t, base: "http://" + a.Addr()}
	var ready struct {
		Checks map[string]struct {
			Status string `json:"status"`
		} `json:"checks"`
	}
	anon.json("GET", "/readyz", nil, 200, &ready)
	if ready.Checks["smsc"].Status != "ok" {
		t.Errorf("readyz smsc = %+v", ready.Checks)
	}

	if err := sim.DeliverMO(ctx, "231886123456", "384", "STOCK ORS 20"); err != nil {
		t.Fatalf("DeliverMO: %v", err)
	}
	var body string
	if err := a.db.QueryRow(ctx, `SELECT body FROM inbound_messages WHERE from_msisdn = '231886123456'`).Scan(&body); err != nil || body != "STOCK ORS 20" {
		t.Errorf("MO in PostgreSQL = %q, %v; want it stored before the SMSC's deliver_sm_resp", body, err)
	}

	// A USSD dial-in over SMPP from a number outside the registry is answered by the menus
	// (politely: how to get registered) and the session ended.
	if err := sim.DeliverUSSD(ctx, "231886123456", "*384*12#", "", smpp.PSSRIndication, []byte{0x01, 0x00}); err != nil {
		t.Fatalf("DeliverUSSD: %v", err)
	}
	select {
	case s := <-ended:
		if s.Dst != "231886123456" || !strings.Contains(string(s.ShortMessage), "not registered") {
			t.Errorf("USSD answer = to %s %q", s.Dst, s.ShortMessage)
		}
	case <-ctx.Done():
		t.Fatal("a USSD dial-in got no answer")
	}

	// A message to a worker over the API is queued, dispatched and delivered.
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	_, err = a.registry.CreateLocation(ctx, registry.LocationInput{Code: "LR", Name: "Liberia"})
	must(err)
	_, err = a.registry.CreateFacility(ctx, registry.FacilityInput{Code: "F1", Name: "Klay HC", Location: "LR"})
	must(err)
	_, err = a.registry.CreateWorker(ctx, registry.WorkerInput{IHRISID: "P-1", Name: "Musu", MSISDN: "0886123456", Facility: "F1"})
	must(err)
	opted := true
	_, err = a.registry.CreateWorker(ctx, registry.WorkerInput{IHRISID: "P-2", Name: "Kou", MSISDN: "0886123457", Facility: "F1", OptedOut: &opted})
	must(err)
	key, _, err := a.registry.CreateAPIKey(ctx, "ops", mhero.RoleSender, "")
	must(err)
	sender := client{t: t, base: anon.base, key: key}
	sender.json("POST", "/api/v1/messages", map[string]string{"worker": "P-2", "text": "hello"}, 422, nil)
	var m struct {
		ID    int64  `json:"id"`
		State string `json:"state"`
		Body  string `json:"body"`
	}
	sender.json("POST", "/api/v1/messages", map[string]string{"worker": "P-1", "text": "Cholera alert, {name}: boil water", "priority": "alert"}, 202, &m)
	if m.State != "queued" || m.Body != "Cholera alert, Musu: boil water" {
		t.Errorf("queued message = %+v", m)
	}
	for m.State != "delivered" {
		if ctx.Err() != nil {
			t.Fatalf("message state = %s, want delivered from its receipt", m.State)
		}
		time.Sleep(20 * time.Millisecond)
		sender.json("GET", "/api/v1/messages/"+strconv.FormatInt(m.ID, 10), nil, 200, &m)
	}
}

// TestImportOverHTTP streams CSV files to /api/v1/imports: a file with a broken row writes
// nothing and names the row; partial=true commits the good rows; a scoped key may not import.
func TestImportOverHTTP(t *testing.T) {
	a, key := testApp(t)
	admin := client{t: t, base: "http://" + a.Addr(), key: key}
	post := func(path, body string, want int, out any) {
		t.Helper()
		res, b := admin.do("POST", path, "text/csv", strings.NewReader(body))
		if res.StatusCode != want {
			t.Fatalf("POST %s = %d %s, want %d", path, res.StatusCode, b, want)
		}
		if out != nil {
			if err := json.Unmarshal(b, out); err != nil {
				t.Fatal(err)
			}
		}
	}
	post("/api/v1/imports?name=locations.csv", "code,name,parent_code\nLR,Liberia,\nbomi,Bomi,LR\n", 201, nil)
	post("/api/v1/imports", "code,name,location_code\nF1,Klay HC,bomi\n", 201, nil)
	workers := "ihris_id,name,phone,cadre,facility_code\n" +
		"P1,Musu Kollie,0886123456,chw,F1\n" +
		"P2,Kou Zogbay,not-a-number,chw,F1\n" +
		"P3,Yah Flomo,0776123457,nurse,F9\n"
	var failed struct {
		apiError
		Import struct {
			Status     string `json:"status"`
			RowsFailed int    `json:"rows_failed"`
		} `json:"import"`
	}
	post("/api/v1/imports", workers, 422, &failed)
	lines := map[int]string{}
	for _, d := range failed.Error.Details {
		lines[d.Line] = d.Field
	}
	if failed.Import.Status != "failed" || failed.Import.RowsFailed != 2 || lines[3] == "" || lines[4] == "" {
		t.Errorf("import with bad rows = %+v, want failed with lines 3 and 4 named", failed)
	}
	var page struct {
		Items []any `json:"items"`
	}
	admin.json("GET", "/api/v1/workers", nil, 200, &page)
	if len(page.Items) != 0 {
		t.Errorf("a failed import wrote %d workers", len(page.Items))
	}
	var partial struct {
		ID      int64  `json:"id"`
		Status  string `json:"status"`
		Created int    `json:"created"`
	}
	post("/api/v1/imports?partial=true", workers, 201, &partial)
	if partial.Status != "partial" || partial.Created != 1 {
		t.Errorf("partial import = %+v, want 1 created", partial)
	}
	var again struct {
		Status string `json:"status"`
	}
	admin.json("GET", "/api/v1/imports/"+strconv.FormatInt(partial.ID, 10), nil, 200, &again)
	if again.Status != "partial" {
		t.Errorf("GET import = %+v", again)
	}
	var k struct {
		Key string `json:"key"`
	}
	admin.json("POST", "/api/v1/apikeys", map[string]string{"name": "bomi", "role": "admin", "scope": "bomi"}, 201, &k)
	scoped := client{t: t, base: admin.base, key: k.Key}
	if res, _ := scoped.do("POST", "/api/v1/imports", "text/csv", strings.NewReader(workers)); res.StatusCode != 403 {
		t.Errorf("scoped import = %d, want 403", res.StatusCode)
	}
}

// syncBuffer is a bytes.Buffer safe to write from Main's goroutine while the test reads.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// TestDemoSeedsServesAndStops runs what `make run` runs, on a fresh database and free
// ports: it seeds a small country, prints a working admin key, serves, and stops cleanly
// on cancellation (SIGINT in real life).
func TestDemoSeedsServesAndStops(t *testing.T) {
	env := map[string]string{
		"MHERO_DATABASE_URL":  registrytest.NewDatabase(t),
		"MHERO_VALKEY_URL":    registrytest.ValkeyURL(),
		"MHERO_VALKEY_PREFIX": registrytest.KeyPrefix(t),
		"MHERO_HTTP_ADDR":     "127.0.0.1:0",
		"MHERO_CONFIG":        filepath.Join(t.TempDir(), "none.yaml"),
	}
	writeFile(t, env["MHERO_CONFIG"], "country: LR\n")
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	var out syncBuffer
	done := make(chan error, 1)
	go func() {
		done <- Main(ctx, []string{"demo", "--workers", "300", "--smsc", "127.0.0.1:0"}, envMap(env), &out, io.Discard)
	}()
	deadline := time.Now().Add(30 * time.Second)
	for !strings.Contains(out.String(), "Ctrl-C stops it.") {
		if time.Now().After(deadline) {
			t.Fatalf("demo did not come up:\n%s", out.String())
		}
		select {
		case err := <-done:
			t.Fatalf("demo ended early: %v\n%s", err, out.String())
		case <-time.After(50 * time.Millisecond):
		}
	}
	key := regexp.MustCompile(`mhk_[a-z0-9]+`).FindString(out.String())
	base := regexp.MustCompile(`http://127\.0\.0\.1:\d+`).FindString(out.String())
	c := client{t: t, base: base, key: key}
	var page struct {
		Items []struct {
			Cadre string `json:"cadre"`
		} `json:"items"`
	}
	c.json("GET", "/api/v1/workers?limit=1000&include_inactive=true", nil, 200, &page)
	if len(page.Items) != 300 {
		t.Errorf("demo seeded %d workers, want 300", len(page.Items))
	}
	// The simulator's binds come up within moments of the server.
	for {
		res, body := c.do("GET", "/readyz", "", nil)
		if res.StatusCode == 200 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("readyz never ok: %s", body)
		}
		time.Sleep(50 * time.Millisecond)
	}
	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Errorf("demo stop: %v", err)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("demo did not stop")
	}
}
