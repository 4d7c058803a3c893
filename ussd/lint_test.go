package ussd_test

import (
	"strings"
	"testing"
	"testing/fstest"

	"github.com/mhero-health/mhero/ussd"
)

// shippedActions and shippedSources are what cmd/mhero supplies to the shipped menus.
var (
	shippedActions = []string{"stock.submit", "referral.submit", "details.submit", "language.submit", "survey.answer"}
	shippedSources = []string{"commodities", "facilities", "cadres", "inbox", "surveys"}
)

func TestShippedMenusLintClean(t *testing.T) {
	for _, limit := range []int{182, 160} {
		problems := ussd.Lint(ussd.ShippedMenus(), ussd.LintOptions{ScreenLimit: limit, Actions: shippedActions, Sources: shippedSources})
		for _, p := range problems {
			t.Errorf("limit %d: %s", limit, p)
		}
	}
	if _, err := ussd.LoadMenus(ussd.ShippedMenus()); err != nil {
		t.Fatalf("LoadMenus(shipped): %v", err)
	}
}

// brokenMenus has one of each problem Lint finds; each is on a known line.
var brokenMenus = fstest.MapFS{
	"main.yaml": {Data: []byte(`menu:
  languages: [en, fr]
  start: main
screens:
  main:
    text: {en: Main, fr: Principal}
    options:
      - {label: {en: Report, fr: Rapport}, goto: report}
      - {label: {en: Help}, goto: help}
  report:
    text: {en: "How many?", fr: "Combien ?"}
    input: {type: int, min: 0, max: 10}
    save: n
    action: report.send
    goto: done
  done:
    end: true
    text: {en: "Thanks", fr: "Merci, ça marche"}
  help:
    text: {en: "Read the leaflet.", fr: "Lisez le prospectus."}
  orphan:
    text: {en: "Nobody comes here", fr: "Personne"}
    source: nowhere
    save: x
    goto: main
  long:
    end: true
    text: {en: "` + strings.Repeat("Long text. ", 20) + `", fr: "Court"}
`)},
}

func TestLintFindsEveryKindOfProblem(t *testing.T) {
	problems := ussd.Lint(brokenMenus, ussd.LintOptions{Actions: []string{"stock.submit"}, Sources: []string{"commodities"}})
	var got []string
	for _, p := range problems {
		got = append(got, p.String())
	}
	want := []string{
		`main.yaml:9: screen main: label of option 2 has no fr translation`,
		`main.yaml:14: screen report: unknown action "report.send"`,
		`main.yaml:18: screen done: text (fr) has characters outside the GSM alphabet (ç)`,
		`main.yaml:19: screen help: dead end: no options, source or input, and not an end screen`,
		`main.yaml:21: screen orphan: unreachable from the start screen "main"`,
		`main.yaml:23: screen orphan: unknown source "nowhere"`,
		`main.yaml:26: screen long: unreachable from the start screen "main"`,
		`main.yaml:26: screen long: 219 characters in en, over the limit of 182`,
		`strings: string "more" has no fr translation`,
	}
	for _, w := range want {
		found := false
		for _, g := range got {
			if strings.HasPrefix(g, w) {
				found = true
			}
		}
		if !found {
			t.Errorf("Lint did not report\n\t%s\nit reported:\n\t%s", w, strings.Join(got, "\n\t"))
		}
	}
}

func TestLoadMenusRefusesWhatCannotRun(t *testing.T) {
	tests := []struct {
		name, yaml, want string
	}{
		{"yaml syntax", "menu:\n  languages: [en\n", "main.yaml:1: did not find expected ',' or ']'"},
		{"unknown field", "menu: {languages: [en], start: a}\nscreens:\n  a:\n    txt: hi\n    end: true\n", `main.yaml:4: screen a: unknown field "txt"`},
		{"goto nowhere", "menu: {languages: [en], start: a}\nscreens:\n  a:\n    text: hi\n    options:\n      - {label: x, goto: b}\n", `main.yaml:6: screen a: option goto "b" is not a screen`},
		{"no start", "menu: {languages: [en], start: zz}\nscreens:\n  a: {text: hi, end: true}\n", `main.yaml: menu.start "zz" is not a screen`},
		{"input without save", "menu: {languages: [en], start: a}\nscreens:\n  a:\n    text: hi\n    input: {type: int, min: 0, max: 1}\n    goto: a\n", "an input needs save"},
		{"bad pattern", "menu: {languages: [en], start: a}\nscreens:\n  a:\n    text: hi\n    input: {type: text, pattern: '(['}\n    save: x\n    goto: a\n", "main.yaml:5: screen a: input: pattern"},
		{"no header", "screens:\n  a: {text: hi, end: true}\n", "no menu header"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := ussd.LoadMenus(fstest.MapFS{"main.yaml": {Data: []byte(tt.yaml)}})
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("LoadMenus error = %v, want it to contain %q", err, tt.want)
			}
		})
	}
}

func TestLoadMenusNamesBothPlacesOfADuplicate(t *testing.T) {
	_, err := ussd.LoadMenus(fstest.MapFS{
		"a.yaml": {Data: []byte("menu: {languages: [en], start: x}\nscreens:\n  x: {text: hi, end: true}\n")},
		"b.yaml": {Data: []byte("screens:\n  y: {text: hi, end: true}\n  x: {text: again, end: true}\n")},
	})
	if err == nil || !strings.Contains(err.Error(), "b.yaml:3: screen x: defined twice (first at a.yaml:3)") {
		t.Errorf("LoadMenus error = %v, want the duplicate with both places", err)
	}
}
