package ussdtest

import (
	"context"
	"fmt"
	"strconv"
	"sync"

	"github.com/mhero-health/mhero"
	"github.com/mhero-health/mhero/ussd"
)

// Directory is the registry in memory: workers by phone, facilities by id.
type Directory struct {
	mu         sync.RWMutex
	workers    map[mhero.MSISDN]*mhero.Worker
	facilities map[mhero.FacilityID]*mhero.Facility
	// Generate, when set, makes up a worker for any number the directory does not hold
	// (benchmarks with many distinct workers).
	Generate func(m mhero.MSISDN) *mhero.Worker
}

// NewDirectory holds the given workers and facilities.
func NewDirectory(workers []mhero.Worker, facilities []mhero.Facility) *Directory {
	d := &Directory{workers: map[mhero.MSISDN]*mhero.Worker{}, facilities: map[mhero.FacilityID]*mhero.Facility{}}
	for i := range workers {
		d.workers[workers[i].MSISDN] = &workers[i]
	}
	for i := range facilities {
		d.facilities[facilities[i].ID] = &facilities[i]
	}
	return d
}

// Put adds the worker, or replaces the one with the same phone: the registry changing.
func (d *Directory) Put(w mhero.Worker) {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.workers[w.MSISDN] = &w
}

// FindWorkerByMSISDN returns a copy of the worker, ENOTFOUND for strangers.
func (d *Directory) FindWorkerByMSISDN(_ context.Context, m mhero.MSISDN) (*mhero.Worker, error) {
	d.mu.RLock()
	w, ok := d.workers[m]
	d.mu.RUnlock()
	if !ok && d.Generate != nil {
		w, ok = d.Generate(m), true
	}
	if !ok || w == nil {
		return nil, mhero.Errorf(mhero.ENOTFOUND, "Worker with this phone number not found.")
	}
	c := *w
	return &c, nil
}

// FindFacility takes a facility id.
func (d *Directory) FindFacility(_ context.Context, ref string) (*mhero.Facility, error) {
	id, _ := strconv.ParseInt(ref, 10, 64)
	d.mu.RLock()
	defer d.mu.RUnlock()
	f, ok := d.facilities[mhero.FacilityID(id)]
	if !ok {
		return nil, mhero.Errorf(mhero.ENOTFOUND, "Facility %q not found.", ref)
	}
	c := *f
	return &c, nil
}

// Recorder is an action that keeps every call. Like the real ones it is idempotent on
// the request's key: a second call with a key it has seen returns the first result and
// files nothing new. Calls still counts it, which is what tests check: the engine should
// not call twice.
type Recorder struct {
	Prefix string // of the references it hands out, e.g. "SR-"
	// Fail, when set, is returned instead of running (for error screens).
	Fail error

	mu      sync.Mutex
	calls   []ussd.ActionRequest
	results map[string]map[string]string
}

// Run records the call and returns {"ref": Prefix + n}.
func (r *Recorder) Run(_ context.Context, req ussd.ActionRequest) (map[string]string, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.calls = append(r.calls, req)
	if r.Fail != nil {
		return nil, r.Fail
	}
	if r.results == nil {
		r.results = map[string]map[string]string{}
	}
	if res, ok := r.results[req.Key]; ok {
		return res, nil
	}
	res := map[string]string{"ref": fmt.Sprintf("%s%04d", r.Prefix, len(r.results)+1)}
	r.results[req.Key] = res
	return res, nil
}

// Calls returns every call so far.
func (r *Recorder) Calls() []ussd.ActionRequest {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]ussd.ActionRequest(nil), r.calls...)
}

// Reports is how many distinct keys it filed.
func (r *Recorder) Reports() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return len(r.results)
}

// Choices is a source with a fixed list.
func Choices(list ...ussd.Choice) ussd.Source {
	return ussd.SourceFunc(func(context.Context, ussd.SourceRequest) ([]ussd.Choice, error) {
		return append([]ussd.Choice(nil), list...), nil
	})
}
