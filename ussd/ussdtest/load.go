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

// Run runs total sessions and returns every hop's latency, from sending it to reading its
// answer (waiting for a free connection included), and how many sessions went wrong:
// an error, a screen that ended the session early, or a last screen not starting with
// Done.
func (l Load) Run(total int) (lat []time.Duration, failures int, first error) {
	var (
		next     atomic.Int64
		failed   atomic.Int64
		firstErr atomic.Value
		mu       sync.Mutex
		wg       sync.WaitGroup
	)
	lat = make([]time.Duration, 0, total*(len(l.Inputs)+1))
	for range l.Sessions {
		wg.Go(func() {
			mine := make([]time.Duration, 0, 64)
			var due time.Time // the next hop's, across this worker's sessions
			if l.Every > 0 {
				// A random phase, so the workers' hops do not arrive in lockstep.
				due = time.Now().Add(rand.N(l.Every))
			}
			for {
				i := int(next.Add(1)) - 1
				if i >= total {
					break
				}
				if err := l.session(i, &due, &mine); err != nil {
					failed.Add(1)
					firstErr.CompareAndSwap(nil, err)
				}
			}
			mu.Lock()
			lat = append(lat, mine...)
			mu.Unlock()
		})
	}
	wg.Wait()
	if err, ok := firstErr.Load().(error); ok {
		first = err
	}
	return lat, int(failed.Load()), first
}

// session runs session i, appending each hop's latency to lat.
func (l Load) session(i int, due *time.Time, lat *[]time.Duration) error {
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
		*lat = append(*lat, time.Since(t0))
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
