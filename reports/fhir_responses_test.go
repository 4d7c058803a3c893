package reports_test

import (
	"context"
	"encoding/json"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/mhero-health/mhero/outbox"
	"github.com/mhero-health/mhero/registry"
	"github.com/mhero-health/mhero/reports"
)

type fhirBundle struct {
	ResourceType string `json:"resourceType"`
	Type         string `json:"type"`
	Entry        []struct {
		Resource json.RawMessage `json:"resource"`
		Request  struct {
			Method string `json:"method"`
			URL    string `json:"url"`
		} `json:"request"`
	} `json:"entry"`
}

func (b *fhirBundle) urls() []string {
	var out []string
	for _, e := range b.Entry {
		out = append(out, e.Request.Method+" "+e.Request.URL)
	}
	return out
}

// responsesCountry gives workers A (Bomi) and D (Nimba) iHRIS ids, B none, and has them
// answer: SMS from A, B and D (D's cut short), stock reports from A and B, "my details"
// checks from A and D.
func responsesCountry(t *testing.T) (*country, map[string]string) {
	t.Helper()
	c := newCountry(t)
	ctx := context.Background()
	for _, w := range []registry.WorkerInput{
		{IHRISID: "P-A", Name: "A", MSISDN: "0886000001", Cadre: "chw", Facility: "F1"},
		{IHRISID: "P-D", Name: "D", MSISDN: "0776000004", Cadre: "chw", Facility: "F3"},
	} {
		if _, err := c.reg.UpdateWorker(ctx, strconv.FormatInt(int64(c.workers[w.Name]), 10), w); err != nil {
			t.Fatal(err)
		}
	}
	ob := outbox.NewStore(c.reg.DB(), nil)
	ids := map[string]string{}
	for _, in := range []outbox.Inbound{
		{MNO: "lonestar", From: "231886000001", To: "384", Body: "Received the \"ORS\" delivery, thanks", Received: now.Add(-time.Hour)},
		{MNO: "lonestar", From: "231886000002", To: "384", Body: "from B, who has no iHRIS id", Received: now},
		{MNO: "cellcom", From: "231776000004", To: "384", Body: "Generator broken at", Parts: 2, Partial: true, Received: now},
	} {
		id, err := ob.RecordInbound(ctx, in)
		if err != nil {
			t.Fatal(err)
		}
		ids[string(in.From)] = strconv.FormatInt(id, 10)
	}
	// The outbox stamps stored_at with the database's clock; the test's is 20 November.
	if _, err := c.reg.DB().Exec(ctx, `UPDATE inbound_messages SET stored_at = $1`, now); err != nil {
		t.Fatal(err)
	}
	ids["stockA"] = c.stock(t, "A", "ors", 5, 2, day(2026, 11, 17)).Ref
	c.stock(t, "B", "ors", 8, 0, day(2026, 11, 17))
	for _, v := range []reports.ValidationInput{{WorkerID: c.workers["A"]}, {WorkerID: c.workers["D"], Facility: "F9"}} {
		if _, err := c.rep.SubmitValidation(ctx, v); err != nil {
			t.Fatal(err)
		}
	}
	return c, ids
}

func getBundle(t *testing.T, srv http.Handler, key, target string) *fhirBundle {
	t.Helper()
	w := call(t, srv, http.MethodGet, key, target)
	var b fhirBundle
	if w.Code != http.StatusOK || !strings.HasPrefix(w.Header().Get("Content-Type"), "application/fhir+json") ||
		json.Unmarshal(w.Body.Bytes(), &b) != nil || b.ResourceType != "Bundle" || b.Type != "transaction" {
		t.Fatalf("GET %s = %d %s", target, w.Code, w.Body)
	}
	return &b
}

func TestFHIRResponses(t *testing.T) {
	t.Parallel()
	c, ids := responsesCountry(t)
	srv := c.exportServer(t, nil)

	b := getBundle(t, srv, "reader", "/api/v1/exports/fhir/responses")
	want := []string{"PUT Communication/mhero-sms-" + ids["231886000001"], "PUT Communication/mhero-sms-" + ids["231776000004"],
		"PUT QuestionnaireResponse/mhero-stock-1", "PUT QuestionnaireResponse/mhero-validation-1", "PUT QuestionnaireResponse/mhero-validation-2"}
	if got := b.urls(); strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Fatalf("entries =\n%s\nwant (B, without an iHRIS id, left out)\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
	sms := b.Entry[0].Resource
	for _, part := range []string{`"resourceType":"Communication"`, `"status":"completed"`, `"sender":{"reference":"Practitioner/P-A"}`,
		`"payload":[{"contentString":"Received the \"ORS\" delivery, thanks"}]`, `"sent":"2026-11-20T11:00:00Z"`, `"received":"2026-11-20T12:00:00Z"`} {
		if !strings.Contains(string(sms), part) {
			t.Errorf("SMS lacks %s: %s", part, sms)
		}
	}
	if partial := b.Entry[1].Resource; !strings.Contains(string(partial), `"note":[{"text":"Some parts of this SMS never arrived."}]`) {
		t.Errorf("partial SMS = %s", partial)
	}
	stock := b.Entry[2].Resource
	for _, part := range []string{`"author":{"reference":"Practitioner/P-A"}`, `"source":{"reference":"Practitioner/P-A"}`,
		`"identifier":{"system":"http://mhero.org/fhir/sid/stock-report","value":"` + ids["stockA"] + `"}`,
		`"subject":{"type":"Location","identifier":{"system":"http://mhero.org/fhir/sid/facility","value":"F1"},"display":"Klay HC"}`,
		`"questionnaire":"http://mhero.org/fhir/Questionnaire/mhero-stock-report"`, `"authored":"2026-11-17T00:00:00Z"`,
		`"valueCoding":{"system":"http://mhero.org/fhir/CodeSystem/commodity","code":"ors","display":"ORS sachets"}`,
		`{"linkId":"quantity","text":"Quantity on hand","answer":[{"valueInteger":5}]}`, `"answer":[{"valueInteger":2}]`} {
		if !strings.Contains(string(stock), part) {
			t.Errorf("stock report lacks %s: %s", part, stock)
		}
	}
	if v := b.Entry[4].Resource; !strings.Contains(string(v), `"code":"pending_review"`) ||
		!strings.Contains(string(v), `{"linkId":"stated-facility","text":"Facility the worker gave","answer":[{"valueString":"F9"}]}`) ||
		!strings.Contains(string(v), `"subject":{"reference":"Practitioner/P-D"}`) {
		t.Errorf("validation = %s", v)
	}

	// One worker, by iHRIS id or internal id; a scoped key sees its subtree's workers.
	for _, target := range []string{"/api/v1/exports/fhir/responses?worker=P-D",
		"/api/v1/exports/fhir/responses?worker=" + strconv.FormatInt(int64(c.workers["D"]), 10)} {
		if got := getBundle(t, srv, "reader", target).urls(); len(got) != 2 || !strings.Contains(got[1], "mhero-validation-2") {
			t.Errorf("GET %s = %v", target, got)
		}
	}
	if got := getBundle(t, srv, "nimba", "/api/v1/exports/fhir/responses").urls(); len(got) != 2 {
		t.Errorf("Nimba's key = %v", got)
	}
	// since: what mhero stored at or after it.
	c.clock.t = now.Add(time.Hour)
	c.stock(t, "A", "zinc", 1, 0, time.Time{})
	if got := getBundle(t, srv, "reader", "/api/v1/exports/fhir/responses?since=2026-11-20T12:30:00Z").urls(); len(got) != 1 ||
		got[0] != "PUT QuestionnaireResponse/mhero-stock-3" {
		t.Errorf("since = %v", got)
	}
	if got := getBundle(t, srv, "reader", "/api/v1/exports/fhir/responses?since=2026-11-21").urls(); len(got) != 0 {
		t.Errorf("since a later date = %v", got)
	}
	for _, tt := range []struct {
		key, target string
		status      int
	}{
		{"reader", "/api/v1/exports/fhir/responses?since=yesterday", http.StatusBadRequest},
		{"reader", "/api/v1/exports/fhir/responses?worker=" + strconv.FormatInt(int64(c.workers["B"]), 10), http.StatusUnprocessableEntity},
		{"reader", "/api/v1/exports/fhir/responses?worker=nobody", http.StatusNotFound},
		{"nimba", "/api/v1/exports/fhir/responses?worker=P-A", http.StatusForbidden},
		{"reader", "/api/v1/exports/fhir/responses?sinse=2026-11-01", http.StatusBadRequest},
	} {
		if w := call(t, srv, http.MethodGet, tt.key, tt.target); w.Code != tt.status {
			t.Errorf("GET %s = %d %s, want %d", tt.target, w.Code, w.Body, tt.status)
		}
	}
}
