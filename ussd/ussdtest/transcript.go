package ussdtest

import (
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
)

// A transcript is a dialogue in a text file (after net/smtp's scripted tests): what the
// user and the gateway do, and the exact screens the server answers.
//
//	# comment
//	gateway jsonop        the dialect of the sessions that follow (default africastalking)
//	phone +231886000001   who dials next
//	dial                  a new session and its first hop ("dial 1*2": with a shortcut)
//	> 40                  the user's next input
//	retry                 the gateway sends the last hop again
//	late 1                hop 1 of this session (0 is the dial) arrives again, late
//	timeout               the gateway says the session timed out ("end": ended)
//	expect calls stock.submit 1   a check the test defines (Config.Expect)
//	< CON Stock report    the answer to the hop above; further "<" lines continue it
//	< 1. ORS sachets
//
// Run with Config.Update (go test -update) to rewrite the "<" lines from what the server
// answers, then read the diff.

// Config is where a transcript runs.
type Config struct {
	BaseURL string
	Client  *http.Client      // default http.DefaultClient
	Secrets map[string]string // by gateway, sent as X-Mhero-Secret
	Expect  func(args []string) error
	Update  bool
}

type step struct {
	line int
	verb string // gateway, phone, dial, >, retry, late, timeout, end, expect
	arg  string
	want []string // the "<" lines after a hop
}

// Run plays the transcript at path against the server and reports every screen that
// differs from the expected one.
func Run(t *testing.T, path string, c Config) {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	steps, err := parse(string(b))
	if err != nil {
		t.Fatalf("%s: %v", path, err)
	}
	if c.Client == nil {
		c.Client = http.DefaultClient
	}
	base := strings.TrimSuffix(filepath.Base(path), filepath.Ext(path))
	gateway, phone := "africastalking", ""
	var s Session
	var out []string // the rewritten file, with Update
	sessions := 0
	for _, st := range steps {
		if st.verb == "#" || st.verb == "" {
			out = append(out, st.arg)
			continue
		}
		out = append(out, strings.TrimRight(st.verb+" "+st.arg, " "))
		var req *http.Request
		if s == nil && st.verb != "dial" && st.verb != "gateway" && st.verb != "phone" && st.verb != "expect" {
			t.Fatalf("%s:%d: %s before any dial", path, st.line, st.verb)
		}
		switch st.verb {
		case "gateway":
			gateway = st.arg
			continue
		case "phone":
			phone = st.arg
			continue
		case "expect":
			if c.Expect == nil {
				t.Fatalf("%s:%d: expect without Config.Expect", path, st.line)
			}
			if err := c.Expect(strings.Fields(st.arg)); err != nil {
				t.Errorf("%s:%d: expect %s: %v", path, st.line, st.arg, err)
			}
			continue
		case "dial":
			sessions++
			s, err = NewSession(gateway, c.BaseURL, base+"-"+strconv.Itoa(sessions), phone, c.Secrets[gateway])
			if err != nil {
				t.Fatalf("%s:%d: %v", path, st.line, err)
			}
			req = s.Dial(st.arg)
		case ">":
			req = s.Answer(st.arg)
			out[len(out)-1] = "> " + st.arg // keep "> " for an empty input
		case "retry":
			req = s.Hop(s.Len() - 1)
		case "late":
			n, err := strconv.Atoi(st.arg)
			if err != nil {
				t.Fatalf("%s:%d: late N: %v", path, st.line, err)
			}
			req = s.Hop(n)
		case "timeout", "end":
			if req = s.Close(st.verb == "timeout"); req == nil {
				t.Fatalf("%s:%d: gateway %s has no %s", path, st.line, gateway, st.verb)
			}
		}
		got, err := Do(c.Client, s, req)
		if err != nil {
			t.Fatalf("%s:%d: %s %s: %v", path, st.line, st.verb, st.arg, err)
		}
		gotLines := strings.Split(Format(got), "\n")
		for _, l := range gotLines {
			out = append(out, strings.TrimRight("< "+l, " "))
		}
		if want := strings.Join(st.want, "\n"); !c.Update && want != strings.Join(gotLines, "\n") {
			t.Errorf("%s:%d: after %s %s\n got:\n%s\nwant:\n%s", path, st.line, st.verb, st.arg,
				indent(strings.Join(gotLines, "\n")), indent(want))
		}
	}
	if c.Update {
		if err := os.WriteFile(path, []byte(strings.Join(out, "\n")+"\n"), 0o644); err != nil {
			t.Fatal(err)
		}
	}
}

func indent(s string) string { return "\t" + strings.ReplaceAll(s, "\n", "\n\t") }

// parse reads the steps; "<" lines attach to the hop before them.
func parse(text string) ([]step, error) {
	var steps []step
	lastHop := -1
	for i, line := range strings.Split(strings.TrimRight(text, "\n"), "\n") {
		n := i + 1
		switch {
		case strings.TrimSpace(line) == "" || strings.HasPrefix(line, "#"):
			steps = append(steps, step{line: n, verb: "#", arg: line})
			continue
		case line == "<" || strings.HasPrefix(line, "< "):
			if lastHop < 0 {
				return nil, fmt.Errorf("line %d: a screen before any hop", n)
			}
			steps[lastHop].want = append(steps[lastHop].want, strings.TrimPrefix(strings.TrimPrefix(line, "<"), " "))
			continue
		case line == ">" || strings.HasPrefix(line, "> "):
			steps = append(steps, step{line: n, verb: ">", arg: strings.TrimPrefix(strings.TrimPrefix(line, ">"), " ")})
			lastHop = len(steps) - 1
			continue
		}
		verb, arg, _ := strings.Cut(line, " ")
		switch verb {
		case "gateway", "phone", "expect":
		case "dial", "retry", "late", "timeout", "end":
			lastHop = len(steps)
		default:
			return nil, fmt.Errorf("line %d: unknown step %q", n, verb)
		}
		steps = append(steps, step{line: n, verb: verb, arg: arg})
	}
	return steps, nil
}
