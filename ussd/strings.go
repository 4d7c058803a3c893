package ussd

import "strings"

// defaultStrings are the engine's own texts in English. A menu set translates them (and
// may reword them) under `strings:`; lint reports the ones a menu language lacks. A
// handset never sees a raw error: every failure maps to one of these.
var defaultStrings = map[string]string{
	"more":            "More",
	"back":            "Back",
	"busy":            "Service busy. Please try again in a few minutes.",
	"rate_limited":    "Too many requests from this phone. Please wait a minute and dial again.",
	"unknown_number":  "This number is not registered with mHero. Ask your supervisor to register it, then dial again.",
	"inactive":        "Your mHero account is not active. Please contact your supervisor.",
	"opted_out":       "You have opted out of mHero. Send START by SMS to join again.",
	"resume":          "You did not finish your last session.",
	"resume_continue": "Continue where you left off",
	"resume_restart":  "Start again",
	"invalid_choice":  "Choose one of the numbers shown.",
	"invalid_int":     "Enter a number from {min} to {max}.",
	"invalid_text":    "Enter {min} to {max} characters.",
	"invalid_pattern": "That is not in the expected form.",
	"invalid_date":    "Enter a date as DDMMYYYY, e.g. 25122026.",
	"date_future":     "The date cannot be in the future.",
	"date_too_old":    "The date must be within the last {days} days.",
	"empty":           "Nothing here yet.",
	"action_rejected": "Not sent: please check your answers.",
	"action_failed":   "Not sent: service busy. Try again.",
	"session_ended":   "This session has ended. Please dial again.",
	"display_only":    "Press 0 to go back.",
	"none":            "none",
}

// str returns the engine text key in lang with its {placeholders} filled.
func (m *Menus) str(key, lang string, args map[string]string) string {
	s := ""
	if t, ok := m.Strings[key]; ok {
		s = t.In(lang, m.lang0())
	}
	if s == "" {
		s = defaultStrings[key]
	}
	if len(args) == 0 {
		return s
	}
	return fill(s, func(name string) string { return args[name] })
}

func (m *Menus) lang0() string {
	if len(m.Languages) == 0 {
		return "en"
	}
	return m.Languages[0]
}

// fill replaces each {name} in s by value(name); an unknown name becomes empty, never
// the raw placeholder. Names are letters, digits, '_' and '.'; other braces stay as
// they are.
func fill(s string, value func(string) string) string {
	if strings.IndexByte(s, '{') < 0 {
		return s
	}
	var b strings.Builder
	for {
		i := strings.IndexByte(s, '{')
		if i < 0 {
			break
		}
		j := strings.IndexByte(s[i+1:], '}')
		if j < 0 {
			break
		}
		name := s[i+1 : i+1+j]
		if !isPlaceholderName(name) {
			b.WriteString(s[:i+1])
			s = s[i+1:]
			continue
		}
		b.WriteString(s[:i])
		b.WriteString(value(name))
		s = s[i+2+j:]
	}
	b.WriteString(s)
	return b.String()
}

func isPlaceholderName(n string) bool {
	if n == "" {
		return false
	}
	for i := 0; i < len(n); i++ {
		c := n[i]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '_' || c == '.') {
			return false
		}
	}
	return true
}
