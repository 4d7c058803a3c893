package sms

import (
	"bytes"
	"encoding/json"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/mhero-health/mhero"
	"github.com/mhero-health/mhero/outbox"
)

// Text is a text in several languages. In JSON it is an object by language code
// ({"en": "Yes", "fr": "Oui"}) or a plain string, which serves every language.
type Text map[string]string

// UnmarshalJSON reads an object or a plain string.
func (t *Text) UnmarshalJSON(b []byte) error {
	if b = bytes.TrimSpace(b); len(b) > 0 && b[0] == '"' {
		var s string
		if err := json.Unmarshal(b, &s); err != nil {
			return err
		}
		*t = Text{"": s}
		return nil
	}
	var m map[string]string
	if err := json.Unmarshal(b, &m); err != nil {
		return mhero.Errorf(mhero.EINVALID, "a text is a string or an object of strings by language code")
	}
	*t = m
	return nil
}

// In returns the text in lang, else the text for every language, else in fallback.
func (t Text) In(lang, fallback string) string {
	if s, ok := t[lang]; ok {
		return s
	}
	if s, ok := t[""]; ok {
		return s
	}
	return t[fallback]
}

// has reports whether t is written for lang (or for every language).
func (t Text) has(lang string) bool {
	if strings.TrimSpace(t[""]) != "" {
		return true
	}
	return strings.TrimSpace(t[lang]) != ""
}

func (t Text) empty() bool {
	for _, s := range t {
		if strings.TrimSpace(s) != "" {
			return false
		}
	}
	return true
}

// QuestionKind is how a question is answered.
type QuestionKind string

// Question kinds.
const (
	KindChoice QuestionKind = "choice" // one of 2 to 9 choices, by its number or its label
	KindNumber QuestionKind = "number" // a whole number within [min, max]
	KindText   QuestionKind = "text"   // free text up to max_length characters
)

// Choice is one answer of a choice question.
type Choice struct {
	Value string `json:"value"` // stored and reported ("yes"); default its number
	Label Text   `json:"label"`
}

// Question is one question of a survey.
type Question struct {
	No        int          `json:"no"`
	Kind      QuestionKind `json:"kind"`
	Text      Text         `json:"text"`
	Choices   []Choice     `json:"choices,omitempty"`
	Min       *int64       `json:"min,omitempty"` // number: default 0
	Max       *int64       `json:"max,omitempty"` // number: default 1,000,000,000
	MaxLength int          `json:"max_length,omitempty"`
}

// Survey limits.
const (
	MaxQuestions      = 20
	maxChoices        = 9 // answered with one digit
	maxQuestionText   = 320
	maxTextAnswer     = 500
	defaultTextAnswer = 160
	defaultNumberMax  = 1_000_000_000
	MaxSurveyOpen     = 90 * 24 * time.Hour
	minSurveyOpen     = 10 * time.Minute
	maxSurveyName     = 200
	maxIntroText      = 320
)

// SurveyInput is what a sender asks for (the body of POST /surveys).
type SurveyInput struct {
	Name      string          `json:"name"`
	Intro     Text            `json:"intro,omitempty"`   // before the first question, e.g. "mHero survey on malaria tests."
	Closing   Text            `json:"closing,omitempty"` // the thanks after the last answer
	Questions []Question      `json:"questions"`
	Target    json.RawMessage `json:"target"` // the registry's targeting query, as for a broadcast
	// SendAt is when the first question goes; default now.
	SendAt *time.Time `json:"send_at,omitempty"`
	// Deadline closes the survey; or OpenFor after SendAt ("72h"). One is required.
	Deadline *time.Time `json:"deadline,omitempty"`
	OpenFor  string     `json:"open_for,omitempty"`
	// ReminderAfter: a worker who has not answered a question this long after it was
	// sent is reminded of it, once per survey ("24h"; "off" for none; default from the
	// configuration).
	ReminderAfter  string   `json:"reminder_after,omitempty"`
	Priority       string   `json:"priority,omitempty"`    // normal (default) or bulk
	SpreadOver     string   `json:"spread_over,omitempty"` // pace the first question, as a broadcast
	ValidFor       string   `json:"valid_for,omitempty"`
	MaxCost        *float64 `json:"max_cost,omitempty"` // for the first question's messages, every language together
	IdempotencyKey string   `json:"idempotency_key,omitempty"`
	DryRun         bool     `json:"dry_run,omitempty"`
}

// Survey is a survey as created, with its progress when read back.
type Survey struct {
	ID            int64           `json:"id"`
	Name          string          `json:"name"`
	Intro         Text            `json:"intro,omitempty"`
	Closing       Text            `json:"closing,omitempty"`
	Languages     []string        `json:"languages"` // asked in; the first also for workers of any other language
	Questions     []Question      `json:"questions"`
	Target        json.RawMessage `json:"target"`
	Priority      string          `json:"priority"`
	State         string          `json:"state"` // sending, open, closed
	SendAt        time.Time       `json:"send_at"`
	Deadline      time.Time       `json:"deadline"`
	ReminderAfter string          `json:"reminder_after,omitempty"` // "" = no reminder
	SpreadOver    string          `json:"spread_over,omitempty"`
	ValidFor      string          `json:"valid_for,omitempty"`
	BroadcastIDs  []int64         `json:"broadcast_ids"`
	CreatedBy     string          `json:"created_by,omitempty"`
	CreatedAt     time.Time       `json:"created_at,omitzero"`
	ClosedAt      time.Time       `json:"closed_at,omitzero"`

	// On create: what the first question costs.
	Recipients    int                  `json:"recipients,omitempty"`
	Estimate      []outbox.MNOEstimate `json:"estimate,omitempty"`
	EstimatedCost float64              `json:"estimated_cost,omitempty"`
	DryRun        bool                 `json:"dry_run,omitempty"`

	// On read: progress.
	Progress *Progress `json:"progress,omitempty"`

	reminder  time.Duration
	scopePath string
	hash      []byte
}

// planSurvey checks a request and returns the survey it makes (not stored).
func (s *Store) planSurvey(in SurveyInput, now time.Time) (*Survey, error) {
	var d []mhero.ErrorDetail
	bad := func(field, format string, args ...any) {
		d = append(d, mhero.ErrorDetail{Field: field, Message: fmt.Sprintf(format, args...)})
	}
	sv := &Survey{Name: strings.TrimSpace(in.Name), Intro: in.Intro, Closing: in.Closing, Target: in.Target,
		Priority: cmpOr(in.Priority, "normal"), SpreadOver: in.SpreadOver, ValidFor: in.ValidFor, State: "sending"}
	switch {
	case sv.Name == "":
		bad("name", "name is required")
	case len(sv.Name) > maxSurveyName:
		bad("name", "name is longer than %d characters", maxSurveyName)
	}
	if t := bytes.TrimSpace(in.Target); len(t) == 0 || bytes.Equal(t, []byte("null")) {
		bad("target", "target is required, as for a broadcast")
	}
	if sv.Priority != "normal" && sv.Priority != "bulk" {
		bad("priority", "priority must be normal or bulk")
	}
	sv.SendAt = now
	if in.SendAt != nil {
		if in.SendAt.Before(now.Add(-time.Minute)) {
			bad("send_at", "send_at is in the past")
		} else if in.SendAt.After(now) {
			sv.SendAt = *in.SendAt
		}
	}
	switch {
	case in.Deadline != nil && in.OpenFor != "":
		bad("deadline", "give deadline or open_for, not both")
	case in.Deadline != nil:
		sv.Deadline = *in.Deadline
	case in.OpenFor != "":
		if v, err := time.ParseDuration(in.OpenFor); err == nil {
			sv.Deadline = sv.SendAt.Add(v)
		} else {
			bad("open_for", "open_for must be a duration such as 72h")
		}
	default:
		bad("deadline", "a deadline (or open_for) is required")
	}
	if !sv.Deadline.IsZero() {
		if open := sv.Deadline.Sub(sv.SendAt); open < minSurveyOpen || open > MaxSurveyOpen {
			bad("deadline", "the deadline must be between 10 minutes and 90 days after send_at")
		}
	}
	sv.reminder = s.cfg.SurveyReminder
	switch r := strings.TrimSpace(in.ReminderAfter); r {
	case "":
	case "off", "none", "0":
		sv.reminder = -1
	default:
		v, err := time.ParseDuration(r)
		if err != nil || v < time.Minute {
			bad("reminder_after", "reminder_after must be a duration such as 24h, or off")
		}
		sv.reminder = v
	}
	if sv.reminder > 0 {
		sv.ReminderAfter = sv.reminder.String()
	}
	if len(in.IdempotencyKey) > 200 {
		bad("idempotency_key", "idempotency_key is longer than 200 characters")
	}
	checkText(in.Intro, "intro", maxIntroText, false, bad)
	checkText(in.Closing, "closing", maxIntroText, false, bad)
	s.checkQuestions(in.Questions, bad)
	if len(d) == 0 {
		sv.Questions = in.Questions
		sv.Languages = s.surveyLanguages(sv)
		if !slices.Contains(sv.Languages, s.lang0) {
			bad("questions", "every text needs the default language (%s), or one plain string for every language", s.lang0)
		}
	}
	if err := validation("Survey", d); err != nil {
		return nil, err
	}
	return sv, nil
}

func (s *Store) checkQuestions(qs []Question, bad func(field, format string, args ...any)) {
	if len(qs) == 0 || len(qs) > MaxQuestions {
		bad("questions", "a survey has 1 to %d questions", MaxQuestions)
	}
	for i := range qs {
		q := &qs[i]
		q.No = i + 1
		f := fmt.Sprintf("questions[%d]", i)
		checkText(q.Text, f+".text", maxQuestionText, true, bad)
		switch q.Kind {
		case KindChoice:
			if len(q.Choices) < 2 || len(q.Choices) > maxChoices {
				bad(f+".choices", "a choice question has 2 to %d choices", maxChoices)
			}
			seen := map[string]bool{}
			for j := range q.Choices {
				c := &q.Choices[j]
				checkText(c.Label, fmt.Sprintf("%s.choices[%d].label", f, j), 40, true, bad)
				if c.Value = strings.TrimSpace(c.Value); c.Value == "" {
					c.Value = strconv.Itoa(j + 1)
				}
				if seen[c.Value] {
					bad(f+".choices", "choice value %q is repeated", c.Value)
				}
				seen[c.Value] = true
			}
		case KindNumber:
			if len(q.Choices) > 0 {
				bad(f+".choices", "only a choice question has choices")
			}
			if q.Min == nil {
				q.Min = new(int64)
			}
			if q.Max == nil {
				q.Max = new(int64)
				*q.Max = defaultNumberMax
			}
			if *q.Min > *q.Max || *q.Min < -defaultNumberMax || *q.Max > 1e15 {
				bad(f+".min", "min must not be above max")
			}
		case KindText:
			if len(q.Choices) > 0 {
				bad(f+".choices", "only a choice question has choices")
			}
			if q.MaxLength == 0 {
				q.MaxLength = defaultTextAnswer
			}
			if q.MaxLength < 1 || q.MaxLength > maxTextAnswer {
				bad(f+".max_length", "max_length must be from 1 to %d", maxTextAnswer)
			}
		default:
			bad(f+".kind", "kind must be choice, number or text")
		}
	}
}

// checkText refuses empty texts (when required), long ones, and braces: a broadcast
// would read {word} as a placeholder.
func checkText(t Text, field string, max int, required bool, bad func(field, format string, args ...any)) {
	if required && t.empty() {
		bad(field, "text is required")
	}
	for l, s := range t {
		if utf8.RuneCountInString(s) > max {
			bad(field, "text (%s) is longer than %d characters", cmpOr(l, "all"), max)
		}
		if strings.ContainsAny(s, "{}") {
			bad(field, "text (%s) may not contain { or }", cmpOr(l, "all"))
		}
	}
}

// surveyLanguages lists the deployment's languages every text of the survey is written
// in, the default language first.
func (s *Store) surveyLanguages(sv *Survey) []string {
	var out []string
	for _, l := range s.cfg.Languages {
		ok := (sv.Intro.empty() || sv.Intro.has(l)) && (sv.Closing.empty() || sv.Closing.has(l))
		for _, q := range sv.Questions {
			ok = ok && q.Text.has(l)
			for _, c := range q.Choices {
				ok = ok && c.Label.has(l)
			}
		}
		if ok {
			out = append(out, l)
		}
	}
	return out
}

// askIn returns the survey language a worker of language wl is asked in.
func (sv *Survey) askIn(wl string) string {
	if slices.Contains(sv.Languages, wl) {
		return wl
	}
	return sv.Languages[0]
}

// render writes question no (1-based) of the survey in survey language sl.
func (s *Store) render(sv *Survey, no int, sl string) string {
	q := &sv.Questions[no-1]
	l := s.lang(sl)
	t := l.texts
	var how string
	switch q.Kind {
	case KindChoice:
		parts := make([]string, len(q.Choices))
		for i, c := range q.Choices {
			parts[i] = strconv.Itoa(i+1) + "=" + strings.TrimSpace(c.Label.In(sl, sv.Languages[0]))
		}
		how = fill(t.ChoiceHow, map[string]string{"choices": strings.Join(parts, " ")})
	case KindNumber:
		how = t.NumberHow
	default:
		how = t.TextHow
	}
	return strings.TrimSpace(fill(t.Question, map[string]string{"no": strconv.Itoa(no), "total": strconv.Itoa(len(sv.Questions)),
		"text": strings.TrimSpace(q.Text.In(sl, sv.Languages[0])), "how": how}))
}

// firstMessage is the first question with the survey's introduction.
func (s *Store) firstMessage(sv *Survey, sl string) string {
	q := s.render(sv, 1, sl)
	if intro := strings.TrimSpace(sv.Intro.In(sl, sv.Languages[0])); intro != "" {
		return intro + " " + q
	}
	return q
}

// closing is the thanks after the last answer.
func (s *Store) closing(sv *Survey, sl string) string {
	if c := strings.TrimSpace(sv.Closing.In(sl, sv.Languages[0])); c != "" {
		return c
	}
	return s.lang(sl).texts.SurveyThanks
}

// check validates an answer to question no in survey language sl: the value to store,
// or the hint to send back with the question.
func (s *Store) check(sv *Survey, no int, sl, raw string) (value, hint string, ok bool) {
	q := &sv.Questions[no-1]
	t := s.lang(sl).texts
	switch q.Kind {
	case KindChoice:
		if c := matchChoice(q, raw); c != nil {
			return c.Value, "", true
		}
		return "", fill(t.HintChoice, map[string]string{"n": strconv.Itoa(len(q.Choices))}), false
	case KindNumber:
		if n, ok := readNumber(raw); ok && n >= *q.Min && n <= *q.Max {
			return strconv.FormatInt(n, 10), "", true
		}
		return "", fill(t.HintNumber, map[string]string{"min": strconv.FormatInt(*q.Min, 10), "max": strconv.FormatInt(*q.Max, 10)}), false
	default:
		v := strings.TrimSpace(strings.Join(strings.Fields(cleanText(raw)), " "))
		if v != "" && utf8.RuneCountInString(v) <= q.MaxLength {
			return v, "", true
		}
		return "", fill(t.HintText, map[string]string{"max": strconv.Itoa(q.MaxLength)}), false
	}
}

// matchChoice reads "2", "2.", "2 no", "No", "non" (a label in any language) or a value.
func matchChoice(q *Question, raw string) *Choice {
	f := fold(raw)
	if f == "" {
		return nil
	}
	first, _, _ := strings.Cut(f, " ")
	if n, ok := wholeNumber(first, len(q.Choices)); ok && n >= 1 {
		return &q.Choices[n-1]
	}
	for i := range q.Choices {
		c := &q.Choices[i]
		if fold(c.Value) == f {
			return c
		}
		for _, label := range c.Label {
			if lf := fold(label); lf != "" && (lf == f || lf == first) {
				return c
			}
		}
	}
	return nil
}

// readNumber reads a whole number as people type it: "20", "1,000", "-3", "20 cases".
func readNumber(raw string) (int64, bool) {
	s := strings.TrimSpace(raw)
	neg := strings.HasPrefix(s, "-")
	words := strings.Fields(fold(separateNumbers(strings.TrimPrefix(s, "-"))))
	if len(words) == 0 || !isNumber(words[0]) || len(words[0]) > 16 {
		return 0, false
	}
	n, err := strconv.ParseInt(words[0], 10, 64)
	if err != nil {
		return 0, false
	}
	if neg {
		n = -n
	}
	return n, true
}

// cleanText makes s storable as PostgreSQL text: invalid UTF-8 becomes U+FFFD, NULs go.
func cleanText(s string) string {
	return strings.ReplaceAll(strings.ToValidUTF8(s, "\uFFFD"), "\x00", "")
}

func cmpOr(a, b string) string {
	if a == "" {
		return b
	}
	return a
}
