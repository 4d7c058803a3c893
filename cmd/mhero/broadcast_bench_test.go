package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/mhero-health/mhero"
	"github.com/mhero-health/mhero/registry/demo"
	"github.com/mhero-health/mhero/registry/registrytest"
	"github.com/mhero-health/mhero/smpp"
	"github.com/mhero-health/mhero/smpp/smpptest"
)

// simApp starts the whole server against an in-process SMSC simulator that answers for
// the demo country's two networks, with receipts, and returns it with a sender key once
// its binds are up.
func simApp(tb testing.TB, dbURL string, sim *smpptest.Server, tune func(*Config)) (*App, string) {
	tb.Helper()
	a := startSimApp(tb, dbURL, sim, tune)
	waitBinds(tb, a)
	key, _, err := a.registry.CreateAPIKey(context.Background(), "ops", mhero.RoleSender, "")
	if err != nil {
		tb.Fatal(err)
	}
	return a, key
}

// startSimApp is simApp without waiting for the binds or making a key.
func startSimApp(tb testing.TB, dbURL string, sim *smpptest.Server, tune func(*Config)) *App {
	tb.Helper()
	host, port, _ := net.SplitHostPort(sim.Addr())
	p, _ := strconv.Atoi(port)
	cfg := DefaultConfig()
	cfg.DatabaseURL = dbURL
	cfg.ValkeyURL, cfg.ValkeyPrefix = registrytest.ValkeyURL(), registrytest.KeyPrefix(tb)
	cfg.HTTPAddr = "127.0.0.1:0"
	cfg.ShutdownTimeout = 20 * time.Second
	for _, mno := range []struct {
		name, prefix string
		rate         float64
	}{{"lonestar", "+23188", 0.004}, {"orange", "+23177", 0.005}} {
		cfg.File.SMSC = append(cfg.File.SMSC, smpp.Config{Name: mno.name, Host: host, Port: p, SystemID: "mhero",
			Binds: 2, Window: 10, SourceAddr: "384", Prefixes: []string{mno.prefix}, RatePerSegment: mno.rate})
	}
	if tune != nil {
		tune(&cfg)
	}
	if err := cfg.File.parse(strings.NewReader(""), func(string) string { return "" }); err != nil {
		tb.Fatal(err)
	}
	a, err := Start(context.Background(), cfg, slog.New(slog.DiscardHandler))
	if err != nil {
		tb.Fatalf("Start: %v", err)
	}
	tb.Cleanup(func() { _ = a.Close(context.Background()) })
	return a
}

// waitBinds waits until every bind is up, or on standby because another instance of the
// deployment holds its slot.
func waitBinds(tb testing.TB, a *App) {
	tb.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for settled := false; !settled; {
		settled = true
		for _, h := range a.smpp.Health() {
			settled = settled && (h.State != smpp.BindDown || h.Standby)
		}
		if time.Now().After(deadline) {
			tb.Fatalf("binds never came up: %+v", a.smpp.Health())
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// postBroadcast creates a broadcast over HTTP and returns its id.
func postBroadcast(tb testing.TB, base, key string, body any) int64 {
	tb.Helper()
	b, _ := json.Marshal(body)
	req, _ := http.NewRequest("POST", base+"/api/v1/broadcasts", bytes.NewReader(b))
	req.Header.Set("Authorization", "Bearer "+key)
	req.Header.Set("Content-Type", "application/json")
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		tb.Fatal(err)
	}
	defer res.Body.Close()
	var out struct {
		ID int64 `json:"id"`
	}
	if res.StatusCode != http.StatusCreated || json.NewDecoder(res.Body).Decode(&out) != nil {
		tb.Fatalf("POST /broadcasts = %d", res.StatusCode)
	}
	return out.ID
}

// peakRSS is the process's high-water resident set (VmHWM), in MB.
func peakRSS() float64 {
	f, err := os.Open("/proc/self/status")
	if err != nil {
		return 0
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if rest, ok := strings.CutPrefix(sc.Text(), "VmHWM:"); ok {
			kb, _ := strconv.ParseFloat(strings.TrimSuffix(strings.TrimSpace(rest), " kB"), 64)
			return kb / 1024
		}
	}
	return 0
}

// BenchmarkBroadcast sends one broadcast to every worker of a 100,000-worker country
// (BROADCAST_WORKERS to change it) through the whole server: POST /api/v1/broadcasts,
// the dispatcher, two MNO accounts of two binds each on the in-process simulator, and
// every delivery receipt recorded. The clock runs from the POST until PostgreSQL holds
// every message as delivered. peak-RSS-MB is the whole test process (server, simulator
// and the seeding before the clock).
//
//	go test -run '^$' -bench BenchmarkBroadcast -benchtime 1x ./cmd/mhero
func BenchmarkBroadcast(b *testing.B) {
	workers := 100_000
	if v, err := strconv.Atoi(os.Getenv("BROADCAST_WORKERS")); err == nil && v > 0 {
		workers = v
	}
	// Receipts come a second after submission, as they do from real networks (the handset
	// must get the message first); at once, nearly all would race their submit's record.
	sim := smpptest.NewServer(smpptest.Config{SystemID: "mhero", Receipts: true, ReceiptDelay: time.Second, SubmitHistory: -1})
	b.Cleanup(sim.Close)
	dbURL := registrytest.NewDatabase(b)
	if os.Getenv("MHERO_BENCH_DEBUG") != "" { // to watch it with psql while it runs
		fmt.Fprintln(os.Stderr, "database:", dbURL)
	}
	a, key := simApp(b, dbURL, sim, func(c *Config) {
		c.File.Messaging.Concurrency, c.File.Messaging.Batch = 400, 200
		for i := range c.File.SMSC {
			c.File.SMSC[i].Window, c.File.SMSC[i].InboundWorkers = 100, 64
		}
	})
	ctx := context.Background()
	if err := demo.Seed(ctx, a.registry, demo.BenchSize(workers)); err != nil {
		b.Fatal(err)
	}
	if _, err := a.db.Exec(ctx, `ANALYZE`); err != nil {
		b.Fatal(err)
	}
	var reachable int
	if err := a.db.QueryRow(ctx, `SELECT count(*) FROM workers WHERE active AND NOT opted_out`).Scan(&reachable); err != nil {
		b.Fatal(err)
	}
	base := "http://" + a.Addr()
	cpu, tx0 := &registrytest.CPUMeter{DB: a.db}, commits(ctx, a)
	cpu.Start(b)
	b.ResetTimer()
	var total time.Duration
	for i := range b.N {
		start := time.Now()
		id := postBroadcast(b, base, key, map[string]any{"text": fmt.Sprintf("Dear {first_name}, measles campaign round %d starts Monday at {facility}.", i),
			"target": map[string]any{"locations": []string{demo.CountryCode}}, "priority": "bulk", "quiet_hours": false})
		created := time.Since(start)
		// Until the queue is empty, watch only it (a count over the whole broadcast every
		// few hundred ms would be a load of its own); then count the deliveries.
		for {
			var queued bool
			if err := a.db.QueryRow(ctx, `SELECT EXISTS (SELECT 1 FROM message_queue)`).Scan(&queued); err != nil {
				b.Fatal(err)
			}
			if !queued {
				break
			}
			time.Sleep(100 * time.Millisecond)
		}
		// Benchmarks run without the test timeout: a receipt the simulator gave up on (its
		// deliver_sm unanswered twice on an overloaded machine) must end the run, not hang it.
		last, lastChange := -1, time.Now()
		for {
			var delivered, open int
			if err := a.db.QueryRow(ctx, `SELECT count(*) FILTER (WHERE state = 'delivered'),
					count(*) FILTER (WHERE state IN ('queued', 'submitted'))
				FROM messages WHERE broadcast_id = $1`, id).Scan(&delivered, &open); err != nil {
				b.Fatal(err)
			}
			if delivered == reachable {
				break
			}
			if delivered != last {
				last, lastChange = delivered, time.Now()
			}
			if open == 0 || time.Since(lastChange) > 30*time.Second {
				b.Fatalf("broadcast %d: %d of %d delivered, %d queued or submitted, no progress for %v (simulator: %+v)",
					id, delivered, reachable, open, time.Since(lastChange).Round(time.Second), sim.Stats())
			}
			time.Sleep(100 * time.Millisecond)
		}
		took := time.Since(start)
		total += took
		b.Logf("broadcast %d: %d recipients created in %v, all delivered after %v", id, reachable, created.Round(time.Millisecond), took.Round(time.Millisecond))
	}
	b.StopTimer()
	// CPU spent per 1,000 messages by this process (server and simulator) and by the
	// server's PostgreSQL backends: unlike the rate, it hardly depends on what else the
	// machine is doing.
	cpu.Stop(b)
	cpu.Report(b, reachable*b.N)
	b.ReportMetric(float64(commits(ctx, a)-tx0)*1000/float64(reachable*b.N), "commits/1k")
	// How much of the write traffic stayed HOT (no index entries): the design's bet.
	time.Sleep(600 * time.Millisecond) // statistics are flushed by backends every 500 ms
	rows, err := a.db.Query(ctx, `SELECT relname, n_tup_ins, n_tup_upd, n_tup_hot_upd, n_tup_del FROM pg_stat_user_tables
		WHERE relname IN ('messages', 'message_queue', 'message_parts', 'receipts') ORDER BY relname`)
	if err == nil {
		for rows.Next() {
			var name string
			var ins, upd, hot, del int64
			if rows.Scan(&name, &ins, &upd, &hot, &del) == nil {
				b.Logf("%-14s inserted %7d updated %7d (HOT %7d) deleted %7d", name, ins, upd, hot, del)
			}
		}
		rows.Close()
	}
	b.ReportMetric(float64(reachable*b.N)/total.Seconds(), "msgs/s")
	b.ReportMetric(peakRSS(), "peak-RSS-MB")
}

// commits counts the transactions committed in a's database so far.
func commits(ctx context.Context, a *App) int64 {
	time.Sleep(600 * time.Millisecond) // backends report their counters every 500 ms at most
	var n int64
	_ = a.db.QueryRow(ctx, `SELECT xact_commit FROM pg_stat_database WHERE datname = current_database()`).Scan(&n)
	return n
}
