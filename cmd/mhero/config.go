package main

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/url"
	"os"
	"slices"
	"strings"
	"time"

	"github.com/mhero-health/mhero/outbox"
	"github.com/mhero-health/mhero/registry"
	"github.com/mhero-health/mhero/reports"
	"github.com/mhero-health/mhero/smpp"
	"github.com/mhero-health/mhero/ussd"
	"go.yaml.in/yaml/v3"
)

// Config is everything the server reads at start: the environment (12-factor) and the
// YAML file it names. Only cmd reads the environment.
type Config struct {
	DatabaseURL     string        // MHERO_DATABASE_URL
	ValkeyURL       string        // MHERO_VALKEY_URL
	ValkeyPrefix    string        // MHERO_VALKEY_PREFIX: starts every key, so deployments (and tests) can share a server
	HTTPAddr        string        // MHERO_HTTP_ADDR
	LogLevel        slog.Level    // MHERO_LOG_LEVEL: debug, info, warn, error
	LogFormat       string        // MHERO_LOG_FORMAT: json or text; default text on a terminal, else json
	ConfigFile      string        // MHERO_CONFIG
	ShutdownTimeout time.Duration // MHERO_SHUTDOWN_TIMEOUT: bound on a graceful stop

	File File // the parsed YAML file
}

// File is the structured part of the configuration (MHERO_CONFIG).
type File struct {
	Country     string        `yaml:"country"`  // default region for national-format phone numbers
	Currency    string        `yaml:"currency"` // of the SMS rates
	SMSC        []smpp.Config `yaml:"smsc"`     // one entry per MNO account
	USSD        USSDConfig    `yaml:"ussd"`
	Commodities []Commodity   `yaml:"commodities"`
	// TimeZone is the deployment's IANA time zone (quiet hours, schedules); default UTC.
	TimeZone  string          `yaml:"time_zone"`
	Messaging MessagingConfig `yaml:"messaging"`
	SMS       SMSConfig       `yaml:"sms"`
	// DHIS2 exports aggregated stock to DHIS2 (optional).
	DHIS2 *reports.DHIS2Config `yaml:"dhis2"`
	// IHRIS keeps the registry in step with iHRIS's FHIR server (optional).
	IHRIS *registry.MCSDConfig `yaml:"ihris"`

	zone  *time.Location
	quiet outbox.QuietHours
}

// MessagingConfig tunes the outbox's dispatcher and pacing. Zero values take defaults.
type MessagingConfig struct {
	// QuietHours ("21:00-07:00", in time_zone): paced and bulk broadcasts are not
	// delivered then; alerts ignore them. Empty: none.
	QuietHours   string        `yaml:"quiet_hours"`
	Concurrency  int           `yaml:"concurrency"`   // sends in flight per instance; default 50
	Batch        int           `yaml:"batch"`         // messages claimed per query; default 100
	Lease        time.Duration `yaml:"lease"`         // how long a claim keeps other instances away; default 2m
	ReceiptBatch int           `yaml:"receipt_batch"` // receipts committed per transaction at most; default 256
}

// USSDConfig is the USSD service (ussd.Engine and its gateways).
type USSDConfig struct {
	ServiceCode string                   `yaml:"service_code"`
	Menus       string                   `yaml:"menus"`        // folder of menu YAML; "": the menus built into the binary
	Gateways    map[string]GatewayConfig `yaml:"gateways"`     // HTTP aggregators served, by gateway name
	ScreenLimit int                      `yaml:"screen_limit"` // characters per screen; default 182
	SessionTTL  time.Duration            `yaml:"session_ttl"`  // idle session kept (and resumable) this long; default 180s
	RateLimit   int                      `yaml:"rate_limit"`   // hops per minute per phone; default 60
	// DirectoryTTL lets a new session reuse a worker's registry lookup this long (0: off):
	// a deactivation or an SMS opt-out then reaches new sessions within it.
	DirectoryTTL time.Duration `yaml:"directory_ttl"`
	// RememberedStatesMB bounds the session states this instance keeps of what it saved,
	// so a session's next hop here costs one Valkey round trip instead of two; default 16,
	// -1: off.
	RememberedStatesMB int `yaml:"remembered_states_mb"`
}

// GatewayConfig authenticates one USSD aggregator.
type GatewayConfig struct {
	Allow       []string `yaml:"allow"`        // CIDRs allowed to call
	SecretEnv   string   `yaml:"secret_env"`   // environment variable holding a shared secret
	ScreenLimit int      `yaml:"screen_limit"` // this aggregator's screen limit, if below the service's

	secret string // resolved from SecretEnv
}

// Commodity is one item workers report stock of, named in every menu language.
type Commodity struct {
	Code    string            `yaml:"code"`
	Name    map[string]string `yaml:"name"`
	Aliases []string          `yaml:"aliases"` // other words workers type for it in an SMS ("SRO")
}

// DefaultConfig is a loopback development setup.
func DefaultConfig() Config {
	return Config{
		DatabaseURL:     "postgres://localhost:5432/mhero?sslmode=disable",
		ValkeyURL:       "redis://127.0.0.1:6379/0",
		ValkeyPrefix:    "mhero:",
		HTTPAddr:        "127.0.0.1:8080",
		LogLevel:        slog.LevelInfo,
		ConfigFile:      "mhero.yaml",
		ShutdownTimeout: 30 * time.Second,
		File:            File{Country: "LR", Currency: "USD"},
	}
}

// LoadConfig reads the environment through getenv and the YAML file it names, and
// reports every problem at once.
func LoadConfig(getenv func(string) string) (Config, error) {
	c := DefaultConfig()
	var errs []error
	set := func(name string, dst *string) {
		if v := getenv(name); v != "" {
			*dst = v
		}
	}
	set("MHERO_DATABASE_URL", &c.DatabaseURL)
	set("MHERO_VALKEY_URL", &c.ValkeyURL)
	set("MHERO_VALKEY_PREFIX", &c.ValkeyPrefix)
	set("MHERO_HTTP_ADDR", &c.HTTPAddr)
	set("MHERO_LOG_FORMAT", &c.LogFormat)
	explicitFile := getenv("MHERO_CONFIG") != ""
	set("MHERO_CONFIG", &c.ConfigFile)
	if v := getenv("MHERO_LOG_LEVEL"); v != "" {
		if err := c.LogLevel.UnmarshalText([]byte(v)); err != nil {
			errs = append(errs, fmt.Errorf("MHERO_LOG_LEVEL=%q: want debug, info, warn or error", v))
		}
	}
	if v := getenv("MHERO_SHUTDOWN_TIMEOUT"); v != "" {
		d, err := time.ParseDuration(v)
		if err != nil || d <= 0 {
			errs = append(errs, fmt.Errorf("MHERO_SHUTDOWN_TIMEOUT=%q: want a positive duration such as 30s", v))
		} else {
			c.ShutdownTimeout = d
		}
	}
	if c.LogFormat != "" && c.LogFormat != "json" && c.LogFormat != "text" {
		errs = append(errs, fmt.Errorf("MHERO_LOG_FORMAT=%q: want json or text", c.LogFormat))
	}
	if u, err := url.Parse(c.DatabaseURL); err != nil || (u.Scheme != "postgres" && u.Scheme != "postgresql") {
		errs = append(errs, fmt.Errorf("MHERO_DATABASE_URL: want postgres://user@host:port/db"))
	}
	if u, err := url.Parse(c.ValkeyURL); err != nil || (u.Scheme != "redis" && u.Scheme != "rediss" && u.Scheme != "valkey" && u.Scheme != "valkeys") {
		errs = append(errs, fmt.Errorf("MHERO_VALKEY_URL: want redis://host:port/db (or valkey://)"))
	}
	if _, _, err := net.SplitHostPort(c.HTTPAddr); err != nil {
		errs = append(errs, fmt.Errorf("MHERO_HTTP_ADDR=%q: want host:port", c.HTTPAddr))
	}

	b, err := os.ReadFile(c.ConfigFile)
	switch {
	case err == nil:
		if err := c.File.parse(bytes.NewReader(b), getenv); err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", c.ConfigFile, err))
		}
	case errors.Is(err, os.ErrNotExist) && !explicitFile:
		// No file: defaults only (no SMSC binds). serve says so at start.
	default:
		errs = append(errs, fmt.Errorf("MHERO_CONFIG: %w", err))
	}
	return c, errors.Join(errs...)
}

// parse reads the YAML strictly (unknown keys are errors: a typo must not silently
// disable a setting), resolves secrets from the environment and validates.
func (f *File) parse(r io.Reader, getenv func(string) string) error {
	dec := yaml.NewDecoder(r)
	dec.KnownFields(true)
	if err := dec.Decode(f); err != nil && !errors.Is(err, io.EOF) {
		return err
	}
	var errs []error
	if !registry.ValidRegion(f.Country) {
		errs = append(errs, fmt.Errorf("country %q is not an ISO 3166 region code such as LR", f.Country))
	}
	names := map[string]bool{}
	for i := range f.SMSC {
		s := &f.SMSC[i]
		if names[s.Name] {
			errs = append(errs, fmt.Errorf("smsc[%d]: name %q is used twice", i, s.Name))
		}
		names[s.Name] = true
		if s.PasswordEnv != "" {
			s.Password = getenv(s.PasswordEnv)
			if s.Password == "" {
				errs = append(errs, fmt.Errorf("smsc %q: environment variable %s (password_env) is not set", s.Name, s.PasswordEnv))
			}
		}
		if err := s.Validate(); err != nil {
			errs = append(errs, err) // already names the smsc
		}
	}
	for name, g := range f.USSD.Gateways {
		for _, cidr := range g.Allow {
			if _, _, err := net.ParseCIDR(cidr); err != nil {
				errs = append(errs, fmt.Errorf("ussd.gateways.%s.allow: %q is not a CIDR such as 10.0.0.0/8", name, cidr))
			}
		}
		if g.SecretEnv != "" && getenv(g.SecretEnv) == "" {
			errs = append(errs, fmt.Errorf("ussd.gateways.%s: environment variable %s (secret_env) is not set", name, g.SecretEnv))
		}
		if !slices.Contains(ussd.GatewayNames(), name) {
			errs = append(errs, fmt.Errorf("ussd.gateways.%s: unknown gateway (want %s)", name, strings.Join(ussd.GatewayNames(), ", ")))
		}
		if g.SecretEnv != "" {
			g.secret = getenv(g.SecretEnv)
		}
		f.USSD.Gateways[name] = g
	}
	f.zone = time.UTC
	if f.TimeZone != "" {
		z, err := time.LoadLocation(f.TimeZone)
		if err != nil {
			errs = append(errs, fmt.Errorf("time_zone %q is not an IANA time zone such as Africa/Monrovia", f.TimeZone))
		} else {
			f.zone = z
		}
	}
	q, err := outbox.ParseQuietHours(f.Messaging.QuietHours, f.zone)
	if err != nil {
		errs = append(errs, fmt.Errorf("messaging.quiet_hours: %w", err))
	}
	f.quiet = q
	m := f.Messaging
	if m.Concurrency < 0 || m.Batch < 0 || m.Lease < 0 || m.ReceiptBatch < 0 {
		errs = append(errs, errors.New("messaging: concurrency, batch, lease and receipt_batch must not be negative"))
	}
	if m.Lease != 0 && m.Lease < 2*time.Second {
		errs = append(errs, errors.New("messaging.lease must be at least 2s (a send must fit in half of it)"))
	}
	seen := map[string]bool{}
	for i, c := range f.Commodities {
		if c.Code == "" || seen[strings.ToLower(c.Code)] {
			errs = append(errs, fmt.Errorf("commodities[%d]: code %q is empty or repeated", i, c.Code))
		}
		seen[strings.ToLower(c.Code)] = true
		if len(c.Name) == 0 {
			errs = append(errs, fmt.Errorf("commodities[%d] %q: needs a name in at least one language", i, c.Code))
		}
	}
	if f.DHIS2 != nil {
		if err := f.DHIS2.Validate(getenv); err != nil {
			errs = append(errs, err)
		}
		for code := range f.DHIS2.Commodities {
			if !seen[strings.ToLower(code)] {
				errs = append(errs, fmt.Errorf("dhis2.commodities: %q is not one of the commodities", code))
			}
		}
	}
	if f.IHRIS != nil {
		if err := f.IHRIS.Validate(getenv); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}
