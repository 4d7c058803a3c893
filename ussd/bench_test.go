package ussd_test

import (
	"context"
	"flag"
	"math"
	"os"
	"runtime"
	"runtime/metrics"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/mhero-health/mhero"
	"github.com/mhero-health/mhero/registry/registrytest"
	"github.com/mhero-health/mhero/ussd"
	"github.com/mhero-health/mhero/ussd/ussdtest"
)

// concurrentSessions is how many workers are mid-report at any moment; gatewayConns is
// how many HTTP connections the aggregator spreads them over.
const (
	concurrentSessions = 1000
	gatewayConns       = 64
)

// stockReport is one complete session: dial, Stock report, ORS, 40 on hand, Send.
var stockReport = []string{"1", "1", "40", "1"}

// pacedRate is the hops/s the paced sessions offer together (go test ... -args -hops-rate=N).
var pacedRate = flag.Int("hops-rate", 10_000, "hops per second the paced benchmark sessions offer together")

// BenchmarkStockReportSessions runs complete stock-report sessions through the Africa's
// Talking gateway: a real net/http server on loopback, real Valkey, 1,000 sessions in
// flight at once, each worker a distinct phone. One op is 1,000 sessions (5,000 hops).
// It reports hops/s, hop latency (p50, p99) and checks that every session's report was
// submitted exactly once. What a hop costs this process (server and load generator
// together): cpu-µs/hop, allocs/hop, GCs (during the timed part), rw-syscalls/hop (read
// and write system calls, Linux only), and sched-p99-ms, the 99th percentile of how long
// a runnable goroutine waited for a CPU (high when the process is short of CPU, through
// its own load or the machine's other jobs; hop latency well above it is time spent
// elsewhere); and valkey-cpu-µs/hop, what the Valkey server spent (from its INFO, so
// including anything else it served meanwhile).
//
// The load generator is the aggregator's side: ussdtest.ConnPool, gatewayConns
// keep-alive connections with a lean HTTP/1.1 writer and reader. It shares this process
// and the machine's two cores with the server, so it should cost as little as it can:
// with http.Client it cost about as much CPU per hop as the server's own work. (A load
// generator in a process of its own measured worse here: waking another process on
// this machine costs more than a goroutine hand-off.)
//
//   - saturated: each session sends its next hop as soon as it has the answer; the
//     server's throughput, with latency as queueing at that load makes it.
//   - paced: each session waits so that the 1,000 together offer 10,000 hops/s (or
//     -hops-rate), as people reading screens would: the latency at that load. When the
//     server cannot keep up, hops queue and latency grows; hops/s shows how far it got.
//
// go test -run '^$' -bench BenchmarkStockReportSessions -benchtime 10x ./ussd
func BenchmarkStockReportSessions(b *testing.B) {
	b.Run("saturated", func(b *testing.B) { benchSessions(b, 0) })
	b.Run("paced", func(b *testing.B) { benchSessions(b, concurrentSessions*time.Second/time.Duration(max(*pacedRate, 1))) })
}

func benchSessions(b *testing.B, every time.Duration) {
	submits := &submitCounter{perPhone: map[mhero.MSISDN]int{}}
	e := newEnv(b, func(c *ussd.Config) { c.Actions["stock.submit"] = submits })
	e.Dir.Generate = benchWorker
	// An aggregator carries its sessions' hops over a pool of keep-alive connections,
	// not one connection per session.
	client := ussdtest.NewConnPool(strings.TrimPrefix(e.URL, "http://"), gatewayConns)
	defer client.Close()

	total := b.N * concurrentSessions
	load := ussdtest.Load{Pool: client, URL: e.URL, Sessions: concurrentSessions, Every: every,
		Inputs: stockReport, Phone: ussdtest.Phone, Done: "Thank you."}
	b.ResetTimer()
	var mem0, mem1 runtime.MemStats
	runtime.ReadMemStats(&mem0)
	sys0, sched0, vk0 := syscalls(), schedLatencies(), registrytest.ValkeyCPU(b)
	cpu0 := cpuTime()
	res := load.Run(total)
	all := res.Latencies
	cpu1, sys1, sched1, vk1 := cpuTime(), syscalls(), schedLatencies(), registrytest.ValkeyCPU(b)
	b.StopTimer()
	runtime.ReadMemStats(&mem1)

	if res.Failures > 0 {
		b.Fatalf("%d of %d sessions failed; first: %v", res.Failures, total, res.First)
	}
	// Exactly once: every session (one phone each) has one submit call, none has two.
	lost, doubled := total-len(submits.perPhone), 0
	for _, n := range submits.perPhone {
		if n > 1 {
			doubled++
		}
	}
	if lost != 0 || doubled != 0 {
		b.Errorf("%d sessions: %d reports lost, %d submitted more than once", total, lost, doubled)
	}
	slices.Sort(all)
	b.ReportMetric(res.Rate, "hops/s")
	b.ReportMetric(ms(all[len(all)/2]), "p50-ms")
	b.ReportMetric(ms(all[len(all)*99/100]), "p99-ms")
	b.ReportMetric(float64(lost), "lost")
	b.ReportMetric(float64(doubled), "doubled")
	b.ReportMetric(float64(cpu1-cpu0)/float64(len(all))/1e3, "cpu-µs/hop")
	b.ReportMetric(float64(mem1.Mallocs-mem0.Mallocs)/float64(len(all)), "allocs/hop")
	b.ReportMetric(float64(mem1.NumGC-mem0.NumGC), "GCs")
	b.ReportMetric(ms(sched1.since(sched0).quantile(0.99)), "sched-p99-ms")
	b.ReportMetric((vk1-vk0).Seconds()*1e6/float64(len(all)), "valkey-cpu-µs/hop")
	if sys0 >= 0 && sys1 >= 0 {
		b.ReportMetric(float64(sys1-sys0)/float64(len(all)), "rw-syscalls/hop")
	}
}

// submitCounter is the benchmarks' stock.submit: it counts calls per phone and keeps
// nothing else, as the real action keeps nothing in memory (the report goes to
// PostgreSQL). ussdtest.Recorder keeps every call, which for 10,000 sessions made the
// live heap, and so each garbage collection's work, grow through the run.
type submitCounter struct {
	mu       sync.Mutex
	perPhone map[mhero.MSISDN]int
}

func (c *submitCounter) Run(_ context.Context, r ussd.ActionRequest) (map[string]string, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.perPhone[r.Worker.MSISDN]++
	return map[string]string{"ref": "SR-" + strconv.Itoa(len(c.perPhone))}, nil
}

// benchWorker is whoever dials in the benchmarks: any number is a worker.
func benchWorker(m mhero.MSISDN) *mhero.Worker {
	return &mhero.Worker{ID: 1, Name: "Bench Worker", MSISDN: m, Cadre: "chw", FacilityID: 1, Language: "en", Active: true}
}

// histogram is one of the Go runtime's histograms (runtime/metrics).
type histogram struct{ *metrics.Float64Histogram }

func schedLatencies() histogram {
	s := []metrics.Sample{{Name: "/sched/latencies:seconds"}}
	metrics.Read(s)
	if s[0].Value.Kind() != metrics.KindFloat64Histogram {
		return histogram{&metrics.Float64Histogram{}}
	}
	return histogram{s[0].Value.Float64Histogram()}
}

// since is h less what was counted by then.
func (h histogram) since(then histogram) histogram {
	d := &metrics.Float64Histogram{Buckets: h.Buckets, Counts: slices.Clone(h.Counts)}
	if len(then.Counts) == len(d.Counts) {
		for i := range d.Counts {
			d.Counts[i] -= then.Counts[i]
		}
	}
	return histogram{d}
}

// quantile is the upper bound of the bucket holding quantile q.
func (h histogram) quantile(q float64) time.Duration {
	var total uint64
	for _, c := range h.Counts {
		total += c
	}
	var seen uint64
	for i, c := range h.Counts {
		seen += c
		if total > 0 && float64(seen) >= q*float64(total) {
			if hi := h.Buckets[i+1]; !math.IsInf(hi, 1) {
				return time.Duration(hi * float64(time.Second))
			}
			return time.Duration(h.Buckets[i] * float64(time.Second))
		}
	}
	return 0
}

// syscalls is how many read and write system calls this process has made (Linux's
// /proc/self/io), or -1 where that is not known: unlike CPU time, a count that other
// jobs on the machine do not change.
func syscalls() int64 {
	b, err := os.ReadFile("/proc/self/io")
	if err != nil {
		return -1
	}
	var n int64
	for _, l := range strings.Split(string(b), "\n") {
		if k, v, ok := strings.Cut(l, ": "); ok && (k == "syscr" || k == "syscw") {
			c, err := strconv.ParseInt(v, 10, 64)
			if err != nil {
				return -1
			}
			n += c
		}
	}
	return n
}

// cpuTime is the process's user and system CPU time so far, in nanoseconds: what a hop
// costs this process (server and load generator together) whatever else the machine runs.
func cpuTime() int64 {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return ru.Utime.Nano() + ru.Stime.Nano()
}

func ms(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }

// memStore is a SessionStore in memory, for measuring the engine alone: no network, no
// Valkey. It keeps no locks (the benchmark runs one session at a time per worker).
type memStore struct {
	mu sync.Mutex
	m  map[string][]byte
}

func (s *memStore) LockUSSD(_ context.Context, key string, _ time.Duration, _ int, _ time.Duration) ([]byte, string, int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.m[key], "t", 1, nil
}

func (s *memStore) SaveUSSD(_ context.Context, key, _ string, state []byte, _ time.Duration) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.m[key] = state
	return nil
}

func (s *memStore) UnlockUSSD(context.Context, string, string) error { return nil }

func (s *memStore) SwapUSSD(_ context.Context, key string, old, state []byte, _ time.Duration, _ int, _ time.Duration) ([]byte, bool, int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if cur := s.m[key]; string(cur) != string(old) || (cur == nil) != (old == nil) {
		return cur, false, 1, nil
	}
	if state != nil {
		s.m[key] = state
	}
	return nil, true, 1, nil
}

func (s *memStore) Ping(context.Context) error { return nil }

// BenchmarkEngineHop is the engine's own cost per hop (decode, menu step, render, encode)
// over complete stock reports, without HTTP or Valkey.
func BenchmarkEngineHop(b *testing.B) {
	menus := mustMenus(b)
	rec := &ussdtest.Recorder{Prefix: "SR-"}
	dir := ussdtest.NewDirectory(nil, testFacilities)
	dir.Generate = func(m mhero.MSISDN) *mhero.Worker {
		return &mhero.Worker{ID: 1, Name: "Bench Worker", MSISDN: m, FacilityID: 1, Language: "en", Active: true}
	}
	eng, err := ussd.NewEngine(ussd.Config{Menus: menus, Sessions: &memStore{m: map[string][]byte{}}, Directory: dir,
		Actions: map[string]ussd.Action{"stock.submit": rec, "referral.submit": rec, "details.submit": rec, "language.submit": rec,
			"survey.answer": rec},
		Sources: map[string]ussd.Source{"facilities": ussdtest.Choices(nearbyFacilities...), "cadres": ussdtest.Choices(testCadres...), "inbox": inbox,
			"surveys": ussdtest.Choices()},
		Commodities: testCommodities})
	if err != nil {
		b.Fatal(err)
	}
	ctx := context.Background()
	b.ReportAllocs()
	hops := 0
	for i := 0; b.Loop(); i++ {
		id, phone := "b-"+strconv.Itoa(i), mhero.MSISDN(strings.TrimPrefix(ussdtest.Phone(i), "+"))
		text := ""
		for hop := 0; hop <= len(stockReport); hop++ {
			if hop > 0 {
				text = strings.TrimPrefix(text+"*"+stockReport[hop-1], "*")
			}
			rep := eng.Handle(ctx, ussd.Request{SessionID: id, MSISDN: phone, Input: ussd.CumulativeText(text)})
			if hop == len(stockReport) && !rep.End {
				b.Fatalf("session %d did not finish: %q", i, rep.Text)
			}
			hops++
		}
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(hops), "ns/hop")
}
