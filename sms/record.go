package sms

import (
	"context"
	"errors"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/mhero-health/mhero"
	"github.com/mhero-health/mhero/outbox"
)

// giveUp counts a failed attempt at one SMS and, after MaxAttempts, marks it failed
// (kept, with the error) so that it no longer blocks its sender's next SMS, and tells the
// sender to try again later, in their language, as record does for an effect that kept
// failing.
func (p *Processor) giveUp(ctx context.Context, id int64, cause error) error {
	note := truncateRunes(cause.Error(), 300)
	var worker mhero.WorkerID
	gaveUp := false
	err := p.s.tx(ctx, func(tx pgx.Tx) error {
		var final bool
		var from, mno string
		err := tx.QueryRow(ctx, `UPDATE inbound_messages SET attempts = attempts + 1, handle_note = $2,
				retry_at = now() + (10 * 2 ^ LEAST(attempts, 10)) * interval '1 second',
				handled_at = CASE WHEN attempts + 1 >= $3 THEN now() END,
				handled_as = CASE WHEN attempts + 1 >= $3 THEN $4 END
			WHERE id = $1 AND handled_at IS NULL
			RETURNING handled_at IS NOT NULL, from_msisdn, COALESCE(mno, '')`, id, note, p.cfg.MaxAttempts, HandledFailed).
			Scan(&final, &from, &mno)
		if errors.Is(err, pgx.ErrNoRows) || err == nil && !final {
			return nil
		}
		if err != nil {
			return err
		}
		to, err := p.s.cfg.Normalize(from)
		if err != nil {
			return nil // no phone number to answer (kept, failed, with the error)
		}
		ws, err := p.senders(ctx, tx, []string{string(to)})
		if err != nil {
			return err
		}
		w := ws[to]
		var prefs []string
		if w != nil {
			prefs = append(prefs, w.language)
		}
		ids, err := p.s.deps.Outbox.EnqueueBatch(ctx, tx, []outbox.NewMessage{{WorkerID: workerID(w), To: to,
			Body: p.s.lang(prefs...).texts.Busy, Priority: outbox.PriorityReply, MNO: mno}})
		if err != nil {
			return err
		}
		worker, gaveUp = workerID(w), true
		_, err = tx.Exec(ctx, `UPDATE inbound_messages SET reply_message_id = $2, worker_id = NULLIF($3, 0) WHERE id = $1`,
			id, ids[0], int64(worker))
		return err
	})
	if err == nil && gaveUp {
		p.log.Warn("inbound SMS given up after repeated failures", "inbound", id, "worker_id", int64(worker))
	}
	return err
}

// acts says whether act does something for an SMS (an opt-out or a stock report), whose
// outcome may then be to try it again later.
func (h *handling) acts() bool { return h.optOut != nil || h.stock != nil }

// recordAnswers writes the survey answers and places of the SMS that act has nothing to
// do for (record writes those of the others, if any).
func (p *Processor) recordAnswers(ctx context.Context, tx pgx.Tx, hs []*handling) error {
	var early []*handling
	for _, h := range hs {
		if !h.acts() {
			early = append(early, h)
		}
	}
	b := &pgx.Batch{}
	queueAnswers(b, early)
	queueProgress(b, early)
	if b.Len() == 0 {
		return nil
	}
	return tx.SendBatch(ctx, b).Close()
}

// record writes what was decided and done (the survey answers recordAnswers left),
// opt-outs' effect on surveys, replies, and each SMS's outcome. It returns the replies
// queued.
func (p *Processor) record(ctx context.Context, tx pgx.Tx, hs []*handling) (int, error) {
	var replies []outbox.NewMessage
	var replyOf []*handling
	done := make([]*handling, 0, len(hs))
	var retry []*handling
	for _, h := range hs {
		if h.retry && h.in.attempts+1 < p.cfg.MaxAttempts {
			retry = append(retry, h)
			continue
		}
		if h.retry { // the last attempt failed too
			h.as, h.reply, h.answer, h.advance = HandledFailed, h.lang.texts.Busy, nil, nil
		}
		done = append(done, h)
		if h.reply != "" && h.in.msisdn != "" {
			// No idempotency key: the reply commits with handled_at, so an SMS handled
			// again after a crash had no reply either (and a key costs an index entry).
			replies = append(replies, outbox.NewMessage{WorkerID: workerID(h.worker), To: h.in.msisdn,
				Body: h.reply, Priority: outbox.PriorityReply, MNO: h.in.mno})
			replyOf = append(replyOf, h)
		}
	}
	ids, err := p.s.deps.Outbox.EnqueueBatch(ctx, tx, replies)
	if err != nil {
		return 0, err
	}
	var acted []*handling
	for _, h := range done {
		if h.acts() {
			acted = append(acted, h)
		}
	}
	b := &pgx.Batch{}
	queueAnswers(b, acted)
	queueProgress(b, acted)
	queueSurveyStops(b, done)
	queueRetries(b, retry)
	replyID := make(map[*handling]int64, len(ids))
	for i, id := range ids {
		replyID[replyOf[i]] = id
	}
	n := len(done)
	msgIDs, workers, as, notes, replyIDs := make([]int64, n), make([]int64, n), make([]string, n), make([]string, n), make([]int64, n)
	for i, h := range done {
		msgIDs[i], workers[i], as[i], notes[i], replyIDs[i] = h.in.id, int64(workerID(h.worker)), h.as, h.note, replyID[h]
	}
	b.Queue(`UPDATE inbound_messages i SET handled_at = now(), worker_id = NULLIF(d.worker, 0),
			handled_as = d.handled_as, handle_note = NULLIF(d.note, ''), reply_message_id = NULLIF(d.reply, 0), retry_at = NULL
		FROM unnest($1::bigint[], $2::bigint[], $3::text[], $4::text[], $5::bigint[]) AS d(id, worker, handled_as, note, reply)
		WHERE i.id = d.id`, msgIDs, workers, as, notes, replyIDs)
	if err := tx.SendBatch(ctx, b).Close(); err != nil {
		return 0, err
	}
	for _, h := range done {
		if h.as == HandledFailed {
			p.log.Warn("inbound SMS given up after repeated failures", "inbound", h.in.id, "worker_id", int64(workerID(h.worker)))
		}
	}
	return len(replies), nil
}

func queueAnswers(b *pgx.Batch, hs []*handling) {
	var surveys, workers, ids []int64
	var nos []int16
	var values []string
	var late []bool
	var at []time.Time
	for _, h := range hs {
		if a := h.answer; a != nil {
			surveys, workers, nos, values = append(surveys, a.survey), append(workers, a.worker), append(nos, int16(a.no)), append(values, a.value)
			late, at, ids = append(late, a.late), append(at, a.at), append(ids, h.in.id)
		}
	}
	if len(ids) == 0 {
		return
	}
	// ON CONFLICT: the SMS was handled before (a crash after an answer committed elsewhere
	// cannot happen in one transaction, but the USSD may have answered the same question).
	b.Queue(`INSERT INTO survey_answers (survey_id, worker_id, question_no, value, late, channel, inbound_id, answered_at)
		SELECT s, w, n, v, l, 'sms', i, t FROM unnest($1::bigint[], $2::bigint[], $3::smallint[], $4::text[], $5::bool[],
			$6::bigint[], $7::timestamptz[]) AS a(s, w, n, v, l, i, t)
		ON CONFLICT DO NOTHING`, surveys, workers, nos, values, late, ids, at)
}

func queueProgress(b *pgx.Batch, hs []*handling) {
	var surveys, workers []int64
	var states []string
	var current, invalid []int32
	var remind []*time.Time
	var started, completed []bool
	for _, h := range hs {
		if r := h.advance; r != nil {
			surveys, workers, states, current = append(surveys, r.survey), append(workers, r.worker), append(states, r.state), append(current, int32(r.current))
			invalid, remind = append(invalid, int32(r.invalid)), append(remind, r.remindAt)
			started, completed = append(started, r.started), append(completed, r.completed)
		}
	}
	if len(surveys) == 0 {
		return
	}
	b.Queue(`UPDATE survey_participants p SET state = u.state, current_no = u.current,
			prompted_at = CASE WHEN u.current <> p.current_no THEN now() ELSE p.prompted_at END,
			remind_at = CASE WHEN p.reminded_at IS NULL THEN u.remind ELSE p.remind_at END,
			invalid_count = p.invalid_count + u.invalid,
			started_at = CASE WHEN u.started THEN COALESCE(p.started_at, now()) ELSE p.started_at END,
			completed_at = CASE WHEN u.completed THEN now() ELSE p.completed_at END
		FROM unnest($1::bigint[], $2::bigint[], $3::text[], $4::int[], $5::int[], $6::timestamptz[], $7::bool[], $8::bool[])
			AS u(survey, worker, state, current, invalid, remind, started, completed)
		WHERE p.survey_id = u.survey AND p.worker_id = u.worker`,
		surveys, workers, states, current, invalid, remind, started, completed)
}

// queueSurveyStops ends the surveys in progress of workers who sent STOP: no further
// question is sent to them.
func queueSurveyStops(b *pgx.Batch, hs []*handling) {
	var workers []int64
	for _, h := range hs {
		if h.optOut != nil && *h.optOut && h.as == HandledStop {
			workers = append(workers, int64(h.worker.id))
		}
	}
	if len(workers) > 0 {
		b.Queue(`UPDATE survey_participants SET state = 'opted_out', remind_at = NULL
			WHERE worker_id = ANY($1) AND state IN ('sent', 'started')`, workers)
	}
}

// queueRetries leaves SMS whose handling failed for a passing reason unhandled, to be
// claimed again after a back-off.
func queueRetries(b *pgx.Batch, hs []*handling) {
	if len(hs) == 0 {
		return
	}
	ids, notes := make([]int64, len(hs)), make([]string, len(hs))
	for i, h := range hs {
		ids[i], notes[i] = h.in.id, truncateRunes(h.note, 300)
	}
	b.Queue(`UPDATE inbound_messages i SET attempts = i.attempts + 1, handle_note = d.note,
			retry_at = now() + (10 * 2 ^ LEAST(i.attempts, 10)) * interval '1 second'
		FROM unnest($1::bigint[], $2::text[]) AS d(id, note) WHERE i.id = d.id`, ids, notes)
}
