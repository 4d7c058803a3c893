// Package ussd is the USSD menu engine and its HTTP gateways. Menus are data (YAML, see
// LoadMenus and Lint); the engine walks a worker through them one hop at a time, keeping
// the session in a SessionStore (Valkey, through package sessions), looking workers up in
// a Directory (the registry) and calling named Actions and data Sources that cmd/mhero
// supplies. Each gateway turns its aggregator's dialect into a Request and a Reply back
// into the aggregator's answer; the engine never knows which gateway a hop came from.
//
// The package imports no driver: the interfaces below are satisfied by *sessions.Store,
// *registry.Store and small adapters in cmd/mhero.
package ussd

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"runtime/debug"
	"sort"
	"strconv"
	"sync"
	"time"

	"github.com/mhero-health/mhero"
)

// SessionStore keeps one opaque state per worker and makes each hop atomic: a hop locks
// the worker's state, changes it and saves it (or unlocks it unchanged). It also counts
// hops per worker for the rate limit. *sessions.Store implements it.
type SessionStore interface {
	// LockUSSD counts one hop for key in the rate window and returns the count; within
	// maxHops it also takes key's lock for hold (waiting while another hop has it, until
	// ctx ends) and returns the stored state (nil: none) and the lock's token. Over the
	// limit it takes no lock and token is "".
	LockUSSD(ctx context.Context, key string, hold time.Duration, maxHops int, window time.Duration) (state []byte, token string, hops int, err error)
	// SaveUSSD writes the state with ttl and releases the lock, only if token still holds it.
	SaveUSSD(ctx context.Context, key, token string, state []byte, ttl time.Duration) error
	// UnlockUSSD releases the lock without changing the state.
	UnlockUSSD(ctx context.Context, key, token string) error
	// SwapUSSD is a hop in one round trip for a caller that remembers the state saved
	// last: it counts the hop as LockUSSD does and, within maxHops, writes state (nil:
	// nothing) with ttl only if no hop holds the lock and the stored state is still old
	// (nil: none). When the stored state had moved on, current is it (nil: none stored,
	// or a hop holds the lock, or the count is over maxHops).
	SwapUSSD(ctx context.Context, key string, old, state []byte, ttl time.Duration, maxHops int, window time.Duration) (current []byte, swapped bool, hops int, err error)
	// Ping reports whether the store answers (readiness).
	Ping(ctx context.Context) error
}

// Directory finds who is dialling. *registry.Store implements it.
type Directory interface {
	// FindWorkerByMSISDN returns ENOTFOUND for a number not in the registry.
	FindWorkerByMSISDN(ctx context.Context, m mhero.MSISDN) (*mhero.Worker, error)
	// FindFacility takes a facility id or code.
	FindFacility(ctx context.Context, ref string) (*mhero.Facility, error)
}

// Action is a named handler a menu calls, such as stock.submit. It returns values the
// next screens can show (e.g. {"ref": "SR-1042"}). It must be idempotent on Key: a hop
// retried after a crash, or a gateway retry racing the first attempt across instances,
// calls it again with the same Key, and must get the same result without a second
// report. Errors with codes EINVALID, EVALIDATION, ECONFLICT, ENOTFOUND or EFORBIDDEN tell
// the worker to check the answers; any other error reads "service busy, try again".
type Action interface {
	Run(ctx context.Context, r ActionRequest) (map[string]string, error)
}

// ActionFunc adapts a function to Action.
type ActionFunc func(ctx context.Context, r ActionRequest) (map[string]string, error)

// Run calls f.
func (f ActionFunc) Run(ctx context.Context, r ActionRequest) (map[string]string, error) {
	return f(ctx, r)
}

// ActionRequest is what an action gets: who, in which language, and the session's
// answers by variable name (values, e.g. commodity codes, not labels).
type ActionRequest struct {
	Key      string // unique per session step; the same when the hop is retried
	Name     string
	Worker   mhero.Worker
	Facility mhero.Facility // the worker's facility; zero when none
	Language string
	Vars     map[string]string
}

// Source is a named data source for a choice screen, such as facilities or inbox. Its
// choices are fixed for the screen when it is shown (kept in the session), so a list
// that changes in the meantime cannot change what a number means.
type Source interface {
	Choices(ctx context.Context, r SourceRequest) ([]Choice, error)
}

// SourceFunc adapts a function to Source.
type SourceFunc func(ctx context.Context, r SourceRequest) ([]Choice, error)

// Choices calls f.
func (f SourceFunc) Choices(ctx context.Context, r SourceRequest) ([]Choice, error) { return f(ctx, r) }

// SourceRequest is what a source gets.
type SourceRequest struct {
	Name     string
	Worker   mhero.Worker
	Facility mhero.Facility
	Language string
	Vars     map[string]string
}

// Choice is one entry of a source. Label is shown (in the request's language); Value is
// saved in the screen's variable, and each Extra under <variable>.<key>.
type Choice struct {
	Value string
	Label string
	Extra map[string]string
}

// Commodity is one item workers report stock of; the engine serves the list as the
// "commodities" source.
type Commodity struct {
	Code string
	Name map[string]string // by language
}

// Kind is what a gateway says a hop is. Gateways that do not say (Africa's Talking)
// send Continue; the engine tells a new session by its id.
type Kind uint8

const (
	Continue Kind = iota // a hop of a session, perhaps its first
	Begin                // the gateway says the session is new
	End                  // the gateway or the user ended the session
	Timeout              // the network timed the session out
)

// Request is one hop, in the engine's terms.
type Request struct {
	SessionID   string // the gateway's session id
	MSISDN      mhero.MSISDN
	ServiceCode string
	Network     string
	Kind        Kind
	Input       Input
	Limit       int // screen limit of this gateway; 0: Config.ScreenLimit
}

// opens tells a dial (a hop that starts a session) from the hops that continue one.
func (r Request) opens() bool {
	return r.Kind == Begin || r.Kind == Continue && (r.Input.none || r.Input.cumulative && r.Input.text == "")
}

// Reply is the screen to show, and whether the session ends with it.
type Reply struct {
	Text string
	End  bool
}

// Config configures an Engine. Zero durations and limits take the documented defaults.
type Config struct {
	Menus       *Menus
	Sessions    SessionStore
	Directory   Directory
	Actions     map[string]Action
	Sources     map[string]Source
	Commodities []Commodity // served as the "commodities" source

	ScreenLimit int           // characters (GSM septets) per screen; default 182
	SessionTTL  time.Duration // idle time before a session's state expires; default 180 s. A dropped session can be resumed until then.
	RateLimit   int           // hops per MSISDN per RateWindow; default 60; negative: no limit
	RateWindow  time.Duration // default 1 minute
	// DirectoryTTL, when positive, lets a new session reuse what the Directory answered
	// about its worker (and their facility) for this long instead of asking again: a
	// worker who dials again soon, as one does for each commodity reported, costs the
	// registry nothing. Numbers not found are always asked again. A change made elsewhere
	// (deactivated, opted out by SMS, another facility) reaches new sessions within it,
	// one made through this engine's actions (the language switch) at once on this
	// instance; live sessions keep, as always, the worker they started with. 0 (default):
	// ask every time.
	DirectoryTTL time.Duration
	// SavedStates bounds, in bytes, the session states this instance remembers having
	// saved, so that a session's next hop here needs one round trip to the store instead
	// of two (see savedStates). Default DefaultSavedStates; negative: none, every hop reads
	// its state back.
	SavedStates int
	Location    *time.Location
	Now         func() time.Time
	Log         *slog.Logger
}

// Defaults.
const (
	DefaultScreenLimit = 182
	DefaultSessionTTL  = 180 * time.Second
	DefaultRateLimit   = 60
	DefaultRateWindow  = time.Minute
	// endedTTL keeps a finished session just long enough to answer a retried last hop.
	endedTTL = 60 * time.Second
	// defaultHold bounds a hop's lock when the caller set no deadline.
	defaultHold = 5 * time.Second
)

// Engine runs sessions. It is safe for concurrent use. The sessions' state is in the
// store; the engine only remembers what it saved last, to skip reading it back.
type Engine struct {
	menus     *Menus
	store     SessionStore
	saved     *savedStates // nil: none
	directory Directory
	actions   map[string]Action
	sources   map[string]Source
	limit     int
	ttl       time.Duration
	rate      int
	window    time.Duration
	loc       *time.Location
	now       func() time.Time
	log       *slog.Logger
	// endings are the saves of hops that ended their session, finishing after the
	// answer (see Handle); Wait waits for them.
	endings inflight
}

// inflight counts goroutines at work and lets one wait until none is. Unlike a
// WaitGroup it may be added to while waited on: a hop still running when a shutdown
// gives up on HTTP must not panic the server.
type inflight struct {
	mu   sync.Mutex
	n    int
	idle sync.Cond // on mu (init)
}

// init makes f ready; NewEngine calls it.
func (f *inflight) init() { f.idle.L = &f.mu }

// Go runs fn in a goroutine of its own, counted until it returns.
func (f *inflight) Go(fn func()) {
	f.mu.Lock()
	f.n++
	f.mu.Unlock()
	go func() {
		defer func() {
			f.mu.Lock()
			if f.n--; f.n == 0 {
				f.idle.Broadcast()
			}
			f.mu.Unlock()
		}()
		fn()
	}()
}

// Wait returns once no counted goroutine is running.
func (f *inflight) Wait() {
	f.mu.Lock()
	defer f.mu.Unlock()
	for f.n > 0 {
		f.idle.Wait()
	}
}

// NewEngine checks the configuration against the menus: every action and source a menu
// names must be supplied.
func NewEngine(c Config) (*Engine, error) {
	var errs []error
	if c.Menus == nil || c.Sessions == nil || c.Directory == nil {
		return nil, errors.New("ussd: Config needs Menus, Sessions and Directory")
	}
	e := &Engine{menus: c.Menus, store: c.Sessions, directory: c.Directory, actions: c.Actions,
		sources: map[string]Source{}, limit: c.ScreenLimit, ttl: c.SessionTTL, rate: c.RateLimit,
		window: c.RateWindow, loc: c.Location, now: c.Now, log: c.Log}
	e.endings.init()
	if e.limit == 0 {
		e.limit = DefaultScreenLimit
	}
	if e.limit < minScreenLimit {
		errs = append(errs, fmt.Errorf("ussd: screen limit %d is below %d", e.limit, minScreenLimit))
	}
	if e.ttl <= 0 {
		e.ttl = DefaultSessionTTL
	}
	if e.rate == 0 {
		e.rate = DefaultRateLimit
	}
	if e.window <= 0 {
		e.window = DefaultRateWindow
	}
	if e.loc == nil {
		e.loc = time.UTC
	}
	if e.now == nil {
		e.now = time.Now
	}
	if e.log == nil {
		e.log = slog.New(slog.DiscardHandler)
	}
	e.log = e.log.With("comp", "ussd")
	if c.DirectoryTTL > 0 {
		e.directory = newDirectoryCache(c.Directory, c.DirectoryTTL)
	}
	switch {
	case c.SavedStates == 0:
		e.saved = newSavedStates(DefaultSavedStates)
	case c.SavedStates > 0:
		e.saved = newSavedStates(c.SavedStates)
	}
	if len(c.Commodities) > 0 {
		e.sources["commodities"] = commoditySource(c.Commodities, c.Menus.lang0())
	}
	for name, s := range c.Sources {
		e.sources[name] = s
	}
	actions, sources := c.Menus.names()
	for _, a := range actions {
		if e.actions[a] == nil {
			errs = append(errs, fmt.Errorf("ussd: the menus call action %q, which is not supplied", a))
		}
	}
	for _, s := range sources {
		if e.sources[s] == nil {
			errs = append(errs, fmt.Errorf("ussd: the menus use source %q, which is not supplied", s))
		}
	}
	if len(errs) > 0 {
		return nil, errors.Join(errs...)
	}
	return e, nil
}

// names lists the actions and sources the menus refer to, sorted.
func (m *Menus) names() (actions, sources []string) {
	seenA, seenS := map[string]bool{}, map[string]bool{}
	for _, s := range m.Screens {
		if s.Action != "" {
			seenA[s.Action] = true
		}
		if s.Source != "" {
			seenS[s.Source] = true
		}
		for _, o := range s.Options {
			if o.Action != "" {
				seenA[o.Action] = true
			}
		}
	}
	for a := range seenA {
		actions = append(actions, a)
	}
	for s := range seenS {
		sources = append(sources, s)
	}
	sort.Strings(actions)
	sort.Strings(sources)
	return actions, sources
}

// Ping reports whether the session store answers: without it no session can run.
func (e *Engine) Ping(ctx context.Context) error { return e.store.Ping(ctx) }

// Handle answers one hop. It never fails: whatever goes wrong becomes a screen (the
// engine's strings), and the session's state is either saved whole or left as it was.
// ctx should carry the hop's deadline, below the gateway's own timeout.
func (e *Engine) Handle(ctx context.Context, req Request) Reply {
	start := time.Now()
	limit := req.Limit
	if limit == 0 {
		limit = e.limit
	}
	hold := defaultHold
	if d, ok := ctx.Deadline(); ok {
		hold = time.Until(d) + time.Second // outlives the hop: the lock never lapses mid-hop
	}
	key := string(req.MSISDN)
	maxHops := max(e.rate, 0)
	if e.saved != nil {
		reply, done, counted := e.swapHop(ctx, req, key, limit, start)
		if done {
			return reply
		}
		if counted {
			maxHops = 0
		}
	}
	raw, token, hops, err := e.store.LockUSSD(ctx, key, hold, maxHops, e.window)
	switch {
	case err != nil:
		e.log.LogAttrs(ctx, slog.LevelError, "ussd session store", slog.String("session_id", req.SessionID), slog.Any("error", err))
		return e.endScreen("busy", e.menus.lang0())
	case token == "":
		return e.rateLimited(ctx, req, hops)
	}
	st, err := decodeState(raw)
	if err != nil {
		// A state this version cannot read (or a corrupted value) must not trap the
		// worker: start afresh.
		e.log.LogAttrs(ctx, slog.LevelWarn, "ussd session state unreadable", slog.String("session_id", req.SessionID), slog.Any("error", err))
	}
	h := &hop{e: e, req: req, limit: limit}
	reply, save := h.safeRun(ctx, st)
	if reply.End {
		// The session is over: the worker waits for nothing more from it, and a retry of
		// this hop waits for the lock, then reads the answer saved. So the answer need not
		// wait for the save: as when a save fails, an action that ran stays safe to run
		// again under its idempotency key. Wait, at shutdown, waits for these saves.
		e.endings.Go(func() { e.finish(ctx, h, key, token, st, save, raw, start) })
		return reply
	}
	e.finish(ctx, h, key, token, st, save, raw, start)
	return reply
}

// finish saves the state a locked hop left (or releases the lock when the state stands)
// and remembers it, even when the hop's deadline has passed.
func (e *Engine) finish(ctx context.Context, h *hop, key, token string, st, save *state, raw []byte, start time.Time) {
	req := h.req
	done, cancel := context.WithTimeout(context.WithoutCancel(ctx), time.Second)
	defer cancel()
	var err error
	if save == nil {
		err = e.store.UnlockUSSD(done, key, token)
		save = st // the stored state stands: remember it as it was read (raw)
	} else {
		raw = save.encode()
		err = e.store.SaveUSSD(done, key, token, raw, e.stateTTL(save))
	}
	if err != nil {
		// The answer stands (an action may have run; its idempotency key makes a retry
		// safe), but the session did not move on.
		e.log.LogAttrs(ctx, slog.LevelError, "ussd session save", slog.String("session_id", req.SessionID), slog.Any("error", err))
		save = nil
	}
	e.remember(key, save, raw)
	e.logHop(ctx, h, start)
}

// Wait waits until the saves of the hops that ended their sessions are done; call it
// once nothing calls Handle any more (the gateways have stopped), before the session
// store closes.
func (e *Engine) Wait() { e.endings.Wait() }

// swapHop answers the hop in one round trip when the engine remembers the session's
// state (or the hop opens a session, when there should be none): it runs the hop over
// that state and swaps the result in if the store still holds it. A hop that would call
// an action is not run this way, nor one whose state moved on twice: done is false, and
// the caller takes the lock (counted says the hop was counted against the rate limit).
func (e *Engine) swapHop(ctx context.Context, req Request, key string, limit int, start time.Time) (reply Reply, done, counted bool) {
	old, known := e.saved.get(key)
	if !known && !req.opens() {
		return Reply{}, false, false
	}
	for range 2 {
		st, err := decodeState(old)
		if err != nil {
			return Reply{}, false, counted
		}
		h := &hop{e: e, req: req, limit: limit, unlocked: true}
		reply, save := h.safeRun(ctx, st)
		if h.needsLock {
			return Reply{}, false, counted
		}
		var raw []byte // nil: the state stands; only check it is still current
		ttl := e.ttl
		if save != nil {
			raw, ttl = save.encode(), e.stateTTL(save)
		}
		maxHops := max(e.rate, 0)
		if counted {
			maxHops = 0
		}
		current, swapped, hops, err := e.store.SwapUSSD(ctx, key, old, raw, ttl, maxHops, e.window)
		switch {
		case err != nil:
			// It may or may not have been counted; the locked path will most likely
			// fail too and answer "busy".
			e.saved.forget(key)
			return Reply{}, false, true
		case maxHops > 0 && hops > maxHops:
			return e.rateLimited(ctx, req, hops), true, true
		case swapped:
			if save == nil {
				save, raw = st, old
			}
			e.remember(key, save, raw)
			e.logHop(ctx, h, start)
			return reply, true, true
		}
		counted = true
		if current == nil { // a hop holds the lock, or the state is gone
			break
		}
		old = current // the state moved on (another instance, or a copy of this hop): once more over it
	}
	e.saved.forget(key)
	return Reply{}, false, counted
}

// remember keeps the state the store holds for key after a hop (st, encoded as raw, or
// nil to encode), or forgets key when that is not known or not worth keeping: an ended
// session is only kept in the store, for a retry of its last hop.
func (e *Engine) remember(key string, st *state, raw []byte) {
	if e.saved == nil {
		return
	}
	if st == nil || st.Ended {
		e.saved.forget(key)
		return
	}
	if raw == nil {
		raw = st.encode()
	}
	e.saved.put(key, raw, e.stateTTL(st))
}

func (e *Engine) rateLimited(ctx context.Context, req Request, hops int) Reply {
	if hops == e.rate+1 { // once per window, not once per flooded hop
		e.log.LogAttrs(ctx, slog.LevelWarn, "ussd rate limit", slog.String("session_id", req.SessionID), slog.String("status", "rate_limited"))
	}
	return e.endScreen("rate_limited", e.menus.lang0())
}

func (e *Engine) logHop(ctx context.Context, h *hop, start time.Time) {
	if e.log.Enabled(ctx, slog.LevelDebug) {
		e.log.LogAttrs(ctx, slog.LevelDebug, "ussd hop", slog.String("session_id", h.req.SessionID),
			slog.Int64("worker_id", int64(h.workerID)), slog.Int("seq", h.seq), slog.String("status", h.status),
			slog.Duration("elapsed", time.Since(start)))
	}
}

// safeRun is run, except that a bug in it ends the session with "service busy" and
// leaves the stored state as it was, rather than failing the request with the lock held.
func (h *hop) safeRun(ctx context.Context, st *state) (reply Reply, save *state) {
	defer func() {
		if v := recover(); v != nil {
			h.e.log.LogAttrs(ctx, slog.LevelError, "ussd hop panicked", slog.String("session_id", h.req.SessionID),
				slog.Any("error", v), slog.String("stack", string(debug.Stack())))
			reply, save = h.e.endScreen("busy", h.e.menus.lang0()), nil
		}
	}()
	return h.run(ctx, st)
}

func (e *Engine) stateTTL(st *state) time.Duration {
	if st.Ended {
		return min(e.ttl, endedTTL)
	}
	return e.ttl
}

func (e *Engine) endScreen(key, lang string) Reply {
	return Reply{Text: e.menus.str(key, lang, nil), End: true}
}

func (e *Engine) language(l string) string {
	if contains(e.menus.Languages, l) {
		return l
	}
	return e.menus.lang0()
}

func (e *Engine) today() time.Time { return e.now().In(e.loc) }

func actionKey(req Request, seq int) string {
	return string(req.MSISDN) + ":" + req.SessionID + ":" + strconv.Itoa(seq)
}

// commoditySource serves the configured commodities, named in the session's language.
func commoditySource(list []Commodity, fallback string) Source {
	return SourceFunc(func(_ context.Context, r SourceRequest) ([]Choice, error) {
		out := make([]Choice, 0, len(list))
		for _, c := range list {
			name := c.Name[r.Language]
			if name == "" {
				name = c.Name[fallback]
			}
			if name == "" {
				name = c.Code
			}
			out = append(out, Choice{Value: c.Code, Label: name})
		}
		return out, nil
	})
}
