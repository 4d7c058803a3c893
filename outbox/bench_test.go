package outbox_test

import (
	"context"
	"strconv"
	"sync/atomic"
	"testing"
	"time"

	"github.com/mhero-health/mhero/outbox"
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
