package ussd

import (
	"errors"
	"fmt"
	"io/fs"
	"regexp"
	"sort"
	"strconv"
	"strings"

	"go.yaml.in/yaml/v3"
)

// Menus is a parsed menu set: every *.yaml file of a folder. One file carries the header
// (`menu:` with the languages and the start screen); any file may add `screens:` and
// `strings:` (the engine's own texts: errors, Back, More, ...).
type Menus struct {
	Languages []string // the first is the default
	Start     string   // the screen a new session opens on
	Screens   map[string]*Screen
	Strings   map[string]Text

	order       []string // screen ids in file order, for stable lint output
	problems    []Problem
	stringsFile string // the file with strings:, for lint
	unreadable  bool   // a file was not YAML: what it held is unknown
}

// Screen is one screen of a menu. Its kind follows from what it has: options (fixed or
// from a data source) ask for a choice, input asks for a value, end closes the session.
type Screen struct {
	ID   string
	File string
	Line int

	Text    Text
	Options []Option   // fixed choices
	Source  string     // or choices from a named data source
	Empty   Text       // shown instead of the choices when the source has none
	Save    string     // the variable a choice's value or the input is saved in
	Input   *InputSpec // a typed value to enter
	Hint    Text       // replaces the default hint when the input is not valid
	Action  string     // run after a valid input, before moving on
	Goto    string     // the next screen
	When    []Rule     // conditional next screens, checked before Goto
	End     bool       // the session ends on this screen

	lines map[string]int // line of each field, for lint
}

// Option is one fixed choice.
type Option struct {
	Line     int
	Label    Text
	Value    string // saved in the screen's Save variable
	Goto     string // overrides the screen's Goto
	Action   string // run when chosen, before moving on
	Language string // switches the session's language (and saves it as "language")
}

// Rule sends the session to Goto when variable Var equals Equals.
type Rule struct {
	Line   int
	Var    string
	Equals string
	Goto   string
}

// Problem is one thing wrong with a menu set, at a file and line.
type Problem struct {
	File    string
	Line    int
	Screen  string
	Message string
	// fatal problems make a menu set unusable (LoadMenus refuses it); the others are
	// quality problems that Lint reports.
	fatal bool
}

func (p Problem) String() string {
	var b strings.Builder
	b.WriteString(p.File)
	if p.Line > 0 {
		b.WriteString(":" + strconv.Itoa(p.Line))
	}
	b.WriteString(": ")
	if p.Screen != "" {
		b.WriteString("screen " + p.Screen + ": ")
	}
	b.WriteString(p.Message)
	return b.String()
}

// LoadMenus parses every *.yaml file at the top of fsys. It fails, listing each problem
// with its file and line, when the set cannot run: YAML errors, unknown fields, links to
// screens that do not exist, bad validation rules. Quality problems (length, translations,
// reachability) are Lint's.
func LoadMenus(fsys fs.FS) (*Menus, error) {
	m := parseMenus(fsys)
	var errs []error
	for _, p := range m.problems {
		if p.fatal {
			errs = append(errs, errors.New(p.String()))
		}
	}
	if len(errs) > 0 {
		return nil, errors.Join(errs...)
	}
	return m, nil
}

func parseMenus(fsys fs.FS) *Menus {
	m := &Menus{Screens: map[string]*Screen{}, Strings: map[string]Text{}}
	names, err := fs.Glob(fsys, "*.y*ml")
	if err != nil || len(names) == 0 {
		m.problems = append(m.problems, Problem{File: ".", Message: "no menu files (*.yaml)", fatal: true})
		return m
	}
	sort.Strings(names)
	header := ""
	for _, name := range names {
		b, err := fs.ReadFile(fsys, name)
		if err != nil {
			m.problems = append(m.problems, Problem{File: name, Message: err.Error(), fatal: true})
			continue
		}
		p := &parser{file: name, m: m}
		p.file1(b, &header)
	}
	m.checkStructure(header)
	return m
}

// parser reads one file's YAML nodes, so that every problem can name its line.
type parser struct {
	file string
	m    *Menus
}

func (p *parser) fail(n *yaml.Node, screen, format string, args ...any) {
	line := 0
	if n != nil {
		line = n.Line
	}
	p.m.problems = append(p.m.problems, Problem{File: p.file, Line: line, Screen: screen,
		Message: fmt.Sprintf(format, args...), fatal: true})
}

func (p *parser) file1(b []byte, header *string) {
	var doc yaml.Node
	if err := yaml.Unmarshal(b, &doc); err != nil {
		// yaml.v3 syntax errors read "yaml: line N: ...": lift the line out for file:line.
		line, msg := 0, err.Error()
		if m := yamlLineRE.FindStringSubmatch(msg); m != nil {
			line, _ = strconv.Atoi(m[1])
			msg = strings.TrimPrefix(msg[len(m[0]):], " ")
		}
		p.m.problems = append(p.m.problems, Problem{File: p.file, Line: line, Message: msg, fatal: true})
		p.m.unreadable = true
		return
	}
	if len(doc.Content) == 0 {
		return // an empty file
	}
	root := doc.Content[0]
	if root.Kind != yaml.MappingNode {
		p.fail(root, "", "want a mapping with menu, screens or strings")
		return
	}
	eachPair(root, func(k, v *yaml.Node) {
		switch k.Value {
		case "menu":
			if *header != "" {
				p.fail(k, "", "a second menu header (the first is in %s)", *header)
				return
			}
			*header = p.file
			p.header(v)
		case "screens":
			p.screens(v)
		case "strings":
			p.m.stringsFile = p.file
			p.strings(v)
		default:
			p.fail(k, "", "unknown top-level field %q (want menu, screens or strings)", k.Value)
		}
	})
}

func eachPair(n *yaml.Node, fn func(k, v *yaml.Node)) {
	for i := 0; i+1 < len(n.Content); i += 2 {
		fn(n.Content[i], n.Content[i+1])
	}
}

func (p *parser) header(n *yaml.Node) {
	if n.Kind != yaml.MappingNode {
		p.fail(n, "", "menu: want languages and start")
		return
	}
	eachPair(n, func(k, v *yaml.Node) {
		switch k.Value {
		case "languages":
			if v.Kind != yaml.SequenceNode || len(v.Content) == 0 {
				p.fail(v, "", "menu.languages: want a list such as [en, fr]")
				return
			}
			for _, l := range v.Content {
				if len(l.Value) != 2 {
					p.fail(l, "", "menu.languages: %q is not a two-letter ISO 639-1 code", l.Value)
				}
				p.m.Languages = append(p.m.Languages, l.Value)
			}
		case "start":
			p.m.Start = p.scalar(v, "", "menu.start")
		default:
			p.fail(k, "", "menu: unknown field %q (want languages, start)", k.Value)
		}
	})
}

func (p *parser) strings(n *yaml.Node) {
	if n.Kind != yaml.MappingNode {
		p.fail(n, "", "strings: want a mapping of name to text")
		return
	}
	eachPair(n, func(k, v *yaml.Node) {
		if _, ok := defaultStrings[k.Value]; !ok {
			p.fail(k, "", "strings: unknown string %q", k.Value)
			return
		}
		p.m.Strings[k.Value] = p.text(v, "")
	})
}

func (p *parser) screens(n *yaml.Node) {
	if n.Kind != yaml.MappingNode {
		p.fail(n, "", "screens: want a mapping of screen id to screen")
		return
	}
	eachPair(n, func(k, v *yaml.Node) {
		if prev, ok := p.m.Screens[k.Value]; ok {
			p.fail(k, k.Value, "defined twice (first at %s:%d)", prev.File, prev.Line)
			return
		}
		s := p.screen(k.Value, v)
		s.Line = k.Line
		p.m.Screens[s.ID] = s
		p.m.order = append(p.m.order, s.ID)
	})
}

func (p *parser) scalar(n *yaml.Node, screen, field string) string {
	if n.Kind != yaml.ScalarNode {
		p.fail(n, screen, "%s: want a single value", field)
		return ""
	}
	return n.Value
}

func (p *parser) screen(id string, n *yaml.Node) *Screen {
	s := &Screen{ID: id, File: p.file, lines: map[string]int{}}
	if n.Kind != yaml.MappingNode {
		p.fail(n, id, "want a mapping with text and options, source, input or end")
		return s
	}
	eachPair(n, func(k, v *yaml.Node) {
		s.lines[k.Value] = k.Line
		switch k.Value {
		case "text":
			s.Text = p.text(v, id)
		case "options":
			p.options(s, v)
		case "source":
			s.Source = p.scalar(v, id, "source")
		case "empty":
			s.Empty = p.text(v, id)
		case "save":
			s.Save = p.scalar(v, id, "save")
		case "input":
			s.Input = p.input(id, v)
		case "hint":
			s.Hint = p.text(v, id)
		case "action":
			s.Action = p.scalar(v, id, "action")
		case "goto":
			s.Goto = p.scalar(v, id, "goto")
		case "when":
			p.rules(s, v)
		case "end":
			s.End = p.boolean(v, id, "end")
		default:
			p.fail(k, id, "unknown field %q (want text, options, source, empty, save, input, hint, action, goto, when, end)", k.Value)
		}
	})
	return s
}

func (p *parser) boolean(n *yaml.Node, screen, field string) bool {
	b, err := strconv.ParseBool(p.scalar(n, screen, field))
	if err != nil {
		p.fail(n, screen, "%s: want true or false", field)
	}
	return b
}

// text reads a translated text: a mapping of language to string, or one plain string
// that is the same in every language (a name, a number).
func (p *parser) text(n *yaml.Node, screen string) Text {
	t := Text{Line: n.Line}
	switch n.Kind {
	case yaml.ScalarNode:
		t.All = n.Value
		if t.All == "" {
			p.fail(n, screen, "empty text")
		}
	case yaml.MappingNode:
		t.ByLang = map[string]string{}
		eachPair(n, func(k, v *yaml.Node) {
			if v.Kind != yaml.ScalarNode || v.Value == "" {
				p.fail(v, screen, "text in %q: want a non-empty string", k.Value)
				return
			}
			t.ByLang[k.Value] = v.Value
		})
	default:
		p.fail(n, screen, "want a text: a string, or a mapping of language to string")
	}
	return t
}

func (p *parser) options(s *Screen, n *yaml.Node) {
	if n.Kind != yaml.SequenceNode {
		p.fail(n, s.ID, "options: want a list")
		return
	}
	for _, on := range n.Content {
		o := Option{Line: on.Line}
		if on.Kind != yaml.MappingNode {
			p.fail(on, s.ID, "option: want a mapping with label and goto")
			continue
		}
		eachPair(on, func(k, v *yaml.Node) {
			switch k.Value {
			case "label":
				o.Label = p.text(v, s.ID)
			case "value":
				o.Value = p.scalar(v, s.ID, "option value")
			case "goto":
				o.Goto = p.scalar(v, s.ID, "option goto")
			case "action":
				o.Action = p.scalar(v, s.ID, "option action")
			case "language":
				o.Language = p.scalar(v, s.ID, "option language")
			default:
				p.fail(k, s.ID, "option: unknown field %q (want label, value, goto, action, language)", k.Value)
			}
		})
		if o.Label.IsZero() {
			p.fail(on, s.ID, "option without a label")
		}
		s.Options = append(s.Options, o)
	}
}

func (p *parser) rules(s *Screen, n *yaml.Node) {
	if n.Kind != yaml.SequenceNode {
		p.fail(n, s.ID, "when: want a list of {var, equals, goto}")
		return
	}
	for _, rn := range n.Content {
		r := Rule{Line: rn.Line}
		if rn.Kind != yaml.MappingNode {
			p.fail(rn, s.ID, "when: want {var, equals, goto}")
			continue
		}
		eachPair(rn, func(k, v *yaml.Node) {
			switch k.Value {
			case "var":
				r.Var = p.scalar(v, s.ID, "when var")
			case "equals":
				r.Equals = p.scalar(v, s.ID, "when equals")
			case "goto":
				r.Goto = p.scalar(v, s.ID, "when goto")
			default:
				p.fail(k, s.ID, "when: unknown field %q (want var, equals, goto)", k.Value)
			}
		})
		if r.Var == "" || r.Goto == "" {
			p.fail(rn, s.ID, "when: needs var and goto")
		}
		s.When = append(s.When, r)
	}
}

func (p *parser) input(screen string, n *yaml.Node) *InputSpec {
	in := &InputSpec{Line: n.Line}
	if n.Kind != yaml.MappingNode {
		p.fail(n, screen, "input: want a mapping with type (int, text or date)")
		return in
	}
	num := func(v *yaml.Node, field string) *int64 {
		x, err := strconv.ParseInt(p.scalar(v, screen, field), 10, 64)
		if err != nil {
			p.fail(v, screen, "input.%s: want a whole number", field)
			return nil
		}
		return &x
	}
	eachPair(n, func(k, v *yaml.Node) {
		switch k.Value {
		case "type":
			in.Type = p.scalar(v, screen, "input.type")
		case "min":
			in.Min = num(v, "min")
		case "max":
			in.Max = num(v, "max")
		case "min_length":
			if x := num(v, "min_length"); x != nil {
				in.MinLen = int(*x)
			}
		case "max_length":
			if x := num(v, "max_length"); x != nil {
				in.MaxLen = int(*x)
			}
		case "pattern":
			in.Pattern = p.scalar(v, screen, "input.pattern")
		case "past":
			in.Past = p.boolean(v, screen, "input.past")
		case "max_age_days":
			if x := num(v, "max_age_days"); x != nil {
				in.MaxAgeDays = int(*x)
			}
		default:
			p.fail(k, screen, "input: unknown field %q (want type, min, max, min_length, max_length, pattern, past, max_age_days)", k.Value)
		}
	})
	if err := in.compile(); err != nil {
		p.fail(n, screen, "input: %v", err)
	}
	return in
}

// checkStructure finds what would break a session at run time.
func (m *Menus) checkStructure(header string) {
	fail := func(s *Screen, line int, format string, args ...any) {
		m.problems = append(m.problems, Problem{File: s.File, Line: line, Screen: s.ID, Message: fmt.Sprintf(format, args...), fatal: true})
	}
	if header == "" && !m.unreadable {
		m.problems = append(m.problems, Problem{File: ".", Message: "no menu header (menu: {languages: [...], start: ...}) in any file", fatal: true})
	} else if header != "" && (m.Start == "" || m.Screens[m.Start] == nil) {
		m.problems = append(m.problems, Problem{File: header, Message: fmt.Sprintf("menu.start %q is not a screen", m.Start), fatal: true})
	}
	link := func(s *Screen, line int, target, what string) {
		if target != "" && m.Screens[target] == nil {
			fail(s, line, "%s %q is not a screen", what, target)
		}
	}
	for _, id := range m.order {
		s := m.Screens[id]
		choices := len(s.Options) > 0 || s.Source != ""
		switch {
		case len(s.Options) > 0 && s.Source != "":
			fail(s, s.Line, "has both options and a source; choose one")
		case choices && s.Input != nil:
			fail(s, s.Line, "has both choices and an input; choose one")
		case s.End && (choices || s.Input != nil || s.Goto != "" || len(s.When) > 0):
			fail(s, s.Line, "an end screen has no options, input or goto")
		}
		if s.Text.IsZero() {
			fail(s, s.Line, "has no text")
		}
		if s.Input != nil && s.Save == "" {
			fail(s, s.lines["input"], "an input needs save: the variable it goes in")
		}
		if s.Source != "" && s.Save == "" {
			fail(s, s.lines["source"], "a source needs save: the variable the choice goes in")
		}
		link(s, s.lines["goto"], s.Goto, "goto")
		for _, r := range s.When {
			link(s, r.Line, r.Goto, "when goto")
		}
		for i, o := range s.Options {
			link(s, o.Line, o.Goto, "option goto")
			if o.Goto == "" && s.Goto == "" && len(s.When) == 0 {
				fail(s, o.Line, "option %d leads nowhere (no goto on it or on the screen)", i+1)
			}
			if o.Language != "" && !contains(m.Languages, o.Language) {
				fail(s, o.Line, "option %d switches to language %q, which the menu does not have", i+1, o.Language)
			}
		}
		if (s.Input != nil || s.Source != "") && s.Goto == "" && len(s.When) == 0 {
			fail(s, s.Line, "leads nowhere: an input or source screen needs goto")
		}
	}
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

// Text is a screen text in each language of the menu.
type Text struct {
	Line   int
	All    string            // one text for every language
	ByLang map[string]string // or one per language
}

// IsZero reports whether the text is missing.
func (t Text) IsZero() bool { return t.All == "" && len(t.ByLang) == 0 }

// In returns the text in lang, or in fallback when it has no lang.
func (t Text) In(lang, fallback string) string {
	if t.All != "" {
		return t.All
	}
	if s, ok := t.ByLang[lang]; ok {
		return s
	}
	return t.ByLang[fallback]
}

// has reports whether the text exists in lang.
func (t Text) has(lang string) bool {
	if t.All != "" {
		return true
	}
	_, ok := t.ByLang[lang]
	return ok
}

var yamlLineRE = regexp.MustCompile(`^yaml: line (\d+):`)
