package ussd

import (
	"reflect"
	"strings"
	"testing"
)

func TestResolveCumulative(t *testing.T) {
	tests := []struct {
		name     string
		text     string
		recorded []string
		known    bool
		want     position
	}{
		{"dial", "", nil, false, position{}},
		{"dial with a shortcut", "1*2", nil, false, position{2, []string{"1", "2"}}},
		{"state lost: replay every input", "1*1*40", nil, false, position{3, []string{"1", "1", "40"}}},
		{"first input", "1", []string{}, true, position{1, []string{"1"}}},
		{"next input", "1*2*40", []string{"1", "2"}, true, position{3, []string{"40"}}},
		{"an input with stars stays whole", "1*2*25*12*2026", []string{"1", "2"}, true, position{3, []string{"25*12*2026"}}},
		{"after an input with stars", "1*4*0*40", []string{"1", "4*0"}, true, position{3, []string{"40"}}},
		{"retry of the last hop", "1*2", []string{"1", "2"}, true, position{seq: 2}},
		{"late copy of an earlier hop", "1", []string{"1", "2"}, true, position{seq: 1}},
		{"late copy of the dial", "", []string{"1", "2"}, true, position{seq: 0}},
		{"an empty input", "1*", []string{"1"}, true, position{2, []string{""}}},
		{"diverged history answers the current screen", "2*2", []string{"1", "2"}, true, position{seq: 2}},
		{"diverged inside an input", "12*3", []string{"1", "2"}, true, position{seq: 2}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := CumulativeText(tt.text).resolve(tt.recorded, tt.known)
			if !reflect.DeepEqual(got, tt.want) {
				t.Errorf("resolve(%q, %q, known=%v) = %+v, want %+v", tt.text, tt.recorded, tt.known, got, tt.want)
			}
		})
	}
}

func TestResolveLatest(t *testing.T) {
	recorded := []string{"1", "2"}
	tests := []struct {
		name  string
		in    Input
		known bool
		want  position
	}{
		{"begin", NoInput(), false, position{}},
		{"a retried begin", NoInput(), true, position{}},
		{"a continue for a session we lost starts it over", LatestInput("3", 3), false, position{}},
		{"next", LatestInput("40", 3), true, position{3, []string{"40"}}},
		{"retry", LatestInput("2", 2), true, position{seq: 2}},
		{"late", LatestInput("1", 1), true, position{seq: 1}},
		{"after a lost hop", LatestInput("5", 4), true, position{4, []string{"5"}}},
		{"no sequence numbers", LatestInput("2", 0), true, position{3, []string{"2"}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := tt.in.resolve(recorded, tt.known); !reflect.DeepEqual(got, tt.want) {
				t.Errorf("resolve = %+v, want %+v", got, tt.want)
			}
		})
	}
}

// FuzzResolveCumulative checks the cumulative-text parser's promises on any text and
// history: it never panics, a new input always extends exactly what was recorded, and
// a hop that brings nothing new points at a position the session has.
func FuzzResolveCumulative(f *testing.F) {
	// recorded is the session's inputs joined by newlines ("" for none).
	f.Add("", "", false)                  // the dial
	f.Add("", "1*2", false)               // a dial string with shortcuts
	f.Add("1\n2", "1*2*40", true)         // the usual next hop
	f.Add("1\n2", "1*2*25*12*2026", true) // an input containing stars
	f.Add("1\n4*0", "1*4*0*40", true)     // after one
	f.Add("1\n2", "1*2", true)            // a retry
	f.Add("1\n2", "1", true)              // a late hop
	f.Add("1\n2", "2*2", true)            // a history that does not match
	f.Add("", "**", true)                 // empty inputs
	f.Fuzz(func(t *testing.T, recordedRaw, text string, known bool) {
		var recorded []string
		if recordedRaw != "" {
			recorded = strings.Split(recordedRaw, "\n")
		}
		pos := resolveCumulative(text, recorded, known)
		if pos.seq < 0 || len(pos.fresh) > pos.seq {
			t.Fatalf("position %+v is impossible", pos)
		}
		switch {
		case !known:
			if text == "" && pos.seq != 0 || text != "" && (strings.Join(pos.fresh, "*") != text || pos.seq != len(pos.fresh)) {
				t.Fatalf("new session %q: %+v does not replay every input", text, pos)
			}
		case len(pos.fresh) > 0:
			all := append(append([]string(nil), recorded...), pos.fresh...)
			if len(pos.fresh) != 1 || pos.seq != len(recorded)+1 || strings.Join(all, "*") != text {
				t.Fatalf("after %q, text %q gave %+v: not one input extending the history", recorded, text, pos)
			}
		default:
			if pos.seq > len(recorded) {
				t.Fatalf("after %q, text %q points past the history: %+v", recorded, text, pos)
			}
		}
	})
}
