package mhero

import (
	"log/slog"
	"strings"
)

// MSISDN is a phone number in E.164 form, stored as its digits without the '+'
// ("231886123456"), which is also how SMPP carries it with TON international.
// Parsing of national or loosely written numbers lives in registry (it needs the
// deployment's default country and a phone-number library).
type MSISDN string

// E164 returns the number with its leading '+', as people write it.
func (m MSISDN) E164() string {
	if m == "" {
		return ""
	}
	return "+" + string(m)
}

// MarshalText writes the number as "+231886123456".
func (m MSISDN) MarshalText() ([]byte, error) { return []byte(m.E164()), nil }

// UnmarshalText accepts "+231886123456" or "231886123456" and keeps the digits; it does
// no national-format guessing, which needs a country (see registry.ParseMSISDN).
func (m *MSISDN) UnmarshalText(b []byte) error {
	s := strings.TrimPrefix(strings.TrimSpace(string(b)), "+")
	if s == "" {
		*m = ""
		return nil
	}
	if len(s) < 7 || len(s) > 15 {
		return Errorf(EINVALID, "phone number %q is not in international (E.164) form", string(b))
	}
	for _, r := range s {
		if r < '0' || r > '9' {
			return Errorf(EINVALID, "phone number %q is not in international (E.164) form", string(b))
		}
	}
	*m = MSISDN(s)
	return nil
}

// LogValue masks phone numbers in every log line: 2318****3456.
func (m MSISDN) LogValue() slog.Value { return slog.StringValue(MaskDigits(string(m))) }

// MaskDigits keeps the first four and last four characters of a long identifier and
// hides the rest, so logs can correlate without exposing a person's number.
func MaskDigits(s string) string {
	if len(s) <= 8 {
		return strings.Repeat("*", len(s))
	}
	return s[:4] + strings.Repeat("*", len(s)-8) + s[len(s)-4:]
}
