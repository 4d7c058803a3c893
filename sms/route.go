package sms

import (
	"context"
	"strconv"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/mhero-health/mhero"
	"github.com/mhero-health/mhero/reports"
)

// route decides what an SMS is and what to answer, in this order:
//
//  1. a number the registry does not know: kept, answered politely;
//  2. an SMS that arrived in part: asked again;
//  3. STOP and START (they must always work, in a survey or not), HELP, and a complete
//     STOCK report;
//  4. an answer to the worker's open survey question (the one they were asked last);
//  5. a late answer to a survey that closed within the late window;
//  6. an incomplete STOCK report (the usage), or anything else (what can be sent).
//
// The reply is in the language of the keyword when only one language has it, else in the
// worker's language (their survey's language for answers).
func (s *Store) route(h *handling, parts []*participation) {
	m := h.in
	parsed := s.parser.Parse(m.body)
	h.parsed = parsed
	if h.worker == nil {
		h.lang = s.lang(parsed.Language)
		h.as, h.reply = HandledUnknownSender, h.lang.texts.UnknownSender
		return
	}
	h.lang = s.lang(parsed.Language, h.worker.language)
	t := h.lang.texts
	if m.partial {
		h.as, h.reply = HandledPartial, t.Partial
		return
	}
	switch parsed.Command {
	case CommandStop, CommandStart:
		stop := parsed.Command == CommandStop
		h.optOut = &stop
		h.as, h.reply = HandledStart, h.lang.text(t.StartConfirm, nil)
		if stop {
			h.as, h.reply = HandledStop, h.lang.text(t.StopConfirm, nil)
		}
		return
	case CommandHelp:
		h.as, h.reply = HandledHelp, h.lang.text(t.Help, nil)
		return
	case CommandStock:
		if parsed.Problem == StockComplete {
			s.routeStock(h)
			return
		}
	}
	if open, late := pick(parts, m.received); open != nil {
		s.answer(h, open)
		return
	} else if late != nil && parsed.Command == CommandNone {
		s.lateAnswer(h, late)
		return
	}
	switch {
	case parsed.Command == CommandStock:
		h.as, h.note = HandledStockRefused, string(parsed.Problem)
		switch parsed.Problem {
		case StockUnknownCommodity:
			h.reply = h.lang.text(t.StockUnknownCommodity, map[string]string{"typed": parsed.Typed})
		case StockBadQuantity, StockBadDays:
			h.reply = h.lang.text(t.StockBadQuantity, nil)
		default:
			h.reply = h.lang.text(t.StockUsage, nil)
		}
	default:
		h.as, h.reply = HandledUnknown, h.lang.text(t.Unknown, nil)
	}
}

func (s *Store) routeStock(h *handling) {
	if s.deps.Stock == nil {
		h.as, h.note, h.reply = HandledStockRefused, "no stock reporter configured", h.lang.text(h.lang.texts.StockUnavailable, nil)
		return
	}
	p := h.parsed
	// The report is keyed by the SMS: handled again after a crash, it is the same report.
	h.stock = &reports.StockInput{WorkerID: h.worker.id, Commodity: p.Commodity, Quantity: p.Quantity,
		StockoutDays: p.DaysOut, ReportedAt: h.in.received, IdempotencyKey: "sms:" + itoa(h.in.id)}
}

// pick returns the survey a worker's SMS received at t answers: of those still open, the
// one whose question they were sent last; else the survey that closed last (for a late
// answer).
func pick(parts []*participation, t time.Time) (open, late *participation) {
	for _, p := range parts {
		if t.Before(p.closes) {
			if open == nil || p.prompted.After(open.prompted) {
				open = p
			}
		} else if late == nil || p.closes.After(late.closes) {
			late = p
		}
	}
	return open, late
}

// answer checks an answer to the worker's current question and moves them on: the next
// question, or the thanks after the last; a wrong answer gets the question again with a
// hint.
func (s *Store) answer(h *handling, p *participation) {
	sv := p.survey
	h.lang = s.lang(p.language)
	value, hint, ok := s.check(sv, p.current, p.language, h.in.body)
	r := &progressRow{survey: sv.ID, worker: int64(h.worker.id), state: p.state, current: p.current}
	h.advance = r
	if !ok {
		r.invalid = 1
		h.as, h.reply = HandledInvalidAnswer, hint+" "+s.render(sv, p.current, p.language)
		r.remindAt = s.remindAt(sv, p)
		return
	}
	h.as = HandledAnswer
	h.answer = &answerRow{survey: sv.ID, worker: int64(h.worker.id), no: p.current, value: value, at: h.in.received}
	r.started = true
	if p.current == len(sv.Questions) {
		r.state, r.completed = "completed", true
		h.reply = s.closing(sv, p.language)
		return
	}
	r.state, r.current = "started", p.current+1
	r.remindAt = s.remindAt(sv, p)
	h.reply = s.render(sv, r.current, p.language)
}

// remindAt is when to remind a participant of the question just sent, nil for never: the
// survey has no reminder, they were reminded already, or it would come after the deadline.
func (s *Store) remindAt(sv *Survey, p *participation) *time.Time {
	if sv.reminder <= 0 || p.reminded {
		return nil
	}
	t := s.now().Add(sv.reminder)
	if !t.Before(p.closes) {
		return nil
	}
	return &t
}

func (s *Store) lateAnswer(h *handling, p *participation) {
	h.lang = s.lang(p.language)
	h.as, h.reply = HandledLateAnswer, h.lang.texts.SurveyClosed
	h.answer = &answerRow{survey: p.survey.ID, worker: int64(h.worker.id), no: p.current,
		value: truncateRunes(cleanText(h.in.body), maxTextAnswer), late: true, at: h.in.received}
}

// participations returns, by worker, the surveys in progress that closed after since
// (open ones, and those an answer may still come late to), locking the participants'
// rows: a USSD answer or a reminder for the same worker waits for this transaction.
func (s *Store) participations(ctx context.Context, tx pgx.Tx, workers []int64, since time.Time) (map[mhero.WorkerID][]*participation, error) {
	out := map[mhero.WorkerID][]*participation{}
	if len(workers) == 0 {
		return out, nil
	}
	rows, err := tx.Query(ctx, `SELECT p.survey_id, p.worker_id, p.state, p.current_no, p.language,
			p.reminded_at IS NOT NULL, p.prompted_at, LEAST(s.deadline, s.closed_at)
		FROM survey_participants p JOIN surveys s ON s.id = p.survey_id
		WHERE p.worker_id = ANY($1) AND p.state IN ('sent', 'started') AND LEAST(s.deadline, s.closed_at) > $2
		ORDER BY p.worker_id, p.survey_id
		FOR UPDATE OF p`, workers, since)
	if err != nil {
		return nil, err
	}
	type row struct {
		survey, worker int64
		p              participation
	}
	list, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (row, error) {
		var x row
		err := r.Scan(&x.survey, &x.worker, &x.p.state, &x.p.current, &x.p.language, &x.p.reminded, &x.p.prompted, &x.p.closes)
		return x, err
	})
	if err != nil {
		return nil, err
	}
	for _, x := range list {
		sv, err := s.survey(ctx, x.survey)
		if err != nil {
			return nil, err
		}
		p := x.p
		p.survey = sv
		if p.current < 1 || p.current > len(sv.Questions) {
			continue // cannot happen: the definition and the place are written together
		}
		out[mhero.WorkerID(x.worker)] = append(out[mhero.WorkerID(x.worker)], &p)
	}
	return out, nil
}

func itoa(n int64) string { return strconv.FormatInt(n, 10) }
