package sms_test

import (
	"context"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/mhero-health/mhero"
	"github.com/mhero-health/mhero/outbox"
	"github.com/mhero-health/mhero/registry"
	"github.com/mhero-health/mhero/registry/demo"
	"github.com/mhero-health/mhero/registry/registrytest"
	"github.com/mhero-health/mhero/reports"
	"github.com/mhero-health/mhero/smpp"
	"github.com/mhero-health/mhero/sms"
)

// The adapters must fit the interfaces the package declares.
var (
	_ sms.Outbox             = (*outbox.Store)(nil)
	_ sms.OptOuts            = (*registry.Store)(nil)
	_ sms.StockReporter      = (*reports.Store)(nil)
	_ sms.ReportedFacilities = sms.StockReports{}
	_ outbox.Audience        = (*registry.Store)(nil)
)

// testPlanner routes the demo country's two networks and counts segments as the pool does.
type testPlanner struct{}

func (testPlanner) Route(to mhero.MSISDN) (string, error) {
	switch {
	case strings.HasPrefix(string(to), "23188"):
		return "lonestar", nil
	case strings.HasPrefix(string(to), "23177"):
		return "orange", nil
	}
	return "", smpp.ErrUnroutable
}

func (testPlanner) Segments(text string) (int, bool) {
	n, c := smpp.CountSegments(text)
	return n, c == smpp.CodingUCS2
}

func (testPlanner) Rate(mno string) float64 {
	return map[string]float64{"lonestar": 0.004, "orange": 0.005}[mno]
}

var commodities = []sms.Commodity{
	{Code: "ors", Name: map[string]string{"en": "ORS sachets", "fr": "Sachets de SRO"}, Aliases: []string{"SRO"}},
	{Code: "zinc", Name: map[string]string{"en": "Zinc tablets", "fr": "Comprimés de zinc"}},
}

// clock is a settable clock for the parts that look at the time (reminders, deadlines).
type clock struct{ ns atomic.Int64 }

func newClock() *clock {
	c := &clock{}
	c.ns.Store(time.Now().UnixNano())
	return c
}
func (c *clock) Now() time.Time          { return time.Unix(0, c.ns.Load()) }
func (c *clock) Advance(d time.Duration) { c.ns.Add(int64(d)) }
func (c *clock) Set(t time.Time)         { c.ns.Store(t.UnixNano()) }

// env is a seeded country with every store two-way SMS works through.
type env struct {
	db    *pgxpool.Pool
	reg   *registry.Store
	out   *outbox.Store
	rep   *reports.Store
	sms   *sms.Store
	proc  *sms.Processor
	clock *clock
}

// newEnv seeds a demo country of n workers in 24 facilities (French speakers among
// them, in the border counties) and builds the stores; edit changes the SMS configuration.
func newEnv(t testing.TB, workers int, edit func(*sms.Config)) *env {
	t.Helper()
	return newCountry(t, demo.Size{Counties: 12, DistrictsPerCounty: 2, Depth: 2, Facilities: 24, Workers: workers, Seed: 7}, edit)
}

// newCountry is newEnv for a country of any size.
func newCountry(t testing.TB, sz demo.Size, edit func(*sms.Config)) *env {
	t.Helper()
	ctx := context.Background()
	db := registrytest.NewDB(t)
	e := &env{db: db, reg: registry.NewStore(db, "LR", nil), out: outbox.NewStore(db, nil), clock: newClock()}
	e.out.Planner, e.out.Currency = testPlanner{}, "USD"
	if err := demo.Seed(ctx, e.reg, sz); err != nil {
		t.Fatal(err)
	}
	e.rep = reports.NewStore(db, e.reg, nil)
	if err := e.rep.SyncCommodities(ctx, []reports.Commodity{{Code: "ors", Name: "ORS sachets"}, {Code: "zinc", Name: "Zinc tablets"}}); err != nil {
		t.Fatal(err)
	}
	cfg := sms.Config{Commodities: commodities, Now: e.clock.Now, SurveyReminder: 24 * time.Hour}
	if edit != nil {
		edit(&cfg)
	}
	s, err := sms.NewStore(db, sms.Deps{Outbox: e.out, Audience: e.reg, OptOuts: e.reg, Stock: e.rep,
		Reported: sms.StockReports{DB: db}}, cfg, nil)
	if err != nil {
		t.Fatal(err)
	}
	e.sms = s
	e.proc = s.NewProcessor(sms.ProcessorConfig{Batch: 50})
	return e
}

// mo stores an inbound SMS as the SMPP handler does, received at the test clock's now,
// and returns its id.
func (e *env) mo(t testing.TB, from mhero.MSISDN, text string) int64 {
	t.Helper()
	id, err := e.out.RecordInbound(context.Background(), outbox.Inbound{MNO: "lonestar", From: from, To: "384", Body: text,
		Received: e.clock.Now()})
	if err != nil {
		t.Fatal(err)
	}
	return id
}

// drain handles every inbound SMS that can be handled now.
func (e *env) drain(t testing.TB) {
	t.Helper()
	if _, err := e.proc.Drain(context.Background()); err != nil {
		t.Fatal(err)
	}
}

// outcome is what the processor did with one inbound SMS.
type outcome struct {
	handled  bool
	as       string
	worker   int64
	note     string
	reply    string
	replyTo  string
	priority int
}

// givenUp drains SMS id through proc until its attempts (MaxAttempts 2) are used up,
// and checks it was given up and its sender told to try again later.
func (e *env) givenUp(t testing.TB, proc *sms.Processor, id int64) {
	t.Helper()
	ctx := context.Background()
	for range 2 {
		if _, err := proc.Drain(ctx); err != nil {
			t.Fatal(err)
		}
		if _, err := e.db.Exec(ctx, `UPDATE inbound_messages SET retry_at = now() WHERE id = $1 AND handled_at IS NULL`, id); err != nil {
			t.Fatal(err)
		}
	}
	if o := e.outcome(t, id); o.as != sms.HandledFailed || !strings.Contains(o.reply, "try again later") {
		t.Errorf("given up: %+v", o)
	}
}

func (e *env) outcome(t testing.TB, id int64) outcome {
	t.Helper()
	var o outcome
	err := e.db.QueryRow(context.Background(), `SELECT i.handled_at IS NOT NULL, COALESCE(i.handled_as, ''), COALESCE(i.worker_id, 0),
			COALESCE(i.handle_note, ''), COALESCE(m.body, ''), COALESCE(m.msisdn, ''), COALESCE(m.priority, -1)
		FROM inbound_messages i LEFT JOIN messages m ON m.id = i.reply_message_id WHERE i.id = $1`, id).
		Scan(&o.handled, &o.as, &o.worker, &o.note, &o.reply, &o.replyTo, &o.priority)
	if err != nil {
		t.Fatal(err)
	}
	return o
}

// worker picks a reachable worker speaking lang, skipping those in skip.
func (e *env) worker(t testing.TB, lang string, skip ...mhero.WorkerID) (mhero.WorkerID, mhero.MSISDN) {
	t.Helper()
	ids := make([]int64, len(skip))
	for i, s := range skip {
		ids[i] = int64(s)
	}
	var id int64
	var m string
	err := e.db.QueryRow(context.Background(), `SELECT id, msisdn FROM workers
		WHERE active AND NOT opted_out AND language = $1 AND facility_id IS NOT NULL AND id <> ALL($2)
		ORDER BY id LIMIT 1`, lang, ids).Scan(&id, &m)
	if err != nil {
		t.Fatalf("no %s worker: %v", lang, err)
	}
	return mhero.WorkerID(id), mhero.MSISDN(m)
}

func (e *env) count(t testing.TB, sql string, args ...any) int {
	t.Helper()
	var n int
	if err := e.db.QueryRow(context.Background(), sql, args...).Scan(&n); err != nil {
		t.Fatalf("%s: %v", sql, err)
	}
	return n
}

// run starts fn in a goroutine stopped (and waited for) when the test ends.
func run(t testing.TB, fn func(ctx context.Context) error) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	errs := make(chan error, 1)
	wg.Go(func() { errs <- fn(ctx) })
	t.Cleanup(func() {
		cancel()
		wg.Wait()
		if err := <-errs; err != nil {
			t.Errorf("stopped with %v", err)
		}
	})
}

// waitFor polls cond until it holds, failing the test after timeout (a bound on a stuck
// test, not a measure of speed).
func waitFor(t testing.TB, what string, timeout time.Duration, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}
