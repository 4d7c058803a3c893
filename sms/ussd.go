package sms

import (
	"context"
	"errors"
	"strconv"
	"strings"

	"github.com/jackc/pgx/v5"
	"github.com/mhero-health/mhero"
)

// The same survey can be answered over USSD: the inbox offers the worker's open surveys
// (OpenSurveys) and each answer goes through AnswerUSSD, which validates it and moves the
// worker on exactly as an SMS answer does (the two channels share the worker's place).

// SurveyPrompt is an open survey a worker can answer now, with the question they are at.
type SurveyPrompt struct {
	SurveyID int64  `json:"survey_id"`
	Name     string `json:"name"`
	No       int    `json:"no"`
	Total    int    `json:"total"`
	Question string `json:"question"` // for a USSD screen: the text, then one numbered line per choice
}

// OpenSurveys lists the surveys worker can answer now, the one they were asked last
// first, each in the language the worker is asked it in.
func (s *Store) OpenSurveys(ctx context.Context, worker mhero.WorkerID) ([]SurveyPrompt, error) {
	rows, err := s.db.Query(ctx, `SELECT p.survey_id, p.current_no, p.language
		FROM survey_participants p JOIN surveys s ON s.id = p.survey_id
		WHERE p.worker_id = $1 AND p.state IN ('sent', 'started') AND s.state <> 'closed' AND s.deadline > $2
		  AND s.send_at <= $2
		ORDER BY p.prompted_at DESC`, worker, s.now())
	if err != nil {
		return nil, pgError(err, "Surveys")
	}
	type open struct {
		Survey int64
		No     int
		Lang   string
	}
	list, err := pgx.CollectRows(rows, pgx.RowToStructByPos[open])
	if err != nil {
		return nil, pgError(err, "Surveys")
	}
	out := make([]SurveyPrompt, 0, len(list))
	for _, o := range list {
		sv, err := s.survey(ctx, o.Survey)
		if err != nil {
			return nil, err
		}
		out = append(out, SurveyPrompt{SurveyID: sv.ID, Name: sv.Name, No: o.No, Total: len(sv.Questions),
			Question: s.renderUSSD(sv, o.No, o.Lang)})
	}
	return out, nil
}

// renderUSSD writes a question for a USSD screen.
func (s *Store) renderUSSD(sv *Survey, no int, sl string) string {
	q := &sv.Questions[no-1]
	var b strings.Builder
	b.WriteString(strings.TrimSpace(q.Text.In(sl, sv.Languages[0])))
	for i, c := range q.Choices {
		b.WriteString("\n" + strconv.Itoa(i+1) + ". " + strings.TrimSpace(c.Label.In(sl, sv.Languages[0])))
	}
	return b.String()
}

// USSDAnswer is what a USSD answer led to.
type USSDAnswer struct {
	Accepted bool   `json:"accepted"`
	Hint     string `json:"hint,omitempty"`     // why it was not, in the worker's survey language
	Done     bool   `json:"done"`               // that was the last question
	No       int    `json:"no,omitempty"`       // the question to show now: its number,
	Question string `json:"question,omitempty"` // and its text (the next, or the same again)
	Thanks   string `json:"thanks,omitempty"`   // when done
}

// AnswerUSSD records a worker's answer to question no of a survey (the one their screen
// shows), typed in a USSD session. When the worker is at another question (they went Back
// on the handset, or answered by SMS meanwhile) nothing is stored and the answer says
// where they are; no 0 skips that check. key is the USSD hop's idempotency key
// (ussd.ActionRequest.Key): the same key again returns where the worker is without storing
// anything twice. A closed survey, or one the worker was not sent, is EVALIDATION (the
// menu says so).
func (s *Store) AnswerUSSD(ctx context.Context, worker mhero.WorkerID, survey int64, no int, answer, key string) (*USSDAnswer, error) {
	if key == "" {
		return nil, mhero.Errorf(mhero.EINVALID, "A USSD answer needs the hop's key.")
	}
	var out *USSDAnswer
	err := s.tx(ctx, func(tx pgx.Tx) error {
		var p participation
		err := tx.QueryRow(ctx, `SELECT p.state, p.current_no, p.language, p.reminded_at IS NOT NULL, p.prompted_at,
				LEAST(s.deadline, s.closed_at)
			FROM survey_participants p JOIN surveys s ON s.id = p.survey_id
			WHERE p.survey_id = $1 AND p.worker_id = $2 FOR UPDATE OF p`, survey, worker).
			Scan(&p.state, &p.current, &p.language, &p.reminded, &p.prompted, &p.closes)
		if errors.Is(err, pgx.ErrNoRows) {
			return mhero.Errorf(mhero.EVALIDATION, "This survey was not sent to you.")
		}
		if err != nil {
			return err
		}
		if p.survey, err = s.survey(ctx, survey); err != nil {
			return err
		}
		sv := p.survey
		var seen bool
		if err := tx.QueryRow(ctx, `SELECT EXISTS (SELECT 1 FROM survey_answers WHERE source_key = $1)`, key).Scan(&seen); err != nil {
			return err
		}
		switch {
		case seen || p.state == "completed":
			out = s.ussdPlace(sv, &p)
			out.Accepted = seen
			return nil
		case p.state == "opted_out" || !s.now().Before(p.closes):
			return mhero.Errorf(mhero.EVALIDATION, "This survey is closed.")
		case no != 0 && no != p.current:
			out = s.ussdPlace(sv, &p)
			out.Hint = s.lang(p.language).texts.SurveyMovedOn
			return nil
		}
		h := &handling{in: &inboundSMS{body: answer, received: s.now()}, worker: &sender{id: worker}}
		s.answer(h, &p)
		out = &USSDAnswer{Accepted: h.answer != nil}
		b := &pgx.Batch{}
		queueProgress(b, []*handling{h})
		if a := h.answer; a != nil {
			b.Queue(`INSERT INTO survey_answers (survey_id, worker_id, question_no, value, channel, source_key, answered_at)
				VALUES ($1, $2, $3, $4, 'ussd', $5, $6)`, a.survey, a.worker, a.no, a.value, key, a.at)
		}
		if err := tx.SendBatch(ctx, b).Close(); err != nil {
			return err
		}
		r := h.advance
		if !out.Accepted {
			_, out.Hint, _ = s.check(sv, p.current, p.language, answer)
			out.No, out.Question = p.current, s.renderUSSD(sv, p.current, p.language)
			return nil
		}
		out.Done = r.completed
		if out.Done {
			out.Thanks = s.closing(sv, p.language)
		} else {
			out.No, out.Question = r.current, s.renderUSSD(sv, r.current, p.language)
		}
		return nil
	})
	if err != nil {
		return nil, pgError(err, "Survey answer")
	}
	return out, nil
}

// ussdPlace says where a worker is in a survey, for a repeated USSD hop.
func (s *Store) ussdPlace(sv *Survey, p *participation) *USSDAnswer {
	if p.state == "completed" {
		return &USSDAnswer{Done: true, Thanks: s.closing(sv, p.language)}
	}
	return &USSDAnswer{No: p.current, Question: s.renderUSSD(sv, p.current, p.language)}
}
