package ussd

import (
	"fmt"
	"io/fs"
	"sort"
	"strconv"
	"strings"
)

// LintOptions says what the menus will run against.
type LintOptions struct {
	ScreenLimit int      // default 182: the smallest limit of any gateway that serves them
	Actions     []string // the actions the server supplies; nil: not checked
	Sources     []string // the sources the server supplies (with "commodities"); nil: not checked
	// PlaceholderWidth is how many characters a {placeholder} is taken to fill; its real
	// value is only known at run time, when a screen that overflows is paginated.
	// Default 15.
	PlaceholderWidth int
}

// Lint finds everything wrong with the menu set in fsys, each problem with its file and
// line: what LoadMenus refuses, and unreachable screens, dead ends, unknown actions and
// sources, screens over the limit in any language, text outside the GSM alphabet and
// missing translations. No problems: the set is good to ship.
func Lint(fsys fs.FS, o LintOptions) []Problem {
	if o.ScreenLimit == 0 {
		o.ScreenLimit = DefaultScreenLimit
	}
	if o.PlaceholderWidth == 0 {
		o.PlaceholderWidth = 15
	}
	m := parseMenus(fsys)
	l := &linter{m: m, o: o, problems: append([]Problem(nil), m.problems...)}
	if len(m.Languages) > 0 {
		l.unreachable()
		for _, id := range m.order {
			s := m.Screens[id]
			l.screen(s)
		}
		l.engineStrings()
	}
	sort.SliceStable(l.problems, func(i, j int) bool {
		a, b := l.problems[i], l.problems[j]
		if a.File != b.File {
			return a.File < b.File
		}
		return a.Line < b.Line
	})
	return l.problems
}

type linter struct {
	m        *Menus
	o        LintOptions
	problems []Problem
}

func (l *linter) add(s *Screen, line int, format string, args ...any) {
	p := Problem{Line: line, Message: fmt.Sprintf(format, args...)}
	if s != nil {
		p.File, p.Screen = s.File, s.ID
	}
	l.problems = append(l.problems, p)
}

// unreachable walks from the start screen along every goto.
func (l *linter) unreachable() {
	m := l.m
	if m.Screens[m.Start] == nil {
		return // already a fatal problem
	}
	seen := map[string]bool{m.Start: true}
	queue := []string{m.Start}
	for len(queue) > 0 {
		s := m.Screens[queue[0]]
		queue = queue[1:]
		next := []string{s.Goto}
		for _, r := range s.When {
			next = append(next, r.Goto)
		}
		for _, o := range s.Options {
			next = append(next, o.Goto)
		}
		for _, id := range next {
			if id != "" && !seen[id] && m.Screens[id] != nil {
				seen[id] = true
				queue = append(queue, id)
			}
		}
	}
	for _, id := range m.order {
		if !seen[id] {
			s := m.Screens[id]
			l.add(s, s.Line, "unreachable from the start screen %q", m.Start)
		}
	}
}

func (l *linter) screen(s *Screen) {
	if !s.End && len(s.Options) == 0 && s.Source == "" && s.Input == nil {
		l.add(s, s.Line, "dead end: no options, source or input, and not an end screen")
	}
	known := func(list []string, name string) bool { return list == nil || contains(list, name) }
	if s.Action != "" && !known(l.o.Actions, s.Action) {
		l.add(s, s.lines["action"], "unknown action %q", s.Action)
	}
	if s.Source != "" && !known(l.o.Sources, s.Source) {
		l.add(s, s.lines["source"], "unknown source %q", s.Source)
	}
	l.text(s, "text", s.Text)
	l.text(s, "hint", s.Hint)
	l.text(s, "empty", s.Empty)
	for i, o := range s.Options {
		if o.Action != "" && !known(l.o.Actions, o.Action) {
			l.add(s, o.Line, "option %d: unknown action %q", i+1, o.Action)
		}
		l.text(s, "label of option "+strconv.Itoa(i+1), o.Label)
	}
	for _, lang := range l.m.Languages {
		l.length(s, lang)
	}
}

// text checks one text: every menu language present, no other, GSM characters only.
func (l *linter) text(s *Screen, what string, t Text) {
	if t.IsZero() {
		return
	}
	for _, lang := range l.m.Languages {
		if !t.has(lang) {
			l.add(s, t.Line, "%s has no %s translation", what, lang)
		}
	}
	langs := make([]string, 0, len(t.ByLang))
	for lang := range t.ByLang {
		langs = append(langs, lang)
	}
	sort.Strings(langs)
	for _, lang := range langs {
		if !contains(l.m.Languages, lang) {
			l.add(s, t.Line, "%s is in %s, which menu.languages does not list", what, lang)
		}
	}
	for _, lang := range append([]string{""}, langs...) {
		txt := t.All
		if lang != "" {
			txt = t.ByLang[lang]
		}
		if bad := nonGSM(txt); bad != "" {
			in := ""
			if lang != "" {
				in = " (" + lang + ")"
			}
			l.add(s, t.Line, "%s%s has characters outside the GSM alphabet (%s): the screen would go out in UCS-2 and hold 80 characters", what, in, bad)
		}
	}
}

// length renders the screen in lang with placeholders at their assumed width and checks
// that what must fit on one page does.
func (l *linter) length(s *Screen, lang string) {
	m, limit := l.m, l.o.ScreenLimit
	wide := strings.Repeat("x", l.o.PlaceholderWidth)
	fillWide := func(t string) string { return fill(t, func(string) string { return wide }) }
	lang0 := m.lang0()
	v := view{title: fillWide(s.Text.In(lang, lang0)), end: s.End}
	if s.ID != m.Start {
		v.backKey = backKeyOf(s)
	}
	more, back := m.str("more", lang, nil), m.str("back", lang, nil)
	over := func(v view, what string) {
		if pages := v.pages(limit, more, back); len(pages) > 1 {
			l.add(s, s.Line, "%d characters in %s%s, over the limit of %d", v.size(back), lang, what, limit)
		}
	}
	switch {
	case len(s.Options) > 0 || s.Source != "":
		// Long lists are paginated by design; the question and the first choice must
		// share a page, and no choice may need cutting.
		labels := []string{wide}
		if len(s.Options) > 0 {
			labels = labels[:0]
			for _, o := range s.Options {
				labels = append(labels, fillWide(o.Label.In(lang, lang0)))
			}
		}
		first := v
		first.options = labels[:1]
		over(first, " with its first choice")
		for i, label := range labels {
			if pages := (view{title: "", options: []string{label}, backKey: v.backKey}).pages(limit, more, back); len(pages) > 1 {
				l.add(s, s.Line, "option %d is too long to fit a page in %s", i+1, lang)
			}
		}
	case s.Input != nil:
		over(v, "")
		for _, hint := range l.hints(s, lang) {
			withHint := v
			withHint.hint = hint
			over(withHint, fmt.Sprintf(" with the hint %q", hint))
		}
	default:
		over(v, "")
	}
}

// hints are the texts an input screen may show above itself after a refused answer.
func (l *linter) hints(s *Screen, lang string) []string {
	in := s.Input
	if !s.Hint.IsZero() {
		return []string{fill(s.Hint.In(lang, l.m.lang0()), func(string) string { return "99999" })}
	}
	str := func(key string, args map[string]string) string { return l.m.str(key, lang, args) }
	switch in.Type {
	case "int":
		if in.Min == nil || in.Max == nil {
			return nil
		}
		return []string{in.intRangeHint(str)}
	case "text":
		out := []string{str("invalid_text", map[string]string{"min": strconv.Itoa(in.MinLen), "max": strconv.Itoa(in.MaxLen)})}
		if in.re != nil {
			out = append(out, str("invalid_pattern", nil))
		}
		return out
	case "date":
		return []string{str("invalid_date", nil), str("date_future", nil),
			str("date_too_old", map[string]string{"days": strconv.Itoa(in.MaxAgeDays)})}
	}
	return nil
}

func (in *InputSpec) intRangeHint(str func(string, map[string]string) string) string {
	r := in.intRange()
	return str(r.key, r.args)
}

// engineStrings checks the engine's texts: translations, alphabet, and that the end screens
// and the resume question fit.
func (l *linter) engineStrings() {
	m := l.m
	file := m.stringsFile
	if file == "" {
		file = "strings"
	}
	keys := make([]string, 0, len(defaultStrings))
	for k := range defaultStrings {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		t, ok := m.Strings[k]
		for _, lang := range m.Languages {
			// English is built in; every other language needs its translation.
			if (!ok || !t.has(lang)) && lang != "en" {
				l.problems = append(l.problems, Problem{File: file, Line: t.Line, Message: fmt.Sprintf("string %q has no %s translation", k, lang)})
			}
		}
		if ok {
			l.text(&Screen{File: file}, "string "+k, t)
		}
	}
	for _, lang := range m.Languages {
		for _, k := range []string{"busy", "rate_limited", "unknown_number", "inactive", "opted_out", "session_ended"} {
			if n := screenSize(m.str(k, lang, nil)); n > l.o.ScreenLimit {
				l.problems = append(l.problems, Problem{File: file, Message: fmt.Sprintf("string %q in %s is %d characters, over the %d limit", k, lang, n, l.o.ScreenLimit)})
			}
		}
		v := view{title: m.str("resume", lang, nil), options: []string{m.str("resume_continue", lang, nil), m.str("resume_restart", lang, nil)}}
		if len(v.pages(l.o.ScreenLimit, m.str("more", lang, nil), m.str("back", lang, nil))) > 1 {
			l.problems = append(l.problems, Problem{File: file, Message: fmt.Sprintf("the resume question in %s does not fit one screen", lang)})
		}
	}
}
