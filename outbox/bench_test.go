package outbox_test

import (
	"context"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/mhero-health/mhero/outbox"
	"github.com/mhero-health/mhero/registry/registrytest"
)

// BenchmarkRecordReceipt measures receipts stored and applied per second, from 8
// goroutines on 8 connections (the pool's handlers run concurrently): "matched" for
// receipts of submitted single-part messages (the usual case: receipt row, part and
// message updated), "unmatched" for receipts that come before their submit (row only).
//
//	go test -run '^$' -bench RecordReceipt -benchtime 20000x ./outbox/
func BenchmarkRecordReceipt(b *testing.B) {
	for _, matched := range []bool{true, false} {
		name := "matched"
		if !matched {
			name = "unmatched"
		}
		b.Run(name, func(b *testing.B) {
			db := newDB(b, "pool_max_conns=8")
			s := outbox.NewStore(db, nil)
			ctx := context.Background()
			if matched {
				for _, q := range []string{`
					INSERT INTO messages (msisdn, body, mno, state, segments, submitted_at)
					SELECT '2318812' || lpad(g::text, 5, '0'), 'Stock report due Friday', 'lonestar', 'submitted', 1, now()
					FROM generate_series(1, $1::int) g`, `
					INSERT INTO message_parts (message_id, part_no, mno, smsc_id)
					SELECT id, 1, 'lonestar', to_hex(id) FROM messages WHERE $1::int > 0`,
					`ANALYZE`} {
					args := []any{b.N}
					if q == `ANALYZE` {
						args = nil
					}
					if _, err := db.Exec(ctx, q, args...); err != nil {
						b.Fatal(err)
					}
				}
			}
			var next atomic.Int64
			b.SetParallelism(4)
			b.ResetTimer()
			start := time.Now()
			b.RunParallel(func(pb *testing.PB) {
				for pb.Next() {
					id := strconv.FormatInt(next.Add(1), 16)
					err := s.RecordReceipt(ctx, outbox.Receipt{MNO: "lonestar", SMSCID: id, State: "delivered", Stat: "DELIVRD", Err: "000"})
					if err != nil {
						b.Error(err)
						return
					}
				}
			})
			b.ReportMetric(float64(b.N)/time.Since(start).Seconds(), "receipts/s")
			b.StopTimer()
			if matched {
				if n := count(b, db, `SELECT count(*) FROM messages WHERE state = 'delivered'`); n != b.N {
					b.Errorf("%d of %d messages delivered", n, b.N)
				}
			}
		})
	}
}

// BenchmarkRecordReceipts measures receipts recorded in batches, as the ReceiptRecorder
// hands them on: 2 flushers, batches of 25 and of 100 (BenchmarkBroadcast's commits/1k
// put a broadcast's at a few dozen). Each receipt matches a submitted single-part
// message, and every message is delivered at the end. pg-cpu-ms/1k is the PostgreSQL
// backends' CPU per 1,000 receipts, which says more than the rate on a shared machine.
//
//	go test -run '^$' -bench RecordReceipts -benchtime 40000x ./outbox/
func BenchmarkRecordReceipts(b *testing.B) {
	for _, batch := range []int{25, 100} {
		b.Run("batch="+strconv.Itoa(batch), func(b *testing.B) { benchmarkRecordReceipts(b, batch) })
	}
}

func benchmarkRecordReceipts(b *testing.B, batch int) {
	const flushers = 2
	db := newDB(b, "pool_max_conns=4")
	s := outbox.NewStore(db, nil)
	ctx := context.Background()
	for _, q := range []string{`
		INSERT INTO messages (msisdn, body, mno, state, segments, submitted_at)
		SELECT '2318812' || lpad(g::text, 5, '0'), 'Stock report due Friday', 'lonestar', 'submitted', 1, now()
		FROM generate_series(1, $1::int) g`, `
		INSERT INTO message_parts (message_id, part_no, mno, smsc_id)
		SELECT id, 1, 'lonestar', to_hex(id) FROM messages WHERE $1::int > 0`} {
		if _, err := db.Exec(ctx, q, b.N); err != nil {
			b.Fatal(err)
		}
	}
	if _, err := db.Exec(ctx, `ANALYZE`); err != nil {
		b.Fatal(err)
	}
	cpu := &registrytest.CPUMeter{DB: db}
	var next atomic.Int64
	var wg sync.WaitGroup
	cpu.Start(b)
	b.ResetTimer()
	for range flushers {
		wg.Go(func() {
			rs := make([]outbox.Receipt, 0, batch)
			for {
				rs = rs[:0]
				for range batch {
					n := next.Add(1)
					if n > int64(b.N) {
						break
					}
					rs = append(rs, outbox.Receipt{MNO: "lonestar", SMSCID: strconv.FormatInt(n, 16), State: "delivered", Stat: "DELIVRD", Err: "000"})
				}
				if len(rs) == 0 {
					return
				}
				if err := s.RecordReceipts(ctx, rs); err != nil {
					b.Error(err)
					return
				}
			}
		})
	}
	wg.Wait()
	b.StopTimer()
	cpu.Stop(b)
	cpu.Report(b, b.N)
	if n := count(b, db, `SELECT count(*) FROM messages WHERE state = 'delivered' AND final_at IS NOT NULL`); n != b.N {
		b.Errorf("%d of %d messages delivered", n, b.N)
	}
}
