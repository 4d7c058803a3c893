package smpp

import (
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"
)

// Bind modes.
const (
	ModeTransceiver = "transceiver"          // one bind_transceiver connection per bind
	ModeTxRx        = "transmitter+receiver" // a bind_transmitter and a bind_receiver connection per bind
)

// Defaults applied by Config.withDefaults for fields left zero.
const (
	DefaultPort                = 2775
	DefaultBinds               = 1
	DefaultWindow              = 10
	DefaultEnquireLink         = 30 * time.Second
	DefaultResponseTimeout     = 10 * time.Second
	DefaultValidity            = 24 * time.Hour
	DefaultInboundWorkers      = 8
	DefaultReconnectMin        = 500 * time.Millisecond
	DefaultReconnectMax        = 30 * time.Second
	DefaultBreakerFailures     = 5
	DefaultBreakerTimeout      = 30 * time.Second
	DefaultMOReassemblyTimeout = 5 * time.Minute
	DefaultMOReassemblyMax     = 1024
)

// Config is one MNO account: where its SMSC is, how many binds it allows and how fast,
// and how it answers. The YAML names match the smsc: section of the server's config file.
// Zero values take the documented defaults.
type Config struct {
	Name        string `yaml:"name"`         // MNO account name, unique; used in logs, metrics and results
	Host        string `yaml:"host"`         // SMSC host
	Port        int    `yaml:"port"`         // SMSC port; default 2775
	SystemID    string `yaml:"system_id"`    // bind system_id
	PasswordEnv string `yaml:"password_env"` // environment variable holding the password (resolved by cmd)
	Password    string `yaml:"-"`            // the resolved password; never logged
	SystemType  string `yaml:"system_type"`  // bind system_type; usually empty

	Mode   string `yaml:"mode"`   // ModeTransceiver (default) or ModeTxRx
	Binds  int    `yaml:"binds"`  // binds the account allows; default 1
	Window int    `yaml:"window"` // submit_sm in flight per bind; default 10
	// TPS caps submit_sm PDUs per second (each segment counts) across all binds of the
	// account. 0 = adaptive: no cap until the SMSC throttles, then AIMD around what it accepts.
	TPS int `yaml:"tps"`

	SourceAddr string `yaml:"source_addr"` // default sender (short code or alphanumeric)
	// SourceTON and SourceNPI of SourceAddr. When both are 0 and SourceAddr is not all
	// digits, alphanumeric (TON 5, NPI 0) is used.
	SourceTON uint8 `yaml:"source_ton"`
	SourceNPI uint8 `yaml:"source_npi"`

	Prefixes       []string `yaml:"prefixes"`         // E.164 prefixes routed here, "+23188" or "23188"
	RatePerSegment float64  `yaml:"rate_per_segment"` // price of one segment, for billing reports
	// ReceiptIDFormat is how receipts write the SMSC message id, MessageIDFormat how
	// submit_sm_resp does: "decimal", "hex" or "" (decimal digits read as decimal, else
	// hex). Both are normalised with NormalizeMessageID so they compare equal.
	ReceiptIDFormat string `yaml:"receipt_id_format"`
	MessageIDFormat string `yaml:"message_id_format"`
	USSDDialect     string `yaml:"ussd_dialect"` // "standard" (default)

	EnquireLink     time.Duration `yaml:"enquire_link"`     // enquire_link interval; default 30s
	ResponseTimeout time.Duration `yaml:"response_timeout"` // wait for any response; default 10s
	// Validity is the validity period put on every submit_sm (relative format) unless the
	// message sets its own; default 24h, negative = none (the SMSC's default).
	Validity time.Duration `yaml:"validity"`
	// DataCoding forces the coding of outgoing text: "" (GSM 7-bit where it fits, else
	// UCS-2), "gsm7", "latin1" or "ucs2", for SMSCs that mishandle one of them.
	DataCoding string `yaml:"data_coding"`

	// Statuses overrides the handling of submit_sm_resp command_status values; keys are
	// "0x58", "88" or "ESME_RTHROTTLED". Unlisted statuses use the defaults
	// (DefaultStatuses), and any status absent from both fails the message.
	Statuses map[StatusCode]StatusRule `yaml:"statuses"`

	InboundWorkers      int           `yaml:"inbound_workers"`       // concurrent deliver_sm handlers per connection; default 8
	ReconnectMin        time.Duration `yaml:"reconnect_min"`         // first reconnect delay; default 500ms
	ReconnectMax        time.Duration `yaml:"reconnect_max"`         // reconnect delay cap; default 30s
	BreakerFailures     int           `yaml:"breaker_failures"`      // consecutive transport failures that open a bind's breaker; default 5
	BreakerTimeout      time.Duration `yaml:"breaker_timeout"`       // open → half-open after; default 30s
	MOReassemblyTimeout time.Duration `yaml:"mo_reassembly_timeout"` // wait for all parts of a long MO; default 5m
	MOReassemblyMax     int           `yaml:"mo_reassembly_max"`     // incomplete long MOs held at once; default 1024
}

// StatusCode is an SMPP command_status. As text it reads "0x58", "88" or an ESME_ name.
type StatusCode uint32

// UnmarshalText accepts hexadecimal ("0x58"), decimal ("88") or a known name
// ("ESME_RTHROTTLED").
func (c *StatusCode) UnmarshalText(b []byte) error {
	s := strings.TrimSpace(string(b))
	if v, err := strconv.ParseUint(s, 0, 32); err == nil {
		*c = StatusCode(v)
		return nil
	}
	for v := uint32(0); v < 0x100; v++ {
		if strings.EqualFold(statusName(v), s) {
			*c = StatusCode(v)
			return nil
		}
	}
	return fmt.Errorf("unknown command_status %q", s)
}

// MarshalText writes the status as "0x58".
func (c StatusCode) MarshalText() ([]byte, error) { return []byte(statusLabel(uint32(c))), nil }

// StatusAction is what the pool does with a submit_sm_resp status.
type StatusAction string

const (
	ActionFail     StatusAction = "fail"     // fail the message, status kept in *SubmitError
	ActionRetry    StatusAction = "retry"    // send again after RetryAfter, up to MaxRetries times
	ActionThrottle StatusAction = "throttle" // like retry, and cut the MNO's send rate first
)

// StatusRule is the handling of one command_status.
type StatusRule struct {
	Action     StatusAction  `yaml:"action"`
	RetryAfter time.Duration `yaml:"retry_after"`
	MaxRetries int           `yaml:"max_retries"`
}

// DefaultStatuses is the status table every MNO starts from. Throttling waits
// milliseconds, not the minute some gateways use: the adaptive rate (or the TPS cap) does
// the pacing, the delay only spreads the retries.
func DefaultStatuses() map[StatusCode]StatusRule {
	return map[StatusCode]StatusRule{
		StatusCode(StatusThrottled):  {Action: ActionThrottle, RetryAfter: 20 * time.Millisecond, MaxRetries: 50},
		StatusCode(StatusMsgQFul):    {Action: ActionThrottle, RetryAfter: 100 * time.Millisecond, MaxRetries: 50},
		StatusCode(StatusSysErr):     {Action: ActionRetry, RetryAfter: time.Second, MaxRetries: 3},
		StatusCode(StatusSubmitFail): {Action: ActionRetry, RetryAfter: time.Second, MaxRetries: 2},
		StatusCode(StatusUnknownErr): {Action: ActionRetry, RetryAfter: time.Second, MaxRetries: 2},
	}
}

// Addr is host:port.
func (c *Config) Addr() string { return c.Host + ":" + strconv.Itoa(c.Port) }

// withDefaults returns a copy with every zero field set to its default.
func (c Config) withDefaults() Config {
	def := func(d *time.Duration, v time.Duration) {
		if *d == 0 {
			*d = v
		}
	}
	defInt := func(d *int, v int) {
		if *d == 0 {
			*d = v
		}
	}
	defInt(&c.Port, DefaultPort)
	defInt(&c.Binds, DefaultBinds)
	defInt(&c.Window, DefaultWindow)
	defInt(&c.InboundWorkers, DefaultInboundWorkers)
	defInt(&c.BreakerFailures, DefaultBreakerFailures)
	defInt(&c.MOReassemblyMax, DefaultMOReassemblyMax)
	def(&c.EnquireLink, DefaultEnquireLink)
	def(&c.ResponseTimeout, DefaultResponseTimeout)
	def(&c.Validity, DefaultValidity)
	def(&c.ReconnectMin, DefaultReconnectMin)
	def(&c.ReconnectMax, DefaultReconnectMax)
	def(&c.BreakerTimeout, DefaultBreakerTimeout)
	def(&c.MOReassemblyTimeout, DefaultMOReassemblyTimeout)
	if c.Mode == "" {
		c.Mode = ModeTransceiver
	}
	if c.USSDDialect == "" {
		c.USSDDialect = "standard"
	}
	if c.SourceTON == 0 && c.SourceNPI == 0 && c.SourceAddr != "" && !allDigits(c.SourceAddr) {
		c.SourceTON = 5 // alphanumeric
	}
	st := DefaultStatuses()
	for k, v := range c.Statuses {
		st[k] = v
	}
	c.Statuses = st
	p := make([]string, len(c.Prefixes))
	for i, s := range c.Prefixes {
		p[i] = strings.TrimPrefix(strings.TrimSpace(s), "+")
	}
	c.Prefixes = p
	return c
}

// Validate reports every problem of the config at once (errors.Join), so an operator
// fixes the file in one pass. Zero values that have defaults are fine.
func (c *Config) Validate() error {
	var errs []error
	bad := func(field, format string, args ...any) {
		errs = append(errs, fmt.Errorf("smsc %q: %s: %s", c.Name, field, fmt.Sprintf(format, args...)))
	}
	if c.Name == "" {
		bad("name", "required")
	}
	if c.Host == "" {
		bad("host", "required")
	}
	if c.Port < 0 || c.Port > 65535 {
		bad("port", "%d is not a TCP port", c.Port)
	}
	if c.SystemID == "" {
		bad("system_id", "required")
	} else if len(c.SystemID) > 15 {
		bad("system_id", "longer than SMPP's 15 characters")
	}
	if len(c.SystemType) > 12 {
		bad("system_type", "longer than SMPP's 12 characters")
	}
	switch c.Mode {
	case "", ModeTransceiver, ModeTxRx:
	default:
		bad("mode", "%q is not %s or %s", c.Mode, ModeTransceiver, ModeTxRx)
	}
	if c.Binds < 0 || c.Binds > 64 {
		bad("binds", "%d is outside 1..64", c.Binds)
	}
	if c.Window < 0 || c.Window > 10000 {
		bad("window", "%d is outside 1..10000", c.Window)
	}
	if c.TPS < 0 {
		bad("tps", "negative")
	}
	if len(c.SourceAddr) > 20 {
		bad("source_addr", "longer than 20 characters")
	} else if c.SourceAddr != "" && !allDigits(c.SourceAddr) && len(c.SourceAddr) > 11 {
		bad("source_addr", "alphanumeric sender longer than 11 characters")
	}
	for _, p := range c.Prefixes {
		if d := strings.TrimPrefix(strings.TrimSpace(p), "+"); d == "" || !allDigits(d) {
			bad("prefixes", "%q is not an E.164 prefix", p)
		}
	}
	if c.RatePerSegment < 0 {
		bad("rate_per_segment", "negative")
	}
	for name, f := range map[string]string{"receipt_id_format": c.ReceiptIDFormat, "message_id_format": c.MessageIDFormat} {
		switch f {
		case "", "hex", "decimal":
		default:
			bad(name, "%q is not hex or decimal", f)
		}
	}
	switch c.USSDDialect {
	case "", "standard":
	default:
		bad("ussd_dialect", "%q is not supported (standard)", c.USSDDialect)
	}
	switch c.DataCoding {
	case "", "gsm7", "latin1", "ucs2":
	default:
		bad("data_coding", "%q is not gsm7, latin1 or ucs2", c.DataCoding)
	}
	for name, d := range map[string]time.Duration{
		"enquire_link": c.EnquireLink, "response_timeout": c.ResponseTimeout,
		"reconnect_min": c.ReconnectMin, "reconnect_max": c.ReconnectMax,
		"breaker_timeout": c.BreakerTimeout, "mo_reassembly_timeout": c.MOReassemblyTimeout,
	} {
		if d < 0 {
			bad(name, "negative duration %s", d)
		}
	}
	if c.ReconnectMin > 0 && c.ReconnectMax > 0 && c.ReconnectMin > c.ReconnectMax {
		bad("reconnect_min", "greater than reconnect_max")
	}
	for _, n := range []struct {
		name string
		v    int
	}{{"inbound_workers", c.InboundWorkers}, {"breaker_failures", c.BreakerFailures}, {"mo_reassembly_max", c.MOReassemblyMax}} {
		if n.v < 0 {
			bad(n.name, "negative")
		}
	}
	for code, r := range c.Statuses {
		switch r.Action {
		case ActionFail, ActionRetry, ActionThrottle:
		default:
			bad("statuses", "%s: action %q is not fail, retry or throttle", statusLabel(uint32(code)), r.Action)
		}
		if r.RetryAfter < 0 || r.MaxRetries < 0 {
			bad("statuses", "%s: negative retry_after or max_retries", statusLabel(uint32(code)))
		}
	}
	return errors.Join(errs...)
}

func allDigits(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return false
		}
	}
	return s != ""
}
