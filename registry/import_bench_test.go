package registry_test

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"log/slog"
	"os"
	"runtime"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/mhero-health/mhero/registry"
	"github.com/mhero-health/mhero/registry/registrytest"
)

// benchFacilities is how many facilities the benchmark country has.
const benchFacilities = 400

// seedBenchCountry imports a 4-level tree (country, 15 counties, 90 districts, 360
// health zones) and benchFacilities facilities.
func seedBenchCountry(tb testing.TB, s *registry.Store) {
	tb.Helper()
	var loc strings.Builder
	loc.WriteString("code,name,parent_code\nLR,Liberia,\n")
	for c := range 15 {
		fmt.Fprintf(&loc, "c%d,County %d,LR\n", c, c)
		for d := range 6 {
			fmt.Fprintf(&loc, "c%dd%d,District %d-%d,c%d\n", c, d, c, d, c)
			for z := range 4 {
				fmt.Fprintf(&loc, "c%dd%dz%d,Zone %d-%d-%d,c%dd%d\n", c, d, z, c, d, z, c, d)
			}
		}
	}
	var fac strings.Builder
	fac.WriteString("code,name,location_code\n")
	for i := range benchFacilities {
		z := i % 360
		fmt.Fprintf(&fac, "f%d,Facility %d,c%dd%dz%d\n", i, i, z/24, (z/4)%6, z%4)
	}
	ctx := context.Background()
	for _, in := range []string{loc.String(), fac.String()} {
		if _, err := s.Import(ctx, strings.NewReader(in), registry.ImportOptions{Source: "bench"}); err != nil {
			tb.Fatalf("seed: %v", err)
		}
	}
}

var benchCadres = []string{"chw", "nurse", "midwife", "physician-assistant", "lab-tech", "pharmacist"}

// writeBenchWorkers writes n synthetic workers as an iHRIS CSV export: unique valid
// Liberian mobile numbers in national format, a few cadres and skills.
func writeBenchWorkers(w io.Writer, n int) error {
	bw := bufio.NewWriterSize(w, 64<<10)
	bw.WriteString("ihris_id,name,phone,phone2,cadre,facility_code,skills,language,active,opted_out\n")
	for i := range n {
		prefix := "077"
		if i%2 == 1 {
			prefix = "088"
		}
		lang := "en"
		if i%7 == 0 {
			lang = "fr"
		}
		fmt.Fprintf(bw, "ihris-%d,Worker %d Surname%d,%s%07d,,%s,f%d,imci;malaria,%s,true,false\n",
			i, i, i%997, prefix, i/2, benchCadres[i%len(benchCadres)], i%benchFacilities, lang)
	}
	return bw.Flush()
}

// BenchmarkImportWorkersCSV measures the CSV worker import at two file sizes, inserting
// into an empty table and re-importing (all updates). It reports rows/s, the peak Go heap
// in use above the pre-import baseline (sampled every 2 ms), and bytes allocated per row:
// flat memory means peak-heap-MB does not grow with rows. On a shared machine wall-clock
// rows/s is noisy, so it also reports CPU time per row: this process's (user+sys, which
// includes generating the CSV) and, when PostgreSQL runs on this host, that of the
// database's backends (from /proc; 0 when they cannot be read).
//
//	go test -run '^$' -bench BenchmarkImportWorkersCSV -benchtime 3x ./registry/
func BenchmarkImportWorkersCSV(b *testing.B) {
	for _, n := range []int{50_000, 200_000} {
		for _, mode := range []string{"insert", "update"} {
			b.Run(fmt.Sprintf("rows=%d/%s", n, mode), func(b *testing.B) {
				s := registrytest.NewStore(b)
				if os.Getenv("MHERO_BENCH_DEBUG") != "" { // phase timings on stderr
					s.Log = slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
				}
				seedBenchCountry(b, s)
				ctx := context.Background()
				var elapsed time.Duration
				cpu := &registrytest.CPUMeter{DB: s.DB()}
				var peak, allocs uint64
				for range b.N {
					b.StopTimer()
					if mode == "insert" {
						if _, err := s.DB().Exec(ctx, `TRUNCATE workers CASCADE`); err != nil {
							b.Fatal(err)
						}
					} else if n0 := countWorkers(b, s); n0 != n {
						importWorkers(b, s, n) // prime: every row of the timed run is an update
					}
					runtime.GC()
					var before runtime.MemStats
					runtime.ReadMemStats(&before)
					stop := sampleHeap(before.HeapInuse)
					cpu.Start(b)
					b.StartTimer()
					start := time.Now()
					res := importWorkers(b, s, n)
					elapsed += time.Since(start)
					b.StopTimer()
					cpu.Stop(b)
					p := stop()
					peak = max(peak, p)
					var after runtime.MemStats
					runtime.ReadMemStats(&after)
					allocs += after.TotalAlloc - before.TotalAlloc
					want := res.Created
					if mode == "update" {
						want = res.Updated
					}
					if want != n || res.RowsFailed != 0 {
						b.Fatalf("%s: %+v", mode, res)
					}
					b.StartTimer()
				}
				b.ReportMetric(float64(n*b.N)/elapsed.Seconds(), "rows/s")
				b.ReportMetric(float64(peak)/(1<<20), "peak-heap-MB")
				b.ReportMetric(float64(allocs)/float64(n*b.N), "alloc-B/row")
				b.ReportMetric(float64(cpu.Self.Microseconds())/float64(n*b.N), "go-cpu-µs/row")
				b.ReportMetric(float64(cpu.PG.Microseconds())/float64(n*b.N), "pg-cpu-µs/row")
			})
		}
	}
}

func importWorkers(b *testing.B, s *registry.Store, n int) *registry.ImportResult {
	pr, pw := io.Pipe()
	go func() { pw.CloseWithError(writeBenchWorkers(pw, n)) }()
	res, err := s.Import(context.Background(), pr, registry.ImportOptions{Source: "bench.csv"})
	pr.Close()
	if err != nil {
		b.Fatalf("Import: %v", err)
	}
	return res
}

func countWorkers(b *testing.B, s *registry.Store) int {
	var n int
	if err := s.DB().QueryRow(context.Background(), `SELECT count(*) FROM workers`).Scan(&n); err != nil {
		b.Fatal(err)
	}
	return n
}

// sampleHeap samples HeapInuse until stopped and returns the peak above base.
func sampleHeap(base uint64) (stop func() uint64) {
	var peak atomic.Uint64
	done := make(chan struct{})
	finished := make(chan struct{})
	go func() {
		defer close(finished)
		t := time.NewTicker(2 * time.Millisecond)
		defer t.Stop()
		var m runtime.MemStats
		for {
			select {
			case <-done:
				return
			case <-t.C:
				runtime.ReadMemStats(&m)
				if m.HeapInuse > base && m.HeapInuse-base > peak.Load() {
					peak.Store(m.HeapInuse - base)
				}
			}
		}
	}()
	return func() uint64 {
		close(done)
		<-finished
		return peak.Load()
	}
}
