package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/mhero-health/mhero/api"
	"github.com/mhero-health/mhero/outbox"
	"github.com/mhero-health/mhero/outbox/outboxsmpp"
	"github.com/mhero-health/mhero/registry"
	"github.com/mhero-health/mhero/reports"
	"github.com/mhero-health/mhero/sessions"
	"github.com/mhero-health/mhero/smpp"
	"github.com/mhero-health/mhero/sms"
	"github.com/mhero-health/mhero/ussd"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
)

// The adapters must fit the interfaces their consumers declare.
var (
	_ api.Authenticator = (*registry.Store)(nil)
	_ outbox.Audience   = (*registry.Store)(nil)
	_ outbox.Planner    = outboxsmpp.Planner{}
	_ smpp.Coordinator  = (*sessions.Store)(nil)
	_ reports.Places    = (*registry.Store)(nil)
	_ ussd.SessionStore = (*sessions.Store)(nil)
	_ ussd.Directory    = (*registry.Store)(nil)
)

// App is a running server: every component it started, to be stopped in reverse order.
type App struct {
	cfg          Config
	log          *slog.Logger
	db           *pgxpool.Pool
	sessions     *sessions.Store
	smpp         *smpp.Pool
	dispatch     *outbox.Dispatcher
	stopDispatch context.CancelFunc
	dispatched   chan error
	receipts     *outbox.ReceiptRecorder
	stopReceipts context.CancelFunc
	recorded     chan struct{}
	registry     *registry.Store
	reports      *reports.Store
	ussd         *ussd.Engine
	stock        *reports.StockRecorder
	stopStock    context.CancelFunc
	stockDone    chan struct{}
	sms          *sms.Store
	smsProc      *sms.Processor
	stopSMS      context.CancelFunc
	smsDone      chan struct{}
	pusher       *reports.Pusher
	syncer       *registry.Syncer
	stopJobs     context.CancelFunc
	jobs         sync.WaitGroup
	outbox       *outbox.Store
	api          *api.Server
	http         *http.Server
	ln           net.Listener
	served       chan error
}

// Start migrates the database, connects to PostgreSQL and Valkey, binds to the SMSCs and
// starts serving HTTP. It returns once the listener is open; Close stops everything.
func Start(ctx context.Context, cfg Config, log *slog.Logger) (_ *App, err error) {
	a := &App{cfg: cfg, log: log, served: make(chan error, 1)}
	defer func() {
		if err != nil {
			a.Close(context.Background())
		}
	}()
	if err := migrateAll(ctx, cfg.DatabaseURL, log.With("comp", "migrate")); err != nil {
		return nil, fmt.Errorf("migrate PostgreSQL: %w", err)
	}
	if a.db, err = openDB(ctx, cfg.DatabaseURL); err != nil {
		return nil, err
	}
	if a.sessions, err = sessions.Open(ctx, cfg.ValkeyURL, cfg.ValkeyPrefix); err != nil {
		return nil, fmt.Errorf("%w (is Valkey/Redis running? make deps)", err)
	}
	a.registry = registry.NewStore(a.db, cfg.File.Country, log.With("comp", "registry"))
	a.reports = reports.NewStore(a.db, a.registry, log.With("comp", "reports"))
	if err := a.reports.SyncCommodities(ctx, reportCommodities(cfg.File.Commodities)); err != nil {
		return nil, fmt.Errorf("commodities: %w", err)
	}
	a.reports.TimeZone = cfg.File.zone // periods and push times in the country's time
	if cfg.File.DHIS2 != nil {
		if a.pusher, err = reports.NewPusher(a.reports, *cfg.File.DHIS2, nil, log.With("comp", "dhis2")); err != nil {
			return nil, fmt.Errorf("dhis2: %w", err)
		}
	}
	if cfg.File.IHRIS != nil {
		if a.syncer, err = registry.NewSyncer(a.registry, *cfg.File.IHRIS, nil, log.With("comp", "ihris")); err != nil {
			return nil, fmt.Errorf("ihris: %w", err)
		}
	}
	a.outbox = outbox.NewStore(a.db, log.With("comp", "outbox"))
	a.outbox.Quiet, a.outbox.Currency, a.outbox.Audit = cfg.File.quiet, cfg.File.Currency, registry.Audit
	// Before the pool: its MO handler wakes the inbound processor.
	if err := a.newSMS(cfg, log.With("comp", "sms")); err != nil {
		return nil, fmt.Errorf("sms: %w", err)
	}

	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
		registry.NewPoolCollector(a.db), a.outbox.QueueCollector())

	if len(cfg.File.SMSC) > 0 {
		// Receipts are committed in shared transactions; the recorder outlives the pool
		// (Close stops it after the pool has drained its handlers).
		a.receipts = a.outbox.NewReceiptRecorder(cfg.File.Messaging.ReceiptBatch, 0)
		var rctx context.Context
		rctx, a.stopReceipts = context.WithCancel(context.WithoutCancel(ctx))
		a.recorded = make(chan struct{})
		go func() {
			defer close(a.recorded)
			a.receipts.Run(rctx)
		}()
		a.smpp, err = smpp.NewPool(cfg.File.SMSC, smppHandlers(a.outbox, a.receipts,
			func() *ussd.Engine { return a.ussd }, func() *smpp.Pool { return a.smpp }, a.smsProc.Wake), log, reg)
		if err != nil {
			return nil, fmt.Errorf("smpp: %w", err)
		}
		a.outbox.Planner = outboxsmpp.NewPlanner(a.smpp, cfg.File.SMSC)
		// Share each account's binds and TPS with the other instances through Valkey.
		if err := a.smpp.SetCoordinator(a.sessions, smpp.CoordOptions{}); err != nil {
			return nil, fmt.Errorf("smpp: %w", err)
		}
		// The binds live until Close stops them in order (after HTTP and the dispatcher have
		// drained), not until the signal that cancels ctx.
		if err := a.smpp.Start(context.WithoutCancel(ctx)); err != nil {
			return nil, fmt.Errorf("smpp: %w", err)
		}
	}

	a.api = api.New(api.Options{Auth: a.registry, Log: log, Metrics: reg, Gatherer: reg, Ready: a.readyChecks()})
	a.registry.Routes(a.api)
	a.reports.Routes(a.api)
	a.reports.ExportRoutes(a.api, a.pusher)
	a.registry.SyncRoutes(a.api, a.syncer)
	var jctx context.Context
	jctx, a.stopJobs = context.WithCancel(context.WithoutCancel(ctx))
	if a.pusher != nil {
		a.jobs.Go(func() { _ = a.pusher.Run(jctx) })
	}
	if a.syncer != nil {
		a.jobs.Go(func() { _ = a.syncer.Run(jctx) })
	}
	var wake func()
	if a.smpp != nil {
		// The dispatcher outlives Start's context: Close stops it, after HTTP and before
		// the binds, so every send in flight is recorded before the pool unbinds.
		m := cfg.File.Messaging
		a.dispatch = a.outbox.NewDispatcher(outboxsmpp.Sender{Pool: a.smpp},
			outbox.DispatchConfig{Concurrency: m.Concurrency, Batch: m.Batch, Lease: m.Lease}, log.With("comp", "dispatch"))
		var dctx context.Context
		dctx, a.stopDispatch = context.WithCancel(context.WithoutCancel(ctx))
		a.dispatched = make(chan error, 1)
		go func() { a.dispatched <- a.dispatch.Run(dctx) }()
		wake = a.dispatch.Wake
	}
	a.outbox.Routes(a.api, a.registry, wake)
	a.outbox.BroadcastRoutes(a.api, a.registry, wake)
	if err := a.startUSSD(cfg, log.With("comp", "ussd"), wake); err != nil {
		return nil, fmt.Errorf("ussd: %w", err)
	}
	a.sms.Routes(a.api, wake)
	a.startSMS(ctx, cfg, wake)

	if a.ln, err = net.Listen("tcp", cfg.HTTPAddr); err != nil {
		return nil, fmt.Errorf("listen on %s: %w", cfg.HTTPAddr, err)
	}
	a.http = &http.Server{Handler: a.api, ReadHeaderTimeout: 10 * time.Second, IdleTimeout: 2 * time.Minute,
		ErrorLog: slog.NewLogLogger(log.Handler(), slog.LevelWarn)}
	go func() { a.served <- a.http.Serve(a.ln) }()
	log.Info("mhero serving", "addr", a.Addr(), "country", cfg.File.Country, "smsc_accounts", len(cfg.File.SMSC))
	return a, nil
}

func openDB(ctx context.Context, url string) (*pgxpool.Pool, error) {
	pc, err := pgxpool.ParseConfig(url)
	if err != nil {
		return nil, fmt.Errorf("MHERO_DATABASE_URL: %w", err)
	}
	if !strings.Contains(url, "pool_max_conns") {
		// pgxpool's default (the number of CPUs, at least 4) is too few for the
		// dispatcher, receipt and SMS batches, USSD hops and the API at once on a small box.
		pc.MaxConns = 20
	}
	db, err := pgxpool.NewWithConfig(ctx, pc)
	if err != nil {
		return nil, fmt.Errorf("connect PostgreSQL: %w", err)
	}
	if err := db.Ping(ctx); err != nil {
		db.Close()
		return nil, fmt.Errorf("connect PostgreSQL: %w (is it running? make deps)", err)
	}
	return db, nil
}

// readyChecks are what /readyz asks: PostgreSQL, Valkey, and at least one SMSC bind when
// any is configured.
func (a *App) readyChecks() []api.Check {
	checks := []api.Check{
		{Name: "postgres", Func: func(ctx context.Context) (any, error) { return nil, a.db.Ping(ctx) }},
		{Name: "valkey", Func: func(ctx context.Context) (any, error) { return nil, a.sessions.Ping(ctx) }},
	}
	if a.smpp != nil {
		checks = append(checks, api.Check{Name: "smsc", Func: func(ctx context.Context) (any, error) {
			h := a.smpp.Health()
			for _, b := range h {
				// A bind on standby is healthy: other instances hold the account's slots.
				if b.State != smpp.BindDown || b.Standby {
					return h, nil
				}
			}
			return h, errors.New("no SMSC bind is up")
		}})
	}
	return checks
}

// Addr is the HTTP listener's address (useful with MHERO_HTTP_ADDR=127.0.0.1:0).
func (a *App) Addr() string {
	if a.ln == nil {
		return ""
	}
	return a.ln.Addr().String()
}

// Close stops the components in reverse order of start: HTTP stops taking requests and
// finishes those in flight, the SMPP pool drains its windows and unbinds, then the stores
// close. ctx bounds the whole stop.
func (a *App) Close(ctx context.Context) error {
	var errs []error
	if a.http != nil {
		if err := a.http.Shutdown(ctx); err != nil {
			errs = append(errs, fmt.Errorf("http: %w", err))
		}
		if err := <-a.served; err != nil && !errors.Is(err, http.ErrServerClosed) {
			errs = append(errs, err)
		}
	}
	if a.stopSMS != nil {
		a.stopSMS() // the batches in hand commit, then the processor and scheduler return
		select {
		case <-a.smsDone:
		case <-ctx.Done():
			errs = append(errs, fmt.Errorf("sms: still handling at the shutdown bound: %w", ctx.Err()))
		}
	}
	if a.stopJobs != nil {
		a.stopJobs() // a push or sync in flight is recorded as cancelled
		jobsDone := make(chan struct{})
		go func() { a.jobs.Wait(); close(jobsDone) }()
		select {
		case <-jobsDone:
		case <-ctx.Done():
			errs = append(errs, fmt.Errorf("dhis2/ihris: still running at the shutdown bound: %w", ctx.Err()))
		}
	}
	if a.stopDispatch != nil {
		a.stopDispatch()
		select {
		case err := <-a.dispatched:
			if err != nil && !errors.Is(err, context.Canceled) {
				errs = append(errs, fmt.Errorf("dispatch: %w", err))
			}
		case <-ctx.Done():
			errs = append(errs, fmt.Errorf("dispatch: sends still in flight at the shutdown bound: %w", ctx.Err()))
		}
	}
	if a.smpp != nil {
		if err := a.smpp.Stop(ctx); err != nil {
			errs = append(errs, fmt.Errorf("smpp: %w", err))
		}
	}
	if a.stopStock != nil {
		a.stopStock() // stores what the last hops (HTTP and SMPP, both stopped) handed in
		select {
		case <-a.stockDone:
		case <-ctx.Done():
			errs = append(errs, fmt.Errorf("ussd stock reports: still storing at the shutdown bound: %w", ctx.Err()))
		}
	}
	if a.stopReceipts != nil {
		a.stopReceipts() // records what the pool's last handlers handed in, then returns
		select {
		case <-a.recorded:
		case <-ctx.Done():
			errs = append(errs, fmt.Errorf("receipts: still recording at the shutdown bound: %w", ctx.Err()))
		}
	}
	if a.ussd != nil {
		a.ussd.Wait() // the saves of the last hops that ended sessions (each bounded)
	}
	if a.sessions != nil {
		a.sessions.Close()
	}
	if a.db != nil {
		a.db.Close()
	}
	return errors.Join(errs...)
}

func runServe(ctx context.Context, cfg Config, log *slog.Logger, stdout io.Writer) error {
	a, err := Start(ctx, cfg, log)
	if err != nil {
		return err
	}
	return waitAndClose(ctx, a, log)
}

// waitAndClose blocks until ctx ends (SIGINT/SIGTERM) or the listener fails, then stops
// the app within the shutdown bound.
func waitAndClose(ctx context.Context, a *App, log *slog.Logger) error {
	var serveErr error
	select {
	case <-ctx.Done():
	case serveErr = <-a.served:
		a.served <- serveErr // Close waits on it too
	}
	log.Info("shutting down", "timeout", a.cfg.ShutdownTimeout)
	stopCtx, cancel := context.WithTimeout(context.Background(), a.cfg.ShutdownTimeout)
	defer cancel()
	err := a.Close(stopCtx)
	if serveErr != nil && !errors.Is(serveErr, http.ErrServerClosed) {
		return errors.Join(serveErr, err)
	}
	return err
}
