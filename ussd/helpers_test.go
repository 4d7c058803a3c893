package ussd_test

import (
	"context"
	"flag"
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gorilla/mux"
	"github.com/mhero-health/mhero"
	"github.com/mhero-health/mhero/registry/registrytest"
	"github.com/mhero-health/mhero/sessions"
	"github.com/mhero-health/mhero/ussd"
	"github.com/mhero-health/mhero/ussd/ussdtest"
)

var update = flag.Bool("update", false, "rewrite the transcripts' screens from the server's answers")

// jsonOpSecret authenticates the jsonop gateway in tests; africastalking is allowed by
// address (loopback), so both kinds of authentication are exercised.
const jsonOpSecret = "s3cret"

var (
	testFacilities = []mhero.Facility{
		{ID: 1, Code: "BMC", Name: "Bong Mines Clinic", LocationID: 7},
		{ID: 2, Code: "PHB", Name: "Phebe Hospital", LocationID: 7},
	}
	testWorkers = []mhero.Worker{
		{ID: 101, Name: "Musu Kollie", MSISDN: "231886000001", Cadre: "chw", FacilityID: 1, Language: "en", Active: true},
		{ID: 102, Name: "Aminata Diallo", MSISDN: "231886000002", Cadre: "nurse", FacilityID: 2, Language: "fr", Active: true},
		{ID: 103, Name: "Inactive Worker", MSISDN: "231886000003", Language: "en", Active: false},
		{ID: 104, Name: "Opted Out", MSISDN: "231886000004", Language: "fr", Active: true, OptedOut: true},
		// No facility, and a language the menus lack: English screens, "none" as facility.
		{ID: 105, Name: "Kollie Flomo", MSISDN: "231886000005", Cadre: "cha", Language: "sw", Active: true},
	}
	// The facilities source lists "nearby first": enough to need a second page.
	nearbyFacilities = []ussd.Choice{
		{Value: "PHB", Label: "Phebe Hospital"}, {Value: "BMC", Label: "Bong Mines Clinic"},
		{Value: "GHC", Label: "Gbarnga Health Center"}, {Value: "SAL", Label: "Salala Clinic"},
		{Value: "TOT", Label: "Totota Clinic"}, {Value: "SHC", Label: "Suakoko Health Center"},
		{Value: "PAL", Label: "Palala Clinic"}, {Value: "KPA", Label: "Kpaai Clinic"},
		{Value: "ZHC", Label: "Zota Health Center"},
	}
	testCadres = []ussd.Choice{
		{Value: "chw", Label: "Community health worker"}, {Value: "cha", Label: "Community health assistant"},
		{Value: "nurse", Label: "Nurse"}, {Value: "midwife", Label: "Midwife"},
	}
	testCommodities = []ussd.Commodity{
		{Code: "ors", Name: map[string]string{"en": "ORS sachets", "fr": "Sachets de SRO"}},
		{Code: "zinc", Name: map[string]string{"en": "Zinc tablets", "fr": "Comprimés de zinc"}},
		{Code: "act", Name: map[string]string{"en": "ACT (malaria)", "fr": "CTA (paludisme)"}},
		{Code: "rdt", Name: map[string]string{"en": "Malaria RDTs", "fr": "TDR paludisme"}},
		{Code: "amox", Name: map[string]string{"en": "Amoxicillin DT", "fr": "Amoxicilline"}},
	}
	// today is the engine's date in tests, so date checks do not depend on the clock.
	today = time.Date(2026, 11, 20, 10, 0, 0, 0, time.UTC)
)

// inbox serves worker 101 two messages, newest first, and everyone else none.
var inbox = ussd.SourceFunc(func(_ context.Context, r ussd.SourceRequest) ([]ussd.Choice, error) {
	if r.Worker.ID != 101 {
		return nil, nil
	}
	return []ussd.Choice{
		{Value: "m2", Label: "18 Nov: Measles campaign", Extra: map[string]string{"date": "18 Nov 2026",
			"text": "Measles vaccination campaign in Bong County from 1 to 7 December. Please mobilise your community, " +
				"and report any suspected case of measles to the district surveillance officer the same day."}},
		{Value: "m1", Label: "02 Nov: Stock reports due", Extra: map[string]string{"date": "02 Nov 2026",
			"text": "Monthly stock reports are due by the 5th. Dial *384*12# and choose Stock report."}},
	}, nil
})

// survey stands in for sms.Store's survey over USSD: worker 101 has one open survey of
// two questions (a choice, then a number); the others have none. Like the real one it
// validates, keeps the worker's place, and answers a repeated key as the first time.
type survey struct {
	mu      sync.Mutex
	at      map[mhero.WorkerID]int // the question each worker is at (0: not started)
	results map[string]map[string]string
	rec     *ussdtest.Recorder // keeps the calls, for transcripts' expect lines
}

var surveyQuestions = []string{"Did your facility receive the measles vaccine?\n1. Yes\n2. No", "How many doses are left?"}

func newSurvey() *survey {
	return &survey{at: map[mhero.WorkerID]int{}, results: map[string]map[string]string{}, rec: &ussdtest.Recorder{}}
}

func (s *survey) Load(_ context.Context, r ussd.SourceRequest) ([]ussd.Choice, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	no := max(s.at[r.Worker.ID], 1)
	if r.Worker.ID != 101 || no > len(surveyQuestions) {
		return nil, nil
	}
	return []ussd.Choice{{Value: "7", Label: "Measles campaign", Extra: map[string]string{
		"question": surveyQuestions[no-1], "no": strconv.Itoa(no)}}}, nil
}

func (s *survey) Run(ctx context.Context, r ussd.ActionRequest) (map[string]string, error) {
	if _, err := s.rec.Run(ctx, r); err != nil {
		return nil, err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if res, ok := s.results[r.Key]; ok {
		return res, nil
	}
	if r.Vars["survey"] != "7" {
		return nil, mhero.Errorf(mhero.EVALIDATION, "This survey was not sent to you.")
	}
	no := max(s.at[r.Worker.ID], 1)
	hint := ""
	if r.Vars["survey.no"] != strconv.Itoa(no) {
		hint = "That question has its answer already.\n"
	} else if n, err := strconv.Atoi(r.Vars["answer"]); err != nil || no == 1 && (n < 1 || n > 2) || n < 0 {
		hint = "Please answer with one of the numbers shown.\n"
		if no == 2 {
			hint = "Please answer with a number.\n"
		}
	} else {
		no++
	}
	s.at[r.Worker.ID] = no
	res := map[string]string{"survey.hint": hint, "survey.no": strconv.Itoa(no), "survey.done": "0"}
	if no > len(surveyQuestions) {
		res["survey.done"], res["survey.thanks"] = "1", "Thank you for answering the survey."
	} else {
		res["survey.question"] = surveyQuestions[no-1]
	}
	s.results[r.Key] = res
	return res, nil
}

// env is a server on loopback with the shipped menus, real Valkey and in-memory
// stand-ins for the registry and the actions.
type env struct {
	URL     string
	Client  *http.Client
	Engine  *ussd.Engine
	Store   *sessions.Store
	Actions map[string]*ussdtest.Recorder
	Dir     *ussdtest.Directory
}

func newEnv(tb testing.TB, tune ...func(*ussd.Config)) *env {
	tb.Helper()
	if testing.Short() {
		tb.Skip("needs Valkey/Redis")
	}
	store, err := sessions.Open(context.Background(), registrytest.ValkeyURL(), registrytest.KeyPrefix(tb))
	if err != nil {
		tb.Fatalf("connect Valkey (run make deps): %v", err)
	}
	tb.Cleanup(store.Close)
	e := &env{Store: store, Actions: map[string]*ussdtest.Recorder{
		"stock.submit": {Prefix: "SR-"}, "referral.submit": {Prefix: "RF-"},
		"details.submit": {Prefix: "DT-"}, "language.submit": {Prefix: "LG-"},
	}, Dir: ussdtest.NewDirectory(append([]mhero.Worker(nil), testWorkers...), testFacilities)}
	cfg := ussd.Config{
		Menus:       mustMenus(tb),
		Sessions:    store,
		Directory:   e.Dir,
		Actions:     map[string]ussd.Action{},
		Sources:     map[string]ussd.Source{"facilities": ussdtest.Choices(nearbyFacilities...), "cadres": ussdtest.Choices(testCadres...), "inbox": inbox},
		Commodities: testCommodities,
		Now:         func() time.Time { return today },
	}
	for name, r := range e.Actions {
		cfg.Actions[name] = r
	}
	sv := newSurvey()
	e.Actions["survey.answer"], cfg.Actions["survey.answer"], cfg.Sources["surveys"] = sv.rec, sv, ussd.SourceFunc(sv.Load)
	for _, f := range tune {
		f(&cfg)
	}
	if e.Engine, err = ussd.NewEngine(cfg); err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(e.Engine.Wait) // before the store closes
	h, err := ussd.NewHandler(e.Engine, ussd.HTTPConfig{Gateways: map[string]ussd.GatewayConfig{
		"africastalking": {Allow: []netip.Prefix{netip.MustParsePrefix("127.0.0.1/32")}},
		"jsonop":         {Secret: jsonOpSecret},
	}})
	if err != nil {
		tb.Fatal(err)
	}
	r := mux.NewRouter()
	h.Register(r)
	srv := httptest.NewServer(r)
	tb.Cleanup(srv.Close)
	e.URL, e.Client = srv.URL, srv.Client()
	return e
}

func mustMenus(tb testing.TB) *ussd.Menus {
	tb.Helper()
	m, err := ussd.LoadMenus(ussd.ShippedMenus())
	if err != nil {
		tb.Fatal(err)
	}
	return m
}

// session starts a session of gateway for phone on the env's server.
func (e *env) session(tb testing.TB, gateway, id, phone string) ussdtest.Session {
	tb.Helper()
	secret := ""
	if gateway == "jsonop" {
		secret = jsonOpSecret
	}
	s, err := ussdtest.NewSession(gateway, e.URL, id, phone, secret)
	if err != nil {
		tb.Fatal(err)
	}
	return s
}

// do sends one hop and fails the test on a transport or protocol error.
func (e *env) do(tb testing.TB, s ussdtest.Session, req *http.Request) ussd.Reply {
	tb.Helper()
	rep, err := ussdtest.Do(e.Client, s, req)
	if err != nil {
		tb.Fatalf("hop: %v", err)
	}
	return rep
}

// expect runs a transcript's "expect" lines:
//
//	expect calls ACTION N        the action was called N times
//	expect vars ACTION k=v ...   its last call had these answers
//	expect worker ACTION ID      its last call was for worker ID
func (e *env) expect(args []string) error {
	if len(args) < 2 {
		return fmt.Errorf("want: calls|vars|worker ACTION ...")
	}
	r, ok := e.Actions[args[1]]
	if !ok {
		return fmt.Errorf("no action %q", args[1])
	}
	calls := r.Calls()
	switch args[0] {
	case "calls":
		if len(args) != 3 {
			return fmt.Errorf("want: calls ACTION N")
		}
		if n, _ := strconv.Atoi(args[2]); len(calls) != n {
			return fmt.Errorf("%d calls, want %s", len(calls), args[2])
		}
		return nil
	case "vars", "worker":
		if len(calls) == 0 {
			return fmt.Errorf("no calls")
		}
		last := calls[len(calls)-1]
		if args[0] == "worker" {
			if strconv.FormatInt(int64(last.Worker.ID), 10) != args[2] {
				return fmt.Errorf("worker %d, want %s", last.Worker.ID, args[2])
			}
			return nil
		}
		for _, kv := range args[2:] {
			k, v, _ := strings.Cut(kv, "=")
			if got, ok := last.Vars[k]; !ok && v != "" || got != v {
				return fmt.Errorf("%s = %q, want %q (all: %v)", k, got, v, last.Vars)
			}
		}
		return nil
	}
	return fmt.Errorf("unknown expectation %q", args[0])
}
