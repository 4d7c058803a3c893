package ussd_test

import (
	"fmt"
	"testing/fstest"

	"github.com/mhero-health/mhero/ussd"
)

// Lint reports each problem of a menu set with its file and line, as `mhero menus lint`
// prints them.
func ExampleLint() {
	menus := fstest.MapFS{"main.yaml": {Data: []byte(`menu:
  languages: [en]
  start: main
screens:
  main:
    text: mHero
    options:
      - {label: Stock report, goto: stock}
  stock:
    text: How many ORS sachets do you have?
    input: {type: int, min: 0, max: 99999}
    save: quantity
    action: stock.send
    goto: done
  done:
    end: true
    text: Thank you.
  old:
    text: Nobody links here any more.
    end: true
`)}}
	for _, p := range ussd.Lint(menus, ussd.LintOptions{Actions: []string{"stock.submit"}}) {
		fmt.Println(p)
	}
	// Output:
	// main.yaml:13: screen stock: unknown action "stock.send"
	// main.yaml:18: screen old: unreachable from the start screen "main"
}
