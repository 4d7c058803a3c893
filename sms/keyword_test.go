package sms

import (
	"strings"
	"testing"
	"unicode/utf8"
)

var testCommodities = []Commodity{
	{Code: "ors", Name: map[string]string{"en": "ORS sachets", "fr": "Sachets de SRO"}, Aliases: []string{"SRO"}},
	{Code: "zinc", Name: map[string]string{"en": "Zinc tablets", "fr": "Comprimés de zinc"}},
	{Code: "act", Name: map[string]string{"en": "ACT doses", "fr": "Doses d'ACT"}},
}

func testParser(t testing.TB) *Parser {
	t.Helper()
	p, err := NewParser(DefaultKeywords, testCommodities)
	if err != nil {
		t.Fatal(err)
	}
	return p
}

func TestFold(t *testing.T) {
	t.Parallel()
	tests := []struct{ in, want string }{
		{"stop", "STOP"},
		{"  Stop!  ", "STOP"},
		{"DÉBUT", "DEBUT"},
		{"début", "DEBUT"},
		{"de\u0301but", "DEBUT"}, // e + combining acute, as some phones send it
		{"Arrêt, svp.", "ARRET SVP"},
		{"Œuvre ßtraße", "OEUVRE SSTRASSE"},
		{"stock\tors\n20", "STOCK ORS 20"},
		{"", ""},
		{"...", ""},
		{"\xff\xfe stop", "STOP"},
		{"σύνολο", "ΣΎΝΟΛΟ"}, // other scripts keep their letters, upper case
	}
	for _, tt := range tests {
		if got := fold(tt.in); got != tt.want {
			t.Errorf("fold(%q) = %q, want %q", tt.in, got, tt.want)
		}
	}
}

func TestParseKeywords(t *testing.T) {
	t.Parallel()
	p := testParser(t)
	tests := []struct {
		name string
		in   string
		cmd  Command
		lang string
	}{
		{"en stop", "STOP", CommandStop, ""}, // STOP is both English and French
		{"en stop lower", "stop", CommandStop, ""},
		{"en stop punctuated", "Stop.", CommandStop, ""},
		{"en stop polite", "stop please", CommandStop, ""},
		{"en unsubscribe", "Unsubscribe", CommandStop, "en"},
		{"en start", "start", CommandStart, ""},
		{"en subscribe", "SUBSCRIBE", CommandStart, "en"},
		{"en help", "help", CommandHelp, "en"},
		{"en help mixed case", "HeLp?", CommandHelp, "en"},
		{"fr stop accent", "ARRÊT", CommandStop, "fr"},
		{"fr stop no accent", "arret", CommandStop, "fr"},
		{"fr stop verb", "Arrêter svp", CommandStop, "fr"},
		{"fr start accent", "DÉBUT", CommandStart, "fr"},
		{"fr start no accent", "debut", CommandStart, "fr"},
		{"fr start lower accent", "démarrer", CommandStart, "fr"},
		{"fr help", "Aide", CommandHelp, "fr"},
		{"stock", "STOCK ORS 20", CommandStock, ""},
		{"long text starting with stop", "stop the stock outs of ORS in our area please", CommandNone, ""},
		{"not a keyword", "Hello, how are you?", CommandNone, ""},
		{"empty", "", CommandNone, ""},
		{"only punctuation", "?!", CommandNone, ""},
		{"keyword inside", "please stop", CommandNone, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := p.Parse(tt.in)
			if got.Command != tt.cmd || got.Language != tt.lang {
				t.Errorf("Parse(%q) = %s/%q, want %s/%q", tt.in, got.Command, got.Language, tt.cmd, tt.lang)
			}
		})
	}
}

func TestParseStock(t *testing.T) {
	t.Parallel()
	p := testParser(t)
	tests := []struct {
		in        string
		commodity string
		qty, days int
		problem   StockProblem
	}{
		{"STOCK ORS 20", "ors", 20, 0, StockComplete},
		{"stock ors 20", "ors", 20, 0, StockComplete},
		{"Stock: ORS=20", "ors", 20, 0, StockComplete},
		{"STOCK ORS20", "ors", 20, 0, StockComplete},
		{"STOCK 20 ORS", "ors", 20, 0, StockComplete},
		{"stock sro 15", "ors", 15, 0, StockComplete}, // the French alias
		{"STOCK ZINC 0 12", "zinc", 0, 12, StockComplete},
		{"STOCK ACT 1,000", "act", 1000, 0, StockComplete},
		{"STOCK ACT 1.000", "act", 1000, 0, StockComplete},
		{"STOCK", "", 0, 0, StockIncomplete},
		{"STOCK ORS", "ors", 0, 0, StockIncomplete},
		{"STOCK ABC 20", "", 0, 0, StockUnknownCommodity},
		{"STOCK ORS twenty", "ors", 0, 0, StockBadQuantity},
		{"STOCK ORS 20.5", "ors", 0, 0, StockBadQuantity},
		{"STOCK ORS -5", "ors", 5, 0, StockComplete}, // a dash is a separator: "ORS - 5"
		{"STOCK ORS 99999999999", "ors", 0, 0, StockBadQuantity},
		{"STOCK ORS 20 400", "ors", 20, 0, StockBadDays},
		{"STOCK ORS 20 3 4", "ors", 0, 0, StockBadQuantity},
	}
	for _, tt := range tests {
		got := p.Parse(tt.in)
		if got.Command != CommandStock || got.Commodity != tt.commodity || got.Problem != tt.problem ||
			(tt.problem == StockComplete && (got.Quantity != tt.qty || got.DaysOut != tt.days)) {
			t.Errorf("Parse(%q) = %+v, want %s %d %d problem %q", tt.in, got, tt.commodity, tt.qty, tt.days, tt.problem)
		}
	}
	if got := p.Parse("STOCK XYZ 20"); got.Typed != "XYZ" {
		t.Errorf("unknown commodity typed as %q, want XYZ (for the reply)", got.Typed)
	}
}

func TestNewParserRefusesClashes(t *testing.T) {
	t.Parallel()
	kw := map[string]Keywords{"en": {Stop: []string{"STOP"}, Start: []string{"GO"}, Help: []string{"HELP"}, Stock: []string{"STOCK"}},
		"xx": {Stop: []string{"GO"}, Start: []string{"BEGIN"}, Help: []string{"H"}, Stock: []string{"STOCK"}}}
	if _, err := NewParser(kw, nil); err == nil || !strings.Contains(err.Error(), `"GO" is already the`) {
		t.Errorf("a word for two commands: %v", err)
	}
	if _, err := NewParser(DefaultKeywords, []Commodity{{Code: "ors"}, {Code: "sro", Aliases: []string{"ORS"}}}); err == nil {
		t.Error("a commodity alias naming another commodity was accepted")
	}
	if _, err := NewParser(map[string]Keywords{"en": {Stop: []string{"STOP NOW"}}}, nil); err == nil {
		t.Error("a keyword of two words was accepted")
	}
}

// FuzzParse checks the keyword parser on any text: it never panics, a keyword command is
// what the folded first word says, and folding is idempotent.
func FuzzParse(f *testing.F) {
	seeds := []string{
		"STOP",                        // the opt-out, as carriers require it
		"Arrêt",                       // French, accented
		"de\u0301but",                 // a combining accent typed on its own
		"STOCK ORS 20",                // the documented form
		"stock:ors=1,000 5",           // separators people type
		"STOCK 20 ORS",                // reversed
		"STOCK ORS20",                 // glued
		"stock ors 20.5",              // a decimal
		"1",                           // a survey answer
		"Hello, is anyone there?",     // free text
		"\xff\xfe\x00STOP",            // invalid UTF-8 and a NUL from a broken handset
		strings.Repeat("STOCK ", 200), // long
		"ŒÆß ΣΎΝΟΛΟ 你好",               // other letters
	}
	for _, s := range seeds {
		f.Add(s)
	}
	p, err := NewParser(DefaultKeywords, testCommodities)
	if err != nil {
		f.Fatal(err)
	}
	f.Fuzz(func(t *testing.T, s string) {
		folded := fold(s)
		if fold(folded) != folded {
			t.Errorf("fold is not idempotent on %q: %q then %q", s, folded, fold(folded))
		}
		if !utf8.ValidString(folded) || strings.Contains(folded, "  ") || strings.TrimSpace(folded) != folded {
			t.Errorf("fold(%q) = %q: not clean words", s, folded)
		}
		got := p.Parse(s)
		if got.Command == CommandNone {
			return
		}
		first, _, _ := strings.Cut(fold(separateNumbers(s)), " ")
		if e, ok := p.words[first]; !ok || e.command != got.Command {
			t.Errorf("Parse(%q) = %s, but its first word %q is not that keyword", s, got.Command, first)
		}
		if got.Command == CommandStock && got.Problem == StockComplete &&
			(got.Commodity == "" || got.Quantity < 0 || got.Quantity > MaxQuantity || got.DaysOut < 0 || got.DaysOut > MaxStockoutDays) {
			t.Errorf("Parse(%q) = %+v: a complete report out of bounds", s, got)
		}
		if got.Command != CommandStock && got.Words > maxKeywordWords {
			t.Errorf("Parse(%q) = %s from %d words", s, got.Command, got.Words)
		}
	})
}
