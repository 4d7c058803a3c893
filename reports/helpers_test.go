package reports_test

import (
	"context"
	"testing"
	"time"

	"github.com/mhero-health/mhero"
	"github.com/mhero-health/mhero/registry"
	"github.com/mhero-health/mhero/registry/registrytest"
	"github.com/mhero-health/mhero/reports"
)

// clock is a settable time for the store: tests move it to make referrals overdue or
// reports old.
type clock struct{ t time.Time }

func (c *clock) now() time.Time { return c.t }

// country is a small registry with reports on top:
//
//	LR (Liberia)
//	├── bomi (Bomi)        ── d1 (Klay):  F1 Klay HC (A chw, B nurse), F2 Tubmanburg Hospital (C chw)
//	└── nimba (Nimba)      ── d2 (Ganta): F3 Ganta HC (D chw)
type country struct {
	reg     *registry.Store
	rep     *reports.Store
	clock   *clock
	workers map[string]mhero.WorkerID
}

// now is the test country's present: Friday 20 November 2026, noon UTC (2026W47).
var now = time.Date(2026, 11, 20, 12, 0, 0, 0, time.UTC)

func newCountry(t *testing.T) *country {
	t.Helper()
	reg := registrytest.NewStore(t)
	ctx := context.Background()
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	for _, l := range []registry.LocationInput{{Code: "LR", Name: "Liberia"}, {Code: "bomi", Name: "Bomi", Parent: "LR"},
		{Code: "nimba", Name: "Nimba", Parent: "LR"}, {Code: "d1", Name: "Klay", Parent: "bomi"}, {Code: "d2", Name: "Ganta", Parent: "nimba"}} {
		_, err := reg.CreateLocation(ctx, l)
		must(err)
	}
	for _, f := range []registry.FacilityInput{{Code: "F1", Name: "Klay HC", Location: "d1"},
		{Code: "F2", Name: "Tubmanburg Hospital", Location: "d1"}, {Code: "F3", Name: "Ganta HC", Location: "d2"}} {
		_, err := reg.CreateFacility(ctx, f)
		must(err)
	}
	for _, c := range []string{"chw", "nurse"} {
		_, err := reg.UpsertCode(ctx, "cadres", registry.Code{Code: c})
		must(err)
	}
	c := &country{reg: reg, clock: &clock{now}, workers: map[string]mhero.WorkerID{}}
	for _, w := range []registry.WorkerInput{
		{Name: "A", MSISDN: "0886000001", Cadre: "chw", Facility: "F1"},
		{Name: "B", MSISDN: "0886000002", Cadre: "nurse", Facility: "F1"},
		{Name: "C", MSISDN: "0886000003", Cadre: "chw", Facility: "F2"},
		{Name: "D", MSISDN: "0776000004", Cadre: "chw", Facility: "F3"},
	} {
		wk, err := reg.CreateWorker(ctx, w)
		must(err)
		c.workers[w.Name] = wk.ID
	}
	c.rep = reports.NewStore(reg.DB(), reg, nil)
	c.rep.Now = c.clock.now
	must(c.rep.SyncCommodities(ctx, []reports.Commodity{{Code: "ors", Name: "ORS sachets"}, {Code: "zinc", Name: "Zinc tablets"},
		{Code: "act", Name: "ACT (malaria)"}}))
	return c
}

// stock submits a stock report by a worker (by name) at their facility, counted at when.
func (c *country) stock(t *testing.T, worker, commodity string, qty, outDays int, when time.Time) *reports.StockReport {
	t.Helper()
	r, err := c.rep.SubmitStockReport(context.Background(), reports.StockInput{WorkerID: c.workers[worker],
		Commodity: commodity, Quantity: qty, StockoutDays: outDays, ReportedAt: when})
	if err != nil {
		t.Fatalf("SubmitStockReport(%s, %s, %d): %v", worker, commodity, qty, err)
	}
	return r
}

func collect[T any](t *testing.T, seq func(func(T, error) bool)) []T {
	t.Helper()
	var out []T
	for row, err := range seq {
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, row)
	}
	return out
}

func period(t *testing.T, s string) reports.Period {
	t.Helper()
	p, err := reports.ParsePeriod(s, nil)
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// scoped is a context for an API key limited to a location.
func (c *country) scoped(t *testing.T, location string) context.Context {
	t.Helper()
	l, err := c.reg.FindLocation(context.Background(), location)
	if err != nil {
		t.Fatal(err)
	}
	return mhero.NewContextWithPrincipal(context.Background(), &mhero.Principal{Name: "county", Role: mhero.RoleReader, Scope: l})
}

func details(err error) map[string]bool {
	out := map[string]bool{}
	for _, d := range mhero.ErrorDetails(err) {
		out[d.Field] = true
	}
	return out
}

func level(n int) *int { return &n }
