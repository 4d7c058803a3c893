package outbox

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/mhero-health/mhero"
)

// Sender submits one message to the SMSC. The composition root adapts *smpp.Pool to it
// (this package does not import smpp) and classifies its errors with Permanent,
// Temporary and OutcomeUnknown:
//
//	res, err := pool.Send(ctx, &smpp.Message{ID: strconv.FormatInt(m.ID, 10), To: m.To, From: m.Sender,
//		Text: m.Body, MNO: m.MNO, RequestReceipt: true, Validity: time.Until(m.ValidUntil)})
//	sub := outbox.SendResult{MNO: res.MNO, SMSCIDs: res.MessageIDs, Segments: res.Segments}
//	code := "" // "0x0B" from (*smpp.SubmitError).Status when the SMSC answered
//	switch {
//	case err == nil:
//	case errors.Is(err, smpp.ErrOutcomeUnknown):
//		err = outbox.OutcomeUnknown(code, err)
//	case smpp.IsTemporary(err):
//		err = outbox.Temporary(code, 0, err)
//	default:
//		err = outbox.Permanent(code, err)
//	}
//	return sub, err
//
// A Sender may return SMSC ids with an error (some segments of a long message were
// accepted, a later one was not): the message is then recorded as submitted with the
// parts it has, never sent again.
type Sender interface {
	Send(ctx context.Context, m Outgoing) (SendResult, error)
}

// Availability is implemented by a Sender that knows which MNOs it can submit to now
// (outboxsmpp.Sender: accounts with a bind up). The dispatcher then claims only their
// messages (and those not routed yet), and nothing while there is none, so an instance
// whose binds are down or on standby leaves the queue to instances that can send.
type Availability interface {
	Sendable() []string
}

// Outgoing is a claimed message handed to the Sender.
type Outgoing struct {
	ID         int64
	To         mhero.MSISDN
	Sender     string // "" = the MNO's configured source address
	Body       string
	MNO        string    // the MNO set at enqueue, "" = route by number
	ValidUntil time.Time // zero = no limit
	Priority   int
	Attempts   int // earlier attempts that failed temporarily
}

// SendResult is what the SMSC accepted. (Submitted, the name the design used, is a message state.)
type SendResult struct {
	MNO      string
	SMSCIDs  []string // normalised like receipts' ids, one per accepted segment
	Segments int
}

// SendErrorKind classifies a failed send.
type SendErrorKind int

const (
	// SendPermanent: the SMSC (or the router) refused the message; sending it again
	// would fail again. The message becomes failed.
	SendPermanent SendErrorKind = iota
	// SendTemporary: the message was not taken and may be sent again later (throttled,
	// queue full, no bind). It is retried on DispatchConfig.Backoff.
	SendTemporary
	// SendOutcomeUnknown: the SMSC may or may not have taken it (no response). It
	// becomes unknown and is never sent again.
	SendOutcomeUnknown
)

func (k SendErrorKind) String() string {
	switch k {
	case SendPermanent:
		return "permanent"
	case SendTemporary:
		return "temporary"
	case SendOutcomeUnknown:
		return "outcome unknown"
	}
	return fmt.Sprintf("SendErrorKind(%d)", int(k))
}

// SendError is a classified Sender error. Code is what the message records as its
// error_code: the SMSC's command_status as "0x0B", or a short word ("no_bind",
// "timeout") when the SMSC did not answer.
type SendError struct {
	Kind       SendErrorKind
	Code       string
	RetryAfter time.Duration // Temporary: do not try before this long (the schedule's delay when longer)
	Err        error         // the cause, may be nil
}

func (e *SendError) Error() string {
	s := "send " + e.Kind.String()
	if e.Code != "" {
		s += " (" + e.Code + ")"
	}
	if e.Err != nil {
		s += ": " + e.Err.Error()
	}
	return s
}

func (e *SendError) Unwrap() error { return e.Err }

// Permanent classifies err as a refusal: the message fails with code.
func Permanent(code string, err error) error {
	return &SendError{Kind: SendPermanent, Code: code, Err: err}
}

// Temporary classifies err as a failure worth retrying, not before retryAfter (0: the
// schedule decides).
func Temporary(code string, retryAfter time.Duration, err error) error {
	return &SendError{Kind: SendTemporary, Code: code, RetryAfter: retryAfter, Err: err}
}

// OutcomeUnknown classifies err as a send that may have reached the SMSC: the message
// becomes unknown and is not sent again.
func OutcomeUnknown(code string, err error) error {
	return &SendError{Kind: SendOutcomeUnknown, Code: code, Err: err}
}

// classify returns the kind and code of a Sender error. An error that is not a
// *SendError is taken as OutcomeUnknown: not knowing what happened, the dispatcher
// prefers not sending twice.
func classify(err error) (SendErrorKind, string, time.Duration) {
	var se *SendError
	if errors.As(err, &se) {
		return se.Kind, se.Code, se.RetryAfter
	}
	return SendOutcomeUnknown, "error", 0
}

// DispatchConfig tunes a Dispatcher. Zero values take the defaults.
type DispatchConfig struct {
	Batch       int             // messages claimed per query; default 100
	Concurrency int             // sends in flight; default 50
	Poll        time.Duration   // how often an idle dispatcher looks for due messages; default 500 ms
	Backoff     []time.Duration // delays after each temporary failure; default 30s, 2m, 10m, 30m, then failed
	Lease       time.Duration   // how long a claim keeps other dispatchers away; default 2 m
	// SendTimeout bounds one Send; default Lease/2, and never more, so a claim does not
	// run out while its send is still going.
	SendTimeout time.Duration
	// StopTimeout is how long Run waits, once its context is done, for sends in flight
	// before cancelling them; default 30 s. Their outcomes are recorded either way.
	StopTimeout time.Duration
}

// DefaultBackoff is the retry schedule for temporary failures.
var DefaultBackoff = []time.Duration{30 * time.Second, 2 * time.Minute, 10 * time.Minute, 30 * time.Minute}

func (c DispatchConfig) withDefaults() DispatchConfig {
	if c.Batch <= 0 {
		c.Batch = 100
	}
	if c.Concurrency <= 0 {
		c.Concurrency = 50
	}
	if c.Poll <= 0 {
		c.Poll = 500 * time.Millisecond
	}
	if len(c.Backoff) == 0 {
		c.Backoff = DefaultBackoff
	}
	c.Backoff = slices.Clone(c.Backoff)
	if c.Lease <= 0 {
		c.Lease = 2 * time.Minute
	}
	if c.SendTimeout <= 0 || c.SendTimeout > c.Lease/2 {
		c.SendTimeout = c.Lease / 2
	}
	if c.StopTimeout <= 0 {
		c.StopTimeout = 30 * time.Second
	}
	return c
}

// recordTimeout bounds recording one outcome, retries included.
const recordTimeout = 10 * time.Second

// A Dispatcher drains due queued messages to a Sender. Several dispatchers, in one
// process or in several instances on one database, share the queue.
//
// # Claims and leases
//
// A queued message has a row in message_queue. A claim is one statement: it selects due
// rows that no live claim holds (due_at <= now(), lease absent or run out), most urgent
// first (priority, then due_at, then id: for messages never tried that is enqueue
// order), locking them FOR UPDATE SKIP LOCKED, and sets their leased_until Lease ahead.
// No other dispatcher claims a leased message, and every outcome ends the lease
// (outcomes are recorded in batches with the effect of RecordSubmitted and RecordFailed,
// which delete the queue row, and RecordRetry, which sets the next due time and clears
// the lease). The claim settles instead of sending what must not go: messages past
// valid_until (expired) and, except replies, messages to workers who opted out or were
// deactivated since they were queued (skipped). A message is claimed only when one of the
// Concurrency send slots is free for it, and its slot is free again only once its
// outcome is recorded.
//
// If the dispatcher's process dies (kill -9) between claim and record, its claims run
// out after Lease and another dispatcher sends those messages again. Delivery is thus
// at least once, and the duplicates after a crash are at most the messages whose send
// had begun and whose outcome was not yet recorded: Concurrency per crashed instance.
// Claimed messages not yet handed to the Sender are not duplicated, only delayed by
// the lease. A send never outlives its lease (SendTimeout <= Lease/2), so a slow SMSC
// does not make a live dispatcher's message claimable by another. An outcome that
// cannot be recorded (database down for recordTimeout) also leaves the lease to run
// out, and the message is sent again.
//
// Attempts count temporary failures only; the claim does not count, so a message that
// crashes its dispatcher every time is retried until it expires.
type Dispatcher struct {
	s    *Store
	snd  Sender
	cfg  DispatchConfig
	log  *slog.Logger
	wake chan struct{}
}

// NewDispatcher returns a dispatcher of this store's queue to snd. log may be nil.
func (s *Store) NewDispatcher(snd Sender, cfg DispatchConfig, log *slog.Logger) *Dispatcher {
	if log == nil {
		log = s.log
	}
	return &Dispatcher{s: s, snd: snd, cfg: cfg.withDefaults(), log: log, wake: make(chan struct{}, 1)}
}

// Wake makes an idle dispatcher look for due messages now instead of at its next poll.
// It never blocks.
func (d *Dispatcher) Wake() {
	select {
	case d.wake <- struct{}{}:
	default:
	}
}

// Run claims and sends messages until ctx is done. Then it stops claiming, waits for
// the sends in flight (cancelling them after StopTimeout), records their outcomes and
// returns nil. Database errors are logged and retried at the poll interval.
//
// Outcomes are recorded by one goroutine, as many as are ready in one transaction, so
// commits do not limit the rate; a send's slot is free again once its outcome is
// recorded, which bounds the messages sent but not recorded to Concurrency.
func (d *Dispatcher) Run(ctx context.Context) error {
	// Sends and records outlive ctx: a message handed to the SMSC must have its outcome
	// recorded, or it is sent again after the lease.
	sendCtx, cancelSends := context.WithCancel(context.WithoutCancel(ctx))
	defer cancelSends()
	sem := make(chan struct{}, d.cfg.Concurrency)
	outcomes := make(chan outcome, d.cfg.Concurrency)
	recorded := make(chan struct{})
	go func() {
		defer close(recorded)
		d.recorder(context.WithoutCancel(ctx), outcomes, sem)
	}()
	var wg sync.WaitGroup
	stop := func() error {
		d.stop(&wg, cancelSends)
		close(outcomes)
		<-recorded
		return nil
	}
	low := max(1, min(d.cfg.Batch, d.cfg.Concurrency)/4)

	for {
		// Claim when a quarter batch of slots is free, as many as are free: a message is
		// claimed only when it can be sent at once.
		n := 0
		for n < low {
			select {
			case sem <- struct{}{}:
				n++
			case <-ctx.Done():
				for range n {
					<-sem
				}
				return stop()
			}
		}
	more:
		for n < d.cfg.Batch {
			select {
			case sem <- struct{}{}:
				n++
			default:
				break more
			}
		}
		msgs, settled, err := d.claim(ctx, n)
		for range n - len(msgs) {
			<-sem
		}
		if err != nil {
			if ctx.Err() != nil {
				return stop()
			}
			d.log.Error("claiming messages", "err", err)
		}
		if settled > 0 {
			d.log.Info("messages expired or skipped (worker opted out or inactive) instead of sent", "messages", settled)
		}
		for _, m := range msgs {
			wg.Go(func() { outcomes <- d.send(sendCtx, m) })
		}
		if err == nil && len(msgs)+settled == n {
			continue // there may be more due
		}
		t := time.NewTimer(d.cfg.Poll)
		select {
		case <-ctx.Done():
			t.Stop()
			return stop()
		case <-d.wake:
		case <-t.C:
		}
		t.Stop()
	}
}

// stop waits for the sends in flight, cancelling them after StopTimeout.
func (d *Dispatcher) stop(wg *sync.WaitGroup, cancelSends context.CancelFunc) {
	done := make(chan struct{})
	go func() {
		wg.Wait()
		close(done)
	}()
	t := time.NewTimer(d.cfg.StopTimeout)
	defer t.Stop()
	select {
	case <-done:
	case <-t.C:
		d.log.Warn("sends still in flight at stop; cancelling them", "after", d.cfg.StopTimeout)
		cancelSends()
		<-done
	}
}

// claim leases up to n due messages, most urgent first, and settles those that must not
// be sent: past their validity (expired), or to a worker who opted out or was
// deactivated since they were queued (skipped; replies still go, a STOP's confirmation
// included). It returns the messages to send and how many it settled.
func (d *Dispatcher) claim(ctx context.Context, n int) ([]Outgoing, int, error) {
	var mnos []string // nil: any
	if av, ok := d.snd.(Availability); ok {
		if mnos = av.Sendable(); len(mnos) == 0 {
			return nil, 0, nil
		}
		mnos = append(mnos, "") // not routed yet: the Sender routes it
	}
	rows, err := d.s.db.Query(ctx, `
		WITH c AS (
			SELECT message_id FROM message_queue
			WHERE due_at <= now() AND (leased_until IS NULL OR leased_until <= now())
			  AND ($4::text[] IS NULL OR mno = ANY ($4))
			ORDER BY priority, due_at, message_id
			LIMIT $1
			FOR UPDATE SKIP LOCKED
		), m AS (
			SELECT m.id, m.msisdn, m.sender, m.body, COALESCE(m.mno, '') AS mno, m.valid_until, m.priority, m.attempts,
				CASE WHEN m.valid_until IS NOT NULL AND m.valid_until <= now() THEN 'expired'
					WHEN m.priority <> $3 AND w.opted_out THEN 'skipped'
					WHEN m.priority <> $3 AND NOT w.active THEN 'skipped' END AS settle,
				CASE WHEN m.valid_until IS NOT NULL AND m.valid_until <= now() THEN NULL
					WHEN m.priority <> $3 AND w.opted_out THEN 'opted_out'
					WHEN m.priority <> $3 AND NOT w.active THEN 'inactive' END AS reason
			FROM c JOIN messages m ON m.id = c.message_id LEFT JOIN workers w ON w.id = m.worker_id
		), x AS (
			UPDATE messages SET state = m.settle, error_code = m.reason, final_at = now()
			FROM m WHERE messages.id = m.id AND m.settle IS NOT NULL
		), dq AS (
			DELETE FROM message_queue q USING m WHERE q.message_id = m.id AND m.settle IS NOT NULL
		), u AS (
			UPDATE message_queue q SET leased_until = now() + $2::bigint * interval '1 microsecond'
			FROM m WHERE q.message_id = m.id AND m.settle IS NULL
		)
		SELECT id, msisdn, sender, body, mno, valid_until, priority, attempts, settle IS NOT NULL FROM m`,
		n, d.cfg.Lease.Microseconds(), PriorityReply, mnos)
	if err != nil {
		return nil, 0, err
	}
	defer rows.Close()
	var out []Outgoing
	settled := 0
	for rows.Next() {
		var m Outgoing
		var to string
		var valid *time.Time
		var drop bool
		if err := rows.Scan(&m.ID, &to, &m.Sender, &m.Body, &m.MNO, &valid, &m.Priority, &m.Attempts, &drop); err != nil {
			return nil, 0, err
		}
		if drop {
			settled++
			continue
		}
		m.To, m.ValidUntil = mhero.MSISDN(to), deref(valid)
		out = append(out, m)
	}
	if err := rows.Err(); err != nil {
		return nil, 0, err
	}
	slices.SortFunc(out, func(a, b Outgoing) int {
		return cmp.Or(cmp.Compare(a.Priority, b.Priority), cmp.Compare(a.ID, b.ID))
	})
	return out, settled, nil
}

// outcome is what to record of one send.
type outcome struct {
	id       int64
	state    MessageState // Submitted, Queued (retry at), Failed, Unknown or Expired
	code     string
	at       time.Time // next attempt, for a retry
	mno      string
	ids      []string // SMSC ids, for Submitted
	segments int
}

// send submits one claimed message and says what to record.
func (d *Dispatcher) send(ctx context.Context, m Outgoing) outcome {
	sctx, cancel := context.WithTimeout(ctx, d.cfg.SendTimeout)
	sub, err := d.snd.Send(sctx, m)
	cancel()
	log := d.log.With("message", m.ID, "to", m.To)

	if err == nil || len(sub.SMSCIDs) > 0 {
		if err != nil {
			log.Warn("message partly accepted; recorded as submitted with the parts the SMSC took",
				"parts", len(sub.SMSCIDs), "segments", sub.Segments, "err", err)
		}
		return outcome{id: m.ID, state: Submitted, mno: cmp.Or(sub.MNO, m.MNO), ids: sub.SMSCIDs, segments: sub.Segments}
	}
	kind, code, after := classify(err)
	switch kind {
	case SendTemporary:
		if m.Attempts >= len(d.cfg.Backoff) {
			log.Warn("message failed: retries exhausted", "code", code, "attempts", m.Attempts+1, "err", err)
			return outcome{id: m.ID, state: Failed, code: code}
		}
		at := time.Now().Add(max(d.cfg.Backoff[m.Attempts], after))
		if !m.ValidUntil.IsZero() && at.After(m.ValidUntil) {
			log.Info("message expired: its next attempt would be too late", "code", code, "err", err)
			return outcome{id: m.ID, state: Expired, code: code}
		}
		log.Info("message will be retried", "code", code, "at", at, "attempts", m.Attempts+1, "err", err)
		return outcome{id: m.ID, state: Queued, code: code, at: at}
	case SendPermanent:
		log.Warn("message refused", "code", code, "err", err)
		return outcome{id: m.ID, state: Failed, code: code}
	}
	log.Warn("message outcome unknown; not sending it again", "code", code, "err", err)
	return outcome{id: m.ID, state: Unknown, code: code}
}

// recorder records outcomes as they come, those ready together in one transaction, and
// frees a send slot for each.
func (d *Dispatcher) recorder(ctx context.Context, in <-chan outcome, sem <-chan struct{}) {
	buf := make([]outcome, 0, d.cfg.Batch)
	for o := range in {
		buf = append(buf[:0], o)
	more:
		for len(buf) < d.cfg.Batch {
			select {
			case o, ok := <-in:
				if !ok {
					break more
				}
				buf = append(buf, o)
			default:
				break more
			}
		}
		d.recordAll(ctx, buf)
		for range buf {
			<-sem
		}
	}
}

// recordAll records a batch of outcomes in one transaction. What the batch cannot take
// (a message that changed meanwhile, parts already recorded, any error) is recorded one
// by one with the Store's methods, which say why.
func (d *Dispatcher) recordAll(ctx context.Context, outs []outcome) {
	ctx, cancel := context.WithTimeout(ctx, recordTimeout)
	defer cancel()
	done, err := d.recordBatch(ctx, outs)
	if err != nil {
		d.log.Warn("recording outcomes in one transaction failed; recording them one by one", "outcomes", len(outs), "err", err)
		done = nil
	}
	for _, o := range outs {
		if done[o.id] {
			continue
		}
		log := d.log.With("message", o.id)
		d.record(ctx, log, func(ctx context.Context) error {
			switch o.state {
			case Submitted:
				return d.s.RecordSubmitted(ctx, o.id, o.mno, o.ids, o.segments)
			case Queued:
				return d.s.RecordRetry(ctx, o.id, o.code, o.at)
			}
			return d.s.RecordFailed(ctx, o.id, o.code, o.state)
		})
	}
}

// recordBatch records in one transaction the outcomes it can, with the same effect as
// RecordSubmitted, RecordRetry and RecordFailed, and returns which. It takes locks in
// their order: the SMSC ids' advisory locks (sorted), then the message rows (by id).
func (d *Dispatcher) recordBatch(ctx context.Context, outs []outcome) (map[int64]bool, error) {
	done := make(map[int64]bool, len(outs))
	var allIDs []int64
	var keys []int32
	subs := map[int64]*outcome{}
	for i := range outs {
		o := &outs[i]
		allIDs = append(allIDs, o.id)
		if o.state != Submitted {
			continue
		}
		o.mno = strings.TrimSpace(o.mno)
		var ids []string
		for _, x := range o.ids {
			if x = strings.TrimSpace(x); x != "" && !slices.Contains(ids, x) {
				ids = append(ids, x)
			}
		}
		if o.mno == "" || len(ids) == 0 || subs[o.id] != nil {
			continue // RecordSubmitted says what is wrong
		}
		o.ids, o.segments = ids, max(o.segments, len(ids))
		subs[o.id] = o
		for _, x := range ids {
			keys = append(keys, idLock(o.mno, x))
		}
	}
	slices.Sort(keys)
	keys = slices.Compact(keys)
	slices.Sort(allIDs)

	var superseded int64
	err := d.s.tx(ctx, func(tx pgx.Tx) error {
		b := &pgx.Batch{}
		b.Queue(`SELECT count(pg_advisory_xact_lock($1, k)) FROM unnest($2::int4[]) AS k`, lockSpace, keys)
		// Whether parts exist, asked per message through the key (LIMIT 1): as an EXISTS,
		// the planner could hash all of message_parts instead, once per batch, when its
		// statistics said the table was small (seen in profiles of a broadcast).
		b.Queue(`SELECT m.id, m.state, p.message_id IS NOT NULL
			FROM messages m LEFT JOIN LATERAL (SELECT p.message_id FROM message_parts p WHERE p.message_id = m.id LIMIT 1) p ON true
			WHERE m.id = ANY($1) ORDER BY m.id FOR UPDATE OF m`, allIDs)
		br := tx.SendBatch(ctx, b)
		if _, err := br.Exec(); err != nil {
			br.Close()
			return err
		}
		rows, err := br.Query()
		if err != nil {
			br.Close()
			return err
		}
		state := map[int64]MessageState{}
		for rows.Next() {
			var id int64
			var st string
			var hasParts bool
			if err := rows.Scan(&id, &st, &hasParts); err != nil {
				br.Close()
				return err
			}
			state[id] = MessageState(st)
			if hasParts {
				delete(subs, id) // a repeat or a conflict: RecordSubmitted decides
			}
		}
		if err := br.Close(); err != nil {
			return err
		}

		var (
			fIDs            []int64
			fStates, fCodes []string
			fAt             []*time.Time
			pMsg            []int64
			pNo             []int32
			pMNO, pSMSC     []string
			sIDs            []int64
			sMNO            []string
			sSeg            []int32
			sCost           []*float64
		)
		for _, o := range outs {
			st := state[o.id]
			switch {
			case o.state == Submitted:
				if subs[o.id] == nil || st == Failed {
					continue
				}
				for i, x := range o.ids {
					pMsg, pNo, pMNO, pSMSC = append(pMsg, o.id), append(pNo, int32(i+1)), append(pMNO, o.mno), append(pSMSC, x)
				}
				sIDs, sMNO, sSeg = append(sIDs, o.id), append(sMNO, o.mno), append(sSeg, int32(o.segments))
				sCost = append(sCost, d.s.rate(o.mno))
			case st == Queued || (st == Cancelled && o.state != Queued):
				var at *time.Time
				if o.state == Queued {
					at = &o.at
				}
				fIDs, fStates, fCodes, fAt = append(fIDs, o.id), append(fStates, string(o.state)), append(fCodes, o.code), append(fAt, at)
			}
		}

		b = &pgx.Batch{}
		if len(fIDs) > 0 {
			b.Queue(`WITH v AS (SELECT * FROM unnest($1::bigint[], $2::text[], $3::text[], $4::timestamptz[]) AS v(id, state, code, at)),
				dq AS (DELETE FROM message_queue q USING v WHERE q.message_id = v.id AND v.state <> 'queued'),
				rq AS (UPDATE message_queue q SET due_at = v.at, leased_until = NULL FROM v WHERE q.message_id = v.id AND v.state = 'queued')
				UPDATE messages m SET state = v.state, error_code = NULLIF(v.code, ''), attempts = m.attempts + 1,
					next_attempt_at = COALESCE(v.at, m.next_attempt_at),
					final_at = CASE WHEN v.state = 'queued' THEN m.final_at ELSE now() END
				FROM v WHERE m.id = v.id`, fIDs, fStates, fCodes, fAt)
		}
		if len(sIDs) > 0 {
			// A part whose SMSC id an older part still holds (the SMSC reused its ids, e.g.
			// after a restart) is not inserted here but below, once the older one is marked
			// superseded: probing for such parts before every insert cost a tenth of the
			// submit's work for something that is rare.
			b.Queue(`INSERT INTO message_parts (message_id, part_no, mno, smsc_id)
				SELECT * FROM unnest($1::bigint[], $2::int[], $3::text[], $4::text[])
				ON CONFLICT (mno, smsc_id) WHERE NOT superseded DO NOTHING
				RETURNING message_id, part_no`, pMsg, pNo, pMNO, pSMSC)
			b.Queue(`WITH dq AS (DELETE FROM message_queue WHERE message_id = ANY($1))
				UPDATE messages m SET state = 'submitted', mno = v.mno, segments = v.segments, error_code = NULL,
					attempts = m.attempts + 1, submitted_at = now(), final_at = NULL, segment_cost = v.cost
				FROM unnest($1::bigint[], $2::text[], $3::int[], $4::numeric[]) AS v(id, mno, segments, cost)
				WHERE m.id = v.id`, sIDs, sMNO, sSeg, sCost)
			queueMatch(b, sIDs, d.s.matchWindow())
		}
		if b.Len() == 0 {
			return nil
		}
		br = tx.SendBatch(ctx, b)
		defer br.Close()
		if len(fIDs) > 0 {
			if _, err := br.Exec(); err != nil {
				return err
			}
		}
		byMsg := map[int64][]receiptRow{}
		var reused parts
		if len(sIDs) > 0 {
			rows, err := br.Query()
			if err != nil {
				return err
			}
			inserted := make(map[[2]int64]bool, len(pMsg))
			for rows.Next() {
				var id int64
				var no int32
				if err := rows.Scan(&id, &no); err != nil {
					return err
				}
				inserted[[2]int64{id, int64(no)}] = true
			}
			if err := rows.Err(); err != nil {
				return err
			}
			for i := range pMsg {
				if !inserted[[2]int64{pMsg[i], int64(pNo[i])}] {
					reused.add(pMsg[i], pNo[i], pMNO[i], pSMSC[i])
				}
			}
			if _, err := br.Exec(); err != nil {
				return err
			}
			if err := scanMatched(br, byMsg); err != nil {
				return err
			}
		}
		if err := br.Close(); err != nil {
			return err
		}
		if len(reused.msg) > 0 {
			// The rare case: mark the older parts superseded, then insert these and match
			// their early receipts, as RecordSubmitted does.
			b = &pgx.Batch{}
			b.Queue(`UPDATE message_parts p SET superseded = true, updated_at = now()
				FROM unnest($1::text[], $2::text[], $3::bigint[]) AS v(mno, smsc_id, message_id)
				WHERE p.mno = v.mno AND p.smsc_id = v.smsc_id AND NOT p.superseded AND p.message_id <> v.message_id`,
				reused.mno, reused.smsc, reused.msg)
			b.Queue(`INSERT INTO message_parts (message_id, part_no, mno, smsc_id)
				SELECT * FROM unnest($1::bigint[], $2::int[], $3::text[], $4::text[])`, reused.msg, reused.no, reused.mno, reused.smsc)
			queueMatch(b, reused.msg, d.s.matchWindow())
			br = tx.SendBatch(ctx, b)
			tag, err := br.Exec()
			if err != nil {
				br.Close()
				return err
			}
			superseded = tag.RowsAffected()
			if _, err := br.Exec(); err != nil {
				br.Close()
				return err
			}
			if err := scanMatched(br, byMsg); err != nil {
				br.Close()
				return err
			}
			if err := br.Close(); err != nil {
				return err
			}
		}
		if len(byMsg) > 0 {
			if err := d.s.applyReceipts(ctx, tx, byMsg); err != nil {
				return err
			}
		}
		for _, id := range fIDs {
			done[id] = true
		}
		for _, id := range sIDs {
			done[id] = true
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	if superseded > 0 {
		d.log.Warn("SMSC reused message ids; receipts now go to the newer message", "parts", superseded)
	}
	return done, nil
}

// record runs fn, again after a short pause while the database fails, until ctx ends.
// Application errors (the message changed meanwhile, e.g. cancelled) are only logged.
func (d *Dispatcher) record(ctx context.Context, log *slog.Logger, fn func(context.Context) error) {
	delay := 50 * time.Millisecond
	for {
		err := fn(ctx)
		var me *mhero.Error
		switch {
		case err == nil:
			return
		case errors.As(err, &me):
			log.Info("outcome not recorded", "err", err)
			return
		}
		t := time.NewTimer(delay)
		select {
		case <-ctx.Done():
			t.Stop()
			log.Error("outcome not recorded; the message will be sent again after its lease", "err", err)
			return
		case <-t.C:
		}
		delay = min(2*delay, time.Second)
	}
}

// parts are message parts to insert, as parallel arrays for unnest.
type parts struct {
	msg       []int64
	no        []int32
	mno, smsc []string
}

func (p *parts) add(msg int64, no int32, mno, smsc string) {
	p.msg, p.no, p.mno, p.smsc = append(p.msg, msg), append(p.no, no), append(p.mno, mno), append(p.smsc, smsc)
}

// queueMatch matches the receipts that came before their submit_sm_resp (rare) to the
// parts of msgs just recorded; scanMatched reads what it matched, for applyReceipts.
func queueMatch(b *pgx.Batch, msgs []int64, window time.Duration) {
	b.Queue(`UPDATE receipts r SET message_id = p.message_id, part_no = p.part_no, matched_at = now()
		FROM message_parts p
		WHERE p.message_id = ANY($1) AND NOT p.superseded
		  AND r.mno = p.mno AND r.smsc_id = p.smsc_id AND r.message_id IS NULL
		  AND r.received_at >= now() - $2::bigint * interval '1 microsecond'
		RETURNING p.message_id, r.id, p.part_no, r.state, r.stat, r.err, r.done_at, r.received_at`,
		msgs, window.Microseconds())
}

func scanMatched(br pgx.BatchResults, byMsg map[int64][]receiptRow) error {
	rows, err := br.Query()
	if err != nil {
		return err
	}
	for rows.Next() {
		var id int64
		var r receiptRow
		if err := rows.Scan(&id, &r.id, &r.partNo, &r.state, &r.stat, &r.err, &r.done, &r.received); err != nil {
			return err
		}
		byMsg[id] = append(byMsg[id], r)
	}
	return rows.Err()
}
