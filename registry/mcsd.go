package registry

// Incremental sync with iHRIS as an IHE mCSD update consumer (ITI-91, "request care
// services updates").
//
// Each sync asks the FHIR server, per resource type (Location, Organization,
// Practitioner, PractitionerRole), for what changed since the cursor:
//
//	history      GET {base}/{Type}/_history?_since={cursor}&_count={n}
//	lastUpdated  GET {base}/{Type}?_lastUpdated=gt{cursor}&_count={n}
//	(no cursor)  GET {base}/{Type}?_count={n}            the first sync: current versions only
//
// and follows every link[rel=next]. A history may hold several versions of a resource:
// the newest (by lastModified / meta.lastUpdated, else the first listed, as servers list
// newest first) wins. Roles whose practitioner did not change bring in that practitioner
// and all of its current roles (so the first active one still wins), fetched by _id and
// practitioner. The changes then go through the FHIR bundle import (import_fhir.go) in
// one transaction with the rest: a deleted Practitioner (request.method DELETE) or one
// with active=false deactivates its worker; deleted Locations, Organizations and roles
// cannot be applied (mhero keeps facilities while workers point at them, and a deleted
// role does not say whose it was) and are named in the sync's warnings.
//
// A sync is all or nothing: any bad resource (a practitioner without a phone, a facility
// under an unknown location) fails it with every problem recorded, unless partial is set,
// in which case the good changes commit and the bad ones are recorded. The cursor moves
// only when a sync commits, to the FHIR server's own time when the sync started reading
// (Bundle.timestamp, else meta.lastUpdated, else the Date header of each type's first
// page: the earliest), minus an overlap. Changes in the overlap come again; applying them
// twice changes nothing. The lastUpdated mode cannot see deletions (a search lists only
// what exists); history can.
//
// Two instances never sync at once: a PostgreSQL advisory lock, held for the whole sync.

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/mhero-health/mhero"
)

// MCSDConfig is the ihris section of the configuration file.
//
//	ihris:
//	  fhir_url: https://ihris.moh.gov.lr/fhir   # the FHIR base
//	  token_env: MHERO_IHRIS_TOKEN              # optional bearer token
//	  every: 15m
//	  mode: history                             # or lastUpdated
type MCSDConfig struct {
	FHIRURL  string        `yaml:"fhir_url"`
	TokenEnv string        `yaml:"token_env"` // environment variable holding a bearer token; empty: none
	Every    time.Duration `yaml:"every"`     // how often to sync; default 15m
	Mode     string        `yaml:"mode"`      // history (default) or lastUpdated
	// Partial commits the good changes of a sync that has bad ones (recording them), so
	// that one practitioner without a phone does not hold back everybody else's changes.
	// Default false: all or nothing.
	Partial  bool          `yaml:"partial"`
	Overlap  time.Duration `yaml:"overlap"`   // subtracted from the server's time for the next cursor; default 1m
	PageSize int           `yaml:"page_size"` // _count; default 200
	Timeout  time.Duration `yaml:"timeout"`   // per page; default 1m

	token    string
	resolved bool
}

// String describes the configuration without its token (fmt's %v and %+v would print it).
func (c MCSDConfig) String() string {
	token := "none"
	if c.TokenEnv != "" {
		token = "from $" + c.TokenEnv
	}
	return fmt.Sprintf("ihris{fhir_url: %s, mode: %s, every: %s, partial: %t, token: %s}", c.FHIRURL, c.Mode, c.Every, c.Partial, token)
}

// LogValue is how slog writes the configuration: without its token.
func (c MCSDConfig) LogValue() slog.Value { return slog.StringValue(c.String()) }

// Sync modes.
const (
	ModeHistory     = "history"
	ModeLastUpdated = "lastUpdated"
	ModeFull        = "full" // a first sync, with no cursor
)

// Validate checks the section, fills in defaults and reads the token through getenv.
// Every problem is reported at once, each prefixed "ihris.".
func (c *MCSDConfig) Validate(getenv func(string) string) error {
	var errs []error
	bad := func(format string, args ...any) { errs = append(errs, fmt.Errorf("ihris."+format, args...)) }
	c.FHIRURL = strings.TrimRight(strings.TrimSpace(c.FHIRURL), "/")
	if u, err := url.Parse(c.FHIRURL); err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		bad("fhir_url %q: want the FHIR base, such as https://ihris.example.org/fhir", c.FHIRURL)
	} else if u.User != nil || u.RawQuery != "" || u.Fragment != "" {
		bad("fhir_url: no credentials, query or fragment in it (a token goes in token_env)")
	}
	if c.TokenEnv != "" {
		if c.token = getenv(c.TokenEnv); c.token == "" {
			bad("token_env: environment variable %s is not set", c.TokenEnv)
		}
	}
	switch c.Mode {
	case "":
		c.Mode = ModeHistory
	case ModeHistory, ModeLastUpdated:
	default:
		bad("mode %q: want history or lastUpdated", c.Mode)
	}
	if c.Every < 0 || c.Overlap < 0 || c.Timeout < 0 || c.PageSize < 0 {
		bad("every, overlap, timeout and page_size must not be negative")
	}
	if c.Every > 0 && c.Every < time.Minute {
		bad("every must be at least 1m")
	}
	if c.Overlap > time.Hour {
		bad("overlap must be at most 1h")
	}
	if c.PageSize > 1000 {
		bad("page_size must be at most 1000")
	}
	c.Every = orDefault(c.Every, 15*time.Minute)
	c.Overlap = orDefault(c.Overlap, time.Minute)
	c.Timeout = orDefault(c.Timeout, time.Minute)
	c.PageSize = orDefault(c.PageSize, 200)
	c.resolved = len(errs) == 0
	return errors.Join(errs...)
}

func orDefault[T int | time.Duration](v, def T) T {
	if v <= 0 {
		return def
	}
	return v
}

// Sync statuses.
const (
	SyncRunning   = "running"
	SyncSucceeded = "succeeded"
	SyncPartial   = "partial" // committed, with bad resources left out (Partial)
	SyncFailed    = "failed"  // nothing written; the cursor did not move
)

// Who started a sync.
const (
	TriggerSchedule = "schedule"
	TriggerAPI      = "api"
)

// SyncCount is what one resource type brought.
type SyncCount struct {
	Changed int `json:"changed"`           // created or updated since the cursor
	Deleted int `json:"deleted"`           // deleted since the cursor
	Fetched int `json:"fetched,omitempty"` // unchanged, fetched to complete changed roles
}

// SyncRun is one recorded sync.
type SyncRun struct {
	ID          int64                `json:"id"`
	Source      string               `json:"source"`
	Mode        string               `json:"mode"`
	Trigger     string               `json:"trigger"`
	Actor       string               `json:"actor"`
	Status      string               `json:"status"`
	StartedAt   time.Time            `json:"started_at"`
	FinishedAt  *time.Time           `json:"finished_at,omitempty"`
	Since       *time.Time           `json:"since,omitempty"`      // the cursor asked from
	NextSince   *time.Time           `json:"next_since,omitempty"` // the cursor saved, when it committed
	Pages       int                  `json:"pages"`
	Counts      map[string]SyncCount `json:"counts"`
	Created     int                  `json:"created"`
	Updated     int                  `json:"updated"` // existing records the changes matched, changed or not
	Deactivated int                  `json:"deactivated"`
	RowsFailed  int                  `json:"rows_failed"`
	Errors      []mhero.ErrorDetail  `json:"errors"`   // bad resources, named Type/id in each message
	Warnings    []string             `json:"warnings"` // changes mhero cannot apply
	Error       string               `json:"error,omitempty"`
}

// mcsdLockKey is the advisory lock that keeps syncs one at a time across instances.
const mcsdLockKey int64 = 0x6d6865726f_0101

// Syncer keeps the registry in step with iHRIS's FHIR server (see the top of this file).
type Syncer struct {
	s      *Store
	cfg    MCSDConfig
	base   *url.URL
	hc     *http.Client
	log    *slog.Logger
	source string
	// OnSync, when set, is called after every sync Run attempts (metrics, tests).
	OnSync func(*SyncRun, error)
	// checkEvery is how often Run asks whether a sync is due.
	checkEvery time.Duration
}

// NewSyncer returns a Syncer for a configuration that passed Validate. hc may be nil.
func NewSyncer(s *Store, cfg MCSDConfig, hc *http.Client, log *slog.Logger) (*Syncer, error) {
	if !cfg.resolved {
		return nil, errors.New("registry: the ihris configuration must pass Validate before NewSyncer")
	}
	base, err := url.Parse(cfg.FHIRURL)
	if err != nil {
		return nil, err
	}
	if hc == nil {
		hc = &http.Client{}
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &Syncer{s: s, cfg: cfg, base: base, hc: hc, log: log.With("comp", "mcsd"), source: cfg.FHIRURL,
		checkEvery: min(cfg.Every, time.Minute)}, nil
}

// Sync runs one sync now and returns its record. Its outcome, including the FHIR server
// being unreachable or bad resources, is in the record's status and error; an error is
// returned only when nothing could be recorded: ECONFLICT when a sync is already running,
// EFORBIDDEN for a caller limited to a location scope (a sync, like an import, changes
// the whole registry).
func (sy *Syncer) Sync(ctx context.Context) (*SyncRun, error) {
	if p := mhero.PrincipalFromContext(ctx); p != nil && p.Scope != nil {
		return nil, errUnscopedSync
	}
	return sy.sync(ctx, TriggerAPI, false)
}

var errUnscopedSync = mhero.Errorf(mhero.EFORBIDDEN, "iHRIS syncs need an admin key without a location scope.")

func (sy *Syncer) sync(ctx context.Context, trigger string, ifDue bool) (*SyncRun, error) {
	var run *SyncRun
	locked, err := sy.s.withLock(ctx, mcsdLockKey, func(conn *pgxpool.Conn) error {
		if _, err := conn.Exec(ctx, `UPDATE mcsd_syncs SET status = 'failed', finished_at = now(),
			error = 'interrupted: the instance running it stopped' WHERE status = 'running'`); err != nil {
			return err
		}
		if ifDue {
			var due bool
			if err := conn.QueryRow(ctx, `SELECT COALESCE(now() - max(started_at) >= make_interval(secs => $2), true)
				FROM mcsd_syncs WHERE source = $1`, sy.source, sy.cfg.Every.Seconds()).Scan(&due); err != nil || !due {
				return err
			}
		}
		var err error
		run, err = sy.begin(ctx, conn, trigger)
		if err != nil {
			return err
		}
		sy.run(ctx, conn, run)
		return nil
	})
	switch {
	case err != nil:
		return run, err
	case !locked:
		return nil, mhero.Errorf(mhero.ECONFLICT, "An iHRIS sync is already running; try again when it has finished.")
	}
	if run != nil {
		sy.logRun(ctx, run)
	}
	return run, nil
}

// begin records a sync as running and reads its cursor.
func (sy *Syncer) begin(ctx context.Context, q querier, trigger string) (*SyncRun, error) {
	actor := TriggerSchedule
	if p := mhero.PrincipalFromContext(ctx); p != nil {
		actor = p.Name
	}
	run := &SyncRun{Source: sy.source, Mode: sy.cfg.Mode, Trigger: trigger, Actor: actor, Status: SyncRunning,
		Counts: map[string]SyncCount{}, Errors: []mhero.ErrorDetail{}, Warnings: []string{}}
	var since time.Time
	err := q.QueryRow(ctx, `SELECT cursor FROM mcsd_sync_state WHERE source = $1`, sy.source).Scan(&since)
	switch {
	case err == nil:
		run.Since = &since
	case isNoRows(err):
		run.Mode = ModeFull
	default:
		return nil, err
	}
	err = q.QueryRow(ctx, `INSERT INTO mcsd_syncs (source, mode, trigger, actor, since) VALUES ($1, $2, $3, $4, $5)
		RETURNING id, started_at`, run.Source, run.Mode, run.Trigger, run.Actor, run.Since).Scan(&run.ID, &run.StartedAt)
	return run, err
}

func (sy *Syncer) logRun(ctx context.Context, r *SyncRun) {
	attrs := []any{"sync_id", r.ID, "mode", r.Mode, "trigger", r.Trigger, "status", r.Status, "pages", r.Pages,
		"created", r.Created, "updated", r.Updated, "deactivated", r.Deactivated, "rows_failed", r.RowsFailed}
	switch r.Status {
	case SyncFailed:
		sy.log.ErrorContext(ctx, "iHRIS sync failed", append(attrs, "error", r.Error)...)
	case SyncPartial:
		sy.log.WarnContext(ctx, "iHRIS sync left bad resources out", attrs...)
	default:
		sy.log.InfoContext(ctx, "iHRIS sync finished", attrs...)
	}
}

// Run syncs every cfg.Every until ctx ends. Instances share the schedule through the
// recorded syncs: the first to find one due runs it; the first is due at start.
func (sy *Syncer) Run(ctx context.Context) error {
	t := time.NewTicker(sy.checkEvery)
	defer t.Stop()
	for {
		run, err := sy.sync(ctx, TriggerSchedule, true)
		conflict := mhero.ErrorCode(err) == mhero.ECONFLICT
		if err != nil && ctx.Err() == nil && !conflict {
			sy.log.ErrorContext(ctx, "scheduled iHRIS sync", "error", err)
		}
		if sy.OnSync != nil && (run != nil || (err != nil && !conflict)) {
			sy.OnSync(run, err)
		}
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
	}
}
