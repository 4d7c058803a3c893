package registrytest

import (
	"context"
	"os"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/valkey-io/valkey-go"
)

// CPUMeter adds up the CPU time spent while it runs: this process's (user + system, every
// goroutine's) and that of the PostgreSQL backends serving DB's database (read from /proc,
// so only when PostgreSQL runs on this machine; elsewhere that part stays zero). On a
// machine shared with other jobs the wall clock says little; CPU per unit of work says
// what the work costs. Autovacuum, the WAL writer and the checkpointer are not counted.
type CPUMeter struct {
	DB       *pgxpool.Pool
	Self, PG time.Duration // spent between Start and Stop, over every such span

	self0 time.Duration
	pg0   map[int]time.Duration
}

// Start begins a span to measure.
func (c *CPUMeter) Start(tb testing.TB) {
	tb.Helper()
	c.pg0 = c.backends(tb)
	c.self0 = ProcessCPU()
}

// Stop ends the span Start began and adds it up.
func (c *CPUMeter) Stop(tb testing.TB) {
	tb.Helper()
	c.Self += ProcessCPU() - c.self0
	for pid, t := range c.backends(tb) {
		c.PG += t - c.pg0[pid] // a backend that started meanwhile counts from zero
	}
}

// Report adds the CPU per 1,000 units (messages, hops, rows) to b's metrics.
func (c *CPUMeter) Report(b *testing.B, units int) {
	k := float64(units) / 1000
	b.ReportMetric(float64(c.Self.Microseconds())/1000/k, "go-cpu-ms/1k")
	b.ReportMetric(float64(c.PG.Microseconds())/1000/k, "pg-cpu-ms/1k")
}

// ValkeyCPU is the CPU time the Valkey server tests use has spent so far (INFO cpu: its
// user and system time, all threads), wherever it runs; it counts whatever else the
// server did meanwhile.
func ValkeyCPU(tb testing.TB) time.Duration {
	tb.Helper()
	opt, err := valkey.ParseURL(ValkeyURL())
	if err != nil {
		tb.Fatal(err)
	}
	opt.DisableCache = true
	c, err := valkey.NewClient(opt)
	if err != nil {
		tb.Fatal(err)
	}
	defer c.Close()
	info, err := c.Do(context.Background(), c.B().Info().Section("cpu").Build()).ToString()
	if err != nil {
		tb.Fatal(err)
	}
	var total float64
	for _, l := range strings.Split(info, "\n") {
		k, v, _ := strings.Cut(strings.TrimSpace(l), ":")
		if k == "used_cpu_sys" || k == "used_cpu_user" {
			f, err := strconv.ParseFloat(v, 64)
			if err != nil {
				tb.Fatalf("INFO cpu: %s: %v", l, err)
			}
			total += f
		}
	}
	return time.Duration(total * float64(time.Second))
}

// ProcessCPU is the user and system CPU this process has used.
func ProcessCPU() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// backends returns the CPU used so far by each backend connected to DB's database.
func (c *CPUMeter) backends(tb testing.TB) map[int]time.Duration {
	tb.Helper()
	rows, err := c.DB.Query(context.Background(), `SELECT pid FROM pg_stat_activity WHERE datname = current_database()`)
	if err != nil {
		tb.Fatal(err)
	}
	defer rows.Close()
	out := map[int]time.Duration{}
	for rows.Next() {
		var pid int
		if err := rows.Scan(&pid); err != nil {
			tb.Fatal(err)
		}
		if t, ok := procCPU(pid); ok {
			out[pid] = t
		}
	}
	if err := rows.Err(); err != nil {
		tb.Fatal(err)
	}
	return out
}

// procCPU reads utime + stime of a process from /proc/<pid>/stat (clock ticks of 10 ms,
// USER_HZ on every Linux Go runs on).
func procCPU(pid int) (time.Duration, bool) {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return 0, false
	}
	s := string(b)
	i := strings.LastIndexByte(s, ')') // the command name may hold spaces
	if i < 0 {
		return 0, false
	}
	f := strings.Fields(s[i+1:]) // f[0] is field 3 (state): utime and stime are fields 14 and 15
	if len(f) < 13 {
		return 0, false
	}
	ut, err1 := strconv.ParseInt(f[11], 10, 64)
	st, err2 := strconv.ParseInt(f[12], 10, 64)
	if err1 != nil || err2 != nil {
		return 0, false
	}
	return time.Duration(ut+st) * 10 * time.Millisecond, true
}

// ReportLatency adds p50, p95 and p99 of took, in milliseconds, to b's metrics (it
// sorts took).
func ReportLatency(b *testing.B, took []time.Duration) {
	if len(took) == 0 {
		return
	}
	slices.Sort(took)
	q := func(p float64) float64 {
		return float64(took[min(len(took)-1, int(p*float64(len(took))))].Microseconds()) / 1000
	}
	b.ReportMetric(q(0.50), "p50-ms")
	b.ReportMetric(q(0.95), "p95-ms")
	b.ReportMetric(q(0.99), "p99-ms")
}
