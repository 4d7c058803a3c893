package sms_test

import (
	"context"
	"encoding/json"
	"fmt"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/mhero-health/mhero/registry/demo"
	"github.com/mhero-health/mhero/registry/registrytest"
	"github.com/mhero-health/mhero/sms"
)

// BenchmarkInbound measures the inbound pipeline end to end: b.N MO SMS already stored
// unhandled (as the SMPP handler leaves them) are claimed, parsed, routed to a survey or a
// keyword, their effect stored (answers, survey places, opt-outs, stock reports), their
// replies queued in the outbox, and marked handled, by two processors with the default
// configuration (one instance's), until none is left. Reported: msgs/s over that run.
//
// Mixes: "survey" is answers to an open survey (the load right after a national survey
// goes out); "mixed" is 73% answers, 5% STOCK reports (a batch's stored with
// reports.SubmitStockReports), 5% HELP, 5% text that is no keyword, 10% SMS from unknown
// numbers, and 1% STOP and 1% START (a batch's with registry.SetOptOuts). Alongside
// msgs/s, the CPU per 1,000 SMS of this process and of the PostgreSQL backends serving the
// run (see registrytest.CPUMeter): on a shared machine those vary less than the wall clock.
func BenchmarkInbound(b *testing.B) {
	for _, mix := range []string{"survey", "mixed"} {
		b.Run(mix, func(b *testing.B) {
			// 5,000 workers in 500 facilities, about as many per facility as in a real
			// country (a stock report updates its facility's latest-stock row).
			e := newCountry(b, demo.Size{Counties: 12, DistrictsPerCounty: 4, Depth: 3, Facilities: 500, Workers: 5000, Seed: 7},
				func(c *sms.Config) { c.RepliesPerHour = 1_000_000 })
			ctx := context.Background()
			questions := make([]json.RawMessage, sms.MaxQuestions)
			for i := range questions {
				questions[i] = json.RawMessage(fmt.Sprintf(`{"kind": "number", "text": "Question %d?", "max": 100000}`, i+1))
			}
			qs, _ := json.Marshal(questions)
			var in sms.SurveyInput
			if err := json.Unmarshal([]byte(`{"name": "Bench", "target": {"locations": ["LR"]}, "open_for": "72h", "questions": `+string(qs)+`}`), &in); err != nil {
				b.Fatal(err)
			}
			if _, _, err := e.sms.CreateSurvey(ctx, in); err != nil {
				b.Fatal(err)
			}
			var numbers []string
			rows, _ := e.db.Query(ctx, `SELECT w.msisdn FROM survey_participants p JOIN workers w ON w.id = p.worker_id ORDER BY w.id`)
			for rows.Next() {
				var m string
				_ = rows.Scan(&m)
				numbers = append(numbers, m)
			}
			rows.Close()
			if rows.Err() != nil || len(numbers) < 1000 {
				b.Fatalf("%d participants: %v", len(numbers), rows.Err())
			}
			e.proc = e.sms.NewProcessor(sms.ProcessorConfig{}) // the defaults: batches of up to 1000
			b.ReportAllocs()
			b.ResetTimer()
			var handled int
			var elapsed time.Duration
			cpu := &registrytest.CPUMeter{DB: e.db}
			for done := 0; done < b.N; {
				n := min(b.N-done, 20*len(numbers)) // within the survey's 20 questions
				b.StopTimer()
				storeInbound(b, e, mix, numbers, n)
				cpu.Start(b)
				b.StartTimer()
				start := time.Now()
				handled += drainAll(b, e, n)
				elapsed += time.Since(start)
				b.StopTimer()
				cpu.Stop(b)
				done += n
			}
			b.StopTimer()
			if handled != b.N {
				b.Fatalf("%d of %d handled", handled, b.N)
			}
			b.ReportMetric(float64(b.N)/elapsed.Seconds(), "msgs/s")
			cpu.Report(b, b.N)
			if b.N >= 1000 {
				if n := e.count(b, `SELECT count(*) FROM inbound_messages WHERE reply_message_id IS NULL`); n != 0 {
					b.Fatalf("%d SMS without a reply", n)
				}
				// Every STOCK SMS answered "thank you" has its report, and only one.
				if n, m := e.count(b, `SELECT count(*) FROM inbound_messages WHERE handled_as = 'stock'`),
					e.count(b, `SELECT count(*) FROM stock_reports`); n != m || (mix == "mixed" && n == 0) {
					b.Fatalf("%d SMS handled as stock reports, %d reports stored", n, m)
				}
			}
		})
	}
}

// storeInbound stores n unhandled MO SMS of the mix with COPY, as the SMPP handler would
// have, the senders taking turns so each one's SMS are spread over the run.
func storeInbound(b *testing.B, e *env, mix string, numbers []string, n int) {
	b.Helper()
	ctx := context.Background()
	if _, err := e.db.Exec(ctx, `TRUNCATE survey_answers; UPDATE survey_participants SET state = 'sent', current_no = 1;
		UPDATE workers SET opted_out = false WHERE opted_out AND id IN (SELECT worker_id FROM survey_participants)`); err != nil {
		b.Fatal(err)
	}
	now := time.Now()
	rows := make([][]any, n)
	for i := range n {
		from := numbers[i%len(numbers)]
		body := strconv.Itoa(i % 1000) // a valid answer to any of the survey's questions
		if mix == "mixed" {
			switch k := i % 100; {
			case k == 0:
				body = "STOP" // ends this worker's survey
			case k == 1:
				from, body = numbers[(i-1)%len(numbers)], "START"
			case k < 7:
				body = []string{"STOCK ORS ", "STOCK ZINC "}[i%2] + strconv.Itoa(i%500)
			case k < 12:
				body = "help"
			case k < 17:
				body = "Hello, when is the next training?"
			case k < 27:
				from = fmt.Sprintf("2318890%05d", i%5000) // a number the registry does not know
				body = "AIDE"
			}
		}
		rows[i] = []any{"lonestar", from, "384", body, now}
	}
	_, err := e.db.CopyFrom(ctx, pgx.Identifier{"inbound_messages"}, []string{"mno", "from_msisdn", "to_addr", "body", "received_at"},
		pgx.CopyFromRows(rows))
	if err != nil {
		b.Fatal(err)
	}
	if _, err := e.db.Exec(ctx, `ANALYZE inbound_messages`); err != nil {
		b.Fatal(err)
	}
}

// drainAll runs two processors until the n SMS just stored are handled.
func drainAll(b *testing.B, e *env, n int) int {
	b.Helper()
	ctx := context.Background()
	total := 0
	for total < n {
		var mu sync.Mutex
		var wg sync.WaitGroup
		for range 2 {
			wg.Go(func() {
				k, err := e.proc.Drain(ctx)
				if err != nil {
					b.Error(err)
				}
				mu.Lock()
				total += k
				mu.Unlock()
			})
		}
		wg.Wait()
		if b.Failed() {
			b.FailNow()
		}
	}
	return total
}
