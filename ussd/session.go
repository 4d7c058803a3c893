package ussd

import "github.com/mhero-health/mhero"

// state is one worker's session as stored between hops (see codec.go for its stored form).
type state struct {
	Gateway  string       // the gateway's session id this state belongs to
	Hops     []string     // inputs of this gateway session, in order
	Replies  []savedReply // the last few answers, by position
	Worker   mhero.Worker
	Facility mhero.Facility
	Lang     string
	Stack    []frame // screens on the way here; the last is on screen
	Vars     map[string]value
	Choices  []Choice // the current screen's source choices
	Resume   bool     // the "continue where you left off" question is on screen
	// Hint is why the last answer to the screen on show was refused. It stays while the
	// worker pages through that screen, so the pages keep the same cut.
	Hint  string
	Ended bool
}

// keptReplies is how many past answers a session keeps for retried and late hops.
// Gateways retry the latest hop; a hop more than a few behind is long abandoned.
const keptReplies = 4

type value struct {
	V string // what actions get
	L string // what screens show, when it differs
}

type frame struct {
	Screen string
	Page   int
	Pages  int
	Undo   []undo // what leaving this screen changed, to undo on Back
}

type undo struct {
	Key string
	Had bool
	Old value
}

type savedReply struct {
	Seq  int
	Text string
	End  bool
}

func (st *state) top() *frame { return &st.Stack[len(st.Stack)-1] }

// set changes a variable and remembers, on the screen being left, how to undo it.
func (st *state) set(key string, v value) {
	if st.Vars == nil {
		st.Vars = map[string]value{}
	}
	old, had := st.Vars[key]
	f := st.top()
	f.Undo = append(f.Undo, undo{Key: key, Had: had, Old: old})
	st.Vars[key] = v
}

// revert undoes the current screen's changes back to mark entries (an action that
// failed leaves the answers as they were).
func (st *state) revert(mark int) {
	f := st.top()
	for i := len(f.Undo) - 1; i >= mark; i-- {
		u := f.Undo[i]
		if u.Had {
			st.Vars[u.Key] = u.Old
		} else {
			delete(st.Vars, u.Key)
		}
	}
	f.Undo = f.Undo[:mark]
}

// unwindTo returns to the screen at stack index i, undoing what every screen from i up
// set, so the answers match the screens the worker will see again.
func (st *state) unwindTo(i int) {
	for len(st.Stack) > i+1 {
		st.revert(0)
		st.Stack = st.Stack[:len(st.Stack)-1]
	}
	st.revert(0)
	st.top().Page = 0
	st.Choices, st.Hint = nil, ""
}

// goTo moves to screen id: back to it if it is on the way here (menus may loop to the
// main menu without the stack growing), else forward. A screen that leads to itself
// asks again, keeping what was just answered and returned on it (a survey's next
// question): unwinding to itself would undo that.
func (st *state) goTo(id string) {
	if top := st.top(); top.Screen == id {
		top.Page = 0
		st.Choices, st.Hint = nil, ""
		return
	}
	for i, f := range st.Stack {
		if f.Screen == id {
			st.unwindTo(i)
			return
		}
	}
	st.Stack = append(st.Stack, frame{Screen: id})
	st.Choices, st.Hint = nil, ""
}

func (st *state) back() {
	if len(st.Stack) > 1 {
		st.unwindTo(len(st.Stack) - 2)
	} else {
		st.top().Page, st.Hint = 0, ""
	}
}

// lookup is a template's view of the variables: the label when there is one.
func (st *state) lookup(name string) string {
	v := st.Vars[name]
	if v.L != "" {
		return v.L
	}
	return v.V
}

func (st *state) values() map[string]string {
	out := make(map[string]string, len(st.Vars))
	for k, v := range st.Vars {
		out[k] = v.V
	}
	return out
}

func (st *state) record(seq int, r Reply) {
	if n := len(st.Replies); n > 0 && st.Replies[n-1].Seq >= seq {
		// A replayed position (after a gap) replaces what came after it.
		kept := st.Replies[:0]
		for _, x := range st.Replies {
			if x.Seq < seq {
				kept = append(kept, x)
			}
		}
		st.Replies = kept
	}
	st.Replies = append(st.Replies, savedReply{Seq: seq, Text: r.Text, End: r.End})
	if len(st.Replies) > keptReplies {
		st.Replies = append(st.Replies[:0], st.Replies[len(st.Replies)-keptReplies:]...)
	}
}

// replyFor answers a retried or late hop at position seq with what it got the first
// time, or with the current screen when that answer is no longer kept.
func (st *state) replyFor(seq int) Reply {
	for _, r := range st.Replies {
		if r.Seq == seq {
			return Reply{Text: r.Text, End: r.End}
		}
	}
	last := st.Replies[len(st.Replies)-1]
	return Reply{Text: last.Text, End: last.End}
}

// resumable reports whether a dropped session is worth offering back: it got somewhere
// beyond the first screen and did not finish.
func (st *state) resumable() bool {
	return st != nil && !st.Ended && (len(st.Stack) > 1 || st.Resume)
}

// trimWorker keeps what the session needs of a worker; the rest would only grow every
// write.
func trimWorker(w *mhero.Worker) mhero.Worker {
	return mhero.Worker{ID: w.ID, Name: w.Name, MSISDN: w.MSISDN, Cadre: w.Cadre, FacilityID: w.FacilityID,
		Language: w.Language, Active: w.Active, OptedOut: w.OptedOut}
}
