package sms

import (
	"context"
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/mhero-health/mhero"
	"github.com/mhero-health/mhero/outbox"
	"github.com/mhero-health/mhero/smpp"
)

// noOutbox lets the parts that never send be tested without a database.
type noOutbox struct{}

func (noOutbox) EnqueueBatch(context.Context, pgx.Tx, []outbox.NewMessage) ([]int64, error) {
	return nil, mhero.Errorf(mhero.EUNAVAILABLE, "no outbox in this test")
}
func (noOutbox) CreateBroadcast(context.Context, outbox.Audience, outbox.BroadcastInput) (*outbox.Broadcast, bool, error) {
	return nil, false, mhero.Errorf(mhero.EUNAVAILABLE, "no outbox in this test")
}
func (noOutbox) CancelBroadcast(context.Context, int64) (int, error) { return 0, nil }

func unitStore(t testing.TB) *Store {
	t.Helper()
	s, err := NewStore(nil, Deps{Outbox: noOutbox{}}, Config{Commodities: testCommodities}, nil)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

const testSurveyJSON = `{
	"name": "Malaria tests",
	"intro": {"en": "mHero survey.", "fr": "Enquete mHero."},
	"target": {"cadres": ["chw"]},
	"open_for": "72h",
	"questions": [
		{"kind": "choice", "text": {"en": "Do you have RDTs?", "fr": "Avez-vous des TDR ?"},
		 "choices": [{"value": "yes", "label": {"en": "Yes", "fr": "Oui"}}, {"value": "no", "label": {"en": "No", "fr": "Non"}}]},
		{"kind": "number", "text": {"en": "How many?", "fr": "Combien ?"}, "min": 0, "max": 500},
		{"kind": "text", "text": "Any comment?", "max_length": 20}
	]}`

func testSurvey(t testing.TB, s *Store) *Survey {
	t.Helper()
	var in SurveyInput
	if err := json.Unmarshal([]byte(testSurveyJSON), &in); err != nil {
		t.Fatal(err)
	}
	sv, err := s.planSurvey(in, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	sv.ID = 1
	return sv
}

func TestSurveyRenderAndCheck(t *testing.T) {
	t.Parallel()
	s := unitStore(t)
	sv := testSurvey(t, s)
	if strings.Join(sv.Languages, ",") != "en,fr" {
		t.Fatalf("languages %v, want en,fr", sv.Languages)
	}
	if got, want := s.firstMessage(sv, "en"), "mHero survey. Q1/3: Do you have RDTs? Reply 1=Yes 2=No"; got != want {
		t.Errorf("first message %q, want %q", got, want)
	}
	if got, want := s.render(sv, 2, "fr"), "Q2/3 : Combien ? Répondez par un nombre."; got != want {
		t.Errorf("French question 2 %q, want %q", got, want)
	}
	if got, want := s.renderUSSD(sv, 1, "fr"), "Avez-vous des TDR ?\n1. Oui\n2. Non"; got != want {
		t.Errorf("USSD question %q, want %q", got, want)
	}
	tests := []struct {
		no        int
		lang, in  string
		value     string // "" = refused
		hintParts string
	}{
		{1, "en", "1", "yes", ""},
		{1, "en", " 2. ", "no", ""},
		{1, "en", "yes", "yes", ""},
		{1, "en", "NO!", "no", ""},
		{1, "fr", "oui", "yes", ""},
		{1, "en", "Non", "no", ""}, // a label in another of the survey's languages
		{1, "en", "2 no we have none", "no", ""},
		{1, "en", "3", "", "from 1 to 2"},
		{1, "en", "maybe", "", "from 1 to 2"},
		{1, "fr", "", "", "de 1 à 2"},
		{2, "en", "40", "40", ""},
		{2, "en", "1,000", "", "from 0 to 500"},
		{2, "en", "20 boxes", "20", ""},
		{2, "en", "-3", "", "from 0 to 500"},
		{2, "en", "twenty", "", "from 0 to 500"},
		{2, "en", "12.5", "", "from 0 to 500"},
		{3, "en", "  all   good ", "all good", ""},
		{3, "en", "this comment is far too long for it", "", "at most 20"},
		{3, "en", " ", "", "at most 20"},
	}
	for _, tt := range tests {
		value, hint, ok := s.check(sv, tt.no, tt.lang, tt.in)
		switch {
		case tt.value != "" && (!ok || value != tt.value):
			t.Errorf("Q%d %q: %q %v (hint %q), want %q", tt.no, tt.in, value, ok, hint, tt.value)
		case tt.value == "" && (ok || !strings.Contains(hint, tt.hintParts)):
			t.Errorf("Q%d %q: accepted %q or hint %q lacks %q", tt.no, tt.in, value, hint, tt.hintParts)
		}
	}
}

func TestPlanSurveyRefusesBadDefinitions(t *testing.T) {
	t.Parallel()
	s := unitStore(t)
	now := time.Now()
	base := func() SurveyInput {
		var in SurveyInput
		if err := json.Unmarshal([]byte(testSurveyJSON), &in); err != nil {
			t.Fatal(err)
		}
		return in
	}
	past := now.Add(-time.Hour)
	tests := []struct {
		name  string
		edit  func(*SurveyInput)
		field string
	}{
		{"no name", func(in *SurveyInput) { in.Name = "" }, "name"},
		{"no target", func(in *SurveyInput) { in.Target = nil }, "target"},
		{"no questions", func(in *SurveyInput) { in.Questions = nil }, "questions"},
		{"no deadline", func(in *SurveyInput) { in.OpenFor = "" }, "deadline"},
		{"deadline too soon", func(in *SurveyInput) { in.OpenFor = "1m" }, "deadline"},
		{"send_at past", func(in *SurveyInput) { in.SendAt = &past }, "send_at"},
		{"one choice", func(in *SurveyInput) { in.Questions[0].Choices = in.Questions[0].Choices[:1] }, "questions[0].choices"},
		{"unknown kind", func(in *SurveyInput) { in.Questions[1].Kind = "date" }, "questions[1].kind"},
		{"braces", func(in *SurveyInput) { in.Questions[2].Text = Text{"": "Your {name}?"} }, "questions[2].text"},
		{"min above max", func(in *SurveyInput) { lo := int64(900); in.Questions[1].Min = &lo }, "questions[1].min"},
		{"no English", func(in *SurveyInput) { in.Questions[0].Text = Text{"fr": "Avez-vous des TDR ?"} }, "questions"},
		{"bad reminder", func(in *SurveyInput) { in.ReminderAfter = "soon" }, "reminder_after"},
		{"bad priority", func(in *SurveyInput) { in.Priority = "alert" }, "priority"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			in := base()
			tt.edit(&in)
			_, err := s.planSurvey(in, now)
			found := false
			for _, d := range mhero.ErrorDetails(err) {
				found = found || d.Field == tt.field
			}
			if mhero.ErrorCode(err) != mhero.EVALIDATION || !found {
				t.Errorf("planSurvey: %v %+v, want a validation error on %s", err, mhero.ErrorDetails(err), tt.field)
			}
		})
	}
	// A survey written only in English is asked in English to everyone.
	in := base()
	in.Intro, in.Questions[0].Text = nil, Text{"en": "Do you have RDTs?"}
	sv, err := s.planSurvey(in, now)
	if err != nil || strings.Join(sv.Languages, ",") != "en" || sv.askIn("fr") != "en" {
		t.Errorf("English-only survey: %v %v", err, sv)
	}
}

// TestTextsFitOneSMS keeps every built-in reply GSM 7-bit (a single accented capital
// outside GSM 03.38 would make it UCS-2 and double its cost) and short.
func TestTextsFitOneSMS(t *testing.T) {
	t.Parallel()
	s := unitStore(t)
	sv := testSurvey(t, s)
	for code, l := range s.langs {
		vars := map[string]string{"commodity": "ORS sachets", "quantity": "20", "ref": "S-7K3Q9", "typed": "XYZ",
			"n": "2", "min": "0", "max": "500", "question": s.render(sv, 1, code)}
		for name, text := range map[string]string{"stop": l.texts.StopConfirm, "start": l.texts.StartConfirm,
			"help": l.texts.Help, "unknown": l.texts.Unknown, "unknown_sender": l.texts.UnknownSender,
			"partial": l.texts.Partial, "busy": l.texts.Busy, "stock_recorded": l.texts.StockRecorded,
			"stock_usage": l.texts.StockUsage, "stock_unknown": l.texts.StockUnknownCommodity,
			"stock_bad_quantity": l.texts.StockBadQuantity, "stock_no_facility": l.texts.StockNoFacility,
			"stock_rejected": l.texts.StockRejected, "survey_closed": l.texts.SurveyClosed, "survey_thanks": l.texts.SurveyThanks,
			"reminder": l.texts.SurveyReminder, "hint_choice": l.texts.HintChoice, "question": s.render(sv, 2, code)} {
			filled := l.text(text, vars)
			if strings.Contains(filled, "{") {
				t.Errorf("%s %s: placeholder left in %q", code, name, filled)
			}
			n, coding := smpp.CountSegments(filled)
			if coding == smpp.CodingUCS2 || n > 2 {
				t.Errorf("%s %s: %d segments, coding %v: %q", code, name, n, coding, filled)
			}
		}
	}
}

func TestNewStoreChecksLanguages(t *testing.T) {
	t.Parallel()
	_, err := NewStore(nil, Deps{Outbox: noOutbox{}}, Config{Languages: []string{"en", "pt"}}, nil)
	if err == nil || !strings.Contains(err.Error(), `"pt"`) {
		t.Errorf("a language without keywords or texts: %v", err)
	}
	pt := Texts{}.merged(DefaultTexts["en"]) // a deployment translating every text
	_, err = NewStore(nil, Deps{Outbox: noOutbox{}}, Config{Languages: []string{"pt", "en"},
		Keywords: map[string]Keywords{"pt": {Stop: []string{"PARAR"}, Start: []string{"COMEÇAR"}, Help: []string{"AJUDA"}, Stock: []string{"ESTOQUE"}}},
		Texts:    map[string]Texts{"pt": pt}}, nil)
	if err != nil {
		t.Errorf("a configured language: %v", err)
	}
}
