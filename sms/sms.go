// Package sms is two-way SMS with health workers: the keyword router, opt-out, surveys
// and reminders.
//
// It is a top-level package because none of the fixed ones is its home: it reads what
// the SMPP binds stored (the outbox's inbound_messages), acts on the registry (STOP and
// START), on the reports (STOCK) and on its own tables (surveys, schedules), and answers
// through the outbox. smpp keeps no state, registry and reports must not know about
// messages, and the outbox is the record of messages, not of conversations. It imports
// outbox (for its message and broadcast types) and reports (for the stock report's);
// registry is reached through small interfaces that *registry.Store satisfies.
//
// # Inbound pipeline
//
// Every MO SMS is stored by the SMPP handler (outbox.RecordInbound) with handled_at NULL
// before the SMSC is acknowledged. A Processor claims unhandled ones in batches (FOR
// UPDATE SKIP LOCKED, oldest first, only a sender's oldest unhandled SMS so that one
// person's messages are handled in the order they came), and for each: finds the sender
// in the registry, routes it (STOP/START/HELP and a complete STOCK report first, then an
// answer to the sender's open survey question, then a late answer to a closed survey,
// then the other keywords), does what it asks (the opt-outs and stock reports with the
// registry's and the reports' batch APIs, a few statements for the whole batch), queues
// the reply at PriorityReply and records what it did, all in the claim's transaction. An
// SMS from a number the registry does not know is kept and answered politely. Nothing is
// dropped: an SMS whose handling fails for a passing reason (the reports' database is
// down) waits and is tried again; after MaxAttempts it is marked failed, kept, and the
// worker told to try later.
//
// # Surveys
//
// A survey is sent like a broadcast (one per language, so each worker is asked in their
// own), answered by SMS or USSD question by question, reminded once, and closed at its
// deadline. See Store.CreateSurvey.
//
// # Reminders
//
// A schedule creates a broadcast at each slot of a cron-like spec in the deployment's
// time zone, with the target resolved afresh; a reporting reminder leaves out the workers
// whose facility already reported. See Scheduler.
package sms

import (
	"context"
	"embed"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/mhero-health/mhero"
	"github.com/mhero-health/mhero/outbox"
	"github.com/mhero-health/mhero/reports"
)

//go:embed migrations/*.sql
var migrations embed.FS

// Migrations returns the package's versioned SQL migrations (goose format). Apply them
// after the registry's and the outbox's, tracked in their own table:
//
//	registry.MigrateFS(ctx, url, sms.Migrations(), "goose_sms_version", log)
func Migrations() fs.FS {
	sub, _ := fs.Sub(migrations, "migrations")
	return sub
}

// Outbox is what the package needs of the outbox (*outbox.Store).
type Outbox interface {
	// EnqueueBatch queues messages in tx (the caller's transaction).
	EnqueueBatch(ctx context.Context, tx pgx.Tx, msgs []outbox.NewMessage) ([]int64, error)
	CreateBroadcast(ctx context.Context, aud outbox.Audience, in outbox.BroadcastInput) (*outbox.Broadcast, bool, error)
	CancelBroadcast(ctx context.Context, id int64) (int, error)
}

// OptOuts records STOP and START (*registry.Store).
type OptOuts interface {
	SetOptOut(ctx context.Context, m mhero.MSISDN, optedOut bool) error
}

// OptOutBatcher records many STOP and START in the caller's transaction
// (*registry.Store): errs[i] is msisdns[i]'s outcome, as SetOptOut's error. When
// Deps.OptOuts is one too, a Processor records its batch's opt-outs with it, in the
// batch's transaction.
type OptOutBatcher interface {
	SetOptOuts(ctx context.Context, tx pgx.Tx, msisdns []mhero.MSISDN, optedOut []bool) (errs []error, err error)
}

// StockReporter stores a stock count (*reports.Store). A *mhero.Error with EVALIDATION
// is a report the worker must correct; any other error is passing and the SMS is tried
// again.
type StockReporter interface {
	SubmitStockReport(ctx context.Context, in reports.StockInput) (*reports.StockReport, error)
}

// StockBatchReporter stores many stock counts in the caller's transaction
// (*reports.Store), each result as SubmitStockReport's. When Deps.Stock is one too, a
// Processor stores its batch's STOCK reports with it, in the batch's transaction.
type StockBatchReporter interface {
	SubmitStockReports(ctx context.Context, tx pgx.Tx, ins []reports.StockInput) ([]reports.StockResult, error)
}

// ReportedFacilities says which facilities have a stock report in [from, to). StockReports
// (in this package, on the reports' table) is one.
type ReportedFacilities interface {
	FacilitiesReported(ctx context.Context, from, to time.Time) ([]mhero.FacilityID, error)
}

// Deps are the other components the package works through.
type Deps struct {
	Outbox   Outbox          // required
	Audience outbox.Audience // resolves targets (*registry.Store); required for surveys and schedules
	OptOuts  OptOuts         // required for STOP and START; best also an OptOutBatcher
	Stock    StockReporter   // nil: STOCK is answered "not available"; best also a StockBatchReporter
	Reported ReportedFacilities
}

// Defaults.
const (
	DefaultSurveyReminder = 24 * time.Hour
	DefaultLateWindow     = 7 * 24 * time.Hour
	DefaultRepliesPerHour = 30
)

// Config is the deployment's two-way SMS. Zero values take defaults.
type Config struct {
	// Languages the deployment speaks; the first is the fallback (replies to unknown
	// numbers, workers whose language has no texts). Default: en, fr. Each needs keywords
	// and texts: built in for en and fr, from Keywords and Texts for any other.
	Languages []string
	// Keywords adds words to a language's commands (DefaultKeywords are kept).
	Keywords map[string]Keywords
	// Texts overrides replies field by field.
	Texts map[string]Texts
	// Commodities workers report stock of (the configuration's commodities list).
	Commodities []Commodity
	// SurveyReminder is how long after a question goes unanswered its reminder is sent
	// when a survey does not say; negative: no reminders by default.
	SurveyReminder time.Duration
	// LateWindow is how long after a survey's deadline a participant's SMS is still taken
	// as a (late) answer to it.
	LateWindow time.Duration
	// TimeZone of the schedules and reporting periods; default UTC.
	TimeZone *time.Location
	// Quiet hours: survey reminders wait for their end.
	Quiet outbox.QuietHours
	// Normalize reads the sender's number as the SMSC gave it (national when its TON was
	// not international) into E.164 digits; registry.ParseMSISDN with the country is the
	// right one. Default: digits only, a leading + or 00 dropped.
	Normalize func(raw string) (mhero.MSISDN, error)
	// RepliesPerHour bounds the replies to one number: an SMS from a number that sent this
	// many in the hour before it is handled but not answered, so that an automatic
	// responder cannot ping-pong with mhero forever.
	RepliesPerHour int
	// Now is the clock; default time.Now.
	Now func() time.Time
}

// Store is the two-way SMS adapter on PostgreSQL. It is safe for concurrent use.
type Store struct {
	db     *pgxpool.Pool
	deps   Deps
	cfg    Config
	log    *slog.Logger
	parser *Parser
	langs  map[string]*language
	lang0  string

	surveysMu sync.RWMutex
	surveys   map[int64]*Survey // definitions never change once created
}

// language is one language's texts with its keyword placeholders filled in.
type language struct {
	code  string
	texts Texts
	vars  map[string]string // {stop} {start} {help} {stock} {codes} {example}
}

// NewStore checks the configuration and returns a Store on a pool whose database has the
// registry's, the outbox's and this package's migrations (the reports' too for STOCK and
// reporting reminders).
func NewStore(db *pgxpool.Pool, deps Deps, cfg Config, log *slog.Logger) (*Store, error) {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	if deps.Outbox == nil {
		return nil, errors.New("sms: an outbox is required")
	}
	cfg = cfg.withDefaults()
	kw := map[string]Keywords{}
	for _, l := range cfg.Languages {
		k := DefaultKeywords[l]
		add := cfg.Keywords[l]
		k.Stop, k.Start = append(slices.Clone(k.Stop), add.Stop...), append(slices.Clone(k.Start), add.Start...)
		k.Help, k.Stock = append(slices.Clone(k.Help), add.Help...), append(slices.Clone(k.Stock), add.Stock...)
		kw[l] = k
	}
	var errs []string
	for l := range cfg.Keywords {
		if !slices.Contains(cfg.Languages, l) {
			errs = append(errs, fmt.Sprintf("keywords for %q, which is not one of the languages %v", l, cfg.Languages))
		}
	}
	parser, err := NewParser(kw, cfg.Commodities)
	if err != nil {
		errs = append(errs, err.Error())
	}
	s := &Store{db: db, deps: deps, cfg: cfg, log: log, parser: parser, langs: map[string]*language{},
		lang0: cfg.Languages[0], surveys: map[int64]*Survey{}}
	for _, l := range cfg.Languages {
		k := kw[l]
		if len(k.Stop) == 0 || len(k.Start) == 0 || len(k.Help) == 0 || len(k.Stock) == 0 {
			errs = append(errs, fmt.Sprintf("language %q needs a keyword for each of stop, start, help and stock", l))
			continue
		}
		t := cfg.Texts[l].merged(DefaultTexts[l])
		if m := t.missing(); len(m) > 0 {
			errs = append(errs, fmt.Sprintf("language %q has no text for %s", l, strings.Join(m, ", ")))
			continue
		}
		s.langs[l] = &language{code: l, texts: t, vars: s.languageVars(k)}
	}
	if len(errs) > 0 {
		return nil, fmt.Errorf("sms configuration: %s", strings.Join(errs, "; "))
	}
	return s, nil
}

func (c Config) withDefaults() Config {
	if len(c.Languages) == 0 {
		c.Languages = []string{"en", "fr"}
	}
	c.Languages = slices.Clone(c.Languages)
	for i, l := range c.Languages {
		c.Languages[i] = strings.ToLower(strings.TrimSpace(l))
	}
	if c.SurveyReminder == 0 {
		c.SurveyReminder = DefaultSurveyReminder
	}
	if c.LateWindow <= 0 {
		c.LateWindow = DefaultLateWindow
	}
	if c.TimeZone == nil {
		c.TimeZone = time.UTC
	}
	if c.Normalize == nil {
		c.Normalize = digitsOnly
	}
	if c.RepliesPerHour <= 0 {
		c.RepliesPerHour = DefaultRepliesPerHour
	}
	if c.Now == nil {
		c.Now = time.Now
	}
	return c
}

func (s *Store) languageVars(k Keywords) map[string]string {
	codes := s.parser.Codes()
	example := "ORS"
	if len(codes) > 0 {
		example = codes[0]
	}
	return map[string]string{"stop": fold(k.Stop[0]), "start": fold(k.Start[0]), "help": fold(k.Help[0]),
		"stock": fold(k.Stock[0]), "codes": strings.Join(codes, ", "), "example": example}
}

// lang returns the language to answer in: the first of prefs the deployment has, else
// its first language.
func (s *Store) lang(prefs ...string) *language {
	for _, p := range prefs {
		if l := s.langs[p]; l != nil {
			return l
		}
	}
	return s.langs[s.lang0]
}

// text fills one of a language's texts with vars and the language's keywords.
func (l *language) text(t string, vars map[string]string) string { return fill(t, vars, l.vars) }

// commodityName is a commodity's name in lang, else its code.
func (s *Store) commodityName(code, lang string) string {
	for _, c := range s.cfg.Commodities {
		if c.Code == code {
			if n := c.Name[lang]; n != "" {
				return n
			}
			if n := c.Name[s.lang0]; n != "" {
				return n
			}
		}
	}
	return strings.ToUpper(code)
}

// digitsOnly is the default Normalize: "+231 88-612 3456" and "00231886123456" are
// "231886123456".
func digitsOnly(raw string) (mhero.MSISDN, error) {
	s := strings.TrimSpace(raw)
	s = strings.TrimPrefix(s, "+")
	s = strings.TrimPrefix(s, "00")
	var b strings.Builder
	for _, r := range s {
		switch {
		case r >= '0' && r <= '9':
			b.WriteRune(r)
		case r == ' ' || r == '-' || r == '.' || r == '(' || r == ')':
		default:
			return "", mhero.Errorf(mhero.EINVALID, "not a phone number")
		}
	}
	if b.Len() < 5 || b.Len() > 15 {
		return "", mhero.Errorf(mhero.EINVALID, "not a phone number")
	}
	return mhero.MSISDN(b.String()), nil
}

func (s *Store) now() time.Time { return s.cfg.Now() }

func (s *Store) tx(ctx context.Context, fn func(pgx.Tx) error) error {
	return pgx.BeginFunc(ctx, s.db, fn)
}

// pgError maps driver errors to application errors; others are wrapped and become
// EINTERNAL at the edge.
func pgError(err error, what string) error {
	var pe *pgconn.PgError
	var me *mhero.Error
	switch {
	case err == nil:
		return nil
	case errors.As(err, &me):
		return err
	case errors.Is(err, pgx.ErrNoRows):
		return mhero.Errorf(mhero.ENOTFOUND, "%s not found.", what)
	case errors.As(err, &pe):
		switch pe.Code {
		case "23505":
			return mhero.Errorf(mhero.ECONFLICT, "%s conflicts with an existing one.", what)
		case "22P02", "22003", "23514", "22001":
			return mhero.Errorf(mhero.EVALIDATION, "%s has an invalid value.", what)
		}
	}
	return fmt.Errorf("%s: %w", strings.ToLower(what), err)
}

// validation builds an EVALIDATION error from details, nil when there are none.
func validation(what string, d []mhero.ErrorDetail) error {
	if len(d) == 0 {
		return nil
	}
	return &mhero.Error{Code: mhero.EVALIDATION, Message: what + " is not valid.", Details: d}
}
