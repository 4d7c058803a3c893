package ussd

import (
	"context"
	"strconv"
	"sync"
	"time"

	"github.com/mhero-health/mhero"
)

// FacilityFinder is what a Directory may also offer: a facility by its id alone. The
// engine looks a worker's facility up by id; Directory.FindFacility takes an id or a
// code and may prefer a facility whose code reads as that id, which the engine then
// notices and refuses (the session goes on without a facility).
type FacilityFinder interface {
	FindFacilityByID(ctx context.Context, id mhero.FacilityID) (*mhero.Facility, error)
}

// WorkerFacilityFinder is what a Directory may also offer: the worker on a number and
// their facility (nil when they have none) in one lookup, so that a session's first hop
// asks the registry once. Without a DirectoryTTL the engine uses it where offered; with
// one, each of the two is cached on its own.
type WorkerFacilityFinder interface {
	FindWorkerAndFacility(ctx context.Context, m mhero.MSISDN) (*mhero.Worker, *mhero.Facility, error)
}

// findFacilityByID is the worker's facility, by id.
func findFacilityByID(ctx context.Context, d Directory, id mhero.FacilityID) (*mhero.Facility, error) {
	if f, ok := d.(FacilityFinder); ok {
		return f.FindFacilityByID(ctx, id)
	}
	f, err := d.FindFacility(ctx, strconv.FormatInt(int64(id), 10))
	if err == nil && f.ID != id {
		return nil, mhero.Errorf(mhero.ECONFLICT, "Facility %d: its id reads as the code of facility %d.", id, f.ID)
	}
	return f, err
}

// directoryCache answers a Directory's lookups from memory for ttl after the registry
// last answered them: a worker who dials again (one session per commodity reported, or
// a dropped session resumed) costs PostgreSQL nothing. Only records found are kept, so a
// newly registered number is served at once; a change to a worker made elsewhere
// (deactivated, opted out by SMS, moved to another facility) reaches new sessions within
// ttl, and one made by an action of this engine at once (see forget).
type directoryCache struct {
	Directory
	ttl time.Duration
	max int
	now func() time.Time

	mu         sync.Mutex
	workers    map[mhero.MSISDN]cached[mhero.Worker]
	facilities map[mhero.FacilityID]cached[mhero.Facility]
}

type cached[T any] struct {
	v       T
	expires time.Time
}

// fresh says whether the entry may still be given at now.
func (e cached[T]) fresh(now time.Time) bool { return now.Before(e.expires) }

// directoryCacheMax bounds each of the cache's maps; a full map is swept of expired
// entries and, if that frees nothing, emptied.
const directoryCacheMax = 100_000

func newDirectoryCache(d Directory, ttl time.Duration) *directoryCache {
	return &directoryCache{Directory: d, ttl: ttl, max: directoryCacheMax, now: time.Now,
		workers: map[mhero.MSISDN]cached[mhero.Worker]{}, facilities: map[mhero.FacilityID]cached[mhero.Facility]{}}
}

func (c *directoryCache) FindWorkerByMSISDN(ctx context.Context, m mhero.MSISDN) (*mhero.Worker, error) {
	now := c.now()
	c.mu.Lock()
	e, ok := c.workers[m]
	c.mu.Unlock()
	if ok && e.fresh(now) {
		w := e.v
		return &w, nil
	}
	w, err := c.Directory.FindWorkerByMSISDN(ctx, m)
	if err != nil || w == nil {
		return w, err
	}
	c.mu.Lock()
	put(c.workers, m, cached[mhero.Worker]{v: *w, expires: now.Add(c.ttl)}, now, c.max)
	c.mu.Unlock()
	return w, nil
}

// FindFacilityByID caches by id; FindFacility (by id or code) goes to the Directory.
func (c *directoryCache) FindFacilityByID(ctx context.Context, id mhero.FacilityID) (*mhero.Facility, error) {
	now := c.now()
	c.mu.Lock()
	e, ok := c.facilities[id]
	c.mu.Unlock()
	if ok && e.fresh(now) {
		f := e.v
		return &f, nil
	}
	f, err := findFacilityByID(ctx, c.Directory, id)
	if err != nil {
		return nil, err
	}
	c.mu.Lock()
	put(c.facilities, id, cached[mhero.Facility]{v: *f, expires: now.Add(c.ttl)}, now, c.max)
	c.mu.Unlock()
	return f, nil
}

// forget drops what is kept about the worker on m, after an action that may have
// changed them (the language switch does): this instance's next session asks the
// registry. Other instances' caches may still answer the old record, within their ttl.
func (c *directoryCache) forget(m mhero.MSISDN) {
	c.mu.Lock()
	delete(c.workers, m)
	c.mu.Unlock()
}

func put[K comparable, T any](m map[K]cached[T], k K, v cached[T], now time.Time, max int) {
	if _, ok := m[k]; !ok && len(m) >= max {
		for k, e := range m {
			if !e.fresh(now) {
				delete(m, k)
			}
		}
		if len(m) >= max {
			clear(m)
		}
	}
	m[k] = v
}
