package reports_test

import (
	"context"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/mhero-health/mhero"
	"github.com/mhero-health/mhero/reports"
)

func TestSubmitStockReport(t *testing.T) {
	t.Parallel()
	c := newCountry(t)
	ctx := context.Background()
	// An SMS says "STOCK ORS 20": the code arrives in capitals.
	r, err := c.rep.SubmitStockReport(ctx, reports.StockInput{WorkerID: c.workers["A"], Commodity: "ORS", Quantity: 20})
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(r.Ref, "S-") || len(r.Ref) != 7 {
		t.Errorf("Ref = %q, want S- and five characters", r.Ref)
	}
	if r.Facility.Code != "F1" || r.Commodity != "ors" || r.Quantity != 20 || !r.ReportedAt.Equal(now) {
		t.Errorf("report = %+v, want 20 ors at the worker's facility F1, counted now", r)
	}
	// The worker reads the number back over the phone, in lower case and without the dash.
	got, err := c.rep.FindStockReport(ctx, strings.ToLower(strings.ReplaceAll(r.Ref, "-", "")))
	if err != nil || got.ID != r.ID || got.Facility.Code != "F1" {
		t.Errorf("FindStockReport(%s) = %+v, %v; want the same report", r.Ref, got, err)
	}
	// A worker may report for another facility by naming it.
	other, err := c.rep.SubmitStockReport(ctx, reports.StockInput{WorkerID: c.workers["A"], Facility: "F2", Commodity: "zinc"})
	if err != nil || other.Facility.Code != "F2" || other.Quantity != 0 {
		t.Errorf("report for F2 = %+v, %v", other, err)
	}
	if other.Ref == r.Ref {
		t.Errorf("two reports share the number %s", r.Ref)
	}
	if _, err := c.rep.FindStockReport(ctx, "S-ZZZZZ"); mhero.ErrorCode(err) != mhero.ENOTFOUND {
		t.Errorf("FindStockReport of a number never given = %v, want ENOTFOUND", err)
	}
}

func TestSubmitStockReportRefusesBadReports(t *testing.T) {
	t.Parallel()
	c := newCountry(t)
	ctx := context.Background()
	a := c.workers["A"]
	tests := []struct {
		name   string
		in     reports.StockInput
		fields []string
	}{
		{"unknown commodity", reports.StockInput{WorkerID: a, Commodity: "aspirin", Quantity: 3}, []string{"commodity"}},
		{"negative quantity", reports.StockInput{WorkerID: a, Commodity: "ors", Quantity: -1}, []string{"quantity"}},
		{"absurd quantity", reports.StockInput{WorkerID: a, Commodity: "ors", Quantity: 2_000_000_000}, []string{"quantity"}},
		{"facility not found", reports.StockInput{WorkerID: a, Facility: "F9", Commodity: "ors"}, []string{"facility"}},
		{"unknown worker", reports.StockInput{WorkerID: 999999, Commodity: "ors"}, []string{"worker_id"}},
		{"no worker", reports.StockInput{Commodity: "ors"}, []string{"worker_id"}},
		{"stock-out days", reports.StockInput{WorkerID: a, Commodity: "ors", StockoutDays: 400}, []string{"stockout_days"}},
		{"counted tomorrow", reports.StockInput{WorkerID: a, Commodity: "ors", ReportedAt: now.Add(24 * time.Hour)}, []string{"reported_at"}},
		{"every problem at once", reports.StockInput{WorkerID: a, Facility: "F9", Commodity: "aspirin", Quantity: -5},
			[]string{"facility", "commodity", "quantity"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := c.rep.SubmitStockReport(ctx, tt.in)
			if mhero.ErrorCode(err) != mhero.EVALIDATION {
				t.Fatalf("SubmitStockReport = %v, want EVALIDATION", err)
			}
			got := details(err)
			for _, f := range tt.fields {
				if !got[f] {
					t.Errorf("details %v lack %q", mhero.ErrorDetails(err), f)
				}
			}
		})
	}
	if rows, _ := reports.Collect(c.rep.StockReports(ctx, reports.Filter{})); len(rows) != 0 {
		t.Errorf("refused reports left %d rows", len(rows))
	}
	// A commodity dropped from the configuration is refused for new reports.
	if err := c.rep.SyncCommodities(ctx, []reports.Commodity{{Code: "ors", Name: "ORS"}}); err != nil {
		t.Fatal(err)
	}
	if _, err := c.rep.SubmitStockReport(ctx, reports.StockInput{WorkerID: a, Commodity: "zinc"}); mhero.ErrorCode(err) != mhero.EVALIDATION {
		t.Errorf("report of a deactivated commodity = %v, want EVALIDATION", err)
	}
}

// The USSD engine retries a hop when the gateway times out: the same key must give back
// the first report, never a second row — also when the retries race.
func TestStockReportIdempotent(t *testing.T) {
	t.Parallel()
	c := newCountry(t)
	ctx := context.Background()
	in := reports.StockInput{WorkerID: c.workers["A"], Commodity: "ors", Quantity: 12, IdempotencyKey: "ATUid_0a1b*3"}
	first, err := c.rep.SubmitStockReport(ctx, in)
	if err != nil {
		t.Fatal(err)
	}
	in.Quantity = 99 // a retry carries the same answer; even if not, the first one stands
	again, err := c.rep.SubmitStockReport(ctx, in)
	if err != nil || again.Ref != first.Ref || again.Quantity != 12 {
		t.Errorf("repeat = %+v, %v; want the first report %s", again, err, first.Ref)
	}
	var wg sync.WaitGroup
	refs := make([]string, 8)
	errs := make([]error, 8)
	for i := range refs {
		wg.Go(func() {
			r, err := c.rep.SubmitStockReport(ctx, reports.StockInput{WorkerID: c.workers["B"], Commodity: "zinc",
				Quantity: i, IdempotencyKey: "race"})
			errs[i] = err
			if err == nil {
				refs[i] = r.Ref
			}
		})
	}
	wg.Wait()
	for i := range refs {
		if errs[i] != nil || refs[i] != refs[0] {
			t.Errorf("racing submission %d = %s, %v; want %s", i, refs[i], errs[i], refs[0])
		}
	}
	rows, err := reports.Collect(c.rep.StockReports(ctx, reports.Filter{}))
	if err != nil || len(rows) != 2 {
		t.Errorf("stored %d reports (%v), want 2", len(rows), err)
	}
}

func TestLatestStock(t *testing.T) {
	t.Parallel()
	c := newCountry(t)
	ctx := context.Background()
	c.stock(t, "A", "ors", 40, 0, now.Add(-10*24*time.Hour))
	newest := c.stock(t, "B", "ors", 0, 3, now.Add(-2*24*time.Hour))
	// An SMS typed offline arrives late: it is history, but not the latest count.
	c.stock(t, "A", "ors", 55, 0, now.Add(-5*24*time.Hour))
	c.stock(t, "C", "zinc", 7, 0, now.Add(-36*time.Hour))
	c.stock(t, "D", "act", 9, 0, now.Add(-time.Hour))

	rows := collect(t, c.rep.LatestStock(ctx, reports.Filter{Location: "bomi"}))
	if len(rows) != 2 {
		t.Fatalf("latest stock in Bomi = %+v, want F1 ors and F2 zinc", rows)
	}
	f1, f2 := rows[0], rows[1]
	if f1.FacilityCode != "F1" || f1.Commodity != "ors" || f1.Quantity != 0 || !f1.StockedOut || f1.StockoutDays != 3 ||
		f1.AgeDays != 2 || f1.Ref != newest.Ref {
		t.Errorf("F1 ors = %+v, want the count of 0 two days old (%s)", f1, newest.Ref)
	}
	if f2.FacilityCode != "F2" || f2.Quantity != 7 || f2.AgeDays != 1 || f2.StockedOut {
		t.Errorf("F2 zinc = %+v, want 7, a day old", f2)
	}
	if all := collect(t, c.rep.LatestStock(ctx, reports.Filter{Commodity: "act"})); len(all) != 1 || all[0].FacilityCode != "F3" {
		t.Errorf("latest act anywhere = %+v, want F3 only", all)
	}
	history := collect(t, c.rep.StockReports(ctx, reports.Filter{Facility: "F1"}))
	if len(history) != 3 {
		t.Errorf("F1's history has %d reports, want all 3 kept", len(history))
	}
}

func TestStockOuts(t *testing.T) {
	t.Parallel()
	c := newCountry(t)
	ctx := context.Background()
	nov := period(t, "202611")
	c.stock(t, "A", "ors", 0, 4, day(2026, 11, 3))   // F1 out of ORS in November
	c.stock(t, "A", "ors", 30, 0, day(2026, 11, 10)) // and restocked
	c.stock(t, "A", "zinc", 10, 0, day(2026, 11, 4))
	c.stock(t, "C", "ors", 5, 2, day(2026, 11, 12))                                   // F2 had two days without, now has 5
	c.stock(t, "C", "zinc", 0, 0, day(2026, 10, 31).Add(23*time.Hour+59*time.Minute)) // October: not in the period
	c.stock(t, "D", "act", 0, 9, day(2026, 11, 15))                                   // F3 in Nimba

	counts := collect(t, c.rep.StockOuts(ctx, reports.Filter{Location: "LR", Period: nov}))
	got := map[string]reports.StockOutCount{}
	for _, r := range counts {
		got[r.LocationCode+"/"+r.Commodity] = r
	}
	if len(counts) != 6 {
		t.Errorf("counts = %+v, want 2 counties x 3 commodities", counts)
	}
	for key, want := range map[string][3]int{"bomi/ors": {2, 2, 2}, "bomi/zinc": {2, 1, 0}, "bomi/act": {2, 0, 0},
		"nimba/act": {1, 1, 1}, "nimba/ors": {1, 0, 0}} {
		r := got[key]
		if r.Facilities != want[0] || r.Reporting != want[1] || r.StockedOut != want[2] || r.Level != 1 {
			t.Errorf("%s = %+v, want facilities/reporting/stocked out %v at level 1", key, r, want)
		}
	}
	// Any level: the same period by facility location (level 2, the districts).
	byDistrict := collect(t, c.rep.StockOuts(ctx, reports.Filter{Level: level(2), Period: nov, Commodity: "ors"}))
	if len(byDistrict) != 2 || byDistrict[0].LocationCode != "d1" || byDistrict[0].StockedOut != 2 || byDistrict[1].StockedOut != 0 {
		t.Errorf("ors by district = %+v, want d1 with 2 and d2 with 0", byDistrict)
	}

	facilities := collect(t, c.rep.StockOutFacilities(ctx, reports.Filter{Location: "d1", Period: nov}))
	if len(facilities) != 2 {
		t.Fatalf("stocked-out facilities in d1 = %+v, want F1 ors and F2 ors", facilities)
	}
	f1, f2 := facilities[0], facilities[1]
	if f1.FacilityCode != "F1" || f1.Commodity != "ors" || f1.MaxStockoutDays != 4 || f1.StillOut || f1.LatestQuantity != 30 {
		t.Errorf("F1 = %+v, want its ORS stock-out of 4 days, since restocked to 30", f1)
	}
	if f2.FacilityCode != "F2" || f2.StockoutReports != 1 || f2.MaxStockoutDays != 2 {
		t.Errorf("F2 = %+v, want one report of 2 days out", f2)
	}
	if _, err := reports.Collect(c.rep.StockOuts(ctx, reports.Filter{Location: "LR"})); mhero.ErrorCode(err) != mhero.EINVALID {
		t.Errorf("stock-outs without a period = %v, want EINVALID", err)
	}
	if _, err := reports.Collect(c.rep.StockOuts(ctx, reports.Filter{Location: "nowhere", Period: nov})); mhero.ErrorCode(err) != mhero.ENOTFOUND {
		t.Errorf("stock-outs of an unknown location = %v, want ENOTFOUND", err)
	}
	if _, err := reports.Collect(c.rep.StockOuts(ctx, reports.Filter{Location: "d1", Level: level(1), Period: nov})); mhero.ErrorCode(err) != mhero.EINVALID {
		t.Errorf("grouping a district by county = %v, want EINVALID", err)
	}
}

func TestStockTrend(t *testing.T) {
	t.Parallel()
	c := newCountry(t)
	ctx := context.Background()
	c.stock(t, "A", "ors", 50, 0, day(2026, 11, 2))   // W45
	c.stock(t, "A", "ors", 20, 0, day(2026, 11, 5))   // W45, F1's last count that week
	c.stock(t, "C", "ors", 10, 0, day(2026, 11, 6))   // W45
	c.stock(t, "C", "ors", 0, 1, day(2026, 11, 18))   // W47
	c.stock(t, "D", "ors", 99, 0, day(2026, 11, 18))  // Nimba: outside the place
	c.stock(t, "A", "zinc", 99, 0, day(2026, 11, 18)) // another commodity

	points := collect(t, c.rep.StockTrend(ctx, reports.TrendFilter{Filter: reports.Filter{Location: "bomi", Commodity: "ors",
		Period: period(t, "202611")}, Interval: reports.Week}))
	var got []string
	for _, p := range points {
		got = append(got, p.Period)
	}
	if strings.Join(got, " ") != "2026W44 2026W45 2026W46 2026W47 2026W48 2026W49" {
		t.Fatalf("weeks = %v, want every week touching November", got)
	}
	w45, w46, w47 := points[1], points[2], points[3]
	if w45.Reports != 3 || w45.FacilitiesReporting != 2 || w45.Quantity != 30 || w45.FacilitiesStockedOut != 0 {
		t.Errorf("2026W45 = %+v, want 3 reports from 2 facilities, 20+10 on hand", w45)
	}
	if w46.Reports != 0 || w46.Quantity != 0 {
		t.Errorf("2026W46 = %+v, want an empty week", w46)
	}
	if w47.FacilitiesStockedOut != 1 || w47.Quantity != 0 {
		t.Errorf("2026W47 = %+v, want F2 stocked out", w47)
	}
	if _, err := reports.Collect(c.rep.StockTrend(ctx, reports.TrendFilter{Filter: reports.Filter{Period: period(t, "2026")}, Interval: reports.Week})); mhero.ErrorCode(err) != mhero.EINVALID {
		t.Errorf("a trend without a commodity = %v, want EINVALID", err)
	}
}

func TestReportingRates(t *testing.T) {
	t.Parallel()
	c := newCountry(t)
	ctx := context.Background()
	c.stock(t, "A", "ors", 5, 0, day(2026, 11, 16))
	c.stock(t, "B", "zinc", 5, 0, day(2026, 11, 17)) // F1 again: counted once
	c.stock(t, "D", "ors", 5, 0, day(2026, 11, 9))   // F3, the week before

	w47 := period(t, "2026W47")
	rates := collect(t, c.rep.ReportingRates(ctx, reports.Filter{Period: w47}))
	if len(rates) != 2 || rates[0].LocationCode != "bomi" || rates[0].Expected != 2 || rates[0].Reported != 1 || rates[0].Rate != 0.5 ||
		rates[1].LocationCode != "nimba" || rates[1].Reported != 0 {
		t.Errorf("rates for 2026W47 = %+v, want bomi 1/2 and nimba 0/1", rates)
	}
	month := collect(t, c.rep.ReportingRates(ctx, reports.Filter{Period: period(t, "202611"), Level: level(0)}))
	if len(month) != 1 || month[0].LocationCode != "LR" || month[0].Expected != 3 || month[0].Reported != 2 {
		t.Errorf("rates for November, whole country = %+v, want LR 2/3", month)
	}
	zinc := collect(t, c.rep.ReportingRates(ctx, reports.Filter{Period: period(t, "202611"), Level: level(0), Commodity: "zinc"}))
	if len(zinc) != 1 || zinc[0].Reported != 1 {
		t.Errorf("zinc rates = %+v, want 1 facility", zinc)
	}
}

// A key scoped to a county sees its own subtree and nothing else.
func TestViewsKeepToTheKeysScope(t *testing.T) {
	t.Parallel()
	c := newCountry(t)
	c.stock(t, "A", "ors", 1, 0, day(2026, 11, 16))
	c.stock(t, "D", "ors", 2, 0, day(2026, 11, 16))
	ctx := c.scoped(t, "nimba")
	rows := collect(t, c.rep.LatestStock(ctx, reports.Filter{}))
	if len(rows) != 1 || rows[0].FacilityCode != "F3" {
		t.Errorf("Nimba's key sees %+v, want F3 only", rows)
	}
	rates := collect(t, c.rep.ReportingRates(ctx, reports.Filter{Period: period(t, "202611")}))
	if len(rates) != 1 || rates[0].LocationCode != "d2" {
		t.Errorf("Nimba's key rates = %+v, want its district d2", rates)
	}
	for name, err := range map[string]error{
		"latest in Bomi":   second(reports.Collect(c.rep.LatestStock(ctx, reports.Filter{Location: "bomi"}))),
		"export of F1":     second(reports.Collect(c.rep.StockReports(ctx, reports.Filter{Facility: "F1"}))),
		"stock-outs of LR": second(reports.Collect(c.rep.StockOuts(ctx, reports.Filter{Location: "LR", Period: period(t, "2026")}))),
	} {
		if mhero.ErrorCode(err) != mhero.EFORBIDDEN {
			t.Errorf("%s with Nimba's key = %v, want EFORBIDDEN", name, err)
		}
	}
}

func second[T any](_ T, err error) error { return err }
