package smpp

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	fsmpp "github.com/fiorix/go-smpp/smpp"
	"github.com/fiorix/go-smpp/smpp/pdu"
	"github.com/fiorix/go-smpp/smpp/pdu/pdufield"
	"github.com/fiorix/go-smpp/smpp/pdu/pdutext"
	"github.com/mhero-health/mhero/smpp/smpptest"
)

// BenchmarkSubmit is submit_sm/s through one bind against the in-process simulator on
// loopback, at window 1, 10, 100 and 1000 with no TPS cap, with and without receipts
// flowing back on the same bind; "fiorix" is the bare go-smpp Transmitter/Transceiver
// driven the same way (as many goroutines as the window) as the baseline. Its
// "failed" and "lost-receipts" metrics show the sequence-number collision at work.
//
//	go test -run='^$' -bench=BenchmarkSubmit -benchtime=100000x ./smpp
func BenchmarkSubmit(b *testing.B) {
	for _, receipts := range []bool{false, true} {
		for _, window := range []int{1, 10, 100, 1000} {
			name := fmt.Sprintf("receipts=%v/window=%d", receipts, window)
			b.Run(name+"/mhero", func(b *testing.B) { benchPool(b, window, receipts) })
			b.Run(name+"/fiorix", func(b *testing.B) { benchFiorix(b, window, receipts) })
		}
	}
}

func benchSMSC(b *testing.B, receipts bool) *smpptest.Server {
	return newSMSC(b, smpptest.Config{Receipts: receipts, SubmitHistory: -1})
}

// drive runs b.N calls of send from workers goroutines and reports msgs/s.
func drive(b *testing.B, workers int, send func(i int) error) {
	var next, failed atomic.Int64
	var wg sync.WaitGroup
	b.ReportAllocs()
	b.ResetTimer()
	start := time.Now()
	for range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := next.Add(1); i <= int64(b.N); i = next.Add(1) {
				if send(int(i)) != nil {
					failed.Add(1)
				}
			}
		}()
	}
	wg.Wait()
	elapsed := time.Since(start)
	b.StopTimer()
	b.ReportMetric(float64(b.N)/elapsed.Seconds(), "msgs/s")
	b.ReportMetric(float64(failed.Load()), "failed")
}

// settle waits (outside the timing) up to 2s for n receipts and returns how many came.
func settle(got *atomic.Int64, n int) int64 {
	for end := time.Now().Add(2 * time.Second); got.Load() < int64(n) && time.Now().Before(end); {
		time.Sleep(10 * time.Millisecond)
	}
	return got.Load()
}

type countingReceipts struct{ n atomic.Int64 }

func (c *countingReceipts) HandleReceipt(context.Context, DLR) error { c.n.Add(1); return nil }

func benchPool(b *testing.B, window int, receipts bool) {
	smsc := benchSMSC(b, receipts)
	cfg := simConfig(b, smsc)
	cfg.Window = window
	rc := &countingReceipts{}
	p := startPool(b, []Config{cfg}, Handlers{Receipt: rc})
	ctx := context.Background()
	msgs := make([]Message, 1000)
	for i := range msgs {
		msgs[i] = Message{To: testMSISDN, Text: "Reminder: stock report due " + strconv.Itoa(i), RequestReceipt: receipts}
	}
	drive(b, window, func(i int) error {
		_, err := p.Send(ctx, &msgs[i%len(msgs)])
		return err
	})
	if receipts {
		b.ReportMetric(float64(int64(b.N)-settle(&rc.n, b.N)), "lost-receipts")
		b.ReportMetric(float64(p.Health()[0].Refused), "refused")
	}
}

func benchFiorix(b *testing.B, window int, receipts bool) {
	smsc := benchSMSC(b, receipts)
	var got atomic.Int64
	tx := &fsmpp.Transceiver{Addr: smsc.Addr(), User: "mhero", Passwd: "secret", WindowSize: uint(window),
		RespTimeout: 5 * time.Second, Handler: func(p pdu.Body) {
			if p.Header().ID == pdu.DeliverSMID {
				got.Add(1)
			}
		}}
	var conn interface {
		Submit(*fsmpp.ShortMessage) (*fsmpp.ShortMessage, error)
		Close() error
	} = tx
	var status <-chan fsmpp.ConnStatus
	if receipts {
		status = tx.Bind()
	} else {
		t := &fsmpp.Transmitter{Addr: smsc.Addr(), User: "mhero", Passwd: "secret", WindowSize: uint(window), RespTimeout: 5 * time.Second}
		conn, status = t, t.Bind()
	}
	if s := <-status; s.Status() != fsmpp.Connected {
		b.Fatalf("bind: %v", s.Error())
	}
	defer conn.Close()
	reg := pdufield.NoDeliveryReceipt
	if receipts {
		reg = pdufield.FinalDeliveryReceipt
	}
	drive(b, window, func(i int) error {
		_, err := conn.Submit(&fsmpp.ShortMessage{Src: "384", Dst: string(testMSISDN), Register: reg,
			Text: pdutext.GSM7("Reminder: stock report due " + strconv.Itoa(i%1000)), Validity: 24 * time.Hour})
		return err
	})
	if receipts {
		b.ReportMetric(float64(int64(b.N)-settle(&got, b.N)), "lost-receipts")
	}
}

// BenchmarkSendLatency is the latency Send adds under load at window 100: messages are
// offered at a fixed rate (open loop) and each Send is timed. 15,000/s is half the
// issue's 30,000/s goal, 40,000/s about half of what one bind sustains here. The
// simulator answers at once, so the figure is our stack plus the simulator's, and it
// shares the process (and its garbage collector) with us.
//
//	go test -run='^$' -bench=BenchmarkSendLatency -benchtime=200000x ./smpp
func BenchmarkSendLatency(b *testing.B) {
	for _, external := range []bool{false, true} {
		for _, rate := range []int{15000, 40000} {
			b.Run(fmt.Sprintf("simulator=%s/rate=%d", map[bool]string{false: "in-process", true: "own-process"}[external], rate), func(b *testing.B) {
				var cfg Config
				if external {
					cfg = externalSMSC(b)
				} else {
					cfg = simConfig(b, benchSMSC(b, false))
				}
				cfg.Window = 100
				benchLatency(b, startPool(b, []Config{cfg}, Handlers{}), rate)
			})
		}
	}
}

func benchLatency(b *testing.B, p *Pool, rate int) {
	lat := make([]time.Duration, b.N)
	jobs := make(chan int, 10000)
	var wg sync.WaitGroup
	for range 200 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range jobs {
				m := Message{To: testMSISDN, Text: "Reminder: stock report due"}
				t0 := time.Now()
				if _, err := p.Send(context.Background(), &m); err != nil {
					b.Error(err)
				}
				lat[i] = time.Since(t0)
			}
		}()
	}
	b.ReportAllocs()
	b.ResetTimer()
	start := time.Now()
	for i := range b.N { // open loop: message i is due at start + i/rate
		if d := time.Until(start.Add(time.Duration(i) * time.Second / time.Duration(rate))); d > 0 {
			time.Sleep(d)
		}
		jobs <- i
	}
	close(jobs)
	wg.Wait()
	b.StopTimer()
	slices.Sort(lat)
	b.ReportMetric(float64(b.N)/time.Since(start).Seconds(), "msgs/s")
	b.ReportMetric(ms(lat[len(lat)/2]), "p50-ms")
	b.ReportMetric(ms(lat[len(lat)*99/100]), "p99-ms")
}

// externalSMSC runs the simulator in a child process (this test binary, re-run as
// TestHelperSMSC), so its garbage collector does not pause ours: the latency measured is
// then what Send adds plus loopback and the simulator's own processing.
func externalSMSC(b *testing.B) Config {
	cmd := exec.Command(os.Args[0], "-test.run=^TestHelperSMSC$")
	cmd.Env = append(os.Environ(), "MHERO_SMSC_HELPER=1")
	stdin, _ := cmd.StdinPipe()
	out, _ := cmd.StdoutPipe()
	if err := cmd.Start(); err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { stdin.Close(); cmd.Wait() })
	addr, err := bufio.NewReader(out).ReadString('\n')
	if err != nil {
		b.Fatalf("helper SMSC: %v", err)
	}
	host, port, _ := net.SplitHostPort(strings.TrimSpace(addr))
	n, _ := strconv.Atoi(port)
	return Config{Name: "lonestar", Host: host, Port: n, SystemID: "mhero", Password: "secret",
		SourceAddr: "384", Prefixes: []string{"+23188"}, ResponseTimeout: 5 * time.Second}
}

// TestHelperSMSC is the child process of externalSMSC; it does nothing in a normal run.
func TestHelperSMSC(t *testing.T) {
	if os.Getenv("MHERO_SMSC_HELPER") != "1" {
		t.Skip("helper process for BenchmarkSendLatency")
	}
	s := smpptest.NewServer(smpptest.Config{SystemID: "mhero", Password: "secret", SubmitHistory: -1})
	defer s.Close()
	fmt.Println(s.Addr())
	io.Copy(io.Discard, os.Stdin) // until the parent closes stdin
}

func ms(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }

// BenchmarkMemoryFlat sends b.N messages at window 100 and reports the live heap after
// the run (after a GC) next to B/op: with -benchtime=1000000x the heap must stay where
// it is at 100000x.
func BenchmarkMemoryFlat(b *testing.B) {
	smsc := benchSMSC(b, true)
	cfg := simConfig(b, smsc)
	cfg.Window = 100
	rc := &countingReceipts{}
	p := startPool(b, []Config{cfg}, Handlers{Receipt: rc})
	var m Message = Message{To: testMSISDN, Text: "Reminder: stock report due", RequestReceipt: true}
	drive(b, 100, func(int) error { mm := m; _, err := p.Send(context.Background(), &mm); return err })
	runtime.GC()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	b.ReportMetric(float64(ms.HeapInuse)/(1<<20), "heap-MB")
}

// BenchmarkThrottled is the field note's case, timed: 2,000 messages against a
// simulator accepting 200 submit_sm/s, the account's TPS unset.
//
//	go test -run='^$' -bench=BenchmarkThrottled -benchtime=1x ./smpp
func BenchmarkThrottled(b *testing.B) {
	for range b.N {
		smsc := newSMSC(b, smpptest.Config{ThrottleTPS: 200, SubmitHistory: -1})
		cfg := simConfig(b, smsc)
		cfg.Binds = 2
		p := startPool(b, []Config{cfg}, Handlers{})
		start := time.Now()
		_, errs := sendAll(context.Background(), p, 2000, 100, text)
		elapsed := time.Since(start)
		for _, err := range errs {
			if err != nil {
				b.Fatal(err)
			}
		}
		b.ReportMetric(elapsed.Seconds(), "s/2000msgs")
		b.ReportMetric(float64(smsc.Stats().Throttled), "throttled")
	}
}
