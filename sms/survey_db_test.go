package sms_test

import (
	"context"
	"encoding/csv"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/mhero-health/mhero"
	"github.com/mhero-health/mhero/api"
	"github.com/mhero-health/mhero/sms"
)

const surveyJSON = `{
	"name": "Malaria tests",
	"intro": {"en": "mHero survey.", "fr": "Enquete mHero."},
	"target": {"locations": ["LR"]},
	"open_for": "72h",
	"closing": {"en": "Thank you for your answers.", "fr": "Merci pour vos réponses."},
	"questions": [
		{"kind": "choice", "text": {"en": "Do you have RDTs?", "fr": "Avez-vous des TDR ?"},
		 "choices": [{"value": "yes", "label": {"en": "Yes", "fr": "Oui"}}, {"value": "no", "label": {"en": "No", "fr": "Non"}}]},
		{"kind": "number", "text": {"en": "How many?", "fr": "Combien ?"}, "min": 0, "max": 500},
		{"kind": "text", "text": {"en": "Any comment?", "fr": "Un commentaire ?"}, "max_length": 60}
	]}`

func surveyInput(t testing.TB, edit func(*sms.SurveyInput)) sms.SurveyInput {
	t.Helper()
	var in sms.SurveyInput
	if err := json.Unmarshal([]byte(surveyJSON), &in); err != nil {
		t.Fatal(err)
	}
	if edit != nil {
		edit(&in)
	}
	return in
}

// TestSurveyLifecycle follows a survey from creation to its report: the first question
// sent per language, answers by SMS and USSD in any order, a wrong answer asked again,
// STOP mid-survey, reminders once, a late answer, progress and responses.
func TestSurveyLifecycle(t *testing.T) {
	t.Parallel()
	e := newEnv(t, 400, nil)
	ctx := context.Background()
	sv, created, err := e.sms.CreateSurvey(ctx, surveyInput(t, func(in *sms.SurveyInput) { in.IdempotencyKey = "rdt-1" }))
	if err != nil || !created {
		t.Fatalf("create: %v (created %v)", err, created)
	}
	reachable := e.count(t, `SELECT count(*) FROM workers WHERE active AND NOT opted_out`)
	participants := e.count(t, `SELECT count(*) FROM survey_participants WHERE survey_id = $1`, sv.ID)
	if sv.State != "open" || len(sv.BroadcastIDs) != 2 || participants != reachable || sv.Recipients != reachable {
		t.Fatalf("survey %s with broadcasts %v: %d participants, %d recipients, want %d", sv.State, sv.BroadcastIDs, participants, sv.Recipients, reachable)
	}
	// Each worker is asked in their language, by the broadcast of that language.
	if n := e.count(t, `SELECT count(*) FROM survey_participants p JOIN workers w ON w.id = p.worker_id
		JOIN messages m ON m.id = p.message_id
		WHERE p.survey_id = $1 AND p.language = w.language AND m.body = CASE w.language
			WHEN 'fr' THEN 'Enquete mHero. Q1/3 : Avez-vous des TDR ? Répondez 1=Oui 2=Non'
			ELSE 'mHero survey. Q1/3: Do you have RDTs? Reply 1=Yes 2=No' END`, sv.ID); n != reachable {
		t.Errorf("%d of %d asked in their language", n, reachable)
	}
	// The same key again is the same survey; with another request, a conflict.
	again, created, err := e.sms.CreateSurvey(ctx, surveyInput(t, func(in *sms.SurveyInput) { in.IdempotencyKey = "rdt-1" }))
	if err != nil || created || again.ID != sv.ID {
		t.Errorf("repeat: %v created %v id %d", err, created, again.ID)
	}
	if _, _, err := e.sms.CreateSurvey(ctx, surveyInput(t, func(in *sms.SurveyInput) { in.IdempotencyKey = "rdt-1"; in.Name = "Other" })); mhero.ErrorCode(err) != mhero.ECONFLICT {
		t.Errorf("key reused: %v", err)
	}

	aID, a := e.worker(t, "en")
	bID, b := e.worker(t, "fr")
	cID, c := e.worker(t, "en", aID)
	dID, d := e.worker(t, "en", aID, cID)

	say := func(from mhero.MSISDN, text, as, reply string) {
		t.Helper()
		id := e.mo(t, from, text)
		e.drain(t)
		o := e.outcome(t, id)
		if o.as != as || !strings.Contains(o.reply, reply) {
			t.Errorf("%s says %q: handled as %q, reply %q; want %q with %q", from, text, o.as, o.reply, as, reply)
		}
	}
	// A: a wrong answer first, then the whole survey.
	say(a, "maybe", sms.HandledInvalidAnswer, "Please reply with a number from 1 to 2. Q1/3: Do you have RDTs?")
	say(a, "1", sms.HandledAnswer, "Q2/3: How many? Reply with a number.")
	say(a, "40", sms.HandledAnswer, "Q3/3: Any comment?")
	say(a, "All good here", sms.HandledAnswer, "Thank you for your answers.")
	// B: in French, then STOP in the middle: no further question.
	say(b, "oui", sms.HandledAnswer, "Q2/3 : Combien ?")
	say(b, "Arrêt", sms.HandledStop, "Vous ne recevrez plus")
	say(b, "12", sms.HandledUnknown, "n'a pas compris")
	// C: over USSD, then finishes by SMS: both channels share the worker's place.
	open, err := e.sms.OpenSurveys(ctx, cID)
	if err != nil || len(open) != 1 || open[0].SurveyID != sv.ID || open[0].Question != "Do you have RDTs?\n1. Yes\n2. No" {
		t.Fatalf("USSD inbox: %v %+v", err, open)
	}
	r, err := e.sms.AnswerUSSD(ctx, cID, sv.ID, 1, "2", "sess-1:3")
	if err != nil || !r.Accepted || r.No != 2 || r.Question != "How many?" {
		t.Fatalf("USSD answer: %v %+v", err, r)
	}
	if r2, err := e.sms.AnswerUSSD(ctx, cID, sv.ID, 1, "2", "sess-1:3"); err != nil || r2.Question != "How many?" {
		t.Errorf("USSD hop retried: %v %+v", err, r2)
	}
	if r, err := e.sms.AnswerUSSD(ctx, cID, sv.ID, 1, "1", "sess-1:4"); err != nil || r.Accepted || r.No != 2 || !strings.Contains(r.Hint, "has its answer already") {
		t.Errorf("an answer to a screen gone Back to: %v %+v", err, r)
	}
	if r, err := e.sms.AnswerUSSD(ctx, cID, sv.ID, 2, "lots", "sess-1:5"); err != nil || r.Accepted || !strings.Contains(r.Hint, "from 0 to 500") {
		t.Errorf("bad USSD answer: %v %+v", err, r)
	}
	if r, err := e.sms.AnswerUSSD(ctx, cID, sv.ID, 0, "7", "sess-1:6"); err != nil || !r.Accepted || r.Question != "Any comment?" {
		t.Errorf("USSD answer: %v %+v", err, r)
	}
	say(c, "fine", sms.HandledAnswer, "Thank you for your answers.")
	if _, err := e.sms.AnswerUSSD(ctx, bID, sv.ID, 0, "1", "sess-2:1"); mhero.ErrorCode(err) != mhero.EVALIDATION {
		t.Errorf("USSD answer after STOP: %v", err)
	}
	// D: two answers sent before either is handled are taken in order.
	d1, d2 := e.mo(t, d, "yes"), e.mo(t, d, "40")
	e.drain(t)
	if o1, o2 := e.outcome(t, d1), e.outcome(t, d2); o1.as != sms.HandledAnswer || o2.as != sms.HandledAnswer || !strings.Contains(o2.reply, "Q3/3") {
		t.Errorf("two quick answers: %+v then %+v", o1, o2)
	}

	// A day later, everyone who has not finished is reminded once of their question.
	sched := e.sms.NewScheduler(sms.SchedulerConfig{})
	e.clock.Advance(25 * time.Hour)
	if err := sched.Tick(ctx); err != nil {
		t.Fatal(err)
	}
	pending := participants - 3 // A and C finished, B opted out
	if n := e.count(t, `SELECT count(*) FROM messages WHERE body LIKE 'Reminder: Q1/3: Do you have RDTs?%' OR body LIKE 'Rappel : Q1/3 :%'`); n != pending-1 {
		t.Errorf("%d reminders of the first question, want %d", n, pending-1)
	}
	if n := e.count(t, `SELECT count(*) FROM messages WHERE worker_id = $1 AND body = 'Reminder: Q3/3: Any comment? Reply with your answer.'`, int64(dID)); n != 1 {
		t.Errorf("D was not reminded of the question they are at")
	}
	if err := sched.Tick(ctx); err != nil {
		t.Fatal(err)
	}
	if n := e.count(t, `SELECT count(*) FROM messages WHERE body LIKE 'Reminder:%' OR body LIKE 'Rappel :%'`); n != pending {
		t.Errorf("%d reminders after a second tick, want %d (once each)", n, pending)
	}

	// Closed early: an answer from now on is late, kept and answered so.
	if _, err := e.sms.CloseSurvey(ctx, sv.ID); err != nil {
		t.Fatal(err)
	}
	say(d, "ok", sms.HandledLateAnswer, "this survey is closed")

	got, err := e.sms.FindSurvey(ctx, sv.ID)
	if err != nil {
		t.Fatal(err)
	}
	p := got.Progress
	if got.State != "closed" || p.Recipients != participants || p.Started != 4 || p.Completed != 2 || p.OptedOut != 1 ||
		p.Invalid != 2 || p.Late != 1 || p.Reminded != pending {
		t.Errorf("progress %+v", p)
	}
	q := p.Questions
	if len(q) != 3 || q[0].Answers != 4 || q[0].Choices["yes"] != 3 || q[0].Choices["no"] != 1 || q[1].Answers != 3 ||
		*q[1].Min != 7 || *q[1].Max != 40 || *q[1].Mean != 29 || q[2].Answers != 2 {
		t.Errorf("per question %+v", q)
	}
	locs := 0
	for _, l := range p.ByLocation {
		locs += l.Recipients
	}
	if locs != participants || len(p.ByLocation) < 2 {
		t.Errorf("by location %+v", p.ByLocation)
	}

	// The same through the API: progress, and responses as JSON pages and CSV.
	srv := api.New(api.Options{Auth: e.reg})
	e.sms.Routes(srv, nil)
	reader, _, err := e.reg.CreateAPIKey(ctx, "viewer", mhero.RoleReader, "")
	if err != nil {
		t.Fatal(err)
	}
	get := func(path, accept string) *httptest.ResponseRecorder {
		req := httptest.NewRequest(http.MethodGet, path, nil)
		req.Header.Set("Authorization", "Bearer "+reader)
		if accept != "" {
			req.Header.Set("Accept", accept)
		}
		w := httptest.NewRecorder()
		srv.ServeHTTP(w, req)
		return w
	}
	path := "/api/v1/surveys/" + itoa(sv.ID)
	if w := get(path, ""); w.Code != http.StatusOK || !strings.Contains(w.Body.String(), `"completed":2`) {
		t.Errorf("GET survey: %d %s", w.Code, w.Body)
	}
	var page struct {
		Items      []sms.Response `json:"items"`
		NextCursor string         `json:"next_cursor"`
	}
	w := get(path+"/responses?limit=6", "")
	if err := json.Unmarshal(w.Body.Bytes(), &page); err != nil || len(page.Items) != 6 || page.NextCursor == "" {
		t.Fatalf("first page: %d %v %s", w.Code, err, w.Body)
	}
	first := page.Items[0]
	if first.WorkerID != aID || first.QuestionNo != 1 || first.Value != "yes" || first.Label != "Yes" || first.Channel != "sms" || first.Location == "" {
		t.Errorf("first response %+v", first)
	}
	w = get(path+"/responses?limit=6&cursor="+page.NextCursor, "")
	page.Items = nil
	if err := json.Unmarshal(w.Body.Bytes(), &page); err != nil || len(page.Items) != 4 || !page.Items[3].Late {
		t.Errorf("second page: %v %+v", err, page.Items)
	}
	w = get(path+"/responses", "text/csv")
	recs, err := csv.NewReader(w.Body).ReadAll()
	if err != nil || len(recs) != 11 || recs[0][0] != "answer_id" || w.Header().Get("Content-Type") != "text/csv; charset=utf-8" {
		t.Errorf("CSV: %v, %d rows, header %v", err, len(recs), recs[0])
	}
	ussd := 0
	for _, rec := range recs[1:] {
		if rec[11] == "ussd" {
			ussd++
		}
	}
	if ussd != 2 {
		t.Errorf("%d answers over USSD in the CSV, want 2", ussd)
	}
	// A reader may read, not create.
	req := httptest.NewRequest(http.MethodPost, "/api/v1/surveys", strings.NewReader(surveyJSON))
	req.Header.Set("Authorization", "Bearer "+reader)
	req.Header.Set("Content-Type", "application/json")
	rw := httptest.NewRecorder()
	srv.ServeHTTP(rw, req)
	if rw.Code != http.StatusForbidden {
		t.Errorf("reader creating a survey: %d", rw.Code)
	}
}

// TestSurveyClosesAtDeadline lets a survey's deadline pass: the scheduler closes it,
// cancels what of the first question is still queued, and a later answer is late.
func TestSurveyClosesAtDeadline(t *testing.T) {
	t.Parallel()
	e := newEnv(t, 150, nil)
	ctx := context.Background()
	sv, _, err := e.sms.CreateSurvey(ctx, surveyInput(t, func(in *sms.SurveyInput) { in.OpenFor = "1h"; in.ReminderAfter = "off" }))
	if err != nil {
		t.Fatal(err)
	}
	if n := e.count(t, `SELECT count(*) FROM survey_participants WHERE survey_id = $1 AND remind_at IS NOT NULL`, sv.ID); n != 0 {
		t.Errorf("%d reminders planned for a survey without", n)
	}
	_, w := e.worker(t, "en")
	e.clock.Advance(2 * time.Hour)
	if err := e.sms.NewScheduler(sms.SchedulerConfig{}).Tick(ctx); err != nil {
		t.Fatal(err)
	}
	got, err := e.sms.FindSurvey(ctx, sv.ID)
	if err != nil || got.State != "closed" || !got.ClosedAt.Equal(got.Deadline) {
		t.Fatalf("after the deadline: %v %s closed at %v (deadline %v)", err, got.State, got.ClosedAt, got.Deadline)
	}
	queued := e.count(t, `SELECT count(*) FROM messages m JOIN message_queue q ON q.message_id = m.id WHERE m.broadcast_id = ANY($1)`, got.BroadcastIDs)
	cancelled := e.count(t, `SELECT count(*) FROM messages WHERE broadcast_id = ANY($1) AND state = 'cancelled'`, got.BroadcastIDs)
	if queued != 0 || cancelled != got.Progress.Recipients {
		t.Errorf("after closing: %d still queued, %d cancelled of %d", queued, cancelled, got.Progress.Recipients)
	}
	id := e.mo(t, w, "1")
	e.drain(t)
	if o := e.outcome(t, id); o.as != sms.HandledLateAnswer {
		t.Errorf("answer after the deadline: %+v", o)
	}
}

// TestSurveyRefusals: a target reaching no one, or a first question over max_cost,
// creates nothing; a dry run only estimates.
func TestSurveyRefusals(t *testing.T) {
	t.Parallel()
	e := newEnv(t, 150, nil)
	ctx := context.Background()
	_, _, err := e.sms.CreateSurvey(ctx, surveyInput(t, func(in *sms.SurveyInput) { in.Target = json.RawMessage(`{"languages": ["sw"]}`) }))
	if mhero.ErrorCode(err) != mhero.EVALIDATION || !strings.Contains(mhero.ErrorMessage(err), "reaches no one") {
		t.Errorf("a target reaching no one: %v", err)
	}
	_, _, err = e.sms.CreateSurvey(ctx, surveyInput(t, func(in *sms.SurveyInput) { in.Target = json.RawMessage(`{"cadres": ["astronaut"]}`) }))
	if mhero.ErrorCode(err) != mhero.EVALIDATION {
		t.Errorf("an unknown cadre: %v", err)
	}
	cheap := 0.01
	_, _, err = e.sms.CreateSurvey(ctx, surveyInput(t, func(in *sms.SurveyInput) { in.MaxCost = &cheap }))
	if mhero.ErrorCode(err) != mhero.EVALIDATION || !strings.Contains(mhero.ErrorMessage(err), "max_cost") {
		t.Errorf("over max_cost: %v", err)
	}
	dry, created, err := e.sms.CreateSurvey(ctx, surveyInput(t, func(in *sms.SurveyInput) { in.DryRun = true }))
	if err != nil || created || !dry.DryRun || dry.Recipients == 0 || dry.EstimatedCost <= 0 || len(dry.Estimate) != 2 {
		t.Errorf("dry run: %v %+v", err, dry)
	}
	if n := e.count(t, `SELECT count(*) FROM surveys`) + e.count(t, `SELECT count(*) FROM broadcasts`) + e.count(t, `SELECT count(*) FROM messages`); n != 0 {
		t.Errorf("refusals and a dry run left %d rows", n)
	}
}

func itoa(n int64) string { return strconv.FormatInt(n, 10) }
