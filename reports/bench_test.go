package reports_test

import (
	"bytes"
	"context"
	"math/rand/v2"
	"net/http"
	"net/http/httptest"
	"runtime"
	"runtime/metrics"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/mhero-health/mhero/api"
	"github.com/mhero-health/mhero/registry"
	"github.com/mhero-health/mhero/registry/demo"
	"github.com/mhero-health/mhero/registry/registrytest"
	"github.com/mhero-health/mhero/reports"
)

// The benchmark country: the demo generator's 800 facilities in a five-level tree (15
// counties, 90 districts), 10,000 workers, 10 commodities, and a million stock reports
// spread over the year before benchNow — about 24 a week per facility.
const (
	benchReports = 1_000_000
	benchWorkers = 10_000
)

var (
	benchNow         = time.Date(2026, 11, 20, 12, 0, 0, 0, time.UTC)
	benchCommodities = []string{"ors", "zinc", "act", "rdt", "amox", "cotrim", "paracetamol", "ifa", "condoms", "sp"}
)

type benchCountry struct {
	db        *pgxpool.Pool
	rep       *reports.Store
	srv       *api.Server
	districts []string
	counties  []string
}

// newBenchCountry seeds the registry with the demo generator and bulk-loads the reports
// with COPY (the trigger keeping stock_latest runs once for the whole load), then
// vacuums, as autovacuum would have by then.
func newBenchCountry(b *testing.B) *benchCountry {
	b.Helper()
	ctx := context.Background()
	reg := registrytest.NewStore(b)
	sz := demo.BenchSize(benchWorkers)
	if err := demo.Seed(ctx, reg, sz); err != nil {
		b.Fatal(err)
	}
	rep := reports.NewStore(reg.DB(), reg, nil)
	rep.Now = func() time.Time { return benchNow }
	var list []reports.Commodity
	for _, c := range benchCommodities {
		list = append(list, reports.Commodity{Code: c})
	}
	if err := rep.SyncCommodities(ctx, list); err != nil {
		b.Fatal(err)
	}
	start := time.Now()
	if err := copyReports(ctx, reg); err != nil {
		b.Fatal(err)
	}
	if _, err := reg.DB().Exec(ctx, `VACUUM ANALYZE`); err != nil {
		b.Fatal(err)
	}
	b.Logf("loaded %d stock reports with COPY, then VACUUM ANALYZE, in %s", benchReports, time.Since(start).Round(time.Millisecond))
	bc := &benchCountry{db: reg.DB(), rep: rep, srv: api.New(api.Options{Auth: keys{}})}
	rep.Routes(bc.srv)
	for lvl, dst := range map[int]*[]string{1: &bc.counties, 2: &bc.districts} {
		locs, err := reg.ListLocations(ctx, registry.LocationFilter{Level: &lvl, Limit: 1000})
		if err != nil {
			b.Fatal(err)
		}
		for _, l := range locs {
			*dst = append(*dst, l.Code)
		}
	}
	return bc
}

// copyReports streams benchReports generated rows into stock_reports with COPY: most
// counts are a few hundred on hand, one in twenty is a stock-out.
func copyReports(ctx context.Context, reg *registry.Store) error {
	db := reg.DB()
	var facilities, commodities []int64
	byFacility := map[int64][]int64{}
	var allWorkers []int64
	for q, dst := range map[string]*[]int64{`SELECT id FROM facilities ORDER BY id`: &facilities,
		`SELECT id FROM commodities ORDER BY id`: &commodities} {
		rows, _ := db.Query(ctx, q)
		ids, err := pgx.CollectRows(rows, pgx.RowTo[int64])
		if err != nil {
			return err
		}
		*dst = ids
	}
	rows, _ := db.Query(ctx, `SELECT id, facility_id FROM workers WHERE facility_id IS NOT NULL ORDER BY id`)
	var wid, fid int64
	if _, err := pgx.ForEachRow(rows, []any{&wid, &fid}, func() error {
		byFacility[fid] = append(byFacility[fid], wid)
		allWorkers = append(allWorkers, wid)
		return nil
	}); err != nil {
		return err
	}
	rng := rand.New(rand.NewPCG(7, 11))
	year := int64(365 * 24 * time.Hour)
	i := 0
	src := pgx.CopyFromFunc(func() ([]any, error) {
		if i == benchReports {
			return nil, nil
		}
		i++
		f := facilities[rng.IntN(len(facilities))]
		ws := byFacility[f]
		if len(ws) == 0 {
			ws = allWorkers
		}
		qty, out := 1+rng.IntN(500), 0
		if rng.IntN(20) == 0 {
			qty, out = 0, 1+rng.IntN(14)
		}
		at := benchNow.Add(-time.Duration(rng.Int64N(year)))
		return []any{f, commodities[rng.IntN(len(commodities))], qty, out, ws[rng.IntN(len(ws))], at, at}, nil
	})
	_, err := db.CopyFrom(ctx, pgx.Identifier{"stock_reports"},
		[]string{"facility_id", "commodity_id", "quantity", "stockout_days", "worker_id", "reported_at", "received_at"}, src)
	return err
}

// discard is a ResponseWriter that counts and drops the body, so a benchmark measures
// the view and not a recorder's buffer.
type discard struct {
	h     http.Header
	code  int
	bytes atomic.Int64
	lines atomic.Int64 // a row per line, in CSV and in the views' JSON
}

func (d *discard) Header() http.Header { return d.h }
func (d *discard) WriteHeader(code int) {
	d.code = code
}
func (d *discard) Write(p []byte) (int, error) {
	d.bytes.Add(int64(len(p)))
	d.lines.Add(int64(bytes.Count(p, []byte{'\n'})))
	return len(p), nil
}

func (bc *benchCountry) serve(b *testing.B, target string, csv bool) *discard {
	req := httptest.NewRequest(http.MethodGet, target, nil)
	req.Header.Set("Authorization", "Bearer reader")
	if csv {
		req.Header.Set("Accept", "text/csv")
	}
	w := &discard{h: http.Header{}}
	bc.srv.ServeHTTP(w, req)
	if w.code != http.StatusOK {
		b.Fatalf("GET %s = %d", target, w.code)
	}
	return w
}

// BenchmarkReportViews answers the ministry's views over HTTP (query, JSON encoding and
// all) on a million stock reports, each iteration on a random place and month of the
// year, and reports p50/p95/p99 per view. The goal: the district stock-out view
// and the latest-stock view under 50 ms at p95. "latest/country-distinct-on" is the
// alternative to the stock_latest table, measured for the record: DISTINCT ON over the
// best index for it.
//
//	go test -run '^$' -bench ReportViews -benchtime 200x ./reports/
func BenchmarkReportViews(b *testing.B) {
	bc := newBenchCountry(b)
	months := make([]string, 12)
	for i := range months {
		months[i] = benchNow.AddDate(0, -i, 0).Format("200601")
	}
	views := []struct {
		name   string
		target func(r *rand.Rand) string
	}{
		{"latest/district", func(r *rand.Rand) string {
			return "/api/v1/reports/stock/latest?location=" + pick(r, bc.districts)
		}},
		{"latest/county", func(r *rand.Rand) string {
			return "/api/v1/reports/stock/latest?location=" + pick(r, bc.counties)
		}},
		{"latest/country", func(r *rand.Rand) string { return "/api/v1/reports/stock/latest" }},
		{"stockouts/district", func(r *rand.Rand) string {
			return "/api/v1/reports/stockouts?location=" + pick(r, bc.districts) + "&period=" + pick(r, months)
		}},
		{"stockout-facilities/district", func(r *rand.Rand) string {
			return "/api/v1/reports/stockouts/facilities?location=" + pick(r, bc.districts) + "&period=" + pick(r, months)
		}},
		{"stockouts/country-by-county", func(r *rand.Rand) string {
			return "/api/v1/reports/stockouts?period=" + pick(r, months)
		}},
		{"trend/county-year-by-week", func(r *rand.Rand) string {
			return "/api/v1/reports/stock/trend?location=" + pick(r, bc.counties) + "&commodity=" + pick(r, benchCommodities) + "&period=2026&interval=week"
		}},
		{"reporting-rates/country-month", func(r *rand.Rand) string {
			return "/api/v1/reports/reporting-rates?level=2&period=" + pick(r, months)
		}},
	}
	for _, v := range views {
		b.Run(v.name, func(b *testing.B) {
			r := rand.New(rand.NewPCG(1, 2))
			var took []time.Duration
			b.ReportAllocs()
			for b.Loop() {
				target := v.target(r)
				start := time.Now()
				bc.serve(b, target, false)
				took = append(took, time.Since(start))
			}
			registrytest.ReportLatency(b, took)
		})
	}
	b.Run("latest/country-distinct-on", func(b *testing.B) {
		var took []time.Duration
		for b.Loop() {
			start := time.Now()
			rows, _ := bc.db.Query(context.Background(), `SELECT DISTINCT ON (facility_id, commodity_id)
					facility_id, commodity_id, quantity, reported_at
				FROM stock_reports ORDER BY facility_id DESC, commodity_id DESC, reported_at DESC`)
			n := 0
			_, err := pgx.ForEachRow(rows, []any{new(int64), new(int16), new(int), new(time.Time)}, func() error { n++; return nil })
			if err != nil || n == 0 {
				b.Fatalf("DISTINCT ON: %d rows, %v", n, err)
			}
			took = append(took, time.Since(start))
		}
		registrytest.ReportLatency(b, took)
	})
}

// BenchmarkReportExport streams stock reports over HTTP as CSV and JSON — all of them (a
// million rows) and one quarter's (about a quarter of them) — and reports rows per second
// and the peak of the Go heap while it runs, sampled every millisecond. The heap must stay
// flat: the same for a quarter and for the year, and far below the body's size.
//
//	go test -run '^$' -bench ReportExport -benchtime 3x ./reports/
func BenchmarkReportExport(b *testing.B) {
	bc := newBenchCountry(b)
	for _, format := range []string{"csv", "json"} {
		for _, span := range []struct{ name, query string }{{"all", ""}, {"quarter", "?period=2026Q3"}} {
			b.Run(format+"/"+span.name, func(b *testing.B) {
				bc.exportOnce(b, "/api/v1/reports/stock"+span.query, format == "csv")
			})
		}
	}
}

func (bc *benchCountry) exportOnce(b *testing.B, target string, csv bool) {
	runtime.GC()
	base := heapBytes()
	var peak atomic.Uint64
	stop := make(chan struct{})
	var wg sync.WaitGroup
	wg.Go(func() {
		t := time.NewTicker(time.Millisecond)
		defer t.Stop()
		for {
			select {
			case <-stop:
				return
			case <-t.C:
				if h := heapBytes(); h > peak.Load() {
					peak.Store(h)
				}
			}
		}
	})
	var body, rows int64
	start := time.Now()
	for b.Loop() {
		w := bc.serve(b, target, csv)
		body, rows = w.bytes.Load(), w.lines.Load()
		if csv {
			rows-- // the header
		}
	}
	elapsed := time.Since(start)
	close(stop)
	wg.Wait()
	b.ReportMetric(float64(rows), "rows")
	b.ReportMetric(float64(rows)*float64(b.N)/elapsed.Seconds(), "rows/s")
	b.ReportMetric(float64(body)/(1<<20), "body-MB")
	b.ReportMetric(float64(base)/(1<<20), "heap-before-MB")
	b.ReportMetric(float64(peak.Load())/(1<<20), "peak-heap-MB")
}

// heapBytes is the memory held by live and not yet swept heap objects.
func heapBytes() uint64 {
	s := []metrics.Sample{{Name: "/memory/classes/heap/objects:bytes"}}
	metrics.Read(s)
	return s[0].Value.Uint64()
}

func pick(r *rand.Rand, list []string) string { return list[r.IntN(len(list))] }

var _ http.ResponseWriter = (*discard)(nil)
