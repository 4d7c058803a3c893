package smpp

import (
	"strings"
	"testing"
	"time"

	"go.yaml.in/yaml/v3"
)

func validConfig() Config {
	return Config{Name: "lonestar", Host: "127.0.0.1", Port: 2775, SystemID: "mhero", Password: "secret",
		SourceAddr: "384", Prefixes: []string{"+23188", "23155"}}
}

func TestConfigValidate(t *testing.T) {
	tests := []struct {
		name   string
		modify func(*Config)
		want   []string // substrings of the joined error; nil = valid
	}{
		{"valid", func(*Config) {}, nil},
		{"zero values take defaults", func(c *Config) { c.Port, c.Binds, c.Window = 0, 0, 0 }, nil},
		{"every problem at once", func(c *Config) {
			c.Name, c.Host, c.SystemID, c.Mode, c.Window, c.TPS = "", "", "", "duplex", -1, -5
		}, []string{"name: required", "host: required", "system_id: required", `mode: "duplex"`, "window:", "tps: negative"}},
		{"bad prefix", func(c *Config) { c.Prefixes = []string{"+231-88"} }, []string{`prefixes: "+231-88"`}},
		{"bad formats", func(c *Config) { c.ReceiptIDFormat, c.DataCoding = "base64", "utf8" },
			[]string{"receipt_id_format", "data_coding"}},
		{"long alphanumeric sender", func(c *Config) { c.SourceAddr = "MinistryOfHealth" }, []string{"alphanumeric sender"}},
		{"bad status action", func(c *Config) {
			c.Statuses = map[StatusCode]StatusRule{0x58: {Action: "ignore"}}
		}, []string{`0x58: action "ignore"`}},
		{"negative duration", func(c *Config) { c.EnquireLink = -time.Second }, []string{"enquire_link: negative"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := validConfig()
			tt.modify(&c)
			err := c.Validate()
			if tt.want == nil {
				if err != nil {
					t.Fatalf("Validate() = %v, want nil", err)
				}
				return
			}
			if err == nil {
				t.Fatalf("Validate() = nil, want errors %q", tt.want)
			}
			for _, w := range tt.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("Validate() = %v, want it to contain %q", err, w)
				}
			}
		})
	}
}

func TestConfigDefaults(t *testing.T) {
	c := Config{Name: "x", Host: "h", SystemID: "s", SourceAddr: "MOH", Prefixes: []string{" +231 "},
		Statuses: map[StatusCode]StatusRule{0x58: {Action: ActionFail}}}.withDefaults()
	if c.Port != DefaultPort || c.Binds != 1 || c.Window != DefaultWindow || c.Mode != ModeTransceiver ||
		c.Validity != DefaultValidity || c.EnquireLink != DefaultEnquireLink || c.ResponseTimeout != DefaultResponseTimeout {
		t.Errorf("withDefaults() = %+v", c)
	}
	if c.SourceTON != 5 {
		t.Errorf("alphanumeric sender TON = %d, want 5", c.SourceTON)
	}
	if c.Prefixes[0] != "231" {
		t.Errorf("prefix = %q, want 231", c.Prefixes[0])
	}
	if c.Statuses[0x58].Action != ActionFail || c.Statuses[0x14].Action != ActionThrottle {
		t.Errorf("statuses = %v: want the override kept and the defaults filled", c.Statuses)
	}
}

func TestStatusCodeUnmarshalText(t *testing.T) {
	tests := []struct {
		in   string
		want StatusCode
		ok   bool
	}{
		{"0x58", 0x58, true},
		{"88", 0x58, true},
		{"ESME_RTHROTTLED", 0x58, true},
		{"esme_rmsgqful", 0x14, true},
		{"ESME_NOPE", 0, false},
	}
	for _, tt := range tests {
		var c StatusCode
		err := c.UnmarshalText([]byte(tt.in))
		if (err == nil) != tt.ok || c != tt.want {
			t.Errorf("UnmarshalText(%q) = %v, %v; want %v, ok %v", tt.in, c, err, tt.want, tt.ok)
		}
	}
}

// TestConfigYAML reads the smsc: entry of DESIGN.md's example, plus the optional keys,
// the way cmd will.
func TestConfigYAML(t *testing.T) {
	const doc = `
- name: lonestar
  host: 127.0.0.1
  port: 2775
  system_id: mhero
  password_env: MHERO_SMSC_LONESTAR_PASSWORD
  mode: transmitter+receiver
  binds: 2
  window: 10
  tps: 100
  source_addr: "384"
  prefixes: ["+23188", "+23155"]
  rate_per_segment: 0.004
  receipt_id_format: decimal
  ussd_dialect: standard
  enquire_link: 15s
  response_timeout: 3s
  validity: 12h
  data_coding: ucs2
  statuses:
    0x58: {action: throttle, retry_after: 50ms, max_retries: 10}
    ESME_RINVDSTADR: {action: fail}
`
	var cfgs []Config
	if err := yaml.Unmarshal([]byte(doc), &cfgs); err != nil {
		t.Fatal(err)
	}
	c := cfgs[0]
	c.Password = "from the environment"
	if err := c.Validate(); err != nil {
		t.Fatal(err)
	}
	if c.Mode != ModeTxRx || c.Binds != 2 || c.TPS != 100 || c.PasswordEnv != "MHERO_SMSC_LONESTAR_PASSWORD" ||
		c.EnquireLink != 15*time.Second || c.Validity != 12*time.Hour || c.DataCoding != "ucs2" || len(c.Prefixes) != 2 {
		t.Errorf("config = %+v", c)
	}
	if r := c.Statuses[0x58]; r.Action != ActionThrottle || r.RetryAfter != 50*time.Millisecond || r.MaxRetries != 10 {
		t.Errorf("statuses[0x58] = %+v", r)
	}
	if r := c.Statuses[0x0B]; r.Action != ActionFail {
		t.Errorf("statuses[ESME_RINVDSTADR] = %+v", r)
	}
}
