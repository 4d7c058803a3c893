package ussd

import "strings"

// Input is what the user typed in one hop, in the form the gateway delivers it. The
// engine places it against the inputs it has recorded for the session, which is what
// lets it tell a new answer from a retried or late hop.
type Input struct {
	text       string
	cumulative bool
	seq        int
	none       bool // a dial or a notice: position 0, whatever the session holds
}

// CumulativeText is a gateway text carrying every input of the session joined by '*'
// ("", "1", "1*2", "1*2*40"), as Africa's Talking sends it.
func CumulativeText(text string) Input { return Input{text: text, cumulative: true} }

// LatestInput is only the newest input. seq is its position in the session, counting
// inputs from 1 (the dial is 0), when the gateway numbers its hops; 0 when it does not,
// and then a retried hop cannot be told from a repeated answer.
func LatestInput(input string, seq int) Input { return Input{text: input, seq: max(seq, 0)} }

// NoInput is a hop that carries none: the dial, or an end or timeout notice.
func NoInput() Input { return Input{none: true} }

// position is where a hop lands: after it the session has seq inputs, the last
// len(fresh) of which the engine has not applied yet.
type position struct {
	seq   int
	fresh []string
}

// resolve places the input against recorded, the inputs the session holds for this
// gateway session; known is false when the gateway session is new to us.
func (in Input) resolve(recorded []string, known bool) position {
	if in.cumulative {
		return resolveCumulative(in.text, recorded, known)
	}
	switch {
	case in.none || !known:
		// A dial (or its retry) is position 0. A new session starts on its first
		// screen; a latest-only gateway that continues a session we lost cannot be
		// replayed, so its input is dropped.
		return position{}
	case in.seq == 0:
		return position{seq: len(recorded) + 1, fresh: []string{in.text}}
	case in.seq <= len(recorded):
		return position{seq: in.seq} // a retry or a late duplicate
	default:
		return position{seq: in.seq, fresh: []string{in.text}} // gaps are filled by the engine
	}
}

// resolveCumulative splits a cumulative text. A session we know splits by what it
// recorded: the text must begin with the recorded inputs, and whatever follows the next
// '*' is one new input, stars and all (a date typed 25*12*2026). A session we do not
// know (the first hop, or one whose state we lost) is split on every '*', which is how
// a dial string such as *384*12*1*2# carries shortcuts.
func resolveCumulative(text string, recorded []string, known bool) position {
	if !known || len(recorded) == 0 && text == "" {
		if text == "" {
			return position{}
		}
		parts := strings.Split(text, "*")
		return position{seq: len(parts), fresh: parts}
	}
	if text == "" {
		return position{} // a late copy of the first hop
	}
	rest := text
	for k, r := range recorded {
		if !strings.HasPrefix(rest, r) {
			return position{seq: len(recorded)} // diverged: answer the current screen
		}
		rest = rest[len(r):]
		switch {
		case rest == "":
			return position{seq: k + 1} // a retry (k+1 == len) or a late hop
		case rest[0] != '*':
			return position{seq: len(recorded)} // diverged
		}
		rest = rest[1:]
	}
	return position{seq: len(recorded) + 1, fresh: []string{rest}}
}
