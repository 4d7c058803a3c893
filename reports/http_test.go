package reports_test

import (
	"context"
	"encoding/csv"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/mhero-health/mhero"
	"github.com/mhero-health/mhero/api"
	"github.com/mhero-health/mhero/reports"
)

// keys authenticates the test's bearer keys: "reader" is unscoped, "nimba" is scoped to
// Nimba county.
type keys struct{ nimba *mhero.Location }

func (k keys) Authenticate(_ context.Context, key string) (*mhero.Principal, error) {
	switch key {
	case "reader":
		return &mhero.Principal{Name: "reader", Role: mhero.RoleReader}, nil
	case "nimba":
		return &mhero.Principal{Name: "nimba", Role: mhero.RoleReader, Scope: k.nimba}, nil
	}
	return nil, mhero.Errorf(mhero.EUNAUTHORIZED, "Invalid API key.")
}

func (c *country) server(t *testing.T) *api.Server {
	t.Helper()
	nimba, err := c.reg.FindLocation(context.Background(), "nimba")
	if err != nil {
		t.Fatal(err)
	}
	srv := api.New(api.Options{Auth: keys{nimba}})
	c.rep.Routes(srv)
	return srv
}

func get(t *testing.T, srv http.Handler, key, target string, csv bool) *httptest.ResponseRecorder {
	t.Helper()
	req := httptest.NewRequest(http.MethodGet, target, nil)
	req.Header.Set("Authorization", "Bearer "+key)
	if csv {
		req.Header.Set("Accept", "text/csv")
	}
	w := httptest.NewRecorder()
	srv.ServeHTTP(w, req)
	return w
}

func TestHTTPViews(t *testing.T) {
	t.Parallel()
	c := newCountry(t)
	c.stock(t, "A", "ors", 0, 3, day(2026, 11, 16))
	c.stock(t, "D", "act", 12, 0, day(2026, 11, 17))
	srv := c.server(t)

	w := get(t, srv, "reader", "/api/v1/reports/stockouts?period=2026W47&location=bomi&commodity=ors", false)
	var body struct {
		Period, Start, End string
		Items              []reports.StockOutCount
	}
	if w.Code != http.StatusOK || json.Unmarshal(w.Body.Bytes(), &body) != nil {
		t.Fatalf("stockouts = %d %s", w.Code, w.Body)
	}
	if body.Period != "2026W47" || body.Start != "2026-11-16T00:00:00Z" || body.End != "2026-11-23T00:00:00Z" ||
		len(body.Items) != 1 || body.Items[0].LocationCode != "d1" || body.Items[0].StockedOut != 1 {
		t.Errorf("stockouts = %s", w.Body)
	}

	w = get(t, srv, "reader", "/api/v1/reports/stock/latest", true)
	if w.Code != http.StatusOK || !strings.HasPrefix(w.Header().Get("Content-Type"), "text/csv") ||
		!strings.Contains(w.Header().Get("Content-Disposition"), "latest-stock.csv") {
		t.Fatalf("latest as CSV = %d %v %s", w.Code, w.Header(), w.Body)
	}
	records, err := csv.NewReader(w.Body).ReadAll()
	if err != nil || len(records) != 3 || records[0][0] != "facility_code" || records[1][0] != "F1" || records[1][6] != "true" ||
		records[2][0] != "F3" || records[2][4] != "12" || records[1][7] != "2026-11-16T00:00:00Z" {
		t.Errorf("latest as CSV = %q, %v", records, err)
	}

	// An empty answer is still a well-formed one.
	w = get(t, srv, "reader", "/api/v1/reports/referrals/overdue", false)
	if w.Code != http.StatusOK || strings.TrimSpace(w.Body.String()) != `{"items":[]}` {
		t.Errorf("no overdue referrals = %d %s", w.Code, w.Body)
	}
	w = get(t, srv, "reader", "/api/v1/reports/reporting-rates?period=202611&format=csv", false)
	if w.Code != http.StatusOK || w.Body.String() != "location_code,location_name,level,expected,reported,rate\n"+
		"bomi,Bomi,1,2,1,0.5000\nnimba,Nimba,1,1,1,1.0000\n" || w.Header().Get("X-Period") != "202611" {
		t.Errorf("rates as CSV = %d %q", w.Code, w.Body)
	}
}

func TestHTTPLookups(t *testing.T) {
	t.Parallel()
	c := newCountry(t)
	s := c.stock(t, "A", "ors", 3, 0, day(2026, 11, 16))
	r, err := c.rep.SubmitReferral(context.Background(), reports.ReferralInput{WorkerID: c.workers["A"], To: "F3",
		Reason: "fever", Urgency: reports.Routine})
	if err != nil {
		t.Fatal(err)
	}
	srv := c.server(t)
	var got reports.StockReport
	w := get(t, srv, "reader", "/api/v1/reports/stock/"+strings.ToLower(s.Ref), false)
	if w.Code != http.StatusOK || json.Unmarshal(w.Body.Bytes(), &got) != nil || got.Ref != s.Ref || got.Facility.Code != "F1" {
		t.Errorf("GET stock/%s = %d %s", s.Ref, w.Code, w.Body)
	}
	// Nimba's key sees the referral (it is received there) but not Bomi's stock report.
	var ref reports.Referral
	w = get(t, srv, "nimba", "/api/v1/reports/referrals/"+r.Ref, false)
	if w.Code != http.StatusOK || json.Unmarshal(w.Body.Bytes(), &ref) != nil || len(ref.History) != 1 || ref.To.Code != "F3" {
		t.Errorf("GET referrals/%s with Nimba's key = %d %s", r.Ref, w.Code, w.Body)
	}
	if w := get(t, srv, "nimba", "/api/v1/reports/stock/"+s.Ref, false); w.Code != http.StatusForbidden {
		t.Errorf("Bomi's stock report with Nimba's key = %d %s, want 403", w.Code, w.Body)
	}
}

// Bad input gets a clear 4xx naming what is wrong, never a 500 or a panic.
func TestHTTPRefusesBadQueries(t *testing.T) {
	t.Parallel()
	c := newCountry(t)
	srv := c.server(t)
	tests := []struct {
		name, key, target string
		status            int
		field             string // a detail expected in the error
	}{
		{"no key", "", "/api/v1/reports/stock/latest", 401, ""},
		{"not a DHIS2 period", "reader", "/api/v1/reports/stockouts?period=2026-11", 400, "period"},
		{"a week that does not exist", "reader", "/api/v1/reports/stockouts?period=2025W53", 400, "period"},
		{"no period", "reader", "/api/v1/reports/stockouts", 400, "period"},
		{"unknown location", "reader", "/api/v1/reports/stockouts?period=202611&location=atlantis", 404, ""},
		{"misspelt parameter", "reader", "/api/v1/reports/stockouts?perod=202611", 400, "perod"},
		{"parameter another view takes", "reader", "/api/v1/reports/stock/latest?period=202611", 400, "period"},
		{"period twice", "reader", "/api/v1/reports/stockouts?period=202611&period=202612", 400, "period"},
		{"a format we do not write", "reader", "/api/v1/reports/stock/latest?format=xlsx", 400, "format"},
		{"level not a number", "reader", "/api/v1/reports/stockouts?period=202611&level=county", 400, "level"},
		{"level above the location", "reader", "/api/v1/reports/stockouts?period=202611&location=d1&level=1", 400, "level"},
		{"unknown commodity", "reader", "/api/v1/reports/stock/latest?commodity=aspirin", 422, "commodity"},
		{"unknown facility", "reader", "/api/v1/reports/stock?facility=F99", 404, ""},
		{"trend without commodity", "reader", "/api/v1/reports/stock/trend?period=2026", 400, "commodity"},
		{"trend by day", "reader", "/api/v1/reports/stock/trend?period=2026&commodity=ors&interval=day", 400, "interval"},
		{"referrals from the side", "reader", "/api/v1/reports/referrals?period=2026&side=sideways", 400, "side"},
		{"unknown validation state", "reader", "/api/v1/reports/validations/records?state=happy", 400, "state"},
		{"outside the key's scope", "nimba", "/api/v1/reports/stockouts?period=202611&location=bomi", 403, ""},
		{"a facility outside the scope", "nimba", "/api/v1/reports/stock?facility=F1", 403, ""},
		{"a number never given", "reader", "/api/v1/reports/referrals/R-ZZZZZ", 404, ""},
		{"not a number at all", "reader", "/api/v1/reports/stock/latest-ish", 404, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			w := get(t, srv, tt.key, tt.target, false)
			var body api.ErrorBody
			if w.Code != tt.status || json.Unmarshal(w.Body.Bytes(), &body) != nil || body.Error.Message == "" {
				t.Fatalf("GET %s = %d %s, want %d with an error envelope", tt.target, w.Code, w.Body, tt.status)
			}
			if tt.field != "" && !hasField(body.Error.Details, tt.field) {
				t.Errorf("GET %s details = %+v, want one about %q", tt.target, body.Error.Details, tt.field)
			}
		})
	}
	req := httptest.NewRequest(http.MethodPost, "/api/v1/reports/stock", strings.NewReader(`{"quantity": "many"}`))
	req.Header.Set("Authorization", "Bearer reader")
	w := httptest.NewRecorder()
	srv.ServeHTTP(w, req)
	if w.Code < 400 || w.Code >= 500 {
		t.Errorf("POST /reports/stock = %d %s, want a 4xx: reports are submitted from phones", w.Code, w.Body)
	}
}

func hasField(d []mhero.ErrorDetail, field string) bool {
	for _, x := range d {
		if x.Field == field {
			return true
		}
	}
	return false
}

// The export lists every report, each once, in the order received, as JSON or CSV.
func TestHTTPExportStreamsEveryRow(t *testing.T) {
	t.Parallel()
	c := newCountry(t)
	ctx := context.Background()
	const n = 5000
	if _, err := c.reg.DB().Exec(ctx, `INSERT INTO stock_reports (facility_id, commodity_id, quantity, stockout_days, worker_id, reported_at)
		SELECT f.id, (SELECT min(id) FROM commodities), g % 50, 0, $2, $3::timestamptz - g * interval '1 minute'
		FROM generate_series(1, $1::int) g JOIN facilities f ON f.code = 'F2'`, n, int64(c.workers["C"]), now); err != nil {
		t.Fatal(err)
	}
	srv := c.server(t)
	w := get(t, srv, "reader", "/api/v1/reports/stock?period=2026&facility=F2", true)
	records, err := csv.NewReader(w.Body).ReadAll()
	if w.Code != http.StatusOK || err != nil || len(records) != n+1 {
		t.Fatalf("export = %d, %d records, %v; want %d rows and a header", w.Code, len(records), err, n)
	}
	seen := map[string]bool{}
	for _, r := range records[1:] {
		if seen[r[0]] || r[1] != "F2" {
			t.Fatalf("row %q repeats a reference or is not F2's", r)
		}
		seen[r[0]] = true
	}
	if records[1][9] != now.Add(-time.Minute).Format("2006-01-02T15:04:05Z") {
		t.Errorf("first row = %q, want the first inserted", records[1])
	}
	w = get(t, srv, "reader", "/api/v1/reports/stock", false)
	var body struct{ Items []reports.StockReportRow }
	if err := json.Unmarshal(w.Body.Bytes(), &body); err != nil || len(body.Items) != n {
		t.Errorf("export as JSON: %d items, %v", len(body.Items), err)
	}
}
