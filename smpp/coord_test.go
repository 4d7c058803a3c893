package smpp

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"net"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/mhero-health/mhero/registry/registrytest"
	"github.com/mhero-health/mhero/sessions"
	"github.com/mhero-health/mhero/smpp/smpptest"
)

// The Valkey adapter fits the interface this package declares.
var _ Coordinator = (*sessions.Store)(nil)

// Lease timing for tests: short enough that a takeover after an expiry takes a few
// seconds, long enough for a loaded 2-core machine running -race (renewals every
// second, calls bounded at 300ms; a stall of two seconds unbinds).
var testCoord = CoordOptions{LeaseTTL: 3 * time.Second, AcquireEvery: 100 * time.Millisecond}

// tcpProxy forwards connections to target and counts how many are open at once: in
// front of the SMSC it sees every bind of every instance; in front of Valkey, Close
// makes Valkey unreachable (the port is closed).
type tcpProxy struct {
	ln     net.Listener
	target string
	wg     sync.WaitGroup
	open   atomic.Int64
	peak   atomic.Int64

	mu    sync.Mutex
	conns map[net.Conn]struct{} // nil once closed
}

func newProxy(t testing.TB, target string) *tcpProxy {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	px := &tcpProxy{ln: ln, target: target, conns: make(map[net.Conn]struct{})}
	px.wg.Add(1)
	go px.accept()
	t.Cleanup(px.Close)
	return px
}

func (px *tcpProxy) Addr() string { return px.ln.Addr().String() }

func (px *tcpProxy) accept() {
	defer px.wg.Done()
	for {
		c, err := px.ln.Accept()
		if err != nil {
			return
		}
		up, err := net.Dial("tcp", px.target)
		if err != nil {
			c.Close()
			continue
		}
		px.mu.Lock()
		if px.conns == nil {
			px.mu.Unlock()
			c.Close()
			up.Close()
			return
		}
		px.conns[c], px.conns[up] = struct{}{}, struct{}{}
		px.mu.Unlock()
		n := px.open.Add(1)
		for p := px.peak.Load(); n > p && !px.peak.CompareAndSwap(p, n); p = px.peak.Load() {
		}
		var once sync.Once
		done := func() {
			once.Do(func() {
				px.open.Add(-1) // counted down at the first close, before the other side's
				c.Close()
				up.Close()
				px.mu.Lock()
				delete(px.conns, c)
				delete(px.conns, up)
				px.mu.Unlock()
			})
		}
		px.wg.Add(2)
		go func() { defer px.wg.Done(); io.Copy(up, c); done() }()
		go func() { defer px.wg.Done(); io.Copy(c, up); done() }()
	}
}

// Close stops listening and cuts every connection.
func (px *tcpProxy) Close() {
	px.ln.Close()
	px.mu.Lock()
	for c := range px.conns {
		c.Close()
	}
	px.conns = nil
	px.mu.Unlock()
	px.wg.Wait()
}

// valkeyAddr is the host:port of the test Valkey.
func valkeyAddr(t testing.TB) string {
	t.Helper()
	u, err := url.Parse(registrytest.ValkeyURL())
	if err != nil {
		t.Fatal(err)
	}
	return u.Host
}

// openStore is one instance's connection to Valkey, on the test's prefix.
func openStore(t testing.TB, url, prefix string) *sessions.Store {
	t.Helper()
	s, err := sessions.Open(t.Context(), url, prefix)
	if err != nil {
		t.Fatalf("connect Valkey (run make deps): %v", err)
	}
	t.Cleanup(s.Close)
	return s
}

// coordConfig is an account on the simulator, reached through the counting proxy.
func coordConfig(t testing.TB, smsc *smpptest.Server, px *tcpProxy, binds int) Config {
	t.Helper()
	cfg := simConfig(t, smsc)
	host, port, _ := net.SplitHostPort(px.Addr())
	cfg.Host, cfg.Binds = host, binds
	cfg.Port, _ = strconv.Atoi(port)
	return cfg
}

// startInstance starts a Pool sharing its account through co, as one instance.
func startInstance(t testing.TB, cfg Config, co Coordinator, log *slog.Logger) *Pool {
	t.Helper()
	p, err := NewPool([]Config{cfg}, Handlers{}, log, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := p.SetCoordinator(co, testCoord); err != nil {
		t.Fatal(err)
	}
	if err := p.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { stopPool(t, p) })
	return p
}

func stopPool(t testing.TB, p *Pool) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := p.Stop(ctx); err != nil {
		t.Errorf("Stop: %v", err)
	}
}

// bound counts the binds of p that are up, and lists their slots.
func bound(p *Pool) (n int, slots []int) {
	for _, h := range p.Health() {
		if h.State != BindDown {
			n++
			slots = append(slots, h.Slot)
		}
	}
	return n, slots
}

func standby(p *Pool) int {
	n := 0
	for _, h := range p.Health() {
		if h.Standby {
			n++
		}
	}
	return n
}

// onlySlots lets an instance take only the given slots, to place instances on slots.
type onlySlots struct {
	Coordinator
	slots []int
}

func (o onlySlots) AcquireSlot(ctx context.Context, account string, slot int, holder string, ttl time.Duration) (bool, error) {
	if !slices.Contains(o.slots, slot) {
		// As if another instance held it; still a round trip, so reachability shows.
		return o.Coordinator.RenewSlot(ctx, account, slot, holder+"-elsewhere", ttl)
	}
	return o.Coordinator.AcquireSlot(ctx, account, slot, holder, ttl)
}

// stoppable is a coordinator that can stop answering, and counts the calls it gets.
type stoppable struct {
	Coordinator
	stopped atomic.Bool
	calls   atomic.Int64
}

var errCoordStopped = errors.New("coordinator stopped")

func (s *stoppable) call() error {
	s.calls.Add(1)
	if s.stopped.Load() {
		return errCoordStopped
	}
	return nil
}

func (s *stoppable) AcquireSlot(ctx context.Context, account string, slot int, holder string, ttl time.Duration) (bool, error) {
	if err := s.call(); err != nil {
		return false, err
	}
	return s.Coordinator.AcquireSlot(ctx, account, slot, holder, ttl)
}

func (s *stoppable) RenewSlot(ctx context.Context, account string, slot int, holder string, ttl time.Duration) (bool, error) {
	if err := s.call(); err != nil {
		return false, err
	}
	return s.Coordinator.RenewSlot(ctx, account, slot, holder, ttl)
}

func (s *stoppable) ReleaseSlot(ctx context.Context, account string, slot int, holder string) error {
	if err := s.call(); err != nil {
		return err
	}
	return s.Coordinator.ReleaseSlot(ctx, account, slot, holder)
}

func (s *stoppable) ReserveRate(ctx context.Context, account string, interval, horizon time.Duration, want, debit int) (int, time.Duration, error) {
	if err := s.call(); err != nil {
		return 0, 0, err
	}
	return s.Coordinator.ReserveRate(ctx, account, interval, horizon, want, debit)
}

// pump sends tagged messages through p from workers goroutines until stop is closed or
// the pool stopped, each Send bounded by timeout. It returns how many were accepted and
// every error.
func pump(p *Pool, tag string, workers int, timeout time.Duration, stop <-chan struct{}) func() (int, []error) {
	var (
		ok   atomic.Int64
		next atomic.Int64
		mu   sync.Mutex
		errs []error
		wg   sync.WaitGroup
	)
	for range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				select {
				case <-stop:
					return
				default:
				}
				ctx, cancel := context.WithTimeout(context.Background(), timeout)
				m := &Message{To: testMSISDN, Text: tag + " " + strconv.FormatInt(next.Add(1), 10)}
				_, err := p.Send(ctx, m)
				cancel()
				if err != nil {
					mu.Lock()
					errs = append(errs, err)
					mu.Unlock()
					if errors.Is(err, ErrStopped) {
						return
					}
					continue
				}
				ok.Add(1)
			}
		}()
	}
	return func() (int, []error) {
		wg.Wait()
		return int(ok.Load()), errs
	}
}

// busiestSecond is the most submits (of those keep accepts) the SMSC received within
// any one second.
func busiestSecond(subs []smpptest.Submit, keep func(smpptest.Submit) bool) int {
	var ts []time.Time
	for _, s := range subs {
		if keep == nil || keep(s) {
			ts = append(ts, s.ReceivedAt)
		}
	}
	slices.SortFunc(ts, time.Time.Compare)
	most := 0
	for i, j := 0, 0; j < len(ts); j++ {
		for ts[j].Sub(ts[i]) >= time.Second {
			i++
		}
		most = max(most, j-i+1)
	}
	return most
}

func between(subs []smpptest.Submit, from, to time.Time) int {
	n := 0
	for _, s := range subs {
		if !s.ReceivedAt.Before(from) && s.ReceivedAt.Before(to) {
			n++
		}
	}
	return n
}

func skipShort(t *testing.T) {
	t.Helper()
	if testing.Short() {
		t.Skip("needs Valkey/Redis")
	}
}

// TestCoordBindsShared: two instances on one account of 2 binds never bind more than 2
// between them; the binds left over wait on standby, and when an instance stops, the
// other takes its slots over and binds them.
func TestCoordBindsShared(t *testing.T) {
	skipShort(t)
	smsc := newSMSC(t, smpptest.Config{})
	px := newProxy(t, smsc.Addr())
	cfg := coordConfig(t, smsc, px, 2)
	prefix := registrytest.KeyPrefix(t)
	a := startInstance(t, cfg, openStore(t, registrytest.ValkeyURL(), prefix), nil)
	b := startInstance(t, cfg, openStore(t, registrytest.ValkeyURL(), prefix), nil)

	waitFor(t, func() bool {
		na, _ := bound(a)
		nb, _ := bound(b)
		return na+nb == 2 && standby(a)+standby(b) == 2
	}, "2 binds up and 2 on standby between the instances")
	_, sa := bound(a)
	_, sb := bound(b)
	if got := slices.Sorted(slices.Values(append(sa, sb...))); !slices.Equal(got, []int{1, 2}) {
		t.Errorf("slots bound = %v, want [1 2] once each", got)
	}
	// Both instances send; only the bound binds carry it.
	for _, p := range []*Pool{a, b} {
		if n, _ := bound(p); n > 0 {
			if _, err := p.Send(t.Context(), text(1)); err != nil {
				t.Errorf("Send: %v", err)
			}
		}
	}

	stopped, other := a, b
	if n, _ := bound(a); n == 0 {
		stopped, other = b, a
	}
	stopPool(t, stopped)
	waitFor(t, func() bool { n, _ := bound(other); return n == 2 }, "the other instance binds both slots")
	if _, err := other.Send(t.Context(), text(2)); err != nil {
		t.Errorf("Send after the takeover: %v", err)
	}
	if peak := px.peak.Load(); peak > 2 {
		t.Errorf("the SMSC saw %d binds at once, account allows 2", peak)
	}
}

// TestCoordTPSShared: two instances of an account with tps 100, each on one of its two
// binds. One sending alone gets the whole 100/s (not half); both sending as fast as they
// can get 100/s between them, and no second at the SMSC holds more than 100 submit_sm
// (+1: a one-second window can hold both ends of a run of exactly-spaced submits).
func TestCoordTPSShared(t *testing.T) {
	skipShort(t)
	smsc := newSMSC(t, smpptest.Config{})
	px := newProxy(t, smsc.Addr())
	cfg := coordConfig(t, smsc, px, 2)
	cfg.TPS = 100
	prefix := registrytest.KeyPrefix(t)
	a := startInstance(t, cfg, onlySlots{openStore(t, registrytest.ValkeyURL(), prefix), []int{1}}, nil)
	b := startInstance(t, cfg, onlySlots{openStore(t, registrytest.ValkeyURL(), prefix), []int{2}}, nil)
	waitFor(t, func() bool { na, _ := bound(a); nb, _ := bound(b); return na == 1 && nb == 1 }, "one bind up per instance")

	const workers = 20
	alone := make(chan struct{})
	startA := time.Now()
	waitA := pump(a, "a", workers, 5*time.Second, alone)
	time.Sleep(1500 * time.Millisecond)
	startBoth := time.Now()
	both := make(chan struct{})
	waitB := pump(b, "b", workers, 5*time.Second, both)
	time.Sleep(2 * time.Second)
	endBoth := time.Now()
	// Stopping while senders wait for their slots drains in time: no sender is left
	// holding a window slot waiting for a slot that will not come.
	stopPool(t, a)
	stopPool(t, b)
	close(alone)
	close(both)
	for _, wait := range []func() (int, []error){waitA, waitB} {
		_, errs := wait()
		for _, err := range errs {
			if !errors.Is(err, ErrStopped) {
				t.Fatalf("Send: %v (%d failed)", err, len(errs))
			}
		}
	}

	subs := smsc.Submits()
	aloneRate := float64(between(subs, startA, startBoth)) / startBoth.Sub(startA).Seconds()
	bothRate := float64(between(subs, startBoth, endBoth)) / endBoth.Sub(startBoth).Seconds()
	fromB := 0
	for _, s := range subs {
		if s.ReceivedAt.Before(endBoth) && strings.HasPrefix(string(s.ShortMessage), "b ") {
			fromB++
		}
	}
	most := busiestSecond(subs, nil)
	t.Logf("alone %.0f/s, both %.0f/s (%d from b), busiest second %d", aloneRate, bothRate, fromB, most)
	if most > cfg.TPS+1 {
		t.Errorf("%d submit_sm within one second across the instances, account tps %d", most, cfg.TPS)
	}
	// 60: above the 50/s a fixed half share would give the instance sending alone, with
	// room for a loaded machine running -race, whose late senders lose their slots (at
	// ease both reach 95-99/s).
	if aloneRate < 60 {
		t.Errorf("one instance sending alone got %.0f/s, want most of the account's 100", aloneRate)
	}
	if bothRate < 60 {
		t.Errorf("two instances sending got %.0f/s between them, want most of the account's 100", bothRate)
	}
	if fromB < 20 {
		t.Errorf("the second instance sent only %d while both sent", fromB)
	}
}

// TestCoordLeaseExpiry: an instance whose coordinator stops answering cannot renew its
// lease: it unbinds before the lease runs out, letting its submits in flight be
// answered, and the other instance takes the slot over once it has run out.
func TestCoordLeaseExpiry(t *testing.T) {
	skipShort(t)
	smsc := newSMSC(t, smpptest.Config{Latency: 50 * time.Millisecond})
	px := newProxy(t, smsc.Addr())
	cfg := coordConfig(t, smsc, px, 1)
	prefix := registrytest.KeyPrefix(t)
	stuck := &stoppable{Coordinator: openStore(t, registrytest.ValkeyURL(), prefix)}
	a := startInstance(t, cfg, stuck, nil)
	waitFor(t, func() bool { n, _ := bound(a); return n == 1 }, "first instance bound")
	b := startInstance(t, cfg, openStore(t, registrytest.ValkeyURL(), prefix), nil)
	waitFor(t, func() bool { return standby(b) == 1 }, "second instance on standby")

	stop := make(chan struct{})
	wait := pump(a, "a", 5, 2*time.Second, stop)
	waitFor(t, func() bool { return smsc.Stats().Accepted >= 10 }, "first instance sending")
	stuck.stopped.Store(true)
	waitFor(t, func() bool { n, _ := bound(a); return n == 0 }, "first instance unbinds")
	close(stop)
	sent, errs := wait()
	for _, err := range errs {
		if errors.Is(err, ErrOutcomeUnknown) || !IsTemporary(err) {
			t.Fatalf("Send while the lease was lost: %v (want accepted, or not sent and temporary)", err)
		}
	}
	waitFor(t, func() bool { n, _ := bound(b); return n == 1 }, "second instance takes the slot over")
	if _, err := b.Send(t.Context(), text(1)); err != nil {
		t.Errorf("Send after the takeover: %v", err)
	}
	if peak := px.peak.Load(); peak > 1 {
		t.Errorf("the SMSC saw %d binds at once, account allows 1", peak)
	}
	if h := a.Health()[0]; !strings.Contains(h.LastError, "bind slot") {
		t.Errorf("first instance's bind: last error %q, want the bind slot's", h.LastError)
	}
	t.Logf("%d accepted through the first instance, %d not sent (no bind)", sent, len(errs))
}

// logCount counts log records by level.
type logCount struct {
	mu    sync.Mutex
	warns []string
}

func (l *logCount) Enabled(context.Context, slog.Level) bool { return true }
func (l *logCount) WithAttrs([]slog.Attr) slog.Handler       { return l }
func (l *logCount) WithGroup(string) slog.Handler            { return l }
func (l *logCount) Handle(_ context.Context, r slog.Record) error {
	if r.Level >= slog.LevelWarn {
		l.mu.Lock()
		l.warns = append(l.warns, r.Message)
		l.mu.Unlock()
	}
	return nil
}

func (l *logCount) count(prefix string) int {
	l.mu.Lock()
	defer l.mu.Unlock()
	n := 0
	for _, m := range l.warns {
		if strings.HasPrefix(m, prefix) {
			n++
		}
	}
	return n
}

// TestCoordValkeyUnreachable: Valkey's port closes under one of two instances. Its bind
// stays up while its lease would last and keeps sending, at its share of the account's
// tps (one slot of two: 50/s); then it unbinds and the other instance binds the slot. It
// logs the failure once, not per message, does not spin on the closed port, and a Send
// without a bind fails as temporary.
func TestCoordValkeyUnreachable(t *testing.T) {
	skipShort(t)
	smsc := newSMSC(t, smpptest.Config{})
	px := newProxy(t, smsc.Addr())
	cfg := coordConfig(t, smsc, px, 2)
	cfg.TPS = 100
	prefix := registrytest.KeyPrefix(t)
	vx := newProxy(t, valkeyAddr(t))
	logs := &logCount{}
	counted := &stoppable{Coordinator: openStore(t, "redis://"+vx.Addr()+"/0", prefix)}
	a := startInstance(t, cfg, onlySlots{counted, []int{1}}, slog.New(logs))
	waitFor(t, func() bool { n, _ := bound(a); return n == 1 }, "first instance bound")
	b := startInstance(t, cfg, openStore(t, registrytest.ValkeyURL(), prefix), nil)
	waitFor(t, func() bool { n, _ := bound(b); return n == 1 }, "second instance bound")

	vx.Close()
	cut, calls := time.Now(), counted.calls.Load()
	stop := make(chan struct{})
	wait := pump(a, "a", 20, 2*time.Second, stop)
	waitFor(t, func() bool { n, _ := bound(a); return n == 0 }, "first instance unbinds")
	close(stop)
	sent, errs := wait()
	if sent == 0 {
		t.Error("nothing sent while the lease still held")
	}
	for _, err := range errs {
		if !IsTemporary(err) {
			t.Fatalf("Send while Valkey is unreachable: %v (want accepted or temporary)", err)
		}
	}
	waitFor(t, func() bool { n, _ := bound(b); return n == 2 }, "second instance binds the freed slot")
	outage := time.Since(cut)

	ctx, cancel := context.WithTimeout(t.Context(), 200*time.Millisecond)
	_, err := a.Send(ctx, text(1))
	cancel()
	if !errors.Is(err, ErrNoBind) || !IsTemporary(err) {
		t.Errorf("Send without a bind = %v, want temporary ErrNoBind", err)
	}
	fromA := busiestSecond(smsc.Submits(), func(s smpptest.Submit) bool {
		return s.ReceivedAt.After(cut) && strings.HasPrefix(string(s.ShortMessage), "a ")
	})
	if fromA > cfg.TPS/2+1 {
		t.Errorf("cut off from Valkey, the instance sent %d in a second, its share is %d", fromA, cfg.TPS/2)
	}
	if peak := px.peak.Load(); peak > 2 {
		t.Errorf("the SMSC saw %d binds at once, account allows 2", peak)
	}
	// Retries are paced: renewals every 200ms, two binds' acquisitions every 50-100ms,
	// the schedule once a second; a spinning loop would make thousands.
	n := counted.calls.Load() - calls
	if limit := int64(outage.Seconds()*60) + 20; n > limit {
		t.Errorf("%d coordinator calls in %v of outage, want under %d", n, outage.Round(time.Millisecond), limit)
	}
	if w := logs.count("coordinator unreachable"); w != 1 {
		t.Errorf("%d warnings that the coordinator is unreachable, want 1", w)
	}
	logs.mu.Lock()
	t.Logf("%d sent in %v of outage (busiest second %d), %d calls, warnings %q", sent, outage.Round(time.Millisecond), fromA, n, logs.warns)
	logs.mu.Unlock()
}

// TestSetCoordinator: options are checked, and a coordinator comes before Start.
func TestSetCoordinator(t *testing.T) {
	cfg := validConfig()
	p, err := NewPool([]Config{cfg}, Handlers{}, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	for _, o := range []CoordOptions{{LeaseTTL: 100 * time.Millisecond}, {AcquireEvery: -time.Second}} {
		if err := p.SetCoordinator(&stoppable{}, o); err == nil {
			t.Errorf("SetCoordinator(%+v) accepted", o)
		}
	}
	if err := p.SetCoordinator(&stoppable{}, CoordOptions{Holder: "mhero-1"}); err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(p.coord.holder, "mhero-1-") || p.coord.ttl != DefaultLeaseTTL {
		t.Errorf("holder %q, ttl %v; want a suffixed mhero-1, %v", p.coord.holder, p.coord.ttl, DefaultLeaseTTL)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	stopped := &stoppable{}
	stopped.stopped.Store(true)
	p.SetCoordinator(stopped, CoordOptions{})
	if err := p.Start(ctx); err != nil {
		t.Fatal(err)
	}
	defer p.Stop(context.Background())
	if err := p.SetCoordinator(nil, CoordOptions{}); err == nil {
		t.Error("SetCoordinator after Start accepted")
	}
}
