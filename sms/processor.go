package sms

import (
	"context"
	"errors"
	"log/slog"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/mhero-health/mhero"
	"github.com/mhero-health/mhero/reports"
)

// What the processor did with an inbound SMS (inbound_messages.handled_as).
const (
	HandledStop          = "stop"
	HandledStart         = "start"
	HandledHelp          = "help"
	HandledStock         = "stock"
	HandledStockRefused  = "stock_refused" // incomplete, unknown commodity, or refused by the reports
	HandledAnswer        = "survey_answer"
	HandledInvalidAnswer = "survey_invalid" // asked again with a hint
	HandledLateAnswer    = "survey_late"    // after the deadline: kept, not counted
	HandledUnknown       = "unknown"        // a worker's text that is no keyword and no answer
	HandledUnknownSender = "unknown_sender" // a number the registry does not know
	HandledPartial       = "partial"        // parts of a long SMS never arrived
	HandledFailed        = "failed"         // handling kept failing; kept, the sender told to try later
)

// ProcessorConfig tunes a Processor. Zero values take defaults.
type ProcessorConfig struct {
	// Batch is how many inbound SMS one transaction claims at most; default 1000. Claims
	// take what is there, so batches are large only when SMS wait: then each costs a
	// commit and a few round trips less per SMS (on the 2-core test machine 100 gave
	// ~4,700 SMS/s, 200 ~6,200, 500 ~7,100, 1000 ~8,500-10,800).
	Batch       int
	Concurrency int           // transactions at once (per instance); default 2
	Poll        time.Duration // how often an idle processor looks; default 250 ms
	// MaxAttempts is how many times an SMS whose handling fails for a passing reason is
	// tried before it is marked failed; default 5, retried after 10 s, 20 s, 40 s, ...
	MaxAttempts int
	// Wake nudges the outbox dispatcher once replies are queued; nil: it finds them at
	// its next poll.
	Wake func()
}

// batchTimeout bounds one batch's transaction.
const batchTimeout = 2 * time.Minute

func (c ProcessorConfig) withDefaults() ProcessorConfig {
	if c.Batch <= 0 {
		c.Batch = 1000
	}
	if c.Concurrency <= 0 {
		c.Concurrency = 2
	}
	if c.Poll <= 0 {
		c.Poll = 250 * time.Millisecond
	}
	if c.MaxAttempts <= 0 {
		c.MaxAttempts = 5
	}
	return c
}

// A Processor handles inbound SMS (see the package documentation). Several processors,
// in one instance or many on one database, share the work: each SMS is claimed by one,
// and its effects, its reply and its handled_at commit together, so a crash re-handles at
// most the claimed batch and nothing of it is written twice. (Opt-out and stock stores
// without the batch APIs, OptOutBatcher and StockBatchReporter, work outside that
// transaction, each SMS in a transaction of its own; that is safe too, as those are
// idempotent: the same state, the same idempotency key.)
type Processor struct {
	s    *Store
	cfg  ProcessorConfig
	log  *slog.Logger
	wake chan struct{}
}

// NewProcessor returns a processor of the store's inbound SMS.
func (s *Store) NewProcessor(cfg ProcessorConfig) *Processor {
	return &Processor{s: s, cfg: cfg.withDefaults(), log: s.log.With("comp", "sms"), wake: make(chan struct{}, 1)}
}

// Wake makes an idle processor look for new SMS now (call it after RecordInbound). It
// never blocks.
func (p *Processor) Wake() {
	select {
	case p.wake <- struct{}{}:
	default:
	}
}

// Run handles inbound SMS until ctx is done, then finishes the batches in hand (their
// transactions outlive ctx) and returns nil. Database errors are logged and retried.
func (p *Processor) Run(ctx context.Context) error {
	var wg sync.WaitGroup
	for range p.cfg.Concurrency {
		wg.Go(func() { p.loop(ctx) })
	}
	wg.Wait()
	return nil
}

func (p *Processor) loop(ctx context.Context) {
	size := p.cfg.Batch
	for ctx.Err() == nil {
		// A batch in hand is finished even when ctx ends (its transaction commits or rolls
		// back whole), within a bound so that a hung database cannot hold the stop forever.
		bctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), batchTimeout)
		n, err := p.handleBatch(bctx, size)
		cancel()
		switch {
		case err != nil:
			// A batch that fails whole may hold one SMS that breaks it: try smaller ones
			// until it is alone, when handleBatch gives it up after MaxAttempts.
			p.log.Error("handling inbound SMS", "batch", size, "error", err)
			size = max(1, size/2)
		case n == size:
			size = p.cfg.Batch
			continue // there may be more
		default:
			size = p.cfg.Batch
		}
		t := time.NewTimer(p.cfg.Poll)
		select {
		case <-ctx.Done():
		case <-p.wake:
		case <-t.C:
		}
		t.Stop()
	}
}

// Drain handles inbound SMS until none is left to claim now, and returns how many it
// handled. It is Run without the waiting, for tests and one-off jobs.
func (p *Processor) Drain(ctx context.Context) (int, error) {
	total := 0
	for {
		n, err := p.handleBatch(ctx, p.cfg.Batch)
		total += n
		if err != nil || n == 0 {
			return total, err
		}
	}
}

// inboundSMS is one claimed SMS.
type inboundSMS struct {
	id       int64
	mno      string
	from     string // as stored
	body     string
	partial  bool
	received time.Time
	attempts int
	msisdn   mhero.MSISDN // from, normalised; "" when it is no phone number
}

// sender is the registry's worker behind a number.
type sender struct {
	id       mhero.WorkerID
	msisdn   mhero.MSISDN
	language string
}

// participation is a worker's place in a survey they were sent.
type participation struct {
	survey   *Survey
	state    string
	current  int
	language string
	reminded bool
	prompted time.Time
	closes   time.Time // the deadline, or when it was closed early
}

// handling is what to do with one SMS, decided before anything is written.
type handling struct {
	in     *inboundSMS
	worker *sender
	lang   *language
	as     string
	note   string
	reply  string
	retry  bool // a passing failure: try again later

	optOut  *bool
	stock   *reports.StockInput
	parsed  Parsed
	answer  *answerRow
	advance *progressRow
}

// answerRow is a survey answer to store.
type answerRow struct {
	survey, worker int64
	no             int
	value          string
	late           bool
	at             time.Time
}

// progressRow is a participant's new place in a survey.
type progressRow struct {
	survey, worker int64
	state          string
	current        int
	remindAt       *time.Time
	invalid        int // answers that did not validate, added
	started        bool
	completed      bool
}

// handleBatch claims up to n SMS and handles them in one transaction. It returns how many
// it claimed.
func (p *Processor) handleBatch(ctx context.Context, n int) (int, error) {
	var claimed []int64
	var replies int
	err := p.s.tx(ctx, func(tx pgx.Tx) error {
		msgs, err := p.claim(ctx, tx, n)
		if err != nil || len(msgs) == 0 {
			return err
		}
		for _, m := range msgs {
			claimed = append(claimed, m.id)
		}
		hs, err := p.decide(ctx, tx, msgs)
		if err != nil {
			return err
		}
		// The survey answers first: the opt-outs and stock reports lock rows that other
		// batches may want until this one commits (the registry's worker counts, a
		// facility's latest stock), so they come as close to the commit as their replies
		// allow.
		if err := p.recordAnswers(ctx, tx, hs); err != nil {
			return err
		}
		p.act(ctx, tx, hs)
		replies, err = p.record(ctx, tx, hs)
		return err
	})
	var pe *pgconn.PgError
	if err != nil && len(claimed) == 1 && ctx.Err() == nil && errors.As(err, &pe) {
		// Alone, and PostgreSQL refuses what it leads to (not a connection that failed:
		// an outage must not use up attempts): count the attempt, and give it up after
		// MaxAttempts.
		if gerr := p.giveUp(ctx, claimed[0], err); gerr != nil {
			p.log.Error("recording a failed inbound SMS", "inbound", claimed[0], "error", gerr)
		}
	}
	if err != nil {
		return len(claimed), err
	}
	if replies > 0 && p.cfg.Wake != nil {
		p.cfg.Wake()
	}
	return len(claimed), nil
}

// claim locks up to n unhandled SMS, oldest first, each the oldest unhandled one of its
// sender: a sender's next SMS waits until this one is handled (committed), so a person's
// answers are taken in the order they were sent, even by concurrent processors.
func (p *Processor) claim(ctx context.Context, tx pgx.Tx, n int) ([]*inboundSMS, error) {
	rows, err := tx.Query(ctx, `SELECT i.id, i.mno, i.from_msisdn, i.body, i.partial, i.received_at, i.attempts
		FROM inbound_messages i
		WHERE i.handled_at IS NULL AND (i.retry_at IS NULL OR i.retry_at <= now())
		  AND NOT EXISTS (SELECT 1 FROM inbound_messages o
			WHERE o.from_msisdn = i.from_msisdn AND o.handled_at IS NULL AND o.id < i.id)
		ORDER BY i.id LIMIT $1
		FOR UPDATE OF i SKIP LOCKED`, n)
	if err != nil {
		return nil, err
	}
	return pgx.CollectRows(rows, func(r pgx.CollectableRow) (*inboundSMS, error) {
		var m inboundSMS
		err := r.Scan(&m.id, &m.mno, &m.from, &m.body, &m.partial, &m.received, &m.attempts)
		if err == nil {
			m.msisdn, _ = p.s.cfg.Normalize(m.from)
		}
		return &m, err
	})
}

// decide looks up the senders and their surveys and routes every SMS.
func (p *Processor) decide(ctx context.Context, tx pgx.Tx, msgs []*inboundSMS) ([]*handling, error) {
	numbers := make([]string, 0, len(msgs))
	for _, m := range msgs {
		if m.msisdn != "" {
			numbers = append(numbers, string(m.msisdn))
		}
	}
	workers, err := p.senders(ctx, tx, numbers)
	if err != nil {
		return nil, err
	}
	ids := make([]int64, 0, len(workers))
	for _, w := range workers {
		ids = append(ids, int64(w.id))
	}
	oldest := msgs[0].received
	for _, m := range msgs {
		if m.received.Before(oldest) {
			oldest = m.received
		}
	}
	parts, err := p.s.participations(ctx, tx, ids, oldest.Add(-p.s.cfg.LateWindow))
	if err != nil {
		return nil, err
	}
	recent, err := p.recentSMS(ctx, tx, msgs)
	if err != nil {
		return nil, err
	}
	hs := make([]*handling, 0, len(msgs))
	seen := map[mhero.WorkerID]bool{}
	for _, m := range msgs {
		h := &handling{in: m, worker: workers[m.msisdn]}
		if h.worker != nil {
			if seen[h.worker.id] {
				// The same worker from their second phone in this batch: their survey place
				// is written once per batch, so this one waits for the next.
				continue
			}
			seen[h.worker.id] = true
		}
		p.s.route(h, parts[workerID(h.worker)])
		if m.msisdn == "" {
			h.note = "the sender's number cannot be read; no reply" // kept all the same
		}
		if h.reply != "" && recent[m.id] >= p.s.cfg.RepliesPerHour {
			h.note = "reply suppressed: too many replies to this number in the last hour"
			h.reply = ""
		}
		hs = append(hs, h)
	}
	return hs, nil
}

func workerID(w *sender) mhero.WorkerID {
	if w == nil {
		return 0
	}
	return w.id
}

// senders finds the workers behind numbers (primary or second phone).
func (p *Processor) senders(ctx context.Context, tx pgx.Tx, numbers []string) (map[mhero.MSISDN]*sender, error) {
	out := make(map[mhero.MSISDN]*sender, len(numbers))
	if len(numbers) == 0 {
		return out, nil
	}
	rows, err := tx.Query(ctx, `SELECT w.id, w.msisdn, COALESCE(w.alt_msisdn, ''), w.language
		FROM workers w WHERE w.msisdn = ANY($1) OR w.alt_msisdn = ANY($1)`, numbers)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	for rows.Next() {
		var w sender
		var alt string
		if err := rows.Scan(&w.id, &w.msisdn, &alt, &w.language); err != nil {
			return nil, err
		}
		out[w.msisdn] = &w
		if alt != "" && out[mhero.MSISDN(alt)] == nil { // a primary number wins over a second one
			out[mhero.MSISDN(alt)] = &w
		}
	}
	return out, rows.Err()
}

// recentSMS counts, for each SMS, the SMS its number sent in the hour before it (each of
// which was answered, unless this same limit held it back). The rows come back unsorted
// and are counted here: a GROUP BY sorted them by the locale's collation, the dearest
// part of the query.
func (p *Processor) recentSMS(ctx context.Context, tx pgx.Tx, msgs []*inboundSMS) (map[int64]int, error) {
	froms := make([]string, len(msgs))
	for i, m := range msgs {
		froms[i] = m.from
	}
	since := msgs[0].received
	for _, m := range msgs {
		if m.received.Before(since) {
			since = m.received
		}
	}
	rows, err := tx.Query(ctx, `SELECT from_msisdn, id, received_at FROM inbound_messages
		WHERE from_msisdn = ANY($1) AND received_at > $2`, froms, since.Add(-time.Hour))
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	type sms struct {
		id       int64
		received time.Time
	}
	byFrom := map[string][]sms{}
	for rows.Next() {
		var from string
		var x sms
		if err := rows.Scan(&from, &x.id, &x.received); err != nil {
			return nil, err
		}
		byFrom[from] = append(byFrom[from], x)
	}
	if err := rows.Err(); err != nil {
		return nil, err
	}
	out := make(map[int64]int, len(msgs))
	for _, m := range msgs {
		for _, x := range byFrom[m.from] {
			if x.id < m.id && x.received.After(m.received.Add(-time.Hour)) {
				out[m.id]++
			}
		}
	}
	return out, nil
}
