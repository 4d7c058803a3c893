package sms

import (
	"strings"
	"unicode"
	"unicode/utf8"
)

// fold makes text comparable the way people type on a phone: upper case, Latin accents
// dropped ("Début" and "DEBUT" are one word), and everything that is not a letter or a
// digit a separator, runs of separators one space, none at either end. Letters outside
// Latin keep their case-folded form. It never fails: any input, invalid UTF-8 included,
// gives a string (an invalid byte is a separator).
func fold(s string) string {
	var b strings.Builder
	b.Grow(len(s))
	space := false
	for i := 0; i < len(s); {
		r, size := utf8.DecodeRuneInString(s[i:])
		i += size
		if r == utf8.RuneError && size <= 1 {
			space = b.Len() > 0
			continue
		}
		if r < utf8.RuneSelf { // ASCII, the common case, without tables
			switch {
			case 'a' <= r && r <= 'z':
				r -= 'a' - 'A'
			case 'A' <= r && r <= 'Z', '0' <= r && r <= '9':
			default:
				space = b.Len() > 0
				continue
			}
			if space {
				b.WriteByte(' ')
				space = false
			}
			b.WriteByte(byte(r))
			continue
		}
		if unicode.Is(unicode.Mn, r) {
			continue // a combining accent typed after its letter: dropped, the word goes on
		}
		base := deaccent(unicode.ToUpper(r))
		if base == "" {
			space = b.Len() > 0
			continue
		}
		if space {
			b.WriteByte(' ')
			space = false
		}
		b.WriteString(base)
	}
	return b.String()
}

// deaccent returns the unaccented upper-case letters of an upper-case rune ("É" → "E",
// "Œ" → "OE"), the rune itself for any other letter or digit, and "" for what separates
// words (punctuation, symbols, spaces).
func deaccent(r rune) string {
	if s, ok := latin[r]; ok {
		return s
	}
	switch {
	case unicode.IsLetter(r), unicode.IsDigit(r):
		return string(r)
	}
	return ""
}

// latin maps the accented capitals of Latin-1 and Latin Extended-A (French, Portuguese,
// Spanish, Kinyarwanda, Swahili loanwords...) to their base letters.
var latin = func() map[rune]string {
	m := map[rune]string{}
	add := func(base string, runes string) {
		for _, r := range runes {
			m[r] = base
		}
	}
	add("A", "ÀÁÂÃÄÅĀĂĄ")
	add("AE", "Æ")
	add("C", "ÇĆĈĊČ")
	add("D", "ĎĐÐ")
	add("E", "ÈÉÊËĒĔĖĘĚ")
	add("G", "ĜĞĠĢ")
	add("H", "ĤĦ")
	add("I", "ÌÍÎÏĨĪĬĮİ")
	add("IJ", "Ĳ")
	add("J", "Ĵ")
	add("K", "Ķ")
	add("L", "ĹĻĽĿŁ")
	add("N", "ÑŃŅŇŊ")
	add("O", "ÒÓÔÕÖØŌŎŐ")
	add("OE", "Œ")
	add("R", "ŔŖŘ")
	add("S", "ŚŜŞŠ")
	add("SS", "ẞß")
	add("T", "ŢŤŦ")
	add("TH", "Þ")
	add("U", "ÙÚÛÜŨŪŬŮŰŲ")
	add("W", "Ŵ")
	add("Y", "ÝŶŸ")
	add("Z", "ŹŻŽ")
	return m
}()
