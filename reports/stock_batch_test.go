package reports_test

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/mhero-health/mhero"
	"github.com/mhero-health/mhero/registry"
	"github.com/mhero-health/mhero/reports"
)

// submitBatch stores ins with SubmitStockReports in a transaction of its own.
func (c *country) submitBatch(t *testing.T, ins []reports.StockInput) []reports.StockResult {
	t.Helper()
	var out []reports.StockResult
	err := pgx.BeginFunc(context.Background(), c.reg.DB(), func(tx pgx.Tx) error {
		var err error
		out, err = c.rep.SubmitStockReports(context.Background(), tx, ins)
		return err
	})
	if err != nil {
		t.Fatalf("SubmitStockReports: %v", err)
	}
	if len(out) != len(ins) {
		t.Fatalf("%d results for %d reports", len(out), len(ins))
	}
	return out
}

// record stores ins as StockRecorder's flush does.
func (c *country) record(t *testing.T, ins []reports.StockInput) []reports.StockResult {
	t.Helper()
	out, err := c.rep.RecordStocks(context.Background(), ins)
	if err != nil {
		t.Fatalf("RecordStocks: %v", err)
	}
	if len(out) != len(ins) {
		t.Fatalf("%d results for %d reports", len(out), len(ins))
	}
	return out
}

// bothWays runs a batch case in a caller's transaction and as the recorder stores it.
func bothWays(t *testing.T, run func(t *testing.T, submit func(*country, *testing.T, []reports.StockInput) []reports.StockResult)) {
	t.Run("in a transaction", func(t *testing.T) { t.Parallel(); run(t, (*country).submitBatch) })
	t.Run("as the recorder", func(t *testing.T) { t.Parallel(); run(t, (*country).record) })
}

// TestSubmitStockReports: a batch is each report as SubmitStockReport would take it: the
// good ones stored with their numbers, the bad ones refused with their reasons, a
// repeated key answered with the first report, in the batch or before it.
func TestSubmitStockReports(t *testing.T) {
	t.Parallel()
	bothWays(t, testSubmitStockReports)
}

func testSubmitStockReports(t *testing.T, submitBatch func(*country, *testing.T, []reports.StockInput) []reports.StockResult) {
	c := newCountry(t)
	ctx := context.Background()
	a, b, cw, d := c.workers["A"], c.workers["B"], c.workers["C"], c.workers["D"]
	earlier, err := c.rep.SubmitStockReport(ctx, reports.StockInput{WorkerID: d, Commodity: "act", Quantity: 9, IdempotencyKey: "sms:1"})
	if err != nil {
		t.Fatal(err)
	}
	rs := submitBatch(c, t, []reports.StockInput{
		{WorkerID: a, Commodity: "ORS", Quantity: 20, IdempotencyKey: "sms:2"},
		{WorkerID: a, Commodity: "aspirin", Quantity: 3, IdempotencyKey: "sms:3"},
		{WorkerID: b, Commodity: "zinc", Quantity: -1},
		{WorkerID: cw, Facility: "F3", Commodity: "ors", Quantity: 5, IdempotencyKey: "sms:4"},
		{WorkerID: d, Commodity: "act", Quantity: 1000, IdempotencyKey: "sms:1"}, // sent again after a crash
		{WorkerID: a, Commodity: "ors", Quantity: 99, IdempotencyKey: "sms:2"},   // the same key twice in a batch
		{WorkerID: 999999, Commodity: "ors"},
		{WorkerID: b, Commodity: "ors", StockoutDays: 3, ReportedAt: now.Add(-time.Hour), IdempotencyKey: "sms:5"},
	})
	refused := map[int]string{1: "commodity", 2: "quantity", 6: "worker_id"}
	for i, r := range rs {
		if f, ok := refused[i]; ok {
			if mhero.ErrorCode(r.Err) != mhero.EVALIDATION || !details(r.Err)[f] || r.Report != nil {
				t.Errorf("report %d = %+v, %v; want refused for its %s", i, r.Report, r.Err, f)
			}
			continue
		}
		if r.Err != nil || r.Report == nil || !strings.HasPrefix(r.Report.Ref, "S-") {
			t.Errorf("report %d = %+v, %v; want stored", i, r.Report, r.Err)
		}
	}
	if rs[0].Report.Facility.Code != "F1" || rs[0].Report.Commodity != "ors" || rs[0].Report.Quantity != 20 || !rs[0].Report.ReportedAt.Equal(now) {
		t.Errorf("report 0 = %+v, want 20 ors at F1, counted now", rs[0].Report)
	}
	if rs[3].Report.Facility.Code != "F3" {
		t.Errorf("report 3 is for %s, want the facility it names, F3", rs[3].Report.Facility.Code)
	}
	if rs[4].Report.Ref != earlier.Ref || rs[4].Report.Quantity != 9 {
		t.Errorf("a key stored before = %+v, want the first report %s", rs[4].Report, earlier.Ref)
	}
	if rs[5].Report.Ref != rs[0].Report.Ref || rs[5].Report.Quantity != 20 {
		t.Errorf("a key twice in the batch = %+v, want the first one %s", rs[5].Report, rs[0].Report.Ref)
	}
	// Each number reads back as its report, as SubmitStockReport's do.
	for _, i := range []int{0, 3, 7} {
		got, err := c.rep.FindStockReport(ctx, rs[i].Report.Ref)
		if err != nil || got.ID != rs[i].Report.ID || got.Quantity != rs[i].Report.Quantity || got.WorkerID != rs[i].Report.WorkerID ||
			got.Facility != rs[i].Report.Facility || !got.ReportedAt.Equal(rs[i].Report.ReportedAt) || !got.ReceivedAt.Equal(rs[i].Report.ReceivedAt) {
			t.Errorf("FindStockReport(%s) = %+v, %v; want %+v", rs[i].Report.Ref, got, err, rs[i].Report)
		}
	}
	if all := collect(t, c.rep.StockReports(ctx, reports.Filter{})); len(all) != 4 {
		t.Errorf("%d reports stored, want 4 (one before, three in the batch)", len(all))
	}
	// The latest count of F1's ORS is the one counted last, not the one stored last.
	latest := collect(t, c.rep.LatestStock(ctx, reports.Filter{Facility: "F1", Commodity: "ors"}))
	if len(latest) != 1 || latest[0].Ref != rs[0].Report.Ref || latest[0].Quantity != 20 {
		t.Errorf("latest F1 ors = %+v, want %s", latest, rs[0].Report.Ref)
	}
	if latest := collect(t, c.rep.LatestStock(ctx, reports.Filter{Facility: "F3", Commodity: "ors"})); len(latest) != 1 || latest[0].Quantity != 5 {
		t.Errorf("latest F3 ors = %+v, want 5", latest)
	}
	// A worker without a facility must name one.
	e, err := c.reg.CreateWorker(ctx, registry.WorkerInput{Name: "E", MSISDN: "0886000005", Cadre: "chw"})
	if err != nil {
		t.Fatal(err)
	}
	rs = submitBatch(c, t, []reports.StockInput{{WorkerID: e.ID, Commodity: "ors", Quantity: 4},
		{WorkerID: e.ID, Facility: "F2", Commodity: "ors", Quantity: 6}})
	if mhero.ErrorCode(rs[0].Err) != mhero.EVALIDATION || !details(rs[0].Err)["facility"] {
		t.Errorf("a worker without a facility naming none = %+v, %v; want refused for its facility", rs[0].Report, rs[0].Err)
	}
	if rs[1].Err != nil || rs[1].Report.Facility.Code != "F2" {
		t.Errorf("a worker without a facility naming F2 = %+v, %v", rs[1].Report, rs[1].Err)
	}
}

// TestSubmitStockReportsOneRefusedByPostgreSQL: a report PostgreSQL refuses (here a
// trigger; in life a facility removed meanwhile) is refused alone: the others of its
// batch are stored and the caller's transaction goes on.
func TestSubmitStockReportsOneRefusedByPostgreSQL(t *testing.T) {
	t.Parallel()
	bothWays(t, testOneRefusedByPostgreSQL)
}

func testOneRefusedByPostgreSQL(t *testing.T, submitBatch func(*country, *testing.T, []reports.StockInput) []reports.StockResult) {
	c := newCountry(t)
	ctx := context.Background()
	db := c.reg.DB()
	if _, err := db.Exec(ctx, `CREATE FUNCTION refuse_666() RETURNS trigger LANGUAGE plpgsql AS $$
		BEGIN IF NEW.quantity = 666 THEN RAISE EXCEPTION 'refused count'; END IF; RETURN NEW; END $$;
		CREATE TRIGGER refuse_666 BEFORE INSERT ON stock_reports FOR EACH ROW EXECUTE FUNCTION refuse_666()`); err != nil {
		t.Fatal(err)
	}
	rs := submitBatch(c, t, []reports.StockInput{
		{WorkerID: c.workers["A"], Commodity: "ors", Quantity: 1, IdempotencyKey: "a"},
		{WorkerID: c.workers["C"], Commodity: "ors", Quantity: 666, IdempotencyKey: "c"},
		{WorkerID: c.workers["D"], Commodity: "zinc", Quantity: 2},
	})
	if rs[0].Err != nil || rs[2].Err != nil {
		t.Errorf("the good reports: %v, %v", rs[0].Err, rs[2].Err)
	}
	if rs[1].Err == nil || !strings.Contains(rs[1].Err.Error(), "refused count") || rs[1].Report != nil {
		t.Errorf("the refused report = %+v, %v", rs[1].Report, rs[1].Err)
	}
	if all := collect(t, c.rep.StockReports(ctx, reports.Filter{})); len(all) != 2 {
		t.Errorf("%d reports stored, want the 2 good ones", len(all))
	}
	if latest := collect(t, c.rep.LatestStock(ctx, reports.Filter{})); len(latest) != 2 {
		t.Errorf("latest stock = %+v, want F1 ors and F3 zinc", latest)
	}
}

// TestSubmitStockReportsRollBackWithTheCaller: nothing of a batch outlives the caller's
// transaction when it rolls back (an SMS batch that fails is handled again, whole).
func TestSubmitStockReportsRollBackWithTheCaller(t *testing.T) {
	t.Parallel()
	c := newCountry(t)
	ctx := context.Background()
	tx, err := c.reg.DB().Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	rs, err := c.rep.SubmitStockReports(ctx, tx, []reports.StockInput{{WorkerID: c.workers["A"], Commodity: "ors", Quantity: 4, IdempotencyKey: "k"}})
	if err != nil || rs[0].Err != nil {
		t.Fatal(err, rs[0].Err)
	}
	if err := tx.Rollback(ctx); err != nil {
		t.Fatal(err)
	}
	if all := collect(t, c.rep.StockReports(ctx, reports.Filter{})); len(all) != 0 {
		t.Errorf("%d reports outlived the rollback", len(all))
	}
	if latest := collect(t, c.rep.LatestStock(ctx, reports.Filter{})); len(latest) != 0 {
		t.Errorf("latest stock outlived the rollback: %+v", latest)
	}
	// And the key is free again: the report handled again is stored.
	r, err := c.rep.SubmitStockReport(ctx, reports.StockInput{WorkerID: c.workers["A"], Commodity: "ors", Quantity: 4, IdempotencyKey: "k"})
	if err != nil || r.Quantity != 4 {
		t.Errorf("again = %+v, %v", r, err)
	}
}
