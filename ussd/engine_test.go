package ussd_test

import (
	"context"
	"errors"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/mhero-health/mhero"
	"github.com/mhero-health/mhero/registry/registrytest"
	"github.com/mhero-health/mhero/sessions"
	"github.com/mhero-health/mhero/ussd"
	"github.com/mhero-health/mhero/ussd/ussdtest"
)

// toConfirm walks a stock report to its confirm screen: ORS, 40 on hand.
func toConfirm(t *testing.T, e *env, s ussdtest.Session) {
	t.Helper()
	for _, req := range []func() ussd.Reply{
		func() ussd.Reply { return e.do(t, s, s.Dial("")) },
		func() ussd.Reply { return e.do(t, s, s.Answer("1")) },
		func() ussd.Reply { return e.do(t, s, s.Answer("1")) },
	} {
		if rep := req(); rep.End {
			t.Fatalf("session ended early: %q", rep.Text)
		}
	}
	if rep := e.do(t, s, s.Answer("40")); !strings.HasPrefix(rep.Text, "Send this report?") {
		t.Fatalf("want the confirm screen, got %q", rep.Text)
	}
}

func TestConcurrentRetriesOfTheConfirmHopSubmitOnce(t *testing.T) {
	t.Parallel()
	for _, gateway := range []string{"africastalking", "jsonop"} {
		t.Run(gateway, func(t *testing.T) {
			t.Parallel()
			e := newEnv(t)
			s := e.session(t, gateway, "race-1", "+231886000001")
			toConfirm(t, e, s)
			s.Answer("1") // build the confirm hop once; every copy below is the same request
			confirm := s.Len() - 1

			const copies = 20
			replies := make(chan ussd.Reply, copies)
			errs := make(chan error, copies)
			var wg sync.WaitGroup
			for range copies {
				wg.Go(func() {
					rep, err := ussdtest.Do(e.Client, s, s.Hop(confirm))
					if err != nil {
						errs <- err
						return
					}
					replies <- rep
				})
			}
			wg.Wait()
			close(replies)
			close(errs)
			for err := range errs {
				t.Fatalf("hop: %v", err)
			}
			for rep := range replies {
				if want := "Thank you. Your stock report is recorded. Reference: SR-0001"; rep.Text != want || !rep.End {
					t.Errorf("a copy of the confirm hop got %q (end %v), want END %q", rep.Text, rep.End, want)
				}
			}
			if n := len(e.Actions["stock.submit"].Calls()); n != 1 {
				t.Errorf("stock.submit ran %d times for %d copies of one hop, want once", n, copies)
			}
		})
	}
}

func TestValkeyDownAnswersBusyAndLosesNothing(t *testing.T) {
	t.Parallel()
	if testing.Short() {
		t.Skip("needs Valkey/Redis")
	}
	u, err := url.Parse(registrytest.ValkeyURL())
	if err != nil {
		t.Fatal(err)
	}
	p := registrytest.StartProxy(t, u.Host, 0)
	proxied := *u
	proxied.Host = p.Addr()
	prefix := registrytest.KeyPrefix(t)
	viaProxy, err := sessions.Open(t.Context(), proxied.String(), prefix)
	if err != nil {
		t.Fatalf("connect Valkey through the proxy: %v", err)
	}
	t.Cleanup(viaProxy.Close)
	down := newEnv(t, func(c *ussd.Config) { c.Sessions = viaProxy })

	s := down.session(t, "africastalking", "down-1", "+231886000001")
	toConfirm(t, down, s)
	p.Cut()

	// The confirm hop while Valkey is unreachable: a clear end screen, no report.
	rep := down.do(t, s, s.Answer("1"))
	if want := "Service busy. Please try again in a few minutes."; !rep.End || rep.Text != want {
		t.Errorf("hop with Valkey down = %q (end %v), want END %q", rep.Text, rep.End, want)
	}
	if err := down.Engine.Ping(t.Context()); err == nil {
		t.Error("Ping succeeded with Valkey down; readiness must fail")
	}
	if n := len(down.Actions["stock.submit"].Calls()); n != 0 {
		t.Errorf("stock.submit ran %d times while the session could not be saved", n)
	}

	// Valkey back: the gateway's retry of the same hop finds the session where it was
	// and submits once.
	direct, err := sessions.Open(t.Context(), registrytest.ValkeyURL(), prefix)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(direct.Close)
	up := newEnv(t, func(c *ussd.Config) { c.Sessions = direct })
	s2 := up.session(t, "africastalking", "down-1", "+231886000001")
	for _, in := range []string{"1", "1", "40"} { // build the same cumulative text; send only the last
		s2.Answer(in)
	}
	rep = up.do(t, s2, s2.Answer("1"))
	if want := "Thank you. Your stock report is recorded. Reference: SR-0001"; rep.Text != want {
		t.Errorf("the retried hop after Valkey returned = %q, want %q", rep.Text, want)
	}
	if n := len(up.Actions["stock.submit"].Calls()); n != 1 {
		t.Errorf("stock.submit ran %d times, want once", n)
	}
}

func TestRateLimitEndsAFloodingHandset(t *testing.T) {
	t.Parallel()
	e := newEnv(t, func(c *ussd.Config) { c.RateLimit = 3 })
	s := e.session(t, "africastalking", "flood-1", "+231886000001")
	for i, in := range []string{"", "1", "1"} {
		req := s.Dial("")
		if i > 0 {
			req = s.Answer(in)
		}
		if rep := e.do(t, s, req); rep.End {
			t.Fatalf("hop %d within the limit ended the session: %q", i+1, rep.Text)
		}
	}
	rep := e.do(t, s, s.Answer("40"))
	if want := "Too many requests from this phone. Please wait a minute and dial again."; !rep.End || rep.Text != want {
		t.Errorf("hop over the limit = %q (end %v), want END %q", rep.Text, rep.End, want)
	}
	// Another worker is not affected.
	other := e.session(t, "africastalking", "flood-2", "+231886000002")
	if rep := e.do(t, other, other.Dial("")); rep.End {
		t.Errorf("another worker was limited too: %q", rep.Text)
	}
}

func TestAFailedActionKeepsTheWorkerOnTheConfirmScreen(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		err  error
		hint string
	}{
		{"refused", mhero.Errorf(mhero.EVALIDATION, "Unknown commodity."), "Not sent: please check your answers."},
		{"unavailable", errors.New("connection refused"), "Not sent: service busy. Try again."},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			e := newEnv(t)
			rec := e.Actions["stock.submit"]
			rec.Fail = tt.err
			s := e.session(t, "africastalking", "fail-"+tt.name, "+231886000001")
			toConfirm(t, e, s)
			rep := e.do(t, s, s.Answer("1"))
			if rep.End || !strings.HasPrefix(rep.Text, tt.hint+"\nSend this report?") {
				t.Fatalf("after a failed action = %q (end %v), want the confirm screen under %q", rep.Text, rep.End, tt.hint)
			}
			rec.Fail = nil // the database is back; the worker presses Send again
			rep = e.do(t, s, s.Answer("1"))
			if !rep.End || !strings.Contains(rep.Text, "Reference: SR-0001") {
				t.Errorf("second try = %q, want the thank-you screen", rep.Text)
			}
			if n := len(rec.Calls()); n != 2 {
				t.Errorf("stock.submit called %d times, want 2 (the failure and the success)", n)
			}
			if calls := rec.Calls(); calls[0].Key == calls[1].Key {
				t.Errorf("both attempts had key %q: a new answer needs a new idempotency key", calls[0].Key)
			}
		})
	}
}

func TestAFailingSourceEndsBusyAndTheSessionResumes(t *testing.T) {
	t.Parallel()
	var mu sync.Mutex
	broken := true
	e := newEnv(t, func(c *ussd.Config) {
		c.Sources["facilities"] = ussd.SourceFunc(func(ctx context.Context, r ussd.SourceRequest) ([]ussd.Choice, error) {
			mu.Lock()
			defer mu.Unlock()
			if broken {
				return nil, errors.New("database down")
			}
			return []ussd.Choice{{Value: "PHB", Label: "Phebe Hospital"}}, nil
		})
	})
	s := e.session(t, "africastalking", "src-1", "+231886000001")
	e.do(t, s, s.Dial(""))
	e.do(t, s, s.Answer("3"))
	rep := e.do(t, s, s.Answer("2"))
	if want := "Service busy. Please try again in a few minutes."; !rep.End || rep.Text != want {
		t.Fatalf("source down = %q (end %v), want END %q", rep.Text, rep.End, want)
	}
	mu.Lock()
	broken = false
	mu.Unlock()
	s = e.session(t, "africastalking", "src-2", "+231886000001")
	if rep := e.do(t, s, s.Dial("")); !strings.HasPrefix(rep.Text, "You did not finish") {
		t.Fatalf("next dial = %q, want the resume question", rep.Text)
	}
	if rep := e.do(t, s, s.Answer("1")); rep.Text != "Your facility?\n1. Phebe Hospital\n0. Back" {
		t.Errorf("resumed screen = %q, want the facility list", rep.Text)
	}
}

func TestAnUnreadableStateStartsAfresh(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	ctx := t.Context()
	// What an older version, or a bit flip, might have left.
	_, token, _, err := e.Store.LockUSSD(ctx, "231886000001", time.Second, 0, time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	if err := e.Store.SaveUSSD(ctx, "231886000001", token, []byte(`{"ver":0,"gs":"x"`), time.Minute); err != nil {
		t.Fatal(err)
	}
	s := e.session(t, "africastalking", "garbled-1", "+231886000001")
	if rep := e.do(t, s, s.Dial("")); rep.End || !strings.HasPrefix(rep.Text, "mHero\n1. Stock report") {
		t.Errorf("dial over an unreadable state = %q, want the main menu", rep.Text)
	}
}

func TestAJSONGatewayGapIsApplied(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	s := e.session(t, "jsonop", "gap-1", "+231886000001").(*ussdtest.JSONOp)
	e.do(t, s, s.Dial(""))
	s.Answer("1") // hop 2 is lost on the way
	// Hop 3 names its position; the engine applies it where the gateway says it is,
	// to the screen on show (the lost input never arrived).
	rep := e.do(t, s, s.Answer("1"))
	if !strings.HasPrefix(rep.Text, "Stock report. Which commodity?") {
		t.Errorf("after a lost hop = %q, want the input applied to the main menu", rep.Text)
	}
	// The lost hop turning up late is answered from what the session holds now.
	if rep := e.do(t, s, s.Hop(1)); !strings.HasPrefix(rep.Text, "Stock report. Which commodity?") {
		t.Errorf("the lost hop arriving late = %q, want the current screen", rep.Text)
	}
}

func TestNewEngineNamesWhatTheMenusLack(t *testing.T) {
	_, err := ussd.NewEngine(ussd.Config{Menus: mustMenus(t), Sessions: (*sessions.Store)(nil),
		Directory: ussdtest.NewDirectory(nil, nil), Actions: map[string]ussd.Action{}})
	if err == nil {
		t.Fatal("NewEngine accepted menus whose actions and sources are missing")
	}
	for _, want := range []string{`action "stock.submit"`, `action "referral.submit"`, `source "facilities"`, `source "commodities"`} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("NewEngine error does not name %s:\n%v", want, err)
		}
	}
}

func TestAPanickingActionEndsBusyAndReleasesTheSession(t *testing.T) {
	t.Parallel()
	e := newEnv(t, func(c *ussd.Config) {
		c.Actions["stock.submit"] = ussd.ActionFunc(func(context.Context, ussd.ActionRequest) (map[string]string, error) {
			panic("a bug in an action")
		})
	})
	s := e.session(t, "africastalking", "panic-1", "+231886000001")
	toConfirm(t, e, s)
	if rep := e.do(t, s, s.Answer("1")); !rep.End || !strings.HasPrefix(rep.Text, "Service busy") {
		t.Fatalf("hop whose action panicked = %q (end %v), want END service busy", rep.Text, rep.End)
	}
	// The lock was released and the state left as it was: the next dial offers to resume
	// at once (a held lock would make it wait out its hold and answer busy).
	s2 := e.session(t, "africastalking", "panic-2", "+231886000001")
	if rep := e.do(t, s2, s2.Dial("")); !strings.HasPrefix(rep.Text, "You did not finish") {
		t.Errorf("next dial = %q, want the resume question", rep.Text)
	}
}

// With the registry's answers kept for a while, what the worker changes through the
// menus (their language) still shows in their next session at once.
func TestDirectoryTTLShowsAnActionsChangeAtOnce(t *testing.T) {
	t.Parallel()
	var e *env
	e = newEnv(t, func(c *ussd.Config) {
		c.DirectoryTTL = time.Hour
		c.Actions["language.submit"] = ussd.ActionFunc(func(ctx context.Context, r ussd.ActionRequest) (map[string]string, error) {
			w, err := e.Dir.FindWorkerByMSISDN(ctx, r.Worker.MSISDN)
			if err != nil {
				return nil, err
			}
			w.Language = r.Vars["language"]
			e.Dir.Put(*w)
			return nil, nil
		})
	})
	s := e.session(t, "africastalking", "ttl-1", "+231886000001")
	if rep := e.do(t, s, s.Dial("")); !strings.Contains(rep.Text, "Stock report") {
		t.Fatalf("first session in English: %q", rep.Text)
	}
	e.do(t, s, s.Answer("5"))
	if rep := e.do(t, s, s.Answer("2")); !strings.Contains(rep.Text, "Rapport de stock") {
		t.Fatalf("after switching to French: %q", rep.Text)
	}
	s2 := e.session(t, "africastalking", "ttl-2", "+231886000001")
	if rep := e.do(t, s2, s2.Dial("")); !strings.Contains(rep.Text, "Rapport de stock") {
		t.Errorf("the next session, within the TTL, = %q; want the French main menu", rep.Text)
	}
}

// jointDirectory offers the worker and their facility in one lookup, as the registry
// does, and counts which lookups the engine makes.
type jointDirectory struct {
	*ussdtest.Directory
	mu                         sync.Mutex
	joint, workers, facilities int
}

func (d *jointDirectory) FindWorkerAndFacility(ctx context.Context, m mhero.MSISDN) (*mhero.Worker, *mhero.Facility, error) {
	d.mu.Lock()
	d.joint++
	d.mu.Unlock()
	w, err := d.Directory.FindWorkerByMSISDN(ctx, m)
	if err != nil || w.FacilityID == 0 {
		return w, nil, err
	}
	f, err := d.Directory.FindFacility(ctx, strconv.FormatInt(int64(w.FacilityID), 10))
	return w, f, err
}

func (d *jointDirectory) FindWorkerByMSISDN(ctx context.Context, m mhero.MSISDN) (*mhero.Worker, error) {
	d.mu.Lock()
	d.workers++
	d.mu.Unlock()
	return d.Directory.FindWorkerByMSISDN(ctx, m)
}

func (d *jointDirectory) FindFacility(ctx context.Context, ref string) (*mhero.Facility, error) {
	d.mu.Lock()
	d.facilities++
	d.mu.Unlock()
	return d.Directory.FindFacility(ctx, ref)
}

// A directory that finds the worker and their facility at once is asked once per
// session, and the session shows the same facility (or none) as with two lookups.
func TestEngineFindsWorkerAndFacilityInOneLookupWhereOffered(t *testing.T) {
	var dir *jointDirectory
	e := newEnv(t, func(c *ussd.Config) {
		dir = &jointDirectory{Directory: c.Directory.(*ussdtest.Directory)}
		c.Directory = dir
	})
	for _, tt := range []struct{ phone, facility string }{{"+231886000001", "Bong Mines Clinic"}, {"+231886000005", "none"}} {
		s := e.session(t, "africastalking", "joint-"+tt.phone, tt.phone)
		e.do(t, s, s.Dial(""))
		if rep := e.do(t, s, s.Answer("3")); !strings.Contains(rep.Text, "Facility: "+tt.facility+"\n") {
			t.Errorf("%s's details: %q, want facility %s", tt.phone, rep.Text, tt.facility)
		}
	}
	if dir.joint != 2 || dir.workers != 0 || dir.facilities != 0 {
		t.Errorf("2 sessions made %d joint, %d worker and %d facility lookups; want 2, 0, 0", dir.joint, dir.workers, dir.facilities)
	}
	// With a directory cache, the worker and the facility are each cached on their own.
	dir = nil
	e = newEnv(t, func(c *ussd.Config) {
		dir = &jointDirectory{Directory: c.Directory.(*ussdtest.Directory)}
		c.Directory, c.DirectoryTTL = dir, time.Minute
	})
	for i := range 2 {
		s := e.session(t, "africastalking", "cached-"+strconv.Itoa(i), "+231886000001")
		e.do(t, s, s.Dial(""))
		if i == 0 {
			if rep := e.do(t, s, s.Answer("3")); !strings.Contains(rep.Text, "Facility: Bong Mines Clinic\n") {
				t.Errorf("details: %q", rep.Text)
			}
		}
	}
	if dir.joint != 0 || dir.workers != 1 || dir.facilities != 1 {
		t.Errorf("2 cached sessions made %d joint, %d worker and %d facility lookups; want 0, 1, 1", dir.joint, dir.workers, dir.facilities)
	}
}
