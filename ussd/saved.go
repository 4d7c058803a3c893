package ussd

import (
	"sync"
	"time"
)

// savedStates remembers the states this instance saved last, by session key, so the next
// hop of a session can skip reading its state back: it computes from the remembered state
// and swaps the result in only if the store still holds that state (SwapUSSD), one round
// trip instead of two. The store stays the truth: a state another instance moved on, or
// that expired, makes the swap fail and the hop run again over what the store holds. It
// is bounded in bytes; what does not fit is forgotten, which costs only a slower hop.
type savedStates struct {
	mu    sync.Mutex
	m     map[string]cached[[]byte] // entries as the directory cache keeps them
	bytes int
	max   int
}

// entryOverhead approximates what an entry costs beyond its key and state (map slot,
// slice and time headers).
const entryOverhead = 64

// DefaultSavedStates is how many bytes of session state an engine remembers by default.
const DefaultSavedStates = 16 << 20

func newSavedStates(max int) *savedStates {
	return &savedStates{m: map[string]cached[[]byte]{}, max: max}
}

// get returns the state saved for key, unless it has expired since.
func (c *savedStates) get(key string) ([]byte, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	s, ok := c.m[key]
	if !ok || !s.fresh(time.Now()) {
		return nil, false
	}
	return s.v, true
}

// put remembers raw (which must not change afterwards) as key's state for ttl: the
// store's TTL, measured on the real clock (not Config.Now, which tests fix).
func (c *savedStates) put(key string, raw []byte, ttl time.Duration) {
	size := len(key) + len(raw) + entryOverhead
	if size > c.max/4 {
		c.forget(key)
		return
	}
	now := time.Now()
	c.mu.Lock()
	defer c.mu.Unlock()
	if old, ok := c.m[key]; ok {
		c.bytes -= len(key) + len(old.v) + entryOverhead
	}
	c.m[key] = cached[[]byte]{v: raw, expires: now.Add(ttl)}
	c.bytes += size
	if c.bytes > c.max {
		c.evict(now, key)
	}
}

// evict drops expired entries, then, if that is not enough, others but keep (in the
// map's random order) until a tenth of the budget is free: one sweep pays for many puts.
func (c *savedStates) evict(now time.Time, keep string) {
	target := c.max - c.max/10
	for k, s := range c.m {
		if !s.fresh(now) {
			delete(c.m, k)
			c.bytes -= len(k) + len(s.v) + entryOverhead
		}
	}
	for k, s := range c.m {
		if c.bytes <= target {
			return
		}
		if k == keep {
			continue
		}
		delete(c.m, k)
		c.bytes -= len(k) + len(s.v) + entryOverhead
	}
}

func (c *savedStates) forget(key string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if s, ok := c.m[key]; ok {
		delete(c.m, key)
		c.bytes -= len(key) + len(s.v) + entryOverhead
	}
}
