package ussd

import (
	"strconv"
	"testing"
	"time"
	"unicode/utf8"
)

func i64(v int64) *int64 { return &v }

var (
	testToday    = time.Date(2026, 11, 20, 10, 0, 0, 0, time.UTC)
	quantitySpec = &InputSpec{Type: "int", Min: i64(0), Max: i64(99999)}
	daysSpec     = &InputSpec{Type: "int", Min: i64(1), Max: i64(365)}
	codeSpec     = &InputSpec{Type: "text", MinLen: 3, MaxLen: 8, Pattern: `[A-Z]{2}[0-9]+`}
	nameSpec     = &InputSpec{Type: "text"}
	dateSpec     = &InputSpec{Type: "date", Past: true, MaxAgeDays: 365}
)

func init() {
	for _, s := range []*InputSpec{quantitySpec, daysSpec, codeSpec, nameSpec, dateSpec} {
		if err := s.compile(); err != nil {
			panic(err)
		}
	}
}

func TestInputCheck(t *testing.T) {
	tests := []struct {
		spec    *InputSpec
		in      string
		want    string
		refused string // the string key of the hint
	}{
		{quantitySpec, "40", "40", ""},
		{quantitySpec, " 007 ", "7", ""},
		{quantitySpec, "0", "0", ""},
		{quantitySpec, "100000", "", "invalid_int"},
		{quantitySpec, "-1", "", "invalid_int"},
		{quantitySpec, "4*0", "", "invalid_int"},
		{quantitySpec, "forty", "", "invalid_int"},
		{quantitySpec, "", "", "invalid_int"},
		{quantitySpec, "99999999999999999999", "", "invalid_int"},
		{daysSpec, "0", "", "invalid_int"},
		{codeSpec, "LR42", "LR42", ""},
		{codeSpec, "lr42", "", "invalid_pattern"},
		{codeSpec, "LR", "", "invalid_text"},
		{nameSpec, "Musu", "Musu", ""},
		{nameSpec, "", "", "invalid_text"},
		{nameSpec, "\xff", "", "invalid_text"},
		{dateSpec, "25102026", "2026-10-25", ""},
		{dateSpec, "25*10*2026", "2026-10-25", ""},
		{dateSpec, "5/1/26", "2026-01-05", ""},
		{dateSpec, "2026-10-25", "2026-10-25", ""},
		{dateSpec, "31042026", "", "invalid_date"},
		{dateSpec, "21112026", "", "date_future"},
		{dateSpec, "01012020", "", "date_too_old"},
		{dateSpec, "yesterday", "", "invalid_date"},
	}
	for _, tt := range tests {
		got, bad := tt.spec.check(tt.in, testToday)
		switch {
		case tt.refused == "" && (bad != nil || got != tt.want):
			t.Errorf("%s check(%q) = %q, %+v; want %q", tt.spec.Type, tt.in, got, bad, tt.want)
		case tt.refused != "" && (bad == nil || bad.key != tt.refused):
			t.Errorf("%s check(%q) = %q, %+v; want refused with %s", tt.spec.Type, tt.in, got, bad, tt.refused)
		}
	}
}

func TestBackIsDoubleZeroWhereZeroIsAnAnswer(t *testing.T) {
	if !quantitySpec.zeroOK || daysSpec.zeroOK || dateSpec.zeroOK {
		t.Errorf("zeroOK: quantity %v (want true), days %v, date %v (want false)", quantitySpec.zeroOK, daysSpec.zeroOK, dateSpec.zeroOK)
	}
}

func TestInputSpecCompileRefusesNonsense(t *testing.T) {
	for _, spec := range []*InputSpec{
		{Type: "int"},
		{Type: "int", Min: i64(5), Max: i64(1)},
		{Type: "int", Min: i64(-5), Max: i64(1)},
		{Type: "int", Min: i64(0), Max: i64(1), Pattern: "x"},
		{Type: "text", MinLen: 9, MaxLen: 3},
		{Type: "text", Pattern: "(["},
		{Type: "date", Min: i64(0)},
		{Type: "colour"},
	} {
		if err := spec.compile(); err == nil {
			t.Errorf("compile(%+v) accepted it", spec)
		}
	}
}

// FuzzInputCheck feeds any text to every kind of validation: no panic, an accepted
// value is within its rules, and validating the normalised value again keeps it.
func FuzzInputCheck(f *testing.F) {
	f.Add("40")         // a quantity
	f.Add(" 007 ")      // leading zeros and spaces
	f.Add("4*0")        // a star from the keypad
	f.Add("25*10*2026") // a date typed with stars
	f.Add("5/1/26")     // a short date
	f.Add("LR42")       // a code matching the pattern
	f.Add("")           // nothing
	f.Add("\xff\xfe")   // not UTF-8
	f.Add("99999999999999999999")
	f.Fuzz(func(t *testing.T, in string) {
		for _, spec := range []*InputSpec{quantitySpec, daysSpec, codeSpec, nameSpec, dateSpec} {
			v, bad := spec.check(in, testToday)
			if bad != nil {
				continue
			}
			switch spec.Type {
			case "int":
				n, err := strconv.ParseInt(v, 10, 64)
				if err != nil || n < *spec.Min || n > *spec.Max {
					t.Fatalf("int check(%q) accepted %q outside %d..%d", in, v, *spec.Min, *spec.Max)
				}
			case "text":
				if n := utf8.RuneCountInString(v); n < spec.MinLen || n > spec.MaxLen || !utf8.ValidString(v) {
					t.Fatalf("text check(%q) accepted %q of %d characters", in, v, n)
				}
			case "date":
				d, err := time.Parse(time.DateOnly, v)
				if err != nil || d.After(testToday) {
					t.Fatalf("date check(%q) accepted %q", in, v)
				}
			}
			if again, bad := spec.check(v, testToday); bad != nil || again != v {
				t.Fatalf("%s check(%q) = %q, but check(%q) = %q, %+v", spec.Type, in, v, v, again, bad)
			}
		}
	})
}
