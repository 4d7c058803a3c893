package ussd

import (
	"context"
	"log/slog"
	"strconv"
	"strings"

	"github.com/mhero-health/mhero"
)

// hop is one request on its way through the engine, under the worker's lock or, when
// unlocked, over a remembered state that the store may no longer hold (see swapHop).
type hop struct {
	e     *Engine
	req   Request
	limit int
	// unlocked: the hop may be thrown away, so it must not call an action; it sets
	// needsLock instead, and is run again under the lock.
	unlocked, needsLock bool

	// for the log line
	workerID mhero.WorkerID
	seq      int
	status   string
}

// run answers the hop given the stored state (nil: none) and returns the state to save,
// or nil to leave the stored one as it was.
func (h *hop) run(ctx context.Context, st *state) (Reply, *state) {
	known := st != nil && st.Gateway == h.req.SessionID
	if known {
		h.workerID = st.Worker.ID
	}
	switch {
	case h.req.Kind == End || h.req.Kind == Timeout:
		h.status = "closed"
		if !known {
			return Reply{End: true}, nil
		}
		// Keep it, refreshed, for "continue where you left off".
		return Reply{End: true}, st
	case known:
		return h.continueSession(ctx, st)
	default:
		return h.open(ctx, st)
	}
}

func (h *hop) continueSession(ctx context.Context, st *state) (Reply, *state) {
	pos := h.req.Input.resolve(st.Hops, true)
	h.seq = pos.seq
	if len(pos.fresh) == 0 || st.Ended {
		h.status = "retry"
		if len(st.Replies) == 0 {
			return h.e.endScreen("session_ended", st.Lang), nil
		}
		return st.replyFor(pos.seq), nil
	}
	h.status = "continue"
	return h.apply(ctx, st, pos), st
}

// open starts a session for a gateway session id we have not seen: who is calling, and
// whether they left one unfinished.
func (h *hop) open(ctx context.Context, old *state) (Reply, *state) {
	e := h.e
	w, f, why := h.lookup(ctx)
	if why != "" {
		h.status = why
		lang := e.menus.lang0()
		if w != nil {
			lang = e.language(w.Language)
		}
		return e.endScreen(why, lang), nil
	}
	h.workerID = w.ID
	st := &state{Gateway: h.req.SessionID, Worker: trimWorker(w), Facility: f,
		Lang: e.language(w.Language), Stack: []frame{{Screen: e.menus.Start}}}
	st.Vars = workerVars(st, e.menus)
	pos := h.req.Input.resolve(nil, false)
	h.status = "new"
	if old.resumable() && len(pos.fresh) == 0 {
		// The worker's last session dropped half-way: offer it back. Answers, screens
		// and language come from it; who the worker is comes fresh from the registry.
		st.Lang, st.Stack, st.Vars, st.Choices, st.Resume = old.Lang, old.Stack, old.Vars, old.Choices, true
		h.status = "resume"
	}
	reply := h.render(ctx, st)
	st.record(0, reply)
	if reply.End || len(pos.fresh) == 0 {
		return reply, st
	}
	return h.apply(ctx, st, pos), st
}

// lookup finds the worker and their facility; why names the end screen when the
// session cannot go on.
func (h *hop) lookup(ctx context.Context) (*mhero.Worker, mhero.Facility, string) {
	var w *mhero.Worker
	var fp *mhero.Facility
	var err error
	wf, both := h.e.directory.(WorkerFacilityFinder)
	if both {
		w, fp, err = wf.FindWorkerAndFacility(ctx, h.req.MSISDN)
	} else {
		w, err = h.e.directory.FindWorkerByMSISDN(ctx, h.req.MSISDN)
	}
	switch {
	case mhero.ErrorCode(err) == mhero.ENOTFOUND || err == nil && w == nil:
		return nil, mhero.Facility{}, "unknown_number"
	case err != nil:
		h.e.log.LogAttrs(ctx, slog.LevelError, "ussd worker lookup", slog.String("session_id", h.req.SessionID), slog.Any("error", err))
		return nil, mhero.Facility{}, "busy"
	case w.OptedOut:
		return w, mhero.Facility{}, "opted_out"
	case !w.Active:
		return w, mhero.Facility{}, "inactive"
	}
	var f mhero.Facility
	if fp != nil {
		f = *fp
	} else if w.FacilityID != 0 && !both {
		fp, err := findFacilityByID(ctx, h.e.directory, w.FacilityID)
		switch {
		case err == nil:
			f = *fp
		case mhero.ErrorCode(err) == mhero.ECONFLICT:
			// The registry answered another facility: better none than the wrong one.
			h.e.log.LogAttrs(ctx, slog.LevelWarn, "ussd facility lookup", slog.String("session_id", h.req.SessionID),
				slog.Int64("facility_id", int64(w.FacilityID)), slog.Any("error", err))
		case mhero.ErrorCode(err) != mhero.ENOTFOUND:
			h.e.log.LogAttrs(ctx, slog.LevelError, "ussd facility lookup", slog.String("session_id", h.req.SessionID), slog.Any("error", err))
			return nil, mhero.Facility{}, "busy"
		}
	}
	return w, f, ""
}

// workerVars are what every screen may show of the worker.
func workerVars(st *state, m *Menus) map[string]value {
	facility := st.Facility.Name
	if facility == "" {
		facility = m.str("none", st.Lang, nil)
	}
	return map[string]value{
		"worker.name":     {V: st.Worker.Name},
		"worker.cadre":    {V: st.Worker.Cadre},
		"worker.facility": {V: st.Facility.Code, L: facility},
	}
}

// apply takes the hop's new inputs in order (usually one; a dial string or a replayed
// session may bring several) and answers with the screen after the last.
func (h *hop) apply(ctx context.Context, st *state, pos position) Reply {
	first := pos.seq - len(pos.fresh) + 1
	for len(st.Hops) < first-1 {
		st.Hops = append(st.Hops, "") // a hop the gateway numbered but we never got
	}
	var reply Reply
	for i, in := range pos.fresh {
		seq := first + i
		st.Hops = append(st.Hops, in)
		h.input(ctx, st, in, actionKey(h.req, seq))
		reply = h.render(ctx, st)
		st.record(seq, reply)
		if reply.End {
			break
		}
	}
	return reply
}

// input applies one answer to the screen on show. A refused answer leaves the screen
// and the answers as they were, with st.Hint saying why.
func (h *hop) input(ctx context.Context, st *state, raw string, key string) {
	e := h.e
	in := strings.TrimSpace(raw)
	if st.Resume {
		h.resume(st, in)
		return
	}
	f := st.top()
	sc := e.menus.Screens[f.Screen]
	if sc == nil {
		// The menus changed under a live session: start it over rather than trap it.
		st.Stack, st.Choices, st.Hint = []frame{{Screen: e.menus.Start}}, nil, ""
		return
	}
	switch {
	case in == keyMore && f.Page+1 < f.Pages:
		f.Page++
		return
	case in == backKeyOf(sc) && !sc.End:
		if f.Page > 0 {
			f.Page--
		} else {
			st.back()
		}
		return
	case sc.End:
		return // only More moves on an end screen that needed pages
	}
	st.Hint = ""
	refuse := func(hint string) {
		st.Hint, f.Page = hint, 0 // the hint shows from the top of the screen
	}
	switch {
	case len(sc.Options) > 0:
		n, ok := choice(in, len(sc.Options))
		if !ok {
			refuse(e.menus.str("invalid_choice", st.Lang, nil))
			return
		}
		refuse(h.chooseOption(ctx, st, sc, sc.Options[n-1], key))
	case sc.Source != "":
		n, ok := choice(in, len(st.Choices))
		if !ok {
			refuse(e.menus.str("invalid_choice", st.Lang, nil))
			return
		}
		c := st.Choices[n-1]
		mark := len(f.Undo)
		st.set(sc.Save, value{V: c.Value, L: c.Label})
		for k, v := range c.Extra {
			st.set(sc.Save+"."+k, value{V: v})
		}
		refuse(h.leave(ctx, st, sc, "", sc.Action, key, mark))
	case sc.Input != nil:
		v, bad := sc.Input.check(in, e.today())
		if bad != nil {
			if !sc.Hint.IsZero() {
				refuse(fill(sc.Hint.In(st.Lang, e.menus.lang0()), func(n string) string { return bad.args[n] }))
			} else {
				refuse(e.menus.str(bad.key, st.Lang, bad.args))
			}
			return
		}
		mark := len(f.Undo)
		st.set(sc.Save, value{V: v})
		refuse(h.leave(ctx, st, sc, "", sc.Action, key, mark))
	default:
		refuse(e.menus.str("display_only", st.Lang, nil))
	}
}

func (h *hop) chooseOption(ctx context.Context, st *state, sc *Screen, o Option, key string) string {
	mark := len(st.top().Undo)
	label := fill(o.Label.In(st.Lang, h.e.menus.lang0()), st.lookup)
	if sc.Save != "" {
		v := o.Value
		if v == "" {
			v = label
		}
		st.set(sc.Save, value{V: v, L: label})
	}
	if o.Language != "" {
		st.set("language", value{V: o.Language})
	}
	action := o.Action
	if action == "" {
		action = sc.Action
	}
	if hint := h.leave(ctx, st, sc, o.Goto, action, key, mark); hint != "" {
		return hint
	}
	if o.Language != "" {
		st.Lang = o.Language
	}
	return ""
}

// leave runs the screen's action, if any, and moves on; a failed action keeps the worker
// on the screen with the answers as they were, and returns the hint to show.
func (h *hop) leave(ctx context.Context, st *state, sc *Screen, to, action, key string, mark int) string {
	if action != "" {
		if hint := h.runAction(ctx, st, action, key); hint != "" {
			st.revert(mark)
			return hint
		}
	}
	if to == "" {
		to = sc.Goto
		for _, r := range sc.When {
			if st.Vars[r.Var].V == r.Equals {
				to = r.Goto
				break
			}
		}
	}
	st.goTo(to)
	return ""
}

func (h *hop) runAction(ctx context.Context, st *state, name, key string) string {
	e := h.e
	if h.unlocked {
		h.needsLock = true
		return "(needs the lock)" // stops the hop; its answer is thrown away
	}
	res, err := e.actions[name].Run(ctx, ActionRequest{Key: key, Name: name, Worker: st.Worker,
		Facility: st.Facility, Language: st.Lang, Vars: st.values()})
	if err != nil {
		attrs := []slog.Attr{slog.String("session_id", h.req.SessionID), slog.Int64("worker_id", int64(st.Worker.ID)),
			slog.String("status", name), slog.Any("error", err)}
		switch mhero.ErrorCode(err) {
		case mhero.EINVALID, mhero.EVALIDATION, mhero.ECONFLICT, mhero.ENOTFOUND, mhero.EFORBIDDEN:
			e.log.LogAttrs(ctx, slog.LevelWarn, "ussd action refused", attrs...)
			return e.menus.str("action_rejected", st.Lang, nil)
		}
		e.log.LogAttrs(ctx, slog.LevelError, "ussd action failed", attrs...)
		return e.menus.str("action_failed", st.Lang, nil)
	}
	if c, ok := e.directory.(*directoryCache); ok {
		c.forget(h.req.MSISDN) // the action may have changed the worker (language.submit does)
	}
	for k, v := range res {
		st.set(k, value{V: v})
	}
	return ""
}

func (h *hop) resume(st *state, in string) {
	st.Hint = ""
	switch in {
	case "1":
		st.Resume = false
	case "2":
		st.Resume = false
		st.Stack, st.Choices = []frame{{Screen: h.e.menus.Start}}, nil
		st.Vars = workerVars(st, h.e.menus)
	default:
		st.Hint = h.e.menus.str("invalid_choice", st.Lang, nil)
	}
}

// choice reads a choice number from 1 to n.
func choice(in string, n int) (int, bool) {
	if in == "" || len(in) > 3 || !allDigits(in) {
		return 0, false
	}
	k, _ := strconv.Atoi(in)
	return k, k >= 1 && k <= n
}

// backKeyOf is "0", or "00" on an input screen where 0 is an answer.
func backKeyOf(sc *Screen) string {
	if sc.Input != nil && sc.Input.zeroOK {
		return keyBack + keyBack
	}
	return keyBack
}

// render draws the screen on show, loading its source's choices when it has none yet.
func (h *hop) render(ctx context.Context, st *state) Reply {
	e := h.e
	m := e.menus
	lang, lang0 := st.Lang, m.lang0()
	f := st.top()
	var v view
	if st.Resume {
		v = view{hint: st.Hint, title: m.str("resume", lang, nil),
			options: []string{m.str("resume_continue", lang, nil), m.str("resume_restart", lang, nil)}}
	} else {
		sc := m.Screens[f.Screen]
		if sc == nil {
			// A session (resumed, or live across a deploy) on a screen the menus no
			// longer have: start it over rather than trap it.
			st.Stack, st.Choices, st.Hint = []frame{{Screen: m.Start}}, nil, ""
			f, sc = st.top(), m.Screens[m.Start]
		}
		if sc.Source != "" && st.Choices == nil {
			if !h.loadChoices(ctx, st, sc) {
				return e.endScreen("busy", lang)
			}
		}
		v = view{hint: st.Hint, title: fill(sc.Text.In(lang, lang0), st.lookup), end: sc.End}
		if len(st.Stack) > 1 {
			v.backKey = backKeyOf(sc)
		}
		switch {
		case len(sc.Options) > 0:
			v.options = make([]string, len(sc.Options))
			for i, o := range sc.Options {
				v.options[i] = fill(o.Label.In(lang, lang0), st.lookup)
			}
		case sc.Source != "":
			v.options = make([]string, len(st.Choices))
			for i, c := range st.Choices {
				v.options[i] = c.Label
			}
			if len(st.Choices) == 0 {
				v.note = sc.Empty.In(lang, lang0)
				if v.note == "" {
					v.note = m.str("empty", lang, nil)
				}
			}
		}
	}
	pages := v.pages(h.limit, m.str("more", lang, nil), m.str("back", lang, nil))
	f.Pages = len(pages)
	if f.Page >= len(pages) {
		f.Page = len(pages) - 1
	}
	end := v.end && f.Page == len(pages)-1
	if end {
		st.Ended = true
	}
	return Reply{Text: pages[f.Page], End: end}
}

func (h *hop) loadChoices(ctx context.Context, st *state, sc *Screen) bool {
	e := h.e
	choices, err := e.sources[sc.Source].Choices(ctx, SourceRequest{Name: sc.Source, Worker: st.Worker,
		Facility: st.Facility, Language: st.Lang, Vars: st.values()})
	if err != nil {
		e.log.LogAttrs(ctx, slog.LevelError, "ussd source failed", slog.String("session_id", h.req.SessionID),
			slog.String("status", sc.Source), slog.Any("error", err))
		return false
	}
	if len(choices) > maxChoices {
		e.log.LogAttrs(ctx, slog.LevelWarn, "ussd source gave more choices than numbers allow; the rest are not shown",
			slog.String("session_id", h.req.SessionID), slog.String("status", sc.Source))
		choices = choices[:maxChoices]
	}
	if choices == nil {
		choices = []Choice{}
	}
	st.Choices = choices
	return true
}
