package sms_test

import (
	"context"
	"fmt"
	"net"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/mhero-health/mhero/outbox"
	"github.com/mhero-health/mhero/outbox/outboxsmpp"
	"github.com/mhero-health/mhero/smpp"
	"github.com/mhero-health/mhero/smpp/smpptest"
	"github.com/mhero-health/mhero/sms"
)

// pipeline runs what serve runs around two-way SMS: an SMSC simulator, the SMPP pool
// storing MO SMS and receipts in the outbox, the dispatcher, and the inbound processor,
// woken by each stored MO.
type pipeline struct {
	smsc *smpptest.Server
	pool *smpp.Pool
}

func startPipeline(t *testing.T, e *env) *pipeline {
	t.Helper()
	ctx := context.Background()
	smsc := smpptest.NewServer(smpptest.Config{SystemID: "mhero", Password: "secret", Receipts: true, ReceiptDelay: time.Millisecond})
	t.Cleanup(smsc.Close)
	host, port, _ := net.SplitHostPort(smsc.Addr())
	p, _ := strconv.Atoi(port)
	var cfgs []smpp.Config
	for _, mno := range []struct{ name, prefix string }{{"lonestar", "+23188"}, {"orange", "+23177"}} {
		cfgs = append(cfgs, smpp.Config{Name: mno.name, Host: host, Port: p, SystemID: "mhero", Password: "secret",
			SourceAddr: "384", Prefixes: []string{mno.prefix}, Window: 20, ResponseTimeout: 5 * time.Second})
	}
	rec := e.out.NewReceiptRecorder(0, 0)
	run(t, func(ctx context.Context) error { rec.Run(ctx); return nil })

	var woken atomic.Pointer[sms.Processor]
	h := outboxsmpp.Handlers(e.out, rec)
	store := h.MO
	h.MO = smpp.MOHandlerFunc(func(ctx context.Context, m smpp.MO) error {
		err := store.HandleMO(ctx, m)
		if p := woken.Load(); err == nil && p != nil {
			p.Wake()
		}
		return err
	})
	pool, err := smpp.NewPool(cfgs, h, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	pctx, cancel := context.WithCancel(ctx)
	t.Cleanup(cancel)
	if err := pool.Start(pctx); err != nil {
		t.Fatal(err)
	}
	// Stopped after the processor and the dispatcher (cleanups run in reverse).
	t.Cleanup(func() { _ = pool.Stop(context.Background()) })
	disp := e.out.NewDispatcher(outboxsmpp.Sender{Pool: pool}, outbox.DispatchConfig{Poll: 5 * time.Millisecond}, nil)
	e.proc = e.sms.NewProcessor(sms.ProcessorConfig{Batch: 100, Poll: 5 * time.Millisecond, Wake: disp.Wake})
	woken.Store(e.proc)
	run(t, disp.Run)
	run(t, e.proc.Run)
	return &pipeline{smsc: smsc, pool: pool}
}

// TestSurveyEndToEnd sends a survey to 1,000 workers through the SMSC simulator and
// injects their replies as MO SMS: complete answers (some with a wrong answer first),
// first answers only, STOP in the middle, silence (reminded), answers after the survey
// closed, and SMS from numbers the registry does not know. The final answers and counts
// must be exactly what was sent.
func TestSurveyEndToEnd(t *testing.T) {
	t.Parallel()
	e := newEnv(t, 1400, func(c *sms.Config) { c.RepliesPerHour = 100 })
	ctx := context.Background()
	// Exactly 1,000 workers can be messaged.
	if _, err := e.db.Exec(ctx, `UPDATE workers SET active = false WHERE active AND NOT opted_out AND id NOT IN (
		SELECT id FROM workers WHERE active AND NOT opted_out ORDER BY id LIMIT 1000)`); err != nil {
		t.Fatal(err)
	}
	type worker struct {
		id     int64
		msisdn string
		fr     bool
	}
	rows, err := e.db.Query(ctx, `SELECT id, msisdn, language = 'fr' FROM workers WHERE active AND NOT opted_out ORDER BY id`)
	if err != nil {
		t.Fatal(err)
	}
	var workers []worker
	for rows.Next() {
		var w worker
		if err := rows.Scan(&w.id, &w.msisdn, &w.fr); err != nil {
			t.Fatal(err)
		}
		workers = append(workers, w)
	}
	rows.Close()
	if len(workers) != 1000 {
		t.Fatalf("%d reachable workers, want 1000", len(workers))
	}
	pl := startPipeline(t, e)

	sv, _, err := e.sms.CreateSurvey(ctx, surveyInput(t, nil))
	if err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the first question submitted to all 1,000", 2*time.Minute, func() bool {
		return e.count(t, `SELECT count(*) FROM messages WHERE broadcast_id = ANY($1) AND submitted_at IS NOT NULL`, sv.BroadcastIDs) == 1000
	})

	// Who says what, in order. Each worker's SMS go one after the other (a person waits
	// for the next question); different workers at once.
	script := map[string][]string{}
	yes := func(w worker) string {
		if w.fr {
			return "oui"
		}
		return "1"
	}
	var want struct{ complete, firstOnly, stopped, silent, invalid, yes, no, late, strangers int }
	for i, w := range workers {
		switch {
		case i < 600: // the whole survey; one in six answers the first question wrongly first
			var s []string
			if i%6 == 0 {
				s = append(s, "maybe")
				want.invalid++
			}
			first := yes(w)
			if i%4 == 0 {
				first = "2"
				want.no++
			} else {
				want.yes++
			}
			script[w.msisdn] = append(s, first, strconv.Itoa(10+i%50), fmt.Sprintf("Comment %d", i))
			want.complete++
		case i < 700: // the first answer only
			script[w.msisdn] = []string{yes(w)}
			want.firstOnly++
			want.yes++
		case i < 750: // the first answer, then STOP
			stop := "STOP"
			if w.fr {
				stop = "Arrêt"
			}
			script[w.msisdn] = []string{yes(w), stop}
			want.stopped++
			want.yes++
		default:
			want.silent++
		}
	}
	for i := range 20 {
		script[fmt.Sprintf("2318899%05d", i)] = []string{[]string{"hello", "STOP", "Aide"}[i%3]}
		want.strangers++
	}
	injected := inject(t, pl.smsc, script)
	waitFor(t, "every MO handled", 2*time.Minute, func() bool {
		return e.count(t, `SELECT count(*) FROM inbound_messages WHERE handled_at IS NOT NULL`) == injected
	})

	// A day later the silent and the half-way are reminded; then the survey closes and
	// some half-way workers answer late.
	e.clock.Advance(25 * time.Hour)
	if err := e.sms.NewScheduler(sms.SchedulerConfig{}).Tick(ctx); err != nil {
		t.Fatal(err)
	}
	e.clock.Set(time.Now())
	if _, err := e.sms.CloseSurvey(ctx, sv.ID); err != nil {
		t.Fatal(err)
	}
	late := map[string][]string{}
	for _, w := range workers[600:630] {
		late[w.msisdn] = []string{"25"}
		want.late++
	}
	injected += inject(t, pl.smsc, late)
	waitFor(t, "every MO handled, late ones included", 2*time.Minute, func() bool {
		return e.count(t, `SELECT count(*) FROM inbound_messages WHERE handled_at IS NOT NULL`) == injected
	})
	waitFor(t, "every reply and reminder submitted", 2*time.Minute, func() bool {
		return e.count(t, `SELECT count(*) FROM message_queue`) == 0
	})

	got, err := e.sms.FindSurvey(ctx, sv.ID)
	if err != nil {
		t.Fatal(err)
	}
	p := got.Progress
	started := want.complete + want.firstOnly + want.stopped
	if p.Recipients != 1000 || p.Sent != 1000 || p.Started != started || p.Completed != want.complete ||
		p.OptedOut != want.stopped || p.Invalid != want.invalid || p.Late != want.late ||
		p.Reminded != want.silent+want.firstOnly || p.ResponseRate != float64(started)/1000 {
		t.Errorf("progress %+v\nwant %d started, %+v", p, started, want)
	}
	q := p.Questions
	if q[0].Answers != started || q[0].Choices["yes"] != want.yes || q[0].Choices["no"] != want.no ||
		q[1].Answers != want.complete || *q[1].Min != 10 || *q[1].Max != 59 || q[2].Answers != want.complete {
		t.Errorf("answers per question %+v", q)
	}
	// Each SMS was handled once, as what it was.
	byAs := map[string]int{}
	rows, err = e.db.Query(ctx, `SELECT handled_as, count(*) FROM inbound_messages GROUP BY 1`)
	if err != nil {
		t.Fatal(err)
	}
	for rows.Next() {
		var as string
		var n int
		_ = rows.Scan(&as, &n)
		byAs[as] = n
	}
	rows.Close()
	wantAs := map[string]int{sms.HandledAnswer: started + 2*want.complete, sms.HandledInvalidAnswer: want.invalid,
		sms.HandledStop: want.stopped, sms.HandledUnknownSender: want.strangers, sms.HandledLateAnswer: want.late}
	if fmt.Sprint(byAs) != fmt.Sprint(wantAs) {
		t.Errorf("handled as %v, want %v", byAs, wantAs)
	}
	// Every MO got its reply through the SMSC; STOP's confirmation too.
	if n := e.count(t, `SELECT count(*) FROM inbound_messages i JOIN messages m ON m.id = i.reply_message_id
		WHERE m.submitted_at IS NOT NULL AND m.priority = 1`); n != injected {
		t.Errorf("%d replies submitted for %d MO", n, injected)
	}
	var sawStop, sawFrenchThanks bool
	for _, s := range pl.smsc.Submits() {
		text := string(s.ShortMessage)
		sawStop = sawStop || strings.Contains(text, "no longer receive") || strings.Contains(text, "ne recevrez plus")
		sawFrenchThanks = sawFrenchThanks || strings.Contains(text, "Merci pour vos r")
	}
	if !sawStop || !sawFrenchThanks {
		t.Errorf("the SMSC did not see a STOP confirmation (%v) or French thanks (%v)", sawStop, sawFrenchThanks)
	}
	// The stored answers are the ones sent, worker by worker.
	for i, w := range workers[:600] {
		var q2, q3 string
		err := e.db.QueryRow(ctx, `SELECT max(value) FILTER (WHERE question_no = 2), max(value) FILTER (WHERE question_no = 3)
			FROM survey_answers WHERE survey_id = $1 AND worker_id = $2 AND NOT late`, sv.ID, w.id).Scan(&q2, &q3)
		if err != nil || q2 != strconv.Itoa(10+i%50) || q3 != fmt.Sprintf("Comment %d", i) {
			t.Fatalf("worker %d: answers %q %q (%v)", w.id, q2, q3, err)
		}
	}
}

// inject delivers each number's SMS in order through the simulator, numbers in parallel,
// and returns how many it delivered.
func inject(t *testing.T, smsc *smpptest.Server, script map[string][]string) int {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	numbers := make(chan string, len(script))
	total := 0
	for n, texts := range script {
		numbers <- n
		total += len(texts)
	}
	close(numbers)
	errs := make(chan error, len(script))
	var wg sync.WaitGroup
	for range 16 {
		wg.Go(func() {
			for n := range numbers {
				for _, text := range script[n] {
					if err := smsc.DeliverMO(ctx, n, "384", text); err != nil {
						errs <- fmt.Errorf("MO from %s: %w", n, err)
						return
					}
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	return total
}
