package registry

import (
	"testing"

	"github.com/mhero-health/mhero"
)

func TestParseMSISDN(t *testing.T) {
	tests := []struct {
		in, region string
		want       mhero.MSISDN
		ok         bool
	}{
		{"0886123456", "LR", "231886123456", true},                 // national, Lonestar range
		{"+231 77 012 3456", "LR", "231770123456", true},           // international with spaces
		{"00231886123456", "LR", "231886123456", true},             // 00 international prefix
		{"(0886) 123-456", "LR", "231886123456", true},             // punctuation
		{"+254712345678", "LR", "254712345678", true},              // another country, kept
		{"0712345678", "KE", "254712345678", true},                 // national in another deployment
		{"0556123456", "LR", "", false},                            // not a range in the numbering plan
		{"12", "LR", "", false},                                    // too short
		{"", "LR", "", false},                                      // empty
		{"call me", "LR", "", false},                               // letters
		{"+231886123456789012345678901234567890", "LR", "", false}, // absurdly long
	}
	for _, tt := range tests {
		got, err := ParseMSISDN(tt.in, tt.region)
		if (err == nil) != tt.ok || got != tt.want {
			t.Errorf("ParseMSISDN(%q, %s) = %q, %v; want %q ok=%v", tt.in, tt.region, got, err, tt.want, tt.ok)
		}
		if err != nil && mhero.ErrorCode(err) != mhero.EVALIDATION {
			t.Errorf("ParseMSISDN(%q) error code = %s, want validation", tt.in, mhero.ErrorCode(err))
		}
	}
}

// FuzzParseMSISDN checks the properties every caller relies on: no panic; a number that
// parses is E.164 digits; normalising the normalised form (with its '+') gives it back
// (idempotent); and it survives the text round trip of mhero.MSISDN.
func FuzzParseMSISDN(f *testing.F) {
	for _, s := range []string{
		"0886123456",           // national Liberian mobile, as iHRIS often holds it
		"+231 77 012 3456",     // international with spaces
		"00231886123456",       // 00 prefix
		"231886123456",         // digits without '+'
		"+231 (0) 88 612 3456", // trunk zero in brackets
		"0886-123-456 ext. 2",  // extension
		"+44 20 7946 0958",     // another country
		"٠٨٨٦١٢٣٤٥٦",           // Arabic-Indic digits
		"",                     // empty
	} {
		f.Add(s, "LR")
	}
	f.Add("0712345678", "KE")
	f.Fuzz(func(t *testing.T, raw, region string) {
		m, err := ParseMSISDN(raw, region)
		if err != nil {
			if mhero.ErrorCode(err) != mhero.EVALIDATION {
				t.Fatalf("ParseMSISDN(%q) error %v is not a validation error", raw, err)
			}
			return
		}
		if len(m) < 7 || len(m) > 15 {
			t.Fatalf("ParseMSISDN(%q) = %q, not E.164 length", raw, m)
		}
		for _, r := range m {
			if r < '0' || r > '9' {
				t.Fatalf("ParseMSISDN(%q) = %q, not digits", raw, m)
			}
		}
		again, err := ParseMSISDN(m.E164(), region)
		if err != nil || again != m {
			t.Fatalf("ParseMSISDN(%q) = %q, but normalising that again gives %q, %v", raw, m, again, err)
		}
		text, _ := m.MarshalText()
		var back mhero.MSISDN
		if err := back.UnmarshalText(text); err != nil || back != m {
			t.Fatalf("MSISDN %q text round trip = %q, %v", m, back, err)
		}
	})
}
