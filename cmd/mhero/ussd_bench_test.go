package main

import (
	"context"
	"flag"
	"slices"
	"testing"
	"time"

	"github.com/mhero-health/mhero/registry/demo"
	"github.com/mhero-health/mhero/registry/registrytest"
	"github.com/mhero-health/mhero/smpp/smpptest"
	"github.com/mhero-health/mhero/ussd/ussdtest"
)

// ussdRate is the hops/s BenchmarkUSSDStockReports/paced offers (go test ... -args -hops-rate=N).
var ussdRate = flag.Int("hops-rate", 10_000, "hops per second the paced USSD sessions offer together")

// BenchmarkUSSDStockReports is ussd's BenchmarkStockReportSessions through the whole
// server, as deployed: 1,000 workers of a demo country at once, each a distinct worker
// looked up in PostgreSQL when they dial, their stock report stored in PostgreSQL before
// they read "Thank you", sessions in Valkey, the Africa's Talking gateway over 64
// keep-alive connections (ussdtest.Load, in this process). One op is 1,000 sessions
// (5,000 hops). It checks PostgreSQL for exactly one report per session and reports
// hops/s, hop latency, and the CPU per 1,000 hops of this process (server and load
// generator), of the database's backends and of Valkey.
//
//	go test -run '^$' -bench BenchmarkUSSDStockReports -benchtime 10x ./cmd/mhero
func BenchmarkUSSDStockReports(b *testing.B) {
	b.Run("saturated", func(b *testing.B) { benchUSSD(b, 0) })
	b.Run("paced", func(b *testing.B) { benchUSSD(b, 1000*time.Second/time.Duration(max(*ussdRate, 1))) })
}

func benchUSSD(b *testing.B, every time.Duration) {
	const sessions = 1000
	total := b.N * sessions
	sim := smpptest.NewServer(smpptest.Config{SystemID: "mhero"})
	b.Cleanup(sim.Close)
	a, _ := simApp(b, registrytest.NewDatabase(b), sim, func(c *Config) {
		c.File.USSD.Gateways = map[string]GatewayConfig{"africastalking": {Allow: []string{"127.0.0.1/32"}}}
		c.File.Commodities = []Commodity{{Code: "ors", Name: map[string]string{"en": "ORS sachets", "fr": "Sachets de SRO"}},
			{Code: "zinc", Name: map[string]string{"en": "Zinc tablets", "fr": "Comprimés de zinc"}}}
	})
	ctx := context.Background()
	// Enough workers that every session is a different one (about nine in ten of the demo
	// country's are active, reachable, at a facility and read English).
	if err := demo.Seed(ctx, a.registry, demo.BenchSize(total*5/4+2000)); err != nil {
		b.Fatal(err)
	}
	// A deployed server has history: four weeks of USSD stock reports from every worker
	// (every commodity each week), analyzed as autovacuum would have, so that PostgreSQL
	// plans for the tables it would really have, not for empty ones.
	if _, err := a.db.Exec(ctx, `INSERT INTO stock_reports (facility_id, commodity_id, quantity, worker_id, reported_at,
			received_at, idempotency_key)
		SELECT w.facility_id, c.id, (w.id * 7 + week) % 200, w.id, now() - make_interval(days => 7 * week + 1),
			now() - make_interval(days => 7 * week + 1), 'history:' || w.id || ':' || c.id || ':' || week
		FROM workers w CROSS JOIN commodities c CROSS JOIN generate_series(0, 3) week WHERE w.facility_id IS NOT NULL`); err != nil {
		b.Fatal(err)
	}
	if _, err := a.db.Exec(ctx, `ANALYZE`); err != nil {
		b.Fatal(err)
	}
	// One more session per concurrent worker, to warm the server up unmeasured.
	warm := sessions
	rows, err := a.db.Query(ctx, `SELECT msisdn FROM workers WHERE active AND NOT opted_out AND facility_id IS NOT NULL
		AND language = 'en' ORDER BY id LIMIT $1`, total+warm)
	if err != nil {
		b.Fatal(err)
	}
	var phones []string
	for rows.Next() {
		var m string
		if err := rows.Scan(&m); err != nil {
			b.Fatal(err)
		}
		phones = append(phones, "+"+m)
	}
	if rows.Close(); rows.Err() != nil || len(phones) < total+warm {
		b.Fatalf("%d workers to dial, want %d: %v", len(phones), total+warm, rows.Err())
	}
	base := "http://" + a.Addr()
	pool := ussdtest.NewConnPool(a.Addr(), 64)
	defer pool.Close()
	load := ussdtest.Load{Pool: pool, URL: base, Sessions: sessions, Every: every,
		Inputs: []string{"1", "1", "40", "1"}, Phone: func(i int) string { return phones[warm+i] }, Done: "Thank you."}
	// The measure is of a server in service: its PostgreSQL connections open and their
	// statements prepared. Cold, the first hops wait for the pool to open connections
	// (dials of 50-90 ms in the first 10 ms).
	warmup := load
	warmup.Phone = func(i int) string { return phones[i] }
	if res := warmup.Run(warm); res.Failures > 0 {
		b.Fatalf("warming up: %d sessions failed; first: %v", res.Failures, res.First)
	}
	start := time.Now()

	cpu := &registrytest.CPUMeter{DB: a.db}
	vk0 := registrytest.ValkeyCPU(b)
	cpu.Start(b)
	b.ResetTimer()
	res := load.Run(total)
	lat := res.Latencies
	b.StopTimer()
	cpu.Stop(b)
	vk1 := registrytest.ValkeyCPU(b)
	if res.Failures > 0 {
		b.Fatalf("%d of %d sessions failed; first: %v", res.Failures, total, res.First)
	}
	// Exactly once, in the system of record: one report per session (each a different
	// worker), none twice.
	var reports, reporters int
	if err := a.db.QueryRow(ctx, `SELECT count(*), count(DISTINCT worker_id) FROM stock_reports WHERE received_at >= $1`,
		start).Scan(&reports, &reporters); err != nil {
		b.Fatal(err)
	}
	lost, doubled := total-reporters, reports-reporters
	if lost != 0 || doubled != 0 {
		b.Errorf("%d sessions: %d reports lost, %d stored twice", total, lost, doubled)
	}
	// Each kind of hop's own tail (the dial looks the worker up, the last hop stores the
	// report): every session completed, so each worker's hops come in fives, in order.
	for k := range len(load.Inputs) + 1 {
		var byHop []time.Duration
		for i := k; i < len(lat); i += len(load.Inputs) + 1 {
			byHop = append(byHop, lat[i])
		}
		slices.Sort(byHop)
		b.Logf("hop %d: p50 %v, p99 %v, max %v", k, byHop[len(byHop)/2], byHop[len(byHop)*99/100], byHop[len(byHop)-1])
	}
	slices.Sort(lat)
	b.ReportMetric(res.Rate, "hops/s")
	b.ReportMetric(float64(lat[len(lat)/2])/1e6, "p50-ms")
	b.ReportMetric(float64(lat[len(lat)*99/100])/1e6, "p99-ms")
	b.ReportMetric(float64(lost), "lost")
	b.ReportMetric(float64(doubled), "doubled")
	cpu.Report(b, len(lat))
	b.ReportMetric(float64((vk1-vk0).Microseconds())/1000/(float64(len(lat))/1000), "valkey-cpu-ms/1k")
}
