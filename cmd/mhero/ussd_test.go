package main

import (
	"encoding/json"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/mhero-health/mhero/registry"
	"github.com/mhero-health/mhero/registry/registrytest"
	"github.com/mhero-health/mhero/smpp"
	"github.com/mhero-health/mhero/smpp/smpptest"
	"github.com/mhero-health/mhero/sms"
)

// atHop posts one Africa's Talking hop and returns the answer.
func atHop(t *testing.T, base, session, phone, text string) string {
	t.Helper()
	res, err := http.PostForm(base+"/ussd/africastalking", url.Values{"sessionId": {session}, "serviceCode": {"*384*12#"},
		"phoneNumber": {phone}, "text": {text}, "networkCode": {"61801"}})
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	var b strings.Builder
	buf := make([]byte, 4096)
	for {
		n, err := res.Body.Read(buf)
		b.Write(buf[:n])
		if err != nil {
			break
		}
	}
	if res.StatusCode != 200 {
		t.Fatalf("hop %q = %d %s", text, res.StatusCode, b.String())
	}
	return b.String()
}

// TestUSSDFlowsEndToEnd walks the shipped menus through the running server: a stock
// report over the Africa's Talking gateway lands in PostgreSQL before "Thank you" (once,
// even when the gateway retries the hop), a referral SMSes the receiving facility's
// workers through the outbox, and a dial-in over an SMPP bind gets the same menus.
func TestUSSDFlowsEndToEnd(t *testing.T) {
	var ussdAnswers = make(chan smpptest.Submit, 8)
	sim := smpptest.NewUnstartedServer(smpptest.Config{SystemID: "mhero", Receipts: true})
	sim.OnSubmit(func(s smpptest.Submit) {
		if _, ok := s.USSDServiceOp(); ok {
			ussdAnswers <- s
		}
	})
	sim.Start()
	t.Cleanup(sim.Close)
	a, _ := simApp(t, registrytest.NewDatabase(t), sim, func(c *Config) {
		c.File.USSD.Gateways = map[string]GatewayConfig{"africastalking": {Allow: []string{"127.0.0.1/32"}}}
		c.File.Commodities = []Commodity{{Code: "ors", Name: map[string]string{"en": "ORS sachets"}},
			{Code: "zinc", Name: map[string]string{"en": "Zinc tablets"}}}
	})
	ctx := t.Context()
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	_, err := a.registry.CreateLocation(ctx, registry.LocationInput{Code: "LR", Name: "Liberia"})
	must(err)
	_, err = a.registry.CreateLocation(ctx, registry.LocationInput{Code: "bomi", Name: "Bomi", Parent: "LR"})
	must(err)
	_, err = a.registry.CreateFacility(ctx, registry.FacilityInput{Code: "klay", Name: "Klay HC", Location: "bomi"})
	must(err)
	_, err = a.registry.CreateFacility(ctx, registry.FacilityInput{Code: "tubmanburg", Name: "Tubmanburg Hospital", Location: "bomi"})
	must(err)
	for _, c := range []string{"chw", "nurse"} {
		_, err = a.registry.UpsertCode(ctx, "cadres", registry.Code{Code: c, Name: strings.ToUpper(c)})
		must(err)
	}
	musu, err := a.registry.CreateWorker(ctx, registry.WorkerInput{IHRISID: "P-1", Name: "Musu Kollie", MSISDN: "0886123456", Facility: "klay", Cadre: "chw"})
	must(err)
	nurse, err := a.registry.CreateWorker(ctx, registry.WorkerInput{IHRISID: "P-2", Name: "Kou Sirleaf", MSISDN: "0776123457", Facility: "tubmanburg", Cadre: "nurse"})
	must(err)
	base := "http://" + a.Addr()

	// Stock report: ORS, 40 on hand, send.
	if s := atHop(t, base, "s1", "+231886123456", ""); !strings.HasPrefix(s, "CON ") || !strings.Contains(s, "Stock report") {
		t.Fatalf("main menu = %q", s)
	}
	atHop(t, base, "s1", "+231886123456", "1")
	atHop(t, base, "s1", "+231886123456", "1*1")
	atHop(t, base, "s1", "+231886123456", "1*1*40")
	done := atHop(t, base, "s1", "+231886123456", "1*1*40*1")
	ref := regexp.MustCompile(`S-[0-9A-Z]+`).FindString(done)
	if !strings.HasPrefix(done, "END ") || ref == "" {
		t.Fatalf("after sending = %q, want END with a reference", done)
	}
	if again := atHop(t, base, "s1", "+231886123456", "1*1*40*1"); again != done { // the gateway retries the hop
		t.Errorf("retried hop = %q, want the same answer %q", again, done)
	}
	var n, qty int
	var facility string
	must(a.db.QueryRow(ctx, `SELECT count(*), max(r.quantity), max(f.code) FROM stock_reports r JOIN facilities f ON f.id = r.facility_id
		WHERE r.worker_id = $1`, int64(musu.ID)).Scan(&n, &qty, &facility))
	if n != 1 || qty != 40 || facility != "klay" {
		t.Errorf("%d stock reports (quantity %d at %s), want one of 40 at klay", n, qty, facility)
	}
	if r, err := a.reports.FindStockReport(ctx, ref); err != nil || r.Commodity != "ors" {
		t.Errorf("report %s: %+v, %v", ref, r, err)
	}

	// Referral to the hospital: its nurse is told by SMS, ahead of bulk traffic.
	steps := []string{"2", "2*2", "2*2*1", "2*2*1*1", "2*2*1*1*1"}
	var last string
	for _, s := range steps {
		last = atHop(t, base, "s2", "+231886123456", s)
	}
	// The receiving facility is chosen from the list (nearby first): pick the hospital.
	i := strings.Index(last, "Tubmanburg")
	if i < 0 {
		t.Fatalf("facility choice = %q", last)
	}
	choice := strings.TrimSpace(last[strings.LastIndex(last[:i], "\n")+1 : i])
	choice = strings.TrimSuffix(choice, ".")
	if confirm := atHop(t, base, "s2", "+231886123456", "2*2*1*1*1*"+choice); !strings.Contains(confirm, "Tubmanburg") {
		t.Errorf("confirmation screen = %q", confirm)
	}
	last = atHop(t, base, "s2", "+231886123456", "2*2*1*1*1*"+choice+"*1")
	rref := regexp.MustCompile(`R-[0-9A-Z]+`).FindString(last)
	if !strings.HasPrefix(last, "END ") || rref == "" {
		t.Fatalf("after the referral = %q", last)
	}
	var body string
	var prio int
	must(a.db.QueryRow(ctx, `SELECT body, priority FROM messages WHERE worker_id = $1`, int64(nurse.ID)).Scan(&body, &prio))
	if !strings.Contains(body, rref) || !strings.Contains(body, "Klay HC") || prio != 1 {
		t.Errorf("SMS to the receiving nurse = %q (priority %d)", body, prio)
	}

	// A survey sent by SMS, answered over USSD from the inbox: a refused answer is asked
	// again with the survey's hint; the answers are stored as the SMS ones are.
	var in sms.SurveyInput
	must(json.Unmarshal([]byte(`{"name": "RDT check", "target": {"facilities": ["klay"]}, "open_for": "72h", "questions": [
		{"kind": "choice", "text": {"en": "Do you have RDTs?"}, "choices": [{"value": "yes", "label": {"en": "Yes"}}, {"value": "no", "label": {"en": "No"}}]},
		{"kind": "number", "text": {"en": "How many?"}, "max": 500}]}`), &in))
	sv, _, err := a.sms.CreateSurvey(ctx, in)
	must(err)
	if s := atHop(t, base, "s3", "+231886123456", "4*2"); !strings.Contains(s, "1. RDT check") {
		t.Fatalf("open surveys = %q", s)
	}
	if s := atHop(t, base, "s3", "+231886123456", "4*2*1"); !strings.Contains(s, "Do you have RDTs?\n1. Yes\n2. No") {
		t.Fatalf("first question = %q", s)
	}
	if s := atHop(t, base, "s3", "+231886123456", "4*2*1*3"); !strings.Contains(s, "from 1 to 2") || !strings.Contains(s, "Do you have RDTs?") {
		t.Errorf("a refused answer = %q, want the hint and the question again", s)
	}
	if s := atHop(t, base, "s3", "+231886123456", "4*2*1*3*2"); !strings.HasPrefix(s, "CON How many?") {
		t.Errorf("second question = %q", s)
	}
	if s := atHop(t, base, "s3", "+231886123456", "4*2*1*3*2*40"); !strings.HasPrefix(s, "END ") || !strings.Contains(s, "Thank you") {
		t.Errorf("after the last answer = %q", s)
	}
	var answers, state string
	must(a.db.QueryRow(ctx, `SELECT string_agg(question_no || '=' || value || '/' || channel, ',' ORDER BY question_no)
		FROM survey_answers WHERE survey_id = $1 AND worker_id = $2`, sv.ID, int64(musu.ID)).Scan(&answers))
	must(a.db.QueryRow(ctx, `SELECT state FROM survey_participants WHERE survey_id = $1 AND worker_id = $2`, sv.ID, int64(musu.ID)).Scan(&state))
	if answers != "1=no/ussd,2=40/ussd" || state != "completed" {
		t.Errorf("stored answers %q, participant %s; want 1=no/ussd,2=40/ussd, completed", answers, state)
	}
	if open, err := a.sms.OpenSurveys(ctx, musu.ID); err != nil || len(open) != 0 {
		t.Errorf("open surveys after answering: %+v, %v", open, err)
	}
	if s := atHop(t, base, "s4", "+231776123457", "4*2"); !strings.Contains(s, "no survey to answer") {
		t.Errorf("open surveys of a worker the survey did not target = %q", s)
	}

	// The same menus over an SMPP bind: a PSSR indication gets the main menu as a USSR
	// request (the session goes on), echoing its_session_info.
	must(sim.DeliverUSSD(ctx, "231886123456", "*384*12#", "", smpp.PSSRIndication, []byte{0x04, 0x00}))
	select {
	case s := <-ussdAnswers:
		op, _ := s.USSDServiceOp()
		if op != smpp.USSRRequest || !strings.Contains(string(s.ShortMessage), "Stock report") {
			t.Errorf("USSD over SMPP: op %d %q", op, s.ShortMessage)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("no USSD answer over SMPP")
	}
}

// TestMenusLint: the shipped menus pass; a broken menu is reported with its file and line.
func TestMenusLint(t *testing.T) {
	conf := filepath.Join(t.TempDir(), "mhero.yaml")
	writeFile(t, conf, "country: LR\n")
	env := envMap(map[string]string{"MHERO_CONFIG": conf})
	var out strings.Builder
	if err := Main(t.Context(), []string{"menus", "lint", "../../ussd/menus"}, env, &out, &out); err != nil {
		t.Fatalf("shipped menus: %v\n%s", err, out.String())
	}
	dir := t.TempDir()
	writeFile(t, filepath.Join(dir, "main.yaml"), `menu: {languages: [en, fr], start: main}
screens:
  main:
    text: {en: "mHero", fr: "mHero"}
    options:
      - {label: {en: Report, fr: Rapport}, action: report.send, goto: done}
  done:
    text: {en: "Thanks"}
  orphan:
    text: {en: "Nobody comes here", fr: "Personne"}
`)
	out.Reset()
	err := Main(t.Context(), []string{"menus", "lint", dir}, env, &out, &out)
	if err == nil {
		t.Fatalf("a broken menu passed:\n%s", out.String())
	}
	for _, want := range []string{"main.yaml:6", "report.send", "main.yaml:9: screen orphan: unreachable", "done: dead end", "no fr translation"} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("lint output lacks %q:\n%s", want, out.String())
		}
	}
}

// TestTerminalPhone walks a stock report with `mhero phone` against the running server.
func TestTerminalPhone(t *testing.T) {
	sim := smpptest.NewServer(smpptest.Config{SystemID: "mhero"})
	t.Cleanup(sim.Close)
	a, _ := simApp(t, registrytest.NewDatabase(t), sim, func(c *Config) {
		c.File.USSD.Gateways = map[string]GatewayConfig{"africastalking": {Allow: []string{"127.0.0.1/32"}}}
		c.File.Commodities = []Commodity{{Code: "ors", Name: map[string]string{"en": "ORS sachets"}}}
	})
	ctx := t.Context()
	if _, err := a.registry.CreateLocation(ctx, registry.LocationInput{Code: "LR", Name: "Liberia"}); err != nil {
		t.Fatal(err)
	}
	if _, err := a.registry.CreateFacility(ctx, registry.FacilityInput{Code: "klay", Name: "Klay HC", Location: "LR"}); err != nil {
		t.Fatal(err)
	}
	if _, err := a.registry.CreateWorker(ctx, registry.WorkerInput{Name: "Musu Kollie", MSISDN: "0886123456", Facility: "klay"}); err != nil {
		t.Fatal(err)
	}
	stdin = strings.NewReader("1\n1\n25\n1\n")
	t.Cleanup(func() { stdin = os.Stdin })
	var out strings.Builder
	conf := filepath.Join(t.TempDir(), "mhero.yaml")
	writeFile(t, conf, "country: LR\n")
	env := envMap(map[string]string{"MHERO_CONFIG": conf})
	if err := Main(ctx, []string{"phone", "--msisdn", "0886123456", "--url", "http://" + a.Addr(), "--code", "*384*12#"}, env, &out, &out); err != nil {
		t.Fatalf("phone: %v\n%s", err, out.String())
	}
	if !strings.Contains(out.String(), "Stock report") || !strings.Contains(out.String(), "[session ended]") ||
		!regexp.MustCompile(`S-[0-9A-Z]+`).MatchString(out.String()) {
		t.Errorf("phone session:\n%s", out.String())
	}
}
