package sms

import (
	"fmt"
	"slices"
	"strconv"
	"strings"
	"unicode/utf8"
)

// Command is what a keyword SMS asks for.
type Command string

// Commands.
const (
	CommandNone  Command = ""      // not a keyword: a survey answer, or something to explain
	CommandStop  Command = "stop"  // opt out of every message but replies
	CommandStart Command = "start" // opt back in
	CommandHelp  Command = "help"  // what can be sent
	CommandStock Command = "stock" // a stock report: STOCK <commodity> <quantity> [<days out of stock>]
)

// Keywords are the words of each command in one language, as people type them; case and
// accents do not matter ("DÉBUT", "debut").
type Keywords struct {
	Stop  []string `yaml:"stop" json:"stop"`
	Start []string `yaml:"start" json:"start"`
	Help  []string `yaml:"help" json:"help"`
	Stock []string `yaml:"stock" json:"stock"`
}

// DefaultKeywords are the keywords of the languages mhero ships with. A deployment adds
// languages, or words, through Config.Keywords.
var DefaultKeywords = map[string]Keywords{
	"en": {
		Stop:  []string{"STOP", "UNSUBSCRIBE", "QUIT", "OPTOUT"},
		Start: []string{"START", "SUBSCRIBE", "UNSTOP", "RESUME"},
		Help:  []string{"HELP", "INFO"},
		Stock: []string{"STOCK"},
	},
	"fr": {
		Stop:  []string{"ARRÊT", "ARRÊTER", "STOP", "DÉSABONNER"},
		Start: []string{"DÉBUT", "DÉMARRER", "REPRENDRE", "START"},
		Help:  []string{"AIDE"},
		Stock: []string{"STOCK"},
	},
}

// Commodity is an item workers report stock of, as the configuration lists it.
type Commodity struct {
	Code    string            // as the reports know it ("ors"); what workers type, any case
	Name    map[string]string // by language, for replies ("ORS sachets")
	Aliases []string          // other words workers type for it ("SRO" in French)
}

// Limits of a stock SMS, those of the reports package: a quantity beyond MaxQuantity is a
// typing slip on a keypad, not a stock level.
const (
	MaxQuantity     = 10_000_000
	MaxStockoutDays = 366
)

// maxKeywordWords: STOP, START and HELP are keywords when they are the first word of a
// short message ("STOP", "stop please", "arrêt svp"); a longer text that happens to start
// with one ("stop the stock-outs of ORS") is not taken as an opt-out.
const maxKeywordWords = 3

// StockProblem says what is wrong with a STOCK message.
type StockProblem string

// Stock problems.
const (
	StockComplete         StockProblem = ""
	StockIncomplete       StockProblem = "incomplete"        // commodity or quantity missing
	StockUnknownCommodity StockProblem = "unknown_commodity" // not a configured code or alias
	StockBadQuantity      StockProblem = "bad_quantity"      // not a whole number 0..MaxQuantity
	StockBadDays          StockProblem = "bad_days"          // days out of stock not 0..366
)

// Parsed is an SMS read as a keyword command.
type Parsed struct {
	Command Command
	// Language is the language whose keyword it was; "" when several share the word
	// (STOP, STOCK) or for no keyword.
	Language string
	Words    int // words in the text, as folded

	// STOCK only.
	Commodity string       // the commodity's configured code; "" when missing or unknown
	Typed     string       // the commodity word as typed (folded, at most 20 characters), for replies
	Quantity  int          // on hand
	DaysOut   int          // days out of stock (optional fourth word)
	Problem   StockProblem // StockComplete when the report can be submitted
}

// Parser reads keyword commands. It is safe for concurrent use once built.
type Parser struct {
	words       map[string]keywordEntry // folded keyword → command and languages
	commodities map[string]string       // folded code or alias → code
	codes       []string                // configured codes, upper case, for replies
}

type keywordEntry struct {
	command   Command
	languages []string
}

// NewParser builds a parser of the given keywords (by language) and commodities. A word
// given for two commands, or a commodity code clashing with another's alias, is an
// error: the configuration must say one thing.
func NewParser(keywords map[string]Keywords, commodities []Commodity) (*Parser, error) {
	p := &Parser{words: map[string]keywordEntry{}, commodities: map[string]string{}}
	langs := make([]string, 0, len(keywords))
	for l := range keywords {
		langs = append(langs, l)
	}
	slices.Sort(langs) // errors and language lists in a stable order
	var errs []string
	for _, lang := range langs {
		kw := keywords[lang]
		for _, set := range []struct {
			c     Command
			words []string
		}{{CommandStop, kw.Stop}, {CommandStart, kw.Start}, {CommandHelp, kw.Help}, {CommandStock, kw.Stock}} {
			for _, w := range set.words {
				f := fold(w)
				if f == "" || strings.Contains(f, " ") {
					errs = append(errs, fmt.Sprintf("%s keyword %q is not one word", lang, w))
					continue
				}
				e, seen := p.words[f]
				if seen && e.command != set.c {
					errs = append(errs, fmt.Sprintf("%s keyword %q is already the %s keyword", lang, w, e.command))
					continue
				}
				e.command = set.c
				if !slices.Contains(e.languages, lang) {
					e.languages = append(e.languages, lang)
				}
				p.words[f] = e
			}
		}
	}
	for _, c := range commodities {
		code := fold(c.Code)
		if code == "" || strings.Contains(code, " ") {
			errs = append(errs, fmt.Sprintf("commodity code %q is not one word", c.Code))
			continue
		}
		for _, w := range append([]string{c.Code}, c.Aliases...) {
			f := fold(w)
			if other, ok := p.commodities[f]; ok && other != c.Code {
				errs = append(errs, fmt.Sprintf("commodity word %q names both %s and %s", w, other, c.Code))
				continue
			}
			if f != "" && !strings.Contains(f, " ") {
				p.commodities[f] = c.Code
			}
		}
		p.codes = append(p.codes, code)
	}
	if len(errs) > 0 {
		return nil, fmt.Errorf("sms keywords: %s", strings.Join(errs, "; "))
	}
	return p, nil
}

// Parse reads text as a keyword command. It never fails: anything that is not a keyword
// is CommandNone, and a STOCK message with something wrong says what in Problem.
func (p *Parser) Parse(text string) Parsed {
	words := strings.Fields(fold(separateNumbers(text)))
	out := Parsed{Words: len(words)}
	if len(words) == 0 {
		return out
	}
	e, ok := p.words[words[0]]
	if !ok {
		return out
	}
	if len(e.languages) == 1 {
		out.Language = e.languages[0]
	}
	if e.command == CommandStock {
		out.Command = CommandStock
		p.parseStock(words[1:], &out)
		return out
	}
	if len(words) > maxKeywordWords {
		return Parsed{Words: len(words)}
	}
	out.Command = e.command
	return out
}

// parseStock reads "<commodity> <quantity> [<days out>]", also written "ORS20" or
// "20 ORS".
func (p *Parser) parseStock(args []string, out *Parsed) {
	if len(args) >= 2 && isNumber(args[0]) && !isNumber(args[1]) { // "STOCK 20 ORS"
		args = append([]string{args[1], args[0]}, args[2:]...)
	}
	if len(args) >= 1 && p.commodities[args[0]] == "" { // "STOCK ORS20"
		if i := strings.IndexFunc(args[0], isDigit); i > 0 && p.commodities[args[0][:i]] != "" {
			args = append([]string{args[0][:i], args[0][i:]}, args[1:]...)
		}
	}
	if len(args) == 0 {
		out.Problem = StockIncomplete
		return
	}
	out.Typed = truncateRunes(args[0], 20)
	out.Commodity = p.commodities[args[0]]
	switch {
	case out.Commodity == "":
		out.Problem = StockUnknownCommodity
	case len(args) < 2:
		out.Problem = StockIncomplete
	}
	if out.Problem != "" {
		return
	}
	q, ok := wholeNumber(args[1], MaxQuantity)
	if !ok || len(args) > 3 {
		out.Problem = StockBadQuantity
		return
	}
	out.Quantity = q
	if len(args) == 3 {
		d, ok := wholeNumber(args[2], MaxStockoutDays)
		if !ok {
			out.Problem = StockBadDays
			return
		}
		out.DaysOut = d
	}
}

// Codes lists the configured commodity codes, upper case, for replies.
func (p *Parser) Codes() []string { return p.codes }

func isDigit(r rune) bool { return '0' <= r && r <= '9' }

func isNumber(s string) bool {
	return s != "" && strings.IndexFunc(s, func(r rune) bool { return !isDigit(r) }) < 0
}

// wholeNumber reads ASCII digits as a number from 0 to limit.
func wholeNumber(s string, limit int) (int, bool) {
	if !isNumber(s) || len(s) > 9 {
		return 0, false
	}
	n, err := strconv.Atoi(s)
	return n, err == nil && n <= limit
}

// separateNumbers keeps the separators inside numbers from splitting them into words
// when the text is folded: a thousands separator goes ("1,000" and "1.000" are 1000) and
// a decimal one becomes a letter, so "20.5" is one word that is not a whole number
// rather than the two numbers 20 and 5.
func separateNumbers(s string) string {
	i := strings.IndexAny(s, ".,")
	if i < 0 {
		return s
	}
	var b strings.Builder
	b.Grow(len(s))
	for i := 0; i < len(s); i++ {
		c := s[i]
		if (c == '.' || c == ',') && i > 0 && isDigitByte(s[i-1]) && i+1 < len(s) && isDigitByte(s[i+1]) {
			if digitsFrom(s, i+1) == 3 {
				continue // thousands
			}
			b.WriteByte('d') // decimal
			continue
		}
		b.WriteByte(c)
	}
	return b.String()
}

func isDigitByte(c byte) bool { return '0' <= c && c <= '9' }

func digitsFrom(s string, i int) int {
	n := 0
	for i+n < len(s) && isDigitByte(s[i+n]) {
		n++
	}
	return n
}

func truncateRunes(s string, n int) string {
	if utf8.RuneCountInString(s) <= n {
		return s
	}
	r := []rune(s)
	return string(r[:n])
}
