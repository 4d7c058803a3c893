package ussd

import (
	"encoding/binary"
	"errors"
	"fmt"
	"sort"

	"github.com/mhero-health/mhero"
)

// The session state is read and written on every hop, so it has a compact binary form
// rather than JSON (which cost most of a hop's CPU): a version byte, then the fields in
// a fixed order, strings and lists prefixed by their length as uvarints. A state this
// code cannot read is refused whole, and the worker starts afresh.

const stateVersion = 2

var errStateCodec = errors.New("ussd state: truncated or malformed")

type encoder struct{ b []byte }

func (e *encoder) uint(v uint64) { e.b = binary.AppendUvarint(e.b, v) }
func (e *encoder) int(v int64)   { e.b = binary.AppendVarint(e.b, v) }
func (e *encoder) str(s string) {
	e.uint(uint64(len(s)))
	e.b = append(e.b, s...)
}
func (e *encoder) bool(v bool) {
	if v {
		e.b = append(e.b, 1)
	} else {
		e.b = append(e.b, 0)
	}
}

func (st *state) encode() []byte {
	e := &encoder{b: make([]byte, 0, 512)}
	e.b = append(e.b, stateVersion)
	e.str(st.Gateway)
	e.uint(uint64(len(st.Hops)))
	for _, h := range st.Hops {
		e.str(h)
	}
	e.uint(uint64(len(st.Replies)))
	for _, r := range st.Replies {
		e.int(int64(r.Seq))
		e.str(r.Text)
		e.bool(r.End)
	}
	w := &st.Worker
	e.int(int64(w.ID))
	e.str(w.Name)
	e.str(string(w.MSISDN))
	e.str(w.Cadre)
	e.int(int64(w.FacilityID))
	e.str(w.Language)
	e.bool(w.Active)
	e.bool(w.OptedOut)
	f := &st.Facility
	e.int(int64(f.ID))
	e.str(f.Code)
	e.str(f.Name)
	e.int(int64(f.LocationID))
	e.str(st.Lang)
	e.uint(uint64(len(st.Stack)))
	for _, fr := range st.Stack {
		e.str(fr.Screen)
		e.uint(uint64(fr.Page))
		e.uint(uint64(fr.Pages))
		e.uint(uint64(len(fr.Undo)))
		for _, u := range fr.Undo {
			e.str(u.Key)
			e.bool(u.Had)
			e.str(u.Old.V)
			e.str(u.Old.L)
		}
	}
	keys := make([]string, 0, len(st.Vars))
	for k := range st.Vars {
		keys = append(keys, k)
	}
	sort.Strings(keys) // the same state always encodes the same
	e.uint(uint64(len(keys)))
	for _, k := range keys {
		e.str(k)
		e.str(st.Vars[k].V)
		e.str(st.Vars[k].L)
	}
	// Choices: 0 is "not loaded" (nil), n+1 is n choices, so an empty list stays loaded.
	if st.Choices == nil {
		e.uint(0)
	} else {
		e.uint(uint64(len(st.Choices)) + 1)
	}
	for _, c := range st.Choices {
		e.str(c.Value)
		e.str(c.Label)
		xs := make([]string, 0, len(c.Extra))
		for k := range c.Extra {
			xs = append(xs, k)
		}
		sort.Strings(xs)
		e.uint(uint64(len(xs)))
		for _, k := range xs {
			e.str(k)
			e.str(c.Extra[k])
		}
	}
	e.bool(st.Resume)
	e.bool(st.Ended)
	e.str(st.Hint)
	return e.b
}

// decoder reads from one string copy of the stored bytes: every string field is a
// slice of it, not an allocation of its own.
type decoder struct {
	s   string
	err error
}

func (d *decoder) uint() uint64 {
	var v uint64
	for i := 0; i < len(d.s) && i < binary.MaxVarintLen64; i++ {
		c := d.s[i]
		if i == binary.MaxVarintLen64-1 && c > 1 {
			break // overflows 64 bits
		}
		v |= uint64(c&0x7f) << (7 * i)
		if c < 0x80 {
			d.s = d.s[i+1:]
			return v
		}
	}
	d.fail()
	return 0
}

func (d *decoder) int() int64 {
	u := d.uint()
	v := int64(u >> 1)
	if u&1 != 0 {
		v = ^v // zig-zag, as binary.AppendVarint writes it
	}
	return v
}

// count reads a list length, refusing one longer than the bytes left could hold (a
// corrupted length must not make us allocate gigabytes).
func (d *decoder) count() int {
	n := d.uint()
	if n > uint64(len(d.s)) {
		d.fail()
		return 0
	}
	return int(n)
}

func (d *decoder) str() string {
	n := d.count()
	if d.err != nil {
		return ""
	}
	s := d.s[:n]
	d.s = d.s[n:]
	return s
}

func (d *decoder) bool() bool {
	if len(d.s) == 0 || d.s[0] > 1 {
		d.fail()
		return false
	}
	v := d.s[0] == 1
	d.s = d.s[1:]
	return v
}

func (d *decoder) fail() {
	if d.err == nil {
		d.err = errStateCodec
	}
	d.s = ""
}

// decodeState reads a stored state; nil bytes are no state.
func decodeState(b []byte) (*state, error) {
	if b == nil {
		return nil, nil
	}
	if len(b) == 0 || b[0] != stateVersion {
		return nil, fmt.Errorf("ussd state: version %v, want %d", b[:min(1, len(b))], stateVersion)
	}
	d := &decoder{s: string(b[1:])}
	st := &state{Gateway: d.str()}
	if n := d.count(); n > 0 {
		st.Hops = make([]string, n)
		for i := range st.Hops {
			st.Hops[i] = d.str()
		}
	}
	if n := d.count(); n > 0 {
		st.Replies = make([]savedReply, n)
		for i := range st.Replies {
			st.Replies[i] = savedReply{Seq: int(d.int()), Text: d.str(), End: d.bool()}
		}
	}
	st.Worker = mhero.Worker{ID: mhero.WorkerID(d.int()), Name: d.str(), MSISDN: mhero.MSISDN(d.str()), Cadre: d.str(),
		FacilityID: mhero.FacilityID(d.int()), Language: d.str(), Active: d.bool(), OptedOut: d.bool()}
	st.Facility = mhero.Facility{ID: mhero.FacilityID(d.int()), Code: d.str(), Name: d.str(), LocationID: mhero.LocationID(d.int())}
	st.Lang = d.str()
	if n := d.count(); n > 0 {
		st.Stack = make([]frame, n)
		for i := range st.Stack {
			fr := &st.Stack[i]
			fr.Screen, fr.Page, fr.Pages = d.str(), int(d.uint()), int(d.uint())
			if m := d.count(); m > 0 {
				fr.Undo = make([]undo, m)
				for j := range fr.Undo {
					fr.Undo[j] = undo{Key: d.str(), Had: d.bool(), Old: value{V: d.str(), L: d.str()}}
				}
			}
		}
	}
	if n := d.count(); n > 0 {
		st.Vars = make(map[string]value, n)
		for range n {
			k := d.str()
			st.Vars[k] = value{V: d.str(), L: d.str()}
		}
	}
	if n := d.count(); n > 0 {
		st.Choices = make([]Choice, n-1)
		for i := range st.Choices {
			c := &st.Choices[i]
			c.Value, c.Label = d.str(), d.str()
			if m := d.count(); m > 0 {
				c.Extra = make(map[string]string, m)
				for range m {
					k := d.str()
					c.Extra[k] = d.str()
				}
			}
		}
	}
	st.Resume, st.Ended, st.Hint = d.bool(), d.bool(), d.str()
	if d.err != nil || len(d.s) != 0 {
		return nil, errStateCodec
	}
	if len(st.Stack) == 0 {
		return nil, fmt.Errorf("ussd state: no screen")
	}
	return st, nil
}
