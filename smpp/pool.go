// Package smpp talks to mobile network operators' SMSCs over SMPP 3.4: a Pool keeps
// every configured bind of every MNO account up, routes each message to its MNO by
// prefix, splits its text into segments and submits them windowed, paced and retried;
// it hands mobile-originated SMS, USSD and delivery receipts to the server's handlers.
//
// The session layer is our own, on go-smpp's PDU codec (package pdu, pdufield, pdutlv):
// go-smpp's Transmitter/Transceiver matches incoming PDUs by sequence number alone, so a
// deliver_sm numbered like a submit_sm in flight is taken for its response and the
// receipt is lost; it also answers deliver_sm before the application stored it and fails
// fast on a full window. Here responses are matched by command id and sequence number,
// SMSC requests are handled apart, and the window waits.
//
// # Guarantees
//
// Sending, per Send call:
//
//   - At most once on the wire per segment unless the SMSC asked for a retry. A segment
//     is sent again, on any bind of the MNO, only when (a) it never reached a connection
//     (bind lost before the write, breaker open, window closed by a reconnect), or (b)
//     the SMSC answered with a status its table says to retry (by default ESME_RTHROTTLED
//     0x58 and ESME_RMSGQFUL 0x14 after milliseconds, with the MNO's rate cut first;
//     ESME_RSYSERR 0x08 and a few others after a second). Such answers mean "not
//     accepted", so the resend cannot duplicate.
//   - A submit_sm_resp that never comes (response timeout, connection lost after the
//     write, the caller's context ending while waiting) is NOT resent: the SMSC may have
//     accepted it, and resending could deliver it twice. Send returns a *SubmitError
//     wrapping ErrOutcomeUnknown (IsTemporary is false), counts it in
//     mhero_smpp_submit_outcome_unknown_total, and a response that arrives later is
//     logged at warn with its msg_id. The caller decides: a health alert is worth a
//     possible duplicate, a survey question maybe not. For a multipart text the result
//     holds the ids of the parts that were accepted.
//   - Permanent statuses (ESME_RINVDSTADR 0x0B, ESME_RINVSRCADR 0x0A, and any status not
//     in the table) fail the message with the command_status kept in *SubmitError.Status.
//   - Every submit_sm carries a validity period (Config.Validity, 24h by default, or the
//     message's own), so a message that waited through an outage is not delivered days
//     late.
//   - The window (Config.Window submit_sm in flight per bind) and the rate (Config.TPS
//     PDUs per second per account, each segment counted; paced 1% under and also held as
//     a sliding one-second window at the moment of writing) are never exceeded by this
//     process. With TPS 0 the rate adapts: unlimited until the SMSC throttles, then 95% of
//     what it accepted over the last second, probing up 2% every 100ms. Across several
//     instances, a Coordinator (SetCoordinator) shares each account's binds (leased
//     slots) and TPS (one schedule); without one, each Pool binds and paces as if alone.
//
// Receiving:
//
//   - deliver_sm and data_sm are answered only after their handler returned: OK when it
//     returned nil, ESME_RX_T_APPN (0x64) when it failed, so the SMSC delivers again
//     later. Handlers must therefore be idempotent: a crash between the handler's commit
//     and our response makes the SMSC deliver the same PDU again.
//
//   - Delivery receipts go to ReceiptHandler as they come, possibly before the
//     submit_sm_resp carrying the same message id has been returned by Send. The Pool
//     keeps no receipts: the handler must record a receipt it cannot match yet (the
//     outbox matches it when the id arrives). Message ids on both sides are normalised
//     with NormalizeMessageID (Config.MessageIDFormat, Config.ReceiptIDFormat).
//
//   - A long MO arrives in parts. Each part is acknowledged once it is held in the
//     in-memory reassembly buffer (bounded by Config.MOReassemblyMax texts, each for
//     Config.MOReassemblyTimeout); the part that completes a text is acknowledged only
//     after MOHandler returned nil for the whole text. Trade-off: a crash loses the parts
//     held so far of a text still incomplete (the SMSC counts them delivered). A text
//     still incomplete at its timeout is handed on with MO.Partial set. When the buffer
//     is full, new parts are refused with ESME_RX_T_APPN so the SMSC retries.
//
//   - deliver_sm are read ahead of the handlers into a bounded queue per connection
//     (1,024 plus the window). When it is full the reader waits up to 200ms, pushing back
//     on the SMSC through TCP, then refuses the PDU with ESME_RX_T_APPN (counted in
//     BindHealth.Refused) rather than hold our own submit responses any longer.
//
// Binds: each configured bind is kept up by its own goroutine(s) with jittered
// exponential back-off (Config.ReconnectMin..ReconnectMax). Each has a gobreaker circuit
// breaker counting transport failures: failed bind attempts, response timeouts, and a
// lost connection once (not once per submit it carried). After Config.BreakerFailures in
// a row it opens and submits go to the MNO's other binds; after Config.BreakerTimeout one
// probe (a bind attempt or a submit) decides whether it closes again. An SMSC answer of
// any status counts as a success: the bind works. enquire_link goes out every
// Config.EnquireLink; one unanswered within Config.ResponseTimeout closes the connection.
//
// Stop drains: no new submits, those in flight are answered (within Stop's context),
// handlers finish, then each connection unbinds. Stop returns when every goroutine of the
// pool has exited; with a context without deadline it waits for slow handlers.
//
// Metrics (when NewPool gets a Registerer): mhero_smpp_submits_total{mno,bind,status},
// mhero_smpp_submit_outcome_unknown_total{mno,bind}, mhero_smpp_receipts_total{mno,state},
// mhero_smpp_inbound_total{mno,kind,result}, mhero_smpp_inflight{mno,bind},
// mhero_smpp_bind_state{mno,bind} (0 down, 1 degraded, 2 ok),
// mhero_smpp_breaker_state{mno,bind}, mhero_smpp_rate_limit{mno} and
// mhero_smpp_send_duration_seconds{mno}.
package smpp

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"time"

	"github.com/fiorix/go-smpp/smpp/pdu"
	"github.com/mhero-health/mhero"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/sony/gobreaker/v2"
)

// Pool is the set of binds to every configured MNO.
type Pool struct {
	log      *slog.Logger
	h        Handlers
	coord    *coord // nil: this pool is the account's only user
	mnos     map[string]*mno
	order    []*mno
	router   *router
	metrics  *metrics
	reasm    *reassembler
	started  atomic.Bool
	stopping chan struct{}
	stopOnce sync.Once

	cancel   context.CancelFunc // ends the bind loops
	hcancel  context.CancelFunc // ends the handlers' context
	hctx     context.Context
	wg       sync.WaitGroup
	drainMu  sync.Mutex
	drainCtx context.Context // Stop's context, for the bind loops' clean unbind
}

// mno is one MNO account: its binds and its shared rate.
type mno struct {
	cfg     Config
	binds   []*bind
	limiter *rateLimiter
	latency prometheus.Observer // Send duration, label resolved once
	rr      atomic.Uint32
	ref     atomic.Uint32 // concatenation reference
	held    atomic.Int32  // bind slots leased by this pool (with a Coordinator)

	cmu     sync.Mutex
	changed chan struct{} // closed and replaced whenever a bind goes up or down
}

func (m *mno) changes() <-chan struct{} {
	m.cmu.Lock()
	defer m.cmu.Unlock()
	return m.changed
}

func (m *mno) notify() {
	m.cmu.Lock()
	close(m.changed)
	m.changed = make(chan struct{})
	m.cmu.Unlock()
}

// bind is one configured bind: a transceiver session, or a transmitter and a receiver.
type bind struct {
	mno   *mno
	name  string // "lonestar/1"
	idx   int    // 1-based
	cb    *gobreaker.TwoStepCircuitBreaker[struct{}]
	brk   atomic.Int32 // last breaker state seen by OnStateChange (which runs under the breaker's lock)
	stats bindStats

	slot    atomic.Int32 // bind slot leased, 0 = none (with a Coordinator)
	standby atomic.Bool  // no slot: every one is held by other instances

	mu      sync.Mutex
	tx, rx  *session // tx carries submits; rx deliver_sm (same session in transceiver mode)
	lastErr string
}

func (b *bind) txSession() *session {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.tx
}

// NewPool validates every config and builds the pool; Start connects it. h may leave
// handlers nil: what arrives for them is acknowledged and counted. log nil discards;
// reg nil registers no metrics.
func NewPool(cfgs []Config, h Handlers, log *slog.Logger, reg prometheus.Registerer) (*Pool, error) {
	if len(cfgs) == 0 {
		return nil, errors.New("smpp: no SMSC configured")
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	var errs []error
	seen := make(map[string]bool)
	for i := range cfgs {
		if err := cfgs[i].Validate(); err != nil {
			errs = append(errs, err)
		}
		if seen[cfgs[i].Name] {
			errs = append(errs, fmt.Errorf("smsc %q: name used twice", cfgs[i].Name))
		}
		seen[cfgs[i].Name] = true
	}
	full := make([]Config, len(cfgs))
	for i, c := range cfgs {
		full[i] = c.withDefaults()
	}
	rt, err := newRouter(full)
	if err != nil {
		errs = append(errs, err)
	}
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	m, err := newMetrics(reg)
	if err != nil {
		return nil, fmt.Errorf("smpp metrics: %w", err)
	}
	p := &Pool{
		log:      log.With("comp", "smpp"),
		h:        h,
		mnos:     make(map[string]*mno),
		router:   rt,
		metrics:  m,
		stopping: make(chan struct{}),
	}
	p.reasm = newReassembler(p)
	for _, c := range full {
		mn := &mno{cfg: c, changed: make(chan struct{})}
		rate := m.rate.WithLabelValues(c.Name)
		mn.limiter = newRateLimiter(c.TPS, func(r float64) { rate.Set(r) })
		mn.ref.Store(rand.Uint32())
		mn.latency = m.latency.WithLabelValues(c.Name)
		for i := range c.Binds {
			mn.binds = append(mn.binds, p.newBind(mn, i+1))
		}
		p.mnos[c.Name] = mn
		p.order = append(p.order, mn)
	}
	return p, nil
}

func (p *Pool) newBind(mn *mno, i int) *bind {
	b := &bind{mno: mn, name: fmt.Sprintf("%s/%d", mn.cfg.Name, i), idx: i}
	b.stats.init(p.metrics, mn.cfg.Name, b.name)
	failures := uint32(mn.cfg.BreakerFailures)
	gauge := p.metrics.breaker.WithLabelValues(mn.cfg.Name, b.name)
	b.cb = gobreaker.NewTwoStepCircuitBreaker[struct{}](gobreaker.Settings{
		Name:        b.name,
		MaxRequests: 1,
		Timeout:     mn.cfg.BreakerTimeout,
		ReadyToTrip: func(c gobreaker.Counts) bool { return c.ConsecutiveFailures >= failures },
		IsExcluded:  func(err error) bool { return errors.Is(err, errExcluded) },
		OnStateChange: func(name string, from, to gobreaker.State) {
			gauge.Set(float64(to))
			b.brk.Store(int32(to))
			p.log.Warn("circuit breaker", "smsc", mn.cfg.Name, "bind", name, "from", from.String(), "to", to.String())
			p.updateState(b)
			mn.notify()
		},
	})
	p.metrics.bindState.WithLabelValues(mn.cfg.Name, b.name).Set(0)
	return b
}

// errExcluded marks outcomes the breaker must not count (the caller gave up).
var errExcluded = errors.New("excluded")

// Start connects every bind in the background and returns at once; WaitBound waits for
// them. Cancelling ctx has the effect of Stop without its drain bound; call Stop.
func (p *Pool) Start(ctx context.Context) error {
	if !p.started.CompareAndSwap(false, true) {
		return errors.New("smpp: pool already started")
	}
	ctx, p.cancel = context.WithCancel(ctx)
	p.hctx, p.hcancel = context.WithCancel(context.WithoutCancel(ctx))
	if p.coord != nil {
		p.coord.spreadUntil = time.Now()
	}
	for _, mn := range p.order {
		p.log.Info("smsc", "smsc", mn.cfg.Name, "addr", mn.cfg.Addr(), "system_id", mn.cfg.SystemID, "mode", mn.cfg.Mode,
			"binds", mn.cfg.Binds, "window", mn.cfg.Window, "tps", mn.cfg.TPS)
		p.wg.Add(1)
		go func() { defer p.wg.Done(); mn.limiter.run(ctx) }()
		if sh := mn.limiter.shared; sh != nil {
			p.wg.Add(1)
			go func() { defer p.wg.Done(); sh.run(ctx) }()
		}
		for _, b := range mn.binds {
			roles := []pdu.ID{pdu.BindTransceiverID}
			if mn.cfg.Mode == ModeTxRx {
				roles = []pdu.ID{pdu.BindTransmitterID, pdu.BindReceiverID}
			}
			if p.coord != nil { // one lease covers both connections of a bind
				p.wg.Add(1)
				go func() { defer p.wg.Done(); p.coordBind(ctx, b, roles) }()
				continue
			}
			for _, role := range roles {
				p.wg.Add(1)
				go func() { defer p.wg.Done(); p.keepBound(ctx, b, role, p.stopDrain) }()
			}
		}
	}
	p.wg.Add(1)
	go func() { defer p.wg.Done(); p.reasm.run(ctx) }()
	return nil
}

// Stop stops taking messages, lets the submits in flight be answered and the handlers
// finish within ctx, unbinds every bind and returns when every goroutine has exited.
// After ctx ends, connections are closed without waiting further.
func (p *Pool) Stop(ctx context.Context) error {
	p.stopOnce.Do(func() { close(p.stopping) })
	if !p.started.Load() {
		return nil
	}
	p.drainMu.Lock()
	p.drainCtx = ctx
	p.drainMu.Unlock()
	p.cancel()
	done := make(chan struct{})
	go func() { p.wg.Wait(); close(done) }()
	select {
	case <-done:
	case <-ctx.Done():
		p.hcancel() // handlers still running: tell them
		<-done
	}
	p.hcancel()
	return ctx.Err()
}

func (p *Pool) drain() context.Context {
	p.drainMu.Lock()
	defer p.drainMu.Unlock()
	if p.drainCtx == nil {
		return context.Background()
	}
	return p.drainCtx
}

// stopDrain bounds a session's drain by Stop's context alone.
func (p *Pool) stopDrain() (context.Context, context.CancelFunc) { return p.drain(), func() {} }

// keepBound keeps one session of b up until ctx ends, then unbinds it cleanly within the
// context drain returns (Stop's, and with a Coordinator also the lease's end).
func (p *Pool) keepBound(ctx context.Context, b *bind, role pdu.ID, drain func() (context.Context, context.CancelFunc)) {
	cfg := &b.mno.cfg
	name := b.name
	switch role {
	case pdu.BindTransmitterID:
		name += " tx"
	case pdu.BindReceiverID:
		name += " rx"
	}
	log := p.log.With("smsc", cfg.Name, "bind", name)
	var handle func(context.Context, inboundPDU) uint32
	if role != pdu.BindTransmitterID {
		handle = func(ctx context.Context, in inboundPDU) uint32 { return p.inbound(ctx, b, in) }
	}
	delay := cfg.ReconnectMin
	for ctx.Err() == nil {
		s, err := p.connect(ctx, b, name, role, handle, log)
		if err != nil {
			if ctx.Err() != nil {
				return
			}
			b.mu.Lock()
			b.lastErr = err.Error()
			b.mu.Unlock()
			wait := delay/2 + rand.N(delay/2+1) // jitter: [delay/2, delay]
			if errors.Is(err, gobreaker.ErrOpenState) || errors.Is(err, gobreaker.ErrTooManyRequests) {
				log.Debug("bind waits for its circuit breaker", "retry_in", wait.Round(time.Millisecond))
			} else {
				log.Warn("bind failed", "error", err, "retry_in", wait.Round(time.Millisecond))
			}
			if !sleep(ctx, wait) {
				return
			}
			delay = min(delay*2, cfg.ReconnectMax)
			continue
		}
		delay = cfg.ReconnectMin
		p.setSession(b, role, s)
		log.Info("bound", "system_id", cfg.SystemID)
		select {
		case <-s.done:
		case <-ctx.Done():
		}
		p.setSession(b, role, nil)
		if ctx.Err() != nil {
			dctx, cancel := drain()
			s.shutdown(dctx)
			cancel()
			log.Info("unbound")
			return
		}
		s.wg.Wait()
		if done, err := b.cb.Allow(); err == nil {
			done(s.closeErr) // one failure per connection lost
		}
		b.mu.Lock()
		b.lastErr = s.closeErr.Error()
		b.mu.Unlock()
		log.Warn("bind lost", "error", s.closeErr)
	}
}

// connect dials and binds through the bind's breaker.
func (p *Pool) connect(ctx context.Context, b *bind, name string, role pdu.ID, handle func(context.Context, inboundPDU) uint32, log *slog.Logger) (*session, error) {
	done, err := b.cb.Allow()
	if err != nil {
		return nil, fmt.Errorf("circuit breaker: %w", err)
	}
	s, err := dialSession(ctx, &b.mno.cfg, name, role, handle, p.hctx, log, &b.stats)
	if err != nil && ctx.Err() != nil {
		done(errExcluded)
	} else {
		done(err)
	}
	return s, err
}

func (p *Pool) setSession(b *bind, role pdu.ID, s *session) {
	b.mu.Lock()
	switch role {
	case pdu.BindTransceiverID:
		b.tx, b.rx = s, s
	case pdu.BindTransmitterID:
		b.tx = s
	case pdu.BindReceiverID:
		b.rx = s
	}
	b.mu.Unlock()
	p.updateState(b)
	b.mno.notify()
}

// sleep waits d or until ctx ends; it reports whether d passed.
func sleep(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-ctx.Done():
		return false
	}
}

// Route returns the name of the MNO serving m, or an error wrapping ErrUnroutable.
func (p *Pool) Route(m mhero.MSISDN) (string, error) { return p.router.lookup(m) }

// WaitBound waits until every configured bind (both connections in
// transmitter+receiver mode) is bound, or ctx ends. For start-up checks and tests. With a
// Coordinator, a bind on standby (no slot free) counts as not bound.
func (p *Pool) WaitBound(ctx context.Context) error {
	for {
		var wait []<-chan struct{}
		for _, mn := range p.order {
			ch := mn.changes()
			for _, b := range mn.binds {
				b.mu.Lock()
				up := b.tx != nil && b.rx != nil
				b.mu.Unlock()
				if !up {
					wait = append(wait, ch)
					break
				}
			}
		}
		if len(wait) == 0 {
			return nil
		}
		select {
		case <-wait[0]:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}

// Bind states in BindHealth.
const (
	BindOK       = "ok"       // bound, breaker closed
	BindDegraded = "degraded" // bound, but breaker not closed, half of a tx+rx pair down, or throttled in the last 10s
	BindDown     = "down"     // not bound
)

// BindHealth is one bind's state and counters since start, for /readyz detail.
type BindHealth struct {
	MNO       string           `json:"mno"`
	Bind      string           `json:"bind"`
	State     string           `json:"state"`   // BindOK, BindDegraded, BindDown
	Breaker   string           `json:"breaker"` // closed, half-open, open
	LastError string           `json:"last_error,omitempty"`
	Submits   int64            `json:"submits"`   // submit_sm written
	Responses map[string]int64 `json:"responses"` // by command_status, "0x00" = accepted
	Unknown   int64            `json:"unknown"`   // outcome unknown (no response)
	Receipts  map[string]int64 `json:"receipts"`  // by receipt state
	Refused   int64            `json:"refused"`   // deliver_sm refused (ESME_RX_T_APPN) because the handlers were saturated
	InFlight  int              `json:"in_flight"`
	RateLimit float64          `json:"rate_limit"` // the account's current PDUs/s limit, 0 = unlimited
	// With a Coordinator: the bind slot leased (1..binds, 0 = none), and whether the bind
	// is down only because other instances hold every slot (a healthy standby).
	Slot    int  `json:"slot,omitempty"`
	Standby bool `json:"standby,omitempty"`
}

// Health reports every bind, in config order.
func (p *Pool) Health() []BindHealth {
	var out []BindHealth
	for _, mn := range p.order {
		for _, b := range mn.binds {
			st, rc := b.stats.snapshot()
			h := BindHealth{
				MNO: mn.cfg.Name, Bind: b.name, State: p.state(b), Breaker: b.cb.State().String(),
				Submits: b.stats.submits.Load(), Responses: st, Unknown: b.stats.unknown.Load(), Receipts: rc,
				Refused:   b.stats.inboundFull.Load(),
				RateLimit: mn.limiter.rate(),
				Slot:      int(b.slot.Load()),
				Standby:   b.standby.Load(),
			}
			b.mu.Lock()
			h.LastError = b.lastErr
			if b.tx != nil {
				h.InFlight = b.tx.inFlight()
			}
			b.mu.Unlock()
			out = append(out, h)
		}
	}
	return out
}

// Sendable returns the accounts that have a bind up to submit on now, in config order. A
// dispatcher claims only messages for these, so an instance whose binds are all on
// standby (other instances hold the slots) or down leaves the queue to the others
// instead of claiming messages it would only put back.
func (p *Pool) Sendable() []string {
	var out []string
	for _, mn := range p.order {
		for _, b := range mn.binds {
			if b.txSession() != nil {
				out = append(out, mn.cfg.Name)
				break
			}
		}
	}
	return out
}

func (p *Pool) state(b *bind) string {
	b.mu.Lock()
	tx, rx := b.tx, b.rx
	b.mu.Unlock()
	switch {
	case tx == nil && rx == nil:
		return BindDown
	case tx == nil || rx == nil, gobreaker.State(b.brk.Load()) != gobreaker.StateClosed,
		time.Since(time.Unix(0, b.stats.throttledAt.Load())) < 10*time.Second:
		return BindDegraded
	}
	return BindOK
}

func (p *Pool) updateState(b *bind) {
	v := map[string]float64{BindDown: 0, BindDegraded: 1, BindOK: 2}[p.state(b)]
	p.metrics.bindState.WithLabelValues(b.mno.cfg.Name, b.name).Set(v)
}
