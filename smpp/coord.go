package smpp

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"os"
	"strconv"
	"sync"
	"time"

	"github.com/fiorix/go-smpp/smpp/pdu"
)

// Coordinator lets several instances of the server share each MNO account's binds and
// TPS: leases on the account's bind slots, and one send schedule per account. It is kept
// where every instance reaches it (sessions.Store implements it on Valkey). Only plain
// types cross it, so an implementation need not import this package. The Pool bounds
// every call with a context; methods must be safe for concurrent use.
type Coordinator interface {
	// AcquireSlot takes bind slot slot (1..Config.Binds) of account for holder, for ttl,
	// if no one holds it, and reports whether holder holds it now.
	AcquireSlot(ctx context.Context, account string, slot int, holder string, ttl time.Duration) (bool, error)
	// RenewSlot extends holder's lease on the slot to ttl from now. false: holder does
	// not hold it any more (it ran out, and maybe another instance took it).
	RenewSlot(ctx context.Context, account string, slot int, holder string, ttl time.Duration) (bool, error)
	// ReleaseSlot ends holder's lease on the slot, and leaves anyone else's alone.
	ReleaseSlot(ctx context.Context, account string, slot int, holder string) error
	// ReserveRate reserves up to want consecutive send slots, interval apart, on the
	// account's schedule shared by all instances, none starting later than horizon from
	// now; debit slots are first charged without being granted (sends this instance made
	// while the schedule was out of reach). It returns how many were granted and the
	// offset from now of the first; with none granted, how long to wait before asking
	// again.
	ReserveRate(ctx context.Context, account string, interval, horizon time.Duration, want, debit int) (granted int, first time.Duration, err error)
}

// DefaultLeaseTTL is how long a bind slot's lease lasts without renewal.
const DefaultLeaseTTL = 15 * time.Second

// CoordOptions tune the coordination; zero values take the defaults.
type CoordOptions struct {
	// Holder names this instance in the leases, for operators reading them; default
	// "hostname:pid". A random suffix is always added, so every Pool is a holder of its own.
	Holder string
	// LeaseTTL is the lifetime of a bind slot's lease (default DefaultLeaseTTL, at least
	// 500ms). It is renewed every third of it; it is also how long a dead instance's slots
	// stay blocked, and how long binds stay up while the Coordinator is out of reach.
	LeaseTTL time.Duration
	// AcquireEvery is how often a bind without a slot tries again (jittered); default
	// LeaseTTL/5.
	AcquireEvery time.Duration
}

// Coordination timing. Reserved slots are placed from the answer's arrival, so never
// early, but up to the round trip late; a sender may use one up to slotGrace late. The
// schedule runs sharedMargin (2%) under the TPS, which absorbs 20ms of lateness a second
// (a loaded machine's scheduler easily adds 10): a run of slots whose lateness could
// carry its end more than runSpill into the next run's time (another instance's, maybe)
// is cut short by as many slots.
const (
	sharedMargin   = 0.98
	slotGrace      = 10 * time.Millisecond
	runSpill       = 10 * time.Millisecond
	rateHorizonMin = 200 * time.Millisecond // how far ahead schedule slots are reserved
	fallbackIdle   = 100 * time.Millisecond // recheck for a slot held, when none is, in fallback
	rateProbeMax   = time.Second            // at most this between tries of an unreachable schedule
	minLeaseTTL    = 500 * time.Millisecond
)

// coord is a Pool's coordination state.
type coord struct {
	co     Coordinator
	holder string
	log    *slog.Logger

	ttl          time.Duration
	acquireEvery time.Duration
	renewEvery   time.Duration // renewal period of a held lease
	renewRetry   time.Duration // after a failed renewal
	drainBefore  time.Duration // unbind when the lease has less than this left unrenewed
	margin       time.Duration // the bind is closed this long before the lease ends, whatever the drain
	callTimeout  time.Duration
	spreadUntil  time.Time // the pool's start: binds after the first wait from then (see acquire)

	mu       sync.Mutex
	failing  bool
	warned   bool // a warning was logged since failing began
	since    time.Time
	lastWarn time.Time
}

// SetCoordinator makes the pool share its accounts' binds and TPS with the other
// instances using c. Call it before Start; nil removes it. Without a Coordinator each
// Pool binds every configured bind and paces to the full TPS on its own.
//
// With one, bind i of an account connects only while the pool holds a lease on one of the
// account's Config.Binds slots; a bind without a slot stays down ("standby" in Health)
// and tries again every AcquireEvery, so it takes over the slots of an instance that
// stopped (released at once) or died (after its lease ran out). A lease that cannot be
// renewed unbinds its bind, draining the window, before it runs out; a lease found
// taken by another instance unbinds it at once (within a fifteenth of the TTL). With
// Config.TPS set, every submit_sm takes a slot of the account's schedule, reserved in
// chunks, so the account's instances together stay under TPS; TPS 0 (adaptive) stays
// per instance: each adapts on its own to the SMSC's throttling answers.
//
// When the Coordinator cannot be reached, binds already bound stay up until their lease
// would run out and then unbind; meanwhile each account is paced to this pool's share of
// its TPS (TPS × slots held / Binds), which the exclusive leases keep under TPS across
// instances; when the schedule is back, those sends are charged to it. A pool that
// cannot reach it binds nothing new. Failures are logged at warn at most once a minute.
// One case is not covered: while this pool cannot reach the Coordinator but others can,
// they may use the whole schedule besides this pool's share, for one lease TTL at most;
// the SMSC's throttling answers, which every pool obeys, bound that.
//
// Every instance must configure the account alike (Binds, TPS): slots and the schedule
// are keyed by Config.Name.
func (p *Pool) SetCoordinator(c Coordinator, o CoordOptions) error {
	if p.started.Load() {
		return errors.New("smpp: SetCoordinator after Start")
	}
	if c == nil {
		p.coord = nil
		for _, mn := range p.order {
			mn.limiter.shared = nil
		}
		return nil
	}
	if o.LeaseTTL == 0 {
		o.LeaseTTL = DefaultLeaseTTL
	}
	if o.LeaseTTL < minLeaseTTL {
		return fmt.Errorf("smpp: lease TTL %s below %s", o.LeaseTTL, minLeaseTTL)
	}
	if o.AcquireEvery < 0 {
		return errors.New("smpp: negative AcquireEvery")
	}
	if o.AcquireEvery == 0 {
		o.AcquireEvery = o.LeaseTTL / 5
	}
	if o.Holder == "" {
		host, _ := os.Hostname()
		o.Holder = host + ":" + strconv.Itoa(os.Getpid())
	}
	ttl := o.LeaseTTL
	cd := &coord{
		co:           c,
		holder:       fmt.Sprintf("%s-%08x", o.Holder, rand.Uint32()),
		log:          p.log,
		ttl:          ttl,
		acquireEvery: o.AcquireEvery,
		renewEvery:   ttl / 3,
		renewRetry:   ttl / 15,
		drainBefore:  ttl / 3,
		margin:       ttl / 15,
		callTimeout:  ttl / 10,
		spreadUntil:  time.Now(), // set again by Start
	}
	p.coord = cd
	for _, mn := range p.order {
		mn.limiter.shared = nil
		if mn.cfg.TPS > 0 {
			mn.limiter.shared = newSharedRate(cd, mn)
		}
	}
	return nil
}

// failed records a Coordinator error: warn at most once a minute, even when answers and
// failures alternate; debug otherwise.
func (c *coord) failed(op string, err error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	now := time.Now()
	if !c.failing {
		c.failing, c.since = true, now
	}
	if !c.lastWarn.IsZero() && now.Sub(c.lastWarn) < time.Minute {
		c.log.Debug("coordinator unreachable", "op", op, "error", err)
		return
	}
	c.lastWarn, c.warned = now, true
	c.log.Warn("coordinator unreachable: leased binds stay up until their leases would run out, sending paced to this instance's share",
		"op", op, "error", err, "for", now.Sub(c.since).Round(time.Millisecond))
}

// ok records a Coordinator answer.
func (c *coord) ok() {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.failing {
		c.failing = false
		if c.warned {
			c.warned = false
			c.log.Info("coordinator reachable again", "after", time.Since(c.since).Round(time.Millisecond))
		}
	}
}

// lease is a bind slot held by one bind. valid is when it ends by our clock: measured
// from before the request that set it, so never after the server ends it.
type lease struct {
	slot   int
	holder string
	valid  time.Time
}

// coordBind keeps bind b on a leased slot of its account: it takes a free slot, keeps the
// bind's connections up while it renews the lease, unbinds them when the lease is lost
// or the pool stops, and releases the slot; then it starts over until ctx ends.
func (p *Pool) coordBind(ctx context.Context, b *bind, roles []pdu.ID) {
	c, mn := p.coord, b.mno
	log := p.log.With("smsc", mn.cfg.Name, "bind", b.name)
	for {
		l := p.acquire(ctx, b, log)
		if l == nil {
			return
		}
		b.slot.Store(int32(l.slot))
		mn.held.Add(1)
		log.Info("bind slot leased", "slot", l.slot, "holder", l.holder)
		bctx, unbind := context.WithCancel(ctx)
		// hard ends every drain of this lease's sessions when the lease is about to end.
		hard, expire := context.WithCancel(context.WithoutCancel(ctx))
		drain := func() (context.Context, context.CancelFunc) {
			d, cancel := context.WithCancel(p.drain())
			stop := context.AfterFunc(hard, cancel)
			return d, func() { stop(); cancel() }
		}
		var wg sync.WaitGroup
		for _, role := range roles {
			wg.Add(1)
			go func() { defer wg.Done(); p.keepBound(bctx, b, role, drain) }()
		}
		bound := make(chan struct{})
		go func() { wg.Wait(); close(bound) }()
		lost := p.renewLease(mn, l, bound, unbind, expire, log)
		unbind()
		expire()
		mn.held.Add(-1)
		b.slot.Store(0)
		mn.notify()
		if !lost { // the pool stops: free the slot for another instance now, not at expiry
			rctx, cancel := context.WithTimeout(p.drain(), c.callTimeout)
			if err := c.co.ReleaseSlot(rctx, mn.cfg.Name, l.slot, l.holder); err != nil {
				log.Debug("bind slot not released; its lease runs out", "slot", l.slot, "error", err)
			}
			cancel()
		}
		if ctx.Err() != nil {
			return
		}
	}
}

// acquire takes a free slot for b, trying b's own slot first, then the others, every
// AcquireEvery (jittered) until one is free or ctx ends (nil).
func (p *Pool) acquire(ctx context.Context, b *bind, log *slog.Logger) *lease {
	c, mn := p.coord, b.mno
	holder := c.holder + "#" + strconv.Itoa(b.idx)
	n := mn.cfg.Binds
	// Just after start, bind i waits i-1 acquire periods before its first try: instances
	// started together then take one slot of each account in turn instead of the first
	// taking them all (an instance alone still gets every slot, a few seconds later).
	if b.idx > 1 {
		if d := time.Until(c.spreadUntil.Add(time.Duration(b.idx-1) * c.acquireEvery)); d > 0 && !sleep(ctx, d) {
			return nil
		}
	}
	for {
		var failure error
		for i := range n {
			slot := (b.idx-1+i)%n + 1
			if mn.slotHeld(slot) {
				continue // by another bind of ours: SET NX would fail anyway
			}
			cctx, cancel := context.WithTimeout(ctx, c.callTimeout)
			sent := time.Now()
			ok, err := c.co.AcquireSlot(cctx, mn.cfg.Name, slot, holder, c.ttl)
			cancel()
			if ctx.Err() != nil {
				return nil
			}
			if err != nil {
				c.failed("acquire bind slot", err)
				failure = err
				b.standby.Store(false)
				break
			}
			c.ok()
			if ok {
				b.standby.Store(false)
				return &lease{slot: slot, holder: holder, valid: sent.Add(c.ttl)}
			}
		}
		b.mu.Lock()
		if failure != nil {
			b.lastErr = "bind slot: " + failure.Error()
		} else {
			b.lastErr = "standby: every bind slot of the account is held"
		}
		b.mu.Unlock()
		if failure == nil && !b.standby.Swap(true) {
			log.Info("bind on standby: every bind slot of the account is held by other instances")
			mn.notify()
		}
		wait := c.acquireEvery/2 + rand.N(c.acquireEvery/2+1)
		if !sleep(ctx, wait) {
			return nil
		}
	}
}

// renewLease renews l until bound is closed (every session of the bind has ended). It
// calls unbind when the lease cannot be kept: renewals failed until only drainBefore is
// left (the sessions then drain until margin before the end, when expire cuts them), or
// another instance holds it (they drain for margin at most). It reports whether the
// lease was lost.
func (p *Pool) renewLease(mn *mno, l *lease, bound <-chan struct{}, unbind, expire context.CancelFunc, log *slog.Logger) (lost bool) {
	c := p.coord
	next := l.valid.Add(c.renewEvery - c.ttl)
	var hardAt time.Time // set once unbinding: when expire cuts the drain
	t := time.NewTimer(time.Hour)
	defer t.Stop()
	for {
		switch {
		case lost && hardAt.IsZero(): // drain cut already: wait for the sessions to end
			t.Stop()
		case lost:
			t.Reset(time.Until(hardAt))
		default:
			t.Reset(time.Until(earliest(next, l.valid.Add(-c.drainBefore))))
		}
		select {
		case <-bound:
			return lost
		case <-t.C:
		}
		now := time.Now()
		switch {
		case lost:
			expire()
			hardAt = time.Time{}
			continue
		case !now.Before(l.valid.Add(-c.drainBefore)):
			lost, hardAt = true, l.valid.Add(-c.margin)
			log.Warn("bind slot lease not renewed in time: unbinding before it runs out",
				"slot", l.slot, "lease_left", time.Until(l.valid).Round(time.Millisecond))
			unbind()
			continue
		}
		cctx, cancel := context.WithDeadline(context.Background(), earliest(now.Add(c.callTimeout), l.valid.Add(-c.drainBefore)))
		sent := time.Now()
		ok, err := c.co.RenewSlot(cctx, mn.cfg.Name, l.slot, l.holder, c.ttl)
		cancel()
		switch {
		case err != nil:
			c.failed("renew bind slot", err)
			next = time.Now().Add(c.renewRetry)
		case !ok:
			c.ok()
			lost, hardAt = true, time.Now().Add(c.margin)
			log.Warn("bind slot lease lost to another instance: unbinding", "slot", l.slot)
			unbind()
		default:
			c.ok()
			l.valid, next = sent.Add(c.ttl), sent.Add(c.renewEvery)
		}
	}
}

// slotHeld reports whether a bind of this pool holds slot.
func (m *mno) slotHeld(slot int) bool {
	for _, b := range m.binds {
		if int(b.slot.Load()) == slot {
			return true
		}
	}
	return false
}

// sharedRate paces one account's submit_sm on the schedule it shares with the other
// instances: slots are reserved from the Coordinator in chunks (up to a tenth of a
// second's worth per round trip, doubled while they are all used and halved when some go
// unused) by one goroutine, and handed to senders in time order. A slot is never used
// early, nor more than slotGrace late unless in place of a later one (swapLate).
type sharedRate struct {
	c        *coord
	mn       *mno
	interval time.Duration // between two slots of the schedule: the TPS, sharedMargin under
	horizon  time.Duration
	maxChunk int
	probe    time.Duration // between tries of the schedule while it is out of reach
	lead     time.Duration // reserve more when the slots held end within this

	wake    chan struct{} // a sender wants a slot; cap 1
	stopped chan struct{} // closed when run returns: no slot will come

	mu       sync.Mutex
	runs     []slotRun // reserved and not handed out, in time order
	waiting  int       // senders waiting for a slot
	chunk    int
	changed  chan struct{} // closed and replaced when slots come or the mode changes
	degraded bool          // schedule out of reach: pace to this instance's share
	last     time.Time     // latest slot handed out
	end      time.Time     // latest slot reserved
	ftat     time.Time     // next slot of the fallback pacing
	fsent    []time.Time   // fallback slots of the last second, to charge to the schedule
}

type slotRun struct {
	next  time.Time
	left  int
	every time.Duration
}

func newSharedRate(c *coord, mn *mno) *sharedRate {
	interval := time.Duration(float64(time.Second) / (float64(mn.cfg.TPS) * sharedMargin))
	maxChunk := max(1, mn.cfg.TPS/10)
	horizon := max(rateHorizonMin, 2*time.Duration(maxChunk)*interval)
	return &sharedRate{
		c: c, mn: mn, interval: interval, maxChunk: maxChunk, chunk: 1,
		horizon: horizon, lead: horizon / 4,
		probe:   min(rateProbeMax, c.acquireEvery),
		wake:    make(chan struct{}, 1),
		stopped: make(chan struct{}),
		changed: make(chan struct{}),
	}
}

func (r *sharedRate) poke() {
	select {
	case r.wake <- struct{}{}:
	default:
	}
}

// broadcast wakes the senders waiting; r.mu held.
func (r *sharedRate) broadcast() {
	close(r.changed)
	r.changed = make(chan struct{})
}

// take waits for this sender's slot of the shared schedule, or ctx's end, or the pool's
// stop (ErrStopped: the sender holds a window slot the drain waits for).
func (r *sharedRate) take(ctx context.Context) error {
	for {
		select {
		case <-r.stopped:
			return ErrStopped
		default:
		}
		r.mu.Lock()
		now := time.Now()
		if r.degraded {
			at, ok := r.fallbackSlot(now)
			r.mu.Unlock()
			r.poke() // a sender waits: worth trying the schedule again
			if !ok {
				if !sleep(ctx, fallbackIdle) {
					return ctx.Err()
				}
				continue
			}
			if d := at.Sub(now); d > 0 && !sleep(ctx, d) {
				return ctx.Err()
			}
			return nil
		}
		r.dropLate(now)
		if at, ok := r.pop(); ok {
			r.mu.Unlock()
			if d := at.Sub(now); d > 0 && !sleep(ctx, d) {
				return ctx.Err()
			}
			if time.Since(at) <= slotGrace || r.swapLate(at) {
				return nil
			}
			continue
		}
		r.waiting++
		ch := r.changed
		r.mu.Unlock()
		r.poke()
		select {
		case <-ch:
		case <-ctx.Done():
		case <-r.stopped:
		}
		r.mu.Lock()
		r.waiting--
		r.mu.Unlock()
		if err := ctx.Err(); err != nil {
			return err
		}
	}
}

// fallbackSlot paces to this instance's share of the TPS, by the slots it holds; r.mu held.
func (r *sharedRate) fallbackSlot(now time.Time) (time.Time, bool) {
	held := int(r.mn.held.Load())
	if held <= 0 {
		return time.Time{}, false
	}
	rate := float64(r.mn.cfg.TPS) * sharedMargin * float64(held) / float64(r.mn.cfg.Binds)
	at := latest(r.ftat, now)
	r.ftat = at.Add(time.Duration(float64(time.Second) / rate))
	cut := now.Add(-time.Second)
	i := 0
	for i < len(r.fsent) && r.fsent[i].Before(cut) {
		i++
	}
	r.fsent = append(r.fsent[i:], at)
	return at, true
}

// swapLate decides for a sender that woke more than slotGrace after its slot at: sent
// now, it could crowd a one-second window that no longer holds at; so it may go only
// in place of a later slot of ours, less than a second after at (any one-second window
// holding now then holds at or that slot), which is given up. Else the slot is lost
// and the sender waits for another: sleeping again would risk being late again.
func (r *sharedRate) swapLate(at time.Time) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.dropLate(time.Now())
	if len(r.runs) == 0 || r.runs[0].next.Sub(at) >= time.Second {
		return false
	}
	r.pop()
	return true
}

// dropLate drops reserved slots already more than slotGrace past; r.mu held.
func (r *sharedRate) dropLate(now time.Time) {
	cut := now.Add(-slotGrace)
	for len(r.runs) > 0 && r.runs[0].next.Before(cut) {
		run := &r.runs[0]
		k := min(run.left, int(cut.Sub(run.next)/run.every)+1)
		run.left -= k
		run.next = run.next.Add(time.Duration(k) * run.every)
		r.chunk = max(1, r.chunk/2) // reserved more than was used
		if run.left == 0 {
			r.runs = r.runs[1:]
		}
	}
}

// pop hands out the next reserved slot; r.mu held.
func (r *sharedRate) pop() (time.Time, bool) {
	if len(r.runs) == 0 {
		return time.Time{}, false
	}
	run := &r.runs[0]
	at := run.next
	run.next = run.next.Add(run.every)
	if run.left--; run.left == 0 {
		r.runs = r.runs[1:]
	}
	r.last = at
	return at, true
}

func (r *sharedRate) available() int {
	n := 0
	for _, run := range r.runs {
		n += run.left
	}
	return n
}

// run reserves slots while senders wait for them, until ctx ends. It asks only when
// the slots it holds run out within lead: asking earlier, while several instances keep
// the schedule full up to the horizon, would bring back a slot or two per round trip.
func (r *sharedRate) run(ctx context.Context) {
	defer close(r.stopped)
	var lastTry time.Time
	for {
		r.mu.Lock()
		now := time.Now()
		r.dropLate(now)
		degraded := r.degraded
		need := r.waiting - r.available()
		covered := time.Duration(0) // how long until the slots held end within lead
		if r.end.After(now) {
			covered = r.end.Sub(now) - r.lead
		}
		want := min(r.maxChunk, max(need, r.chunk))
		debit := 0
		if degraded {
			want, debit = 1, len(r.fsent)
		}
		r.mu.Unlock()
		switch {
		case degraded || need <= 0:
			// Nothing to reserve until a sender asks; out of reach, at most once per probe.
			select {
			case <-r.wake:
			case <-ctx.Done():
				return
			}
			if !degraded {
				continue
			}
			if d := r.probe - time.Since(lastTry); d > 0 && !sleep(ctx, d) {
				return
			}
		case covered > 0:
			if !sleep(ctx, covered) {
				return
			}
			continue
		}
		lastTry = time.Now()
		cctx, cancel := context.WithTimeout(ctx, r.c.callTimeout)
		granted, first, err := r.c.co.ReserveRate(cctx, r.mn.cfg.Name, r.interval, r.horizon, want, debit)
		cancel()
		recv := time.Now()
		if ctx.Err() != nil {
			return
		}
		if err != nil {
			r.c.failed("reserve send rate", err)
			r.setDegraded(recv)
			if !degraded {
				r.poke() // probe again after r.probe even if the senders already went by
			}
			continue
		}
		r.c.ok()
		r.grant(lastTry, recv, granted, first)
		if granted == 0 && !sleep(ctx, min(max(first, time.Millisecond), r.horizon)) {
			return
		}
	}
}

// setDegraded switches to fallback pacing; reserved slots not handed out are dropped so
// the two cannot add up.
func (r *sharedRate) setDegraded(now time.Time) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.degraded {
		return
	}
	r.degraded = true
	r.runs, r.end = nil, r.last
	r.ftat = latest(now, r.last.Add(r.interval))
	r.broadcast()
}

// grant records slots the schedule granted, placed from the answer's arrival.
func (r *sharedRate) grant(sent, recv time.Time, n int, first time.Duration) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.degraded {
		r.degraded = false
		r.fsent = r.fsent[:0] // charged as the debit of this reservation
	}
	if late := recv.Sub(sent) + slotGrace - r.interval - runSpill; late > 0 && n > 0 {
		n -= min(n, int((late+r.interval-1)/r.interval))
	}
	if n > 0 {
		at := recv.Add(max(first, 0))
		r.runs = append(r.runs, slotRun{next: at, left: n, every: r.interval})
		r.end = latest(r.end, at.Add(time.Duration(n-1)*r.interval))
		r.chunk = min(r.maxChunk, 2*r.chunk)
	}
	r.broadcast()
}

func earliest(a, b time.Time) time.Time {
	if b.Before(a) {
		return b
	}
	return a
}

func latest(a, b time.Time) time.Time {
	if b.After(a) {
		return b
	}
	return a
}
