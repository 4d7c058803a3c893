package ussd

import (
	"context"
	"strconv"
	"testing"
	"time"

	"github.com/mhero-health/mhero"
)

// countingDirectory is a registry of one worker and two facilities, the second coded "1"
// (a code that reads as the first one's id), that counts its lookups.
type countingDirectory struct {
	worker              mhero.Worker
	workers, facilities int
}

func (d *countingDirectory) FindWorkerByMSISDN(_ context.Context, m mhero.MSISDN) (*mhero.Worker, error) {
	d.workers++
	if m != d.worker.MSISDN {
		return nil, mhero.Errorf(mhero.ENOTFOUND, "Worker with this phone number not found.")
	}
	w := d.worker
	return &w, nil
}

// FindFacility prefers a code to an id, as the registry does.
func (d *countingDirectory) FindFacility(_ context.Context, ref string) (*mhero.Facility, error) {
	d.facilities++
	switch ref {
	case "1": // facility 2's code
		return &mhero.Facility{ID: 2, Code: "1", Name: "Coded One"}, nil
	case "3":
		return &mhero.Facility{ID: 3, Code: "C3", Name: "Three"}, nil
	}
	return nil, mhero.Errorf(mhero.ENOTFOUND, "Facility %s not found.", strconv.Quote(ref))
}

func TestFindFacilityByIDRefusesAFacilityFoundByCode(t *testing.T) {
	d := &countingDirectory{}
	if f, err := findFacilityByID(t.Context(), d, 3); err != nil || f.ID != 3 {
		t.Errorf("facility 3 = %+v, %v", f, err)
	}
	if f, err := findFacilityByID(t.Context(), d, 1); mhero.ErrorCode(err) != mhero.ECONFLICT {
		t.Errorf("facility 1, whose id is another's code = %+v, %v; want ECONFLICT", f, err)
	}
	if _, err := findFacilityByID(t.Context(), d, 9); mhero.ErrorCode(err) != mhero.ENOTFOUND {
		t.Errorf("facility 9 = %v, want ENOTFOUND", err)
	}
}

func TestDirectoryCacheKeepsFoundWorkersForItsTTL(t *testing.T) {
	d := &countingDirectory{worker: mhero.Worker{ID: 7, MSISDN: "231886000007", FacilityID: 3, Active: true}}
	c := newDirectoryCache(d, time.Minute)
	now := time.Date(2026, 11, 20, 10, 0, 0, 0, time.UTC)
	c.now = func() time.Time { return now }
	ctx := t.Context()

	for range 3 {
		if w, err := c.FindWorkerByMSISDN(ctx, "231886000007"); err != nil || w.ID != 7 {
			t.Fatalf("FindWorkerByMSISDN = %+v, %v", w, err)
		}
		if f, err := findFacilityByID(ctx, c, 3); err != nil || f.ID != 3 {
			t.Fatalf("facility = %+v, %v", f, err)
		}
	}
	if d.workers != 1 || d.facilities != 1 {
		t.Errorf("3 sessions within the TTL asked the registry %d times for the worker and %d for the facility, want once each",
			d.workers, d.facilities)
	}

	// A change in the registry reaches the next session once the TTL has passed.
	d.worker.OptedOut = true
	now = now.Add(time.Minute)
	if w, err := c.FindWorkerByMSISDN(ctx, "231886000007"); err != nil || !w.OptedOut {
		t.Errorf("after the TTL: %+v, %v; want the registry's change (opted out)", w, err)
	}

	// Numbers not found are asked again every time: a new registration counts at once.
	for range 2 {
		if _, err := c.FindWorkerByMSISDN(ctx, "231886000099"); mhero.ErrorCode(err) != mhero.ENOTFOUND {
			t.Fatalf("unknown number: %v, want ENOTFOUND", err)
		}
	}
	if d.workers != 4 {
		t.Errorf("the registry was asked %d times, want 4 (unknown numbers are not cached)", d.workers)
	}
}

func TestDirectoryCacheStaysBounded(t *testing.T) {
	d := &countingDirectory{}
	c := newDirectoryCache(d, time.Minute)
	c.max = 10
	for i := range 25 {
		d.worker = mhero.Worker{ID: mhero.WorkerID(i), MSISDN: mhero.MSISDN("23188600" + strconv.Itoa(1000+i))}
		if _, err := c.FindWorkerByMSISDN(t.Context(), d.worker.MSISDN); err != nil {
			t.Fatal(err)
		}
		if len(c.workers) > c.max {
			t.Fatalf("%d workers cached, over the bound of %d", len(c.workers), c.max)
		}
	}
}
