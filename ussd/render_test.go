package ussd

import (
	"slices"
	"strings"
	"testing"
)

func TestScreenSize(t *testing.T) {
	tests := []struct {
		in   string
		want int
	}{
		{"Stock report", 12},
		{"Référer à", 9},                             // é, à are in the GSM alphabet
		{"Prix: 5€ [x]", 15},                         // € [ ] cost two septets each
		{"Français", 8 * 16 / 7},                     // ç is not: the whole text goes UCS-2
		{strings.Repeat("é", 80) + "ô", 81 * 16 / 7}, // over the limit once UCS-2
		{strings.Repeat("a", 182), 182},
	}
	for _, tt := range tests {
		if got := screenSize(tt.in); got != tt.want {
			t.Errorf("screenSize(%q) = %d, want %d", tt.in, got, tt.want)
		}
	}
	if screenSize(strings.Repeat("ô", 80)) > 182 || screenSize(strings.Repeat("ô", 81)) <= 182 {
		t.Error("182 septets should hold exactly 80 UCS-2 characters")
	}
}

func TestViewPages(t *testing.T) {
	long := view{title: "Main reason for referral?", backKey: "0", options: []string{
		"Danger signs (child)", "Fever not improving", "Severe malnutrition", "Pregnancy complication",
		"Labour or delivery", "Suspected TB", "Injury", "Other"}}
	tests := []struct {
		name  string
		v     view
		limit int
		want  []string
	}{
		{"fits", view{title: "mHero", options: []string{"Stock report", "Inbox"}}, 182,
			[]string{"mHero\n1. Stock report\n2. Inbox"}},
		{"back on every page, More on all but the last", long, 182, []string{
			"Main reason for referral?\n1. Danger signs (child)\n2. Fever not improving\n3. Severe malnutrition\n4. Pregnancy complication\n5. Labour or delivery\n6. Suspected TB\n98. More\n0. Back",
			"7. Injury\n8. Other\n0. Back"}},
		{"hint and note", view{hint: " Choose one of the numbers shown. ", title: "Inbox\n", note: "Nothing here yet.", backKey: "0"}, 182,
			[]string{"Choose one of the numbers shown.\nInbox\nNothing here yet.\n0. Back"}},
		{"empty lines stay lines", view{hint: " ", title: "", options: []string{" ", "x"}}, 182, []string{"\n\n1. \n2. x"}},
		{"an end screen has no Back", view{title: "Thank you.", backKey: "0", end: true}, 182, []string{"Thank you."}},
		{"a long text is cut between words", view{title: strings.Repeat("word ", 20), backKey: "00"}, 60, []string{
			"word word word word word word word word\n98. More\n00. Back",
			"word word word word word word word word\n98. More\n00. Back",
			"word word word word\n00. Back"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := tt.v.pages(tt.limit, "More", "Back")
			if strings.Join(got, "\n|\n") != strings.Join(tt.want, "\n|\n") {
				t.Errorf("pages =\n%s\nwant\n%s", strings.Join(got, "\n|\n"), strings.Join(tt.want, "\n|\n"))
			}
		})
	}
}

// FuzzPages checks pagination on any screen: every page fits the limit, and the pages
// hold all of the screen's text, in order, with nothing lost or repeated.
func FuzzPages(f *testing.F) {
	f.Add("Main reason for referral?", "Danger signs\nFever\nSevere malnutrition\nOther", 182, true)
	f.Add(strings.Repeat("Measles campaign ", 30), "", 160, true)       // a long message
	f.Add("Choisissez", "Français\nEnglish", 0, true)                   // UCS-2 at the smallest limit
	f.Add(strings.Repeat("ô", 500), "", 0, true)                        // a long UCS-2 text
	f.Add("x", strings.Repeat("Gbarnga Health Center\n", 40), 40, true) // many choices, tiny screen
	f.Add(strings.Repeat("a", 500), "", 40, true)                       // one word longer than a page
	f.Fuzz(func(t *testing.T, title, options string, limit int, back bool) {
		limit = minScreenLimit + abs(limit)%400
		v := view{title: title}
		if options != "" {
			v.options = strings.Split(options, "\n")
		}
		if back {
			v.backKey = "0"
		}
		pages := v.pages(limit, "More", "Back")
		// The one-page shortcut draws what the general cut would.
		if want := paginate(v.blocks(), v.tail("Back"), keyMore+". More", limit); !slices.Equal(pages, want) {
			t.Fatalf("pages = %q, paginate = %q", pages, want)
		}
		var body strings.Builder
		for i, p := range pages {
			if n := screenSize(p); n > limit {
				t.Fatalf("page %d of %d is %d over a limit of %d: %q", i+1, len(pages), n, limit, p)
			}
			lines := strings.Split(p, "\n")
			if back {
				lines = lines[:len(lines)-1] // 0. Back
			}
			if i < len(pages)-1 {
				if lines[len(lines)-1] != "98. More" {
					t.Fatalf("page %d of %d does not end with More: %q", i+1, len(pages), p)
				}
				lines = lines[:len(lines)-1]
			}
			body.WriteString(strings.Join(lines, "\n"))
		}
		squash := func(s string) string { return strings.Join(strings.Fields(s), "") }
		if got, want := squash(body.String()), squash(strings.Join(v.blocks(), "\n")); got != want {
			t.Fatalf("pages lost or repeated text:\n got %q\nwant %q", got, want)
		}
	})
}

func abs(n int) int {
	if n < 0 {
		return -n
	}
	return n
}

func TestFill(t *testing.T) {
	vars := map[string]string{"commodity": "ORS sachets", "message.text": "Hello", "n": "40"}
	tests := map[string]string{
		"{commodity}: {n} in stock": "ORS sachets: 40 in stock",
		"{message.text}!":           "Hello!",
		"{unknown} left":            " left",
		"{not a name} {n}":          "{not a name} 40",
		"{{n}}":                     "{40}",
		"no braces":                 "no braces",
		"open {n":                   "open {n",
		"{}":                        "{}",
	}
	for in, want := range tests {
		if got := fill(in, func(k string) string { return vars[k] }); got != want {
			t.Errorf("fill(%q) = %q, want %q", in, got, want)
		}
	}
}
