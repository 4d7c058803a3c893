package reports_test

import (
	"context"
	"fmt"
	"sync"
	"testing"

	"github.com/mhero-health/mhero"
	"github.com/mhero-health/mhero/reports"
)

// Many hops submitting at once through the recorder each get what SubmitStockReport
// would have answered them: their own stored report, the first report for a repeated
// key, a refusal for a bad count; every report is in PostgreSQL when Submit returns, and
// once stopped the recorder refuses.
func TestStockRecorderAnswersEachSubmissionAsAlone(t *testing.T) {
	t.Parallel()
	c := newCountry(t)
	rec := c.rep.NewStockRecorder(8, 2)
	ctx, stop := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); rec.Run(ctx) }()
	defer func() { stop(); <-done }()

	names := []string{"A", "B", "C", "D"}
	type sub struct {
		in  reports.StockInput
		got *reports.StockReport
		err error
	}
	var subs []*sub
	for i := range 30 {
		in := reports.StockInput{WorkerID: c.workers[names[i%4]], Commodity: []string{"ors", "ZINC"}[i%2], Quantity: i,
			IdempotencyKey: fmt.Sprintf("sess-%d:4", i)}
		switch i {
		case 13:
			in.Quantity = -1
		case 17:
			in.Commodity = "aspirin"
		}
		subs = append(subs, &sub{in: in})
	}
	for i := range 10 { // gateways retrying the first ten hops
		subs = append(subs, &sub{in: subs[i].in})
	}
	var wg sync.WaitGroup
	for _, s := range subs {
		wg.Go(func() { s.got, s.err = rec.Submit(context.Background(), s.in) })
	}
	wg.Wait()

	byKey := map[string]*reports.StockReport{}
	for i, s := range subs[:30] {
		if i == 13 || i == 17 {
			if mhero.ErrorCode(s.err) != mhero.EVALIDATION || s.got != nil {
				t.Errorf("bad count %d = %+v, %v; want refused", i, s.got, s.err)
			}
			continue
		}
		if s.err != nil || s.got == nil || s.got.Quantity != s.in.Quantity || s.got.WorkerID != s.in.WorkerID {
			t.Fatalf("count %d = %+v, %v; want its own report", i, s.got, s.err)
		}
		byKey[s.in.IdempotencyKey] = s.got
	}
	for i, s := range subs[30:] {
		// A retried hop gets the report stored under its key, whichever copy came first.
		first := byKey[s.in.IdempotencyKey]
		if s.err != nil || s.got == nil || first == nil || s.got.Ref != first.Ref {
			t.Errorf("retried hop %d = %+v, %v; want the one report %+v", i, s.got, s.err, first)
		}
	}
	for key, r := range byKey {
		got, err := c.rep.FindStockReport(context.Background(), r.Ref)
		if err != nil || got.Quantity != r.Quantity || got.ReceivedAt.IsZero() || got.WorkerID != r.WorkerID || got.Facility.ID != r.Facility.ID || got.Commodity != r.Commodity {
			t.Errorf("%s: stored %+v, %v; answered %+v", key, got, err, r)
		}
	}
	var rows int
	if err := c.reg.DB().QueryRow(context.Background(), `SELECT count(*) FROM stock_reports`).Scan(&rows); err != nil || rows != 28 {
		t.Errorf("%d reports stored (%v), want 28: one per key, none for the bad counts", rows, err)
	}

	stop()
	<-done
	if _, err := rec.Submit(context.Background(), subs[0].in); err == nil {
		t.Error("a submission after the stop was taken")
	}
}
