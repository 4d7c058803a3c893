package ussd

import (
	"errors"
	"fmt"
	"regexp"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"
)

// InputSpec validates what a worker types on an input screen. Phones have a keypad:
// digits, * and #, plus letters by multi-tap; so numbers have no sign and dates are typed
// as digits, with or without separators.
type InputSpec struct {
	Line       int
	Type       string // int, text or date
	Min, Max   *int64 // int: the inclusive range (both required)
	MinLen     int    // text: length in characters (default 1)
	MaxLen     int    // text: (default 160)
	Pattern    string // text: a Go regular expression the whole input must match
	Past       bool   // date: not after today
	MaxAgeDays int    // date: not more than this many days ago (0: no bound)

	re     *regexp.Regexp
	zeroOK bool // "0" is a valid answer, so Back is "00" here
}

// defaultMaxText bounds free text: one screen's worth, what a handset lets a user type.
const defaultMaxText = 160

func (in *InputSpec) compile() error {
	var errs []error
	bad := func(format string, args ...any) { errs = append(errs, fmt.Errorf(format, args...)) }
	notFor := func(set bool, field string) {
		if set {
			bad("%s does not apply to type %s", field, in.Type)
		}
	}
	switch in.Type {
	case "int":
		if in.Min == nil || in.Max == nil {
			bad("type int needs min and max")
		} else if *in.Min < 0 || *in.Min > *in.Max {
			bad("want 0 <= min <= max (a keypad has no minus sign)")
		}
		notFor(in.MinLen != 0 || in.MaxLen != 0, "min_length/max_length")
		notFor(in.Pattern != "", "pattern")
		notFor(in.Past || in.MaxAgeDays != 0, "past/max_age_days")
	case "text":
		if in.MinLen == 0 {
			in.MinLen = 1
		}
		if in.MaxLen == 0 {
			in.MaxLen = defaultMaxText
		}
		if in.MinLen < 0 || in.MinLen > in.MaxLen {
			bad("want 0 < min_length <= max_length")
		}
		if in.Pattern != "" {
			re, err := regexp.Compile(`^(?:` + in.Pattern + `)$`)
			if err != nil {
				bad("pattern: %v", err)
			}
			in.re = re
		}
		notFor(in.Min != nil || in.Max != nil, "min/max")
		notFor(in.Past || in.MaxAgeDays != 0, "past/max_age_days")
	case "date":
		if in.MaxAgeDays < 0 {
			bad("max_age_days must not be negative")
		}
		notFor(in.Min != nil || in.Max != nil, "min/max")
		notFor(in.MinLen != 0 || in.MaxLen != 0 || in.Pattern != "", "min_length/max_length/pattern")
	default:
		bad("type %q: want int, text or date", in.Type)
	}
	if len(errs) > 0 {
		return errors.Join(errs...)
	}
	_, refused := in.check("0", time.Date(2000, 1, 1, 0, 0, 0, 0, time.UTC))
	in.zeroOK = refused == nil
	return nil
}

// invalid says why an input was refused: the name of an engine string and the values
// its placeholders take.
type invalid struct {
	key  string
	args map[string]string
}

// check validates raw and returns its normalised form (the number without leading zeros,
// the date as YYYY-MM-DD), or why it was refused. today is the local date.
func (in *InputSpec) check(raw string, today time.Time) (string, *invalid) {
	s := strings.TrimSpace(raw)
	switch in.Type {
	case "int":
		return in.checkInt(s)
	case "text":
		return in.checkText(s)
	case "date":
		return in.checkDate(s, today)
	}
	return "", &invalid{key: "invalid_choice"}
}

func (in *InputSpec) intRange() *invalid {
	return &invalid{key: "invalid_int", args: map[string]string{
		"min": strconv.FormatInt(*in.Min, 10), "max": strconv.FormatInt(*in.Max, 10)}}
}

func (in *InputSpec) checkInt(s string) (string, *invalid) {
	if s == "" || len(s) > 18 || !allDigits(s) {
		return "", in.intRange()
	}
	v, err := strconv.ParseInt(s, 10, 64)
	if err != nil || v < *in.Min || v > *in.Max {
		return "", in.intRange()
	}
	return strconv.FormatInt(v, 10), nil
}

func (in *InputSpec) checkText(s string) (string, *invalid) {
	n := utf8.RuneCountInString(s)
	if !utf8.ValidString(s) || n < in.MinLen || n > in.MaxLen {
		return "", &invalid{key: "invalid_text", args: map[string]string{
			"min": strconv.Itoa(in.MinLen), "max": strconv.Itoa(in.MaxLen)}}
	}
	if in.re != nil && !in.re.MatchString(s) {
		return "", &invalid{key: "invalid_pattern"}
	}
	return s, nil
}

func (in *InputSpec) checkDate(s string, today time.Time) (string, *invalid) {
	d, ok := parseDate(s)
	if !ok {
		return "", &invalid{key: "invalid_date"}
	}
	today = time.Date(today.Year(), today.Month(), today.Day(), 0, 0, 0, 0, time.UTC)
	if in.Past && d.After(today) {
		return "", &invalid{key: "date_future"}
	}
	if in.MaxAgeDays > 0 && today.Sub(d) > time.Duration(in.MaxAgeDays)*24*time.Hour {
		return "", &invalid{key: "date_too_old", args: map[string]string{"days": strconv.Itoa(in.MaxAgeDays)}}
	}
	return d.Format(time.DateOnly), nil
}

// parseDate reads DDMMYYYY, DDMMYY, D/M/YYYY (with / - . * or space between the parts)
// and YYYY-MM-DD. Two-digit years are 20YY: the service records recent events.
func parseDate(s string) (time.Time, bool) {
	parts := strings.FieldsFunc(s, func(r rune) bool { return strings.ContainsRune("/-.* ", r) })
	var d, m, y string
	switch {
	case len(parts) == 3 && len(parts[0]) == 4:
		y, m, d = parts[0], parts[1], parts[2]
	case len(parts) == 3:
		d, m, y = parts[0], parts[1], parts[2]
	case len(parts) == 1 && len(s) == 8:
		d, m, y = s[:2], s[2:4], s[4:]
	case len(parts) == 1 && len(s) == 6:
		d, m, y = s[:2], s[2:4], s[4:]
	default:
		return time.Time{}, false
	}
	if len(y) == 2 {
		y = "20" + y
	}
	if len(d) < 1 || len(d) > 2 || len(m) < 1 || len(m) > 2 || len(y) != 4 || !allDigits(d+m+y) {
		return time.Time{}, false
	}
	dd, _ := strconv.Atoi(d)
	mm, _ := strconv.Atoi(m)
	yy, _ := strconv.Atoi(y)
	t := time.Date(yy, time.Month(mm), dd, 0, 0, 0, 0, time.UTC)
	if t.Day() != dd || int(t.Month()) != mm || t.Year() != yy {
		return time.Time{}, false // 31 April and the like
	}
	return t, true
}

func allDigits(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return false
		}
	}
	return true
}
