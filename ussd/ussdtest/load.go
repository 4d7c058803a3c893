package ussdtest

import (
	"context"
	"fmt"
	"math/rand/v2"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// Load runs complete USSD sessions through the Africa's Talking gateway the way an
// aggregator's traffic arrives, for benchmarks: Sessions workers at once, each dialling,
// answering Inputs one hop at a time and, when a session ends, starting the next.
type Load struct {
	Pool     *ConnPool
	URL      string // the server's root, http://host:port
	Sessions int    // workers mid-session at any moment
	// Every spaces a worker's hops, as people reading screens do: each hop is sent Every
	// after the one before (or at once, if its answer came later), and a worker's next
	// session keeps the pace, so the workers together offer Sessions/Every hops a second.
	// 0: each hop as soon as the last is answered.
	Every  time.Duration
	Inputs []string           // a session's answers after the dial
	Phone  func(i int) string // session i's phone (international, with '+')
	Done   string             // what the last screen starts with
}

// Result is what a Load run measured.
type Result struct {
	// Latencies are every hop's, from sending it to reading its answer (waiting for a free
	// connection included).
	Latencies []time.Duration
	// Rate is the hops answered per second while every worker was mid-run: the run less
	// a session's length at each end, when workers are still starting at their random
	// phase or have run out of sessions (the whole run when Every is 0, or when it is
	// too short to leave a middle).
	Rate float64
	// Failures counts sessions that went wrong: an error, a screen that ended the session
	// early, or a last screen not starting with Done. First is the first of them.
	Failures int
	First    error
}

// Run runs total sessions.
func (l Load) Run(total int) Result {
	var (
		next     atomic.Int64
		failed   atomic.Int64
		firstErr error
		once     sync.Once // keeps firstErr (errors of several types: no atomic.Value)
		mu       sync.Mutex
		wg       sync.WaitGroup
		lat      = make([]time.Duration, 0, total*(len(l.Inputs)+1))
		answered = make([]time.Time, 0, total*(len(l.Inputs)+1))
	)
	cycle := l.Every * time.Duration(len(l.Inputs)+1)
	start := time.Now()
	for range l.Sessions {
		wg.Go(func() {
			var mine hops
			var due time.Time // the next hop's, across this worker's sessions
			if l.Every > 0 {
				// A random phase over a whole session, so that workers are at every step
				// of it at once, as they are in life: with a phase within one hop's
				// spacing, all dialled together, then all answered the first screen
				// together, and so on, and each kind of hop came in bursts at several
				// times the average rate.
				due = start.Add(rand.N(cycle))
			}
			for {
				i := int(next.Add(1)) - 1
				if i >= total {
					break
				}
				if err := l.session(i, &due, &mine); err != nil {
					failed.Add(1)
					once.Do(func() { firstErr = err })
				}
			}
			mu.Lock()
			lat, answered = append(lat, mine.took...), append(answered, mine.at...)
			mu.Unlock()
		})
	}
	wg.Wait()
	end := time.Now()
	r := Result{Latencies: lat, Failures: int(failed.Load()), First: firstErr}
	from, to := start.Add(cycle), end.Add(-cycle)
	if to.Sub(from) < cycle {
		from, to = start, end
	}
	n := 0
	for _, t := range answered {
		if !t.Before(from) && !t.After(to) {
			n++
		}
	}
	r.Rate = float64(n) / to.Sub(from).Seconds()
	return r
}

// hops are one worker's measurements.
type hops struct {
	took []time.Duration
	at   []time.Time // when each was answered
}

// session runs session i, adding each hop's measurements to h.
func (l Load) session(i int, due *time.Time, h *hops) error {
	s, err := NewSession("africastalking", l.URL, "load-"+strconv.Itoa(i), l.Phone(i), "")
	if err != nil {
		return err
	}
	for hop := 0; hop <= len(l.Inputs); hop++ {
		if l.Every > 0 {
			time.Sleep(time.Until(*due))
			*due = due.Add(l.Every)
		}
		var req *http.Request
		if hop == 0 {
			req = s.Dial("")
		} else {
			req = s.Answer(l.Inputs[hop-1])
		}
		t0 := time.Now()
		rep, err := l.Pool.Do(context.Background(), s, req)
		t1 := time.Now()
		h.took, h.at = append(h.took, t1.Sub(t0)), append(h.at, t1)
		switch {
		case err != nil:
			return fmt.Errorf("session %d hop %d: %w", i, hop, err)
		case hop < len(l.Inputs) && rep.End:
			return fmt.Errorf("session %d hop %d ended the session: %q", i, hop, rep.Text)
		case hop == len(l.Inputs) && !strings.HasPrefix(rep.Text, l.Done):
			return fmt.Errorf("session %d, last hop: %q", i, rep.Text)
		}
	}
	return nil
}
