package reports

// DHIS2 export of aggregated stock.
//
// For a DHIS2 period (monthly or weekly, as the data set is), each facility and commodity
// with at least one stock report in the period gives:
//
//   - the quantity on hand at the latest count in the period (by reported_at, then report
//     id), under the commodity's data element and optional category option combo: what
//     the facility had when the period's last report was made, not a sum of counts;
//   - when a stock-out-days data element is configured, the stock-out days of the period:
//     the sum of the days out of stock its reports gave (each covers the days since the
//     report before), capped at the period's length.
//
// The org unit is the facility's DHIS2 uid or code, per id_scheme. A facility without one,
// or a commodity without a data element, is left out of the payload and named in the
// export's warnings (and a push's record), never silently dropped. Facilities that sent
// no report in the period send nothing: DHIS2 sees the value missing, which is what the
// reporting-rate view counts.

import (
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"net/url"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"
)

// DHIS2Config is the dhis2 section of the configuration file. Secrets are named by
// environment variable, never written in the file; Validate reads them.
//
//	dhis2:
//	  url: https://dhis2.moh.gov.lr          # the instance; the API is {url}/api
//	  token_env: MHERO_DHIS2_TOKEN           # a personal access token, or:
//	  # username: mhero
//	  # password_env: MHERO_DHIS2_PASSWORD
//	  data_set: pBOMPrpg1QX
//	  id_scheme: uid                          # facilities' org units: uid (dhis2_uid) or code (dhis2_code)
//	  period_type: monthly                    # or weekly
//	  dry_run_first: true
//	  push_every: 24h                         # or push_at: "02:00" (daily, in time_zone)
//	  commodities:
//	    ors: {data_element: uL3WTPcjcBJ, category_option_combo: HllvX50cXC0}
//	    zinc: {data_element: Jtf34kNZhzP}
//	  stockout_days_element: hMbtS1mOyhk      # optional; a second value per commodity
type DHIS2Config struct {
	URL         string `yaml:"url"`
	Username    string `yaml:"username"`     // basic auth, with password_env
	PasswordEnv string `yaml:"password_env"` // environment variable holding the password
	TokenEnv    string `yaml:"token_env"`    // environment variable holding a personal access token (DHIS2 2.37+)
	DataSet     string `yaml:"data_set"`
	// IDScheme says how facilities name their org unit: uid (the facility's dhis2_uid,
	// the default) or code (dhis2_code).
	IDScheme string `yaml:"id_scheme"`
	// DataElementIDScheme says how data_set, data elements and category option combos are
	// written below: uid (default) or code.
	DataElementIDScheme string `yaml:"data_element_id_scheme"`
	// PeriodType is the data set's: monthly (default) or weekly (ISO weeks, 2026W48).
	PeriodType string `yaml:"period_type"`
	// AttributeOptionCombo, when set, is sent with the data value set.
	AttributeOptionCombo string `yaml:"attribute_option_combo"`
	// DryRunFirst makes every push a dry run first: when DHIS2 reports a conflict or an
	// error in it, nothing is imported and the push fails with the conflicts recorded.
	DryRunFirst bool `yaml:"dry_run_first"`
	// PushEvery pushes the previous complete period this often; PushAt ("HH:MM") pushes
	// it once a day at that time in the deployment's time zone instead. Neither: push only
	// when asked (POST /api/v1/exports/dhis2/push).
	PushEvery time.Duration `yaml:"push_every"`
	PushAt    string        `yaml:"push_at"`
	// Commodities maps each commodity code to its data element.
	Commodities map[string]DHIS2Mapping `yaml:"commodities"`
	// StockoutDaysElement is the data element for stock-out days of the commodities that
	// name none of their own; empty sends stock-out days only for those that do. Each
	// commodity's stock-out days go with the commodity's category option combo, so every
	// (data element, combo) pair must stay distinct.
	StockoutDaysElement string `yaml:"stockout_days_element"`

	Timeout         time.Duration `yaml:"timeout"`          // per request; default 2m
	Attempts        int           `yaml:"attempts"`         // per request, on 5xx and timeouts; default 4
	RetryBackoff    time.Duration `yaml:"retry_backoff"`    // before the second attempt, doubling; default 2s
	BreakerFailures int           `yaml:"breaker_failures"` // failed attempts in a row that open the breaker; default 5
	BreakerCooldown time.Duration `yaml:"breaker_cooldown"` // how long it stays open; default 5m

	password, token string // read by Validate from the environment
	resolved        bool
}

// DHIS2Mapping is where one commodity's values go in DHIS2.
type DHIS2Mapping struct {
	DataElement         string `yaml:"data_element"`
	CategoryOptionCombo string `yaml:"category_option_combo"` // empty: the data element's default
	// StockoutDaysElement and StockoutDaysCombo override the section's stock-out-days
	// element for this commodity.
	StockoutDaysElement string `yaml:"stockout_days_element"`
	StockoutDaysCombo   string `yaml:"stockout_days_category_option_combo"`
}

// String describes the configuration without its secrets: fmt's %v and %+v would
// otherwise print the password or token read by Validate.
func (c DHIS2Config) String() string {
	auth := "token from $" + c.TokenEnv
	if c.TokenEnv == "" {
		auth = "user " + c.Username + ", password from $" + c.PasswordEnv
	}
	return fmt.Sprintf("dhis2{url: %s, data set: %s, %s periods, org units by %s, %d commodities, auth: %s}",
		c.URL, c.DataSet, c.PeriodType, c.IDScheme, len(c.Commodities), auth)
}

// LogValue is how slog writes the configuration: without its secrets.
func (c DHIS2Config) LogValue() slog.Value { return slog.StringValue(c.String()) }

// Defaults of the DHIS2 client.
const (
	DefaultDHIS2Timeout         = 2 * time.Minute
	DefaultDHIS2Attempts        = 4
	DefaultDHIS2RetryBackoff    = 2 * time.Second
	DefaultDHIS2BreakerFailures = 5
	DefaultDHIS2BreakerCooldown = 5 * time.Minute
)

// uidRE is a DHIS2 uid: eleven letters and digits, the first a letter.
var uidRE = regexp.MustCompile(`^[A-Za-z][A-Za-z0-9]{10}$`)

// Validate checks the section, fills in defaults and reads the secrets through getenv
// (cmd passes os.Getenv). Every problem is reported at once, each prefixed "dhis2.".
// Secrets never appear in the messages.
func (c *DHIS2Config) Validate(getenv func(string) string) error {
	errs := c.check()
	switch {
	case c.TokenEnv != "" && (c.Username != "" || c.PasswordEnv != ""):
		errs = append(errs, errors.New("dhis2: give token_env or username and password_env, not both"))
	case c.TokenEnv != "":
		if c.token = getenv(c.TokenEnv); c.token == "" {
			errs = append(errs, fmt.Errorf("dhis2: environment variable %s (token_env) is not set", c.TokenEnv))
		}
	case c.Username != "" && c.PasswordEnv != "":
		if c.password = getenv(c.PasswordEnv); c.password == "" {
			errs = append(errs, fmt.Errorf("dhis2: environment variable %s (password_env) is not set", c.PasswordEnv))
		}
	default:
		errs = append(errs, errors.New("dhis2: needs token_env, or username and password_env"))
	}
	c.resolved = len(errs) == 0
	return errors.Join(errs...)
}

// check validates everything but the secrets and fills in defaults.
func (c *DHIS2Config) check() []error {
	var errs []error
	bad := func(format string, args ...any) { errs = append(errs, fmt.Errorf("dhis2."+format, args...)) }
	if u, err := url.Parse(c.URL); err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		bad("url %q: want the instance's address, such as https://dhis2.example.org", c.URL)
	} else if u.User != nil || u.RawQuery != "" || u.Fragment != "" {
		bad("url: no credentials, query or fragment in it (credentials go in username/password_env or token_env)")
	}
	c.IDScheme = strings.ToLower(strings.TrimSpace(c.IDScheme))
	c.DataElementIDScheme = strings.ToLower(strings.TrimSpace(c.DataElementIDScheme))
	for _, s := range []*string{&c.IDScheme, &c.DataElementIDScheme} {
		if *s == "" {
			*s = "uid"
		}
	}
	if c.IDScheme != "uid" && c.IDScheme != "code" {
		bad("id_scheme %q: want uid or code", c.IDScheme)
	}
	if c.DataElementIDScheme != "uid" && c.DataElementIDScheme != "code" {
		bad("data_element_id_scheme %q: want uid or code", c.DataElementIDScheme)
	}
	switch c.PeriodType = strings.ToLower(strings.TrimSpace(c.PeriodType)); c.PeriodType {
	case "":
		c.PeriodType = "monthly"
	case "monthly", "weekly":
	default:
		bad("period_type %q: want monthly or weekly", c.PeriodType)
	}
	id := func(field, v string, required bool) {
		switch {
		case v == "" && required:
			bad("%s is required", field)
		case v != "" && c.DataElementIDScheme == "uid" && !uidRE.MatchString(v):
			bad("%s %q is not a DHIS2 uid (11 letters and digits, the first a letter)", field, truncate(v, 40))
		}
	}
	id("data_set", c.DataSet, true)
	id("attribute_option_combo", c.AttributeOptionCombo, false)
	id("stockout_days_element", c.StockoutDaysElement, false)
	errs = append(errs, c.checkCommodities(id)...)
	errs = append(errs, c.checkSchedule()...)
	if c.Timeout < 0 || c.Attempts < 0 || c.RetryBackoff < 0 || c.BreakerFailures < 0 || c.BreakerCooldown < 0 {
		bad("timeout, attempts, retry_backoff, breaker_failures and breaker_cooldown must not be negative")
	}
	c.Timeout = orDefault(c.Timeout, DefaultDHIS2Timeout)
	c.RetryBackoff = orDefault(c.RetryBackoff, DefaultDHIS2RetryBackoff)
	c.BreakerCooldown = orDefault(c.BreakerCooldown, DefaultDHIS2BreakerCooldown)
	c.Attempts = orDefault(c.Attempts, DefaultDHIS2Attempts)
	c.BreakerFailures = orDefault(c.BreakerFailures, DefaultDHIS2BreakerFailures)
	return errs
}

func orDefault[T int | time.Duration](v, def T) T {
	if v <= 0 {
		return def
	}
	return v
}

func (c *DHIS2Config) checkCommodities(id func(field, v string, required bool)) []error {
	var errs []error
	if len(c.Commodities) == 0 {
		errs = append(errs, errors.New("dhis2.commodities: map at least one commodity code to a data element"))
	}
	norm := make(map[string]DHIS2Mapping, len(c.Commodities))
	for code, m := range c.Commodities {
		n := normCode(code)
		if _, dup := norm[n]; dup || n == "" {
			errs = append(errs, fmt.Errorf("dhis2.commodities: code %q is empty or repeated", code))
		}
		norm[n] = m
		id("commodities."+n+".data_element", m.DataElement, true)
		id("commodities."+n+".category_option_combo", m.CategoryOptionCombo, false)
		id("commodities."+n+".stockout_days_element", m.StockoutDaysElement, false)
		id("commodities."+n+".stockout_days_category_option_combo", m.StockoutDaysCombo, false)
	}
	c.Commodities = norm
	// Two values with the same data element and combo would overwrite each other in
	// DHIS2: refuse the mapping rather than lose one.
	seen := map[dhis2Target]string{}
	for _, code := range slices.Sorted(maps.Keys(norm)) {
		stock, outs, hasOuts := c.targets(code)
		for _, t := range []struct {
			tgt  dhis2Target
			what string
			use  bool
		}{{stock, code + " stock", true}, {outs, code + " stock-out days", hasOuts}} {
			if !t.use {
				continue
			}
			if other, dup := seen[t.tgt]; dup {
				errs = append(errs, fmt.Errorf("dhis2.commodities: %s and %s go to the same data element and category option combo", other, t.what))
			}
			seen[t.tgt] = t.what
		}
	}
	return errs
}

func (c *DHIS2Config) checkSchedule() []error {
	var errs []error
	if c.PushEvery < 0 {
		errs = append(errs, errors.New("dhis2.push_every must not be negative"))
	} else if c.PushEvery > 0 && c.PushEvery < time.Minute {
		errs = append(errs, errors.New("dhis2.push_every must be at least 1m"))
	}
	if c.PushAt != "" {
		if _, _, ok := parseClock(c.PushAt); !ok {
			errs = append(errs, fmt.Errorf("dhis2.push_at %q: want HH:MM, such as 02:00", c.PushAt))
		}
		if c.PushEvery != 0 {
			errs = append(errs, errors.New("dhis2: set push_every or push_at, not both"))
		}
	}
	return errs
}

// parseClock reads "HH:MM".
func parseClock(s string) (h, m int, ok bool) {
	hh, mm, found := strings.Cut(strings.TrimSpace(s), ":")
	if !found || len(hh) < 1 || len(hh) > 2 || len(mm) != 2 {
		return 0, 0, false
	}
	h, err1 := strconv.Atoi(hh)
	m, err2 := strconv.Atoi(mm)
	if err1 != nil || err2 != nil || h < 0 || h > 23 || m < 0 || m > 59 {
		return 0, 0, false
	}
	return h, m, true
}

// dhis2Target is where a value goes: a data element and category option combo.
type dhis2Target struct{ element, combo string }

// targets returns where a commodity's stock and stock-out days go; hasOuts is false when
// no stock-out-days element applies to it.
func (c *DHIS2Config) targets(code string) (stock, outs dhis2Target, hasOuts bool) {
	m := c.Commodities[code]
	stock = dhis2Target{m.DataElement, m.CategoryOptionCombo}
	switch {
	case m.StockoutDaysElement != "":
		outs = dhis2Target{m.StockoutDaysElement, m.StockoutDaysCombo}
	case c.StockoutDaysElement != "":
		outs = dhis2Target{c.StockoutDaysElement, m.CategoryOptionCombo}
	default:
		return stock, outs, false
	}
	return stock, outs, true
}

// periodType is the data set's period type as the reports name it.
func (c *DHIS2Config) periodType() PeriodType {
	if c.PeriodType == "weekly" {
		return Week
	}
	return Month
}

// scheme writes an id scheme the way DHIS2's parameters take it.
func scheme(s string) string { return strings.ToUpper(s) }

// PreviousPeriod is the last complete period of the given type before now, in loc: last
// month, or last ISO week (Monday to Sunday).
func PreviousPeriod(t PeriodType, now time.Time, loc *time.Location) Period {
	if loc == nil {
		loc = time.UTC
	}
	y, m, d := now.In(loc).Date()
	if t == Week {
		today := time.Date(y, m, d, 0, 0, 0, 0, loc)
		start := today.AddDate(0, 0, -((int(today.Weekday())+6)%7)-7)
		return Period{Week, start, start.AddDate(0, 0, 7)}
	}
	start := time.Date(y, m-1, 1, 0, 0, 0, 0, loc)
	return Period{Month, start, start.AddDate(0, 1, 0)}
}
