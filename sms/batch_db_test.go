package sms_test

import (
	"context"
	"fmt"
	"regexp"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/mhero-health/mhero"
	"github.com/mhero-health/mhero/registry"
	"github.com/mhero-health/mhero/reports"
	"github.com/mhero-health/mhero/sms"
)

// The adapters offer the batch APIs the processor prefers.
var (
	_ sms.OptOutBatcher      = (*registry.Store)(nil)
	_ sms.StockBatchReporter = (*reports.Store)(nil)
)

// oneOptOut and oneStock hide the batch APIs of the stores they wrap: the processor then
// takes each opt-out and stock report alone, in a transaction of its own.
type (
	oneOptOut struct{ sms.OptOuts }
	oneStock  struct{ sms.StockReporter }
)

// TestBatchEffectsAsOneByOne: the opt-outs and stock reports of a batch, made with the
// registry's and the reports' batch APIs in the batch's transaction, are what they were
// one by one: the same outcomes and replies for every SMS, the same stock reports and
// latest stock, the same opt-outs and audit rows, the same survey places.
func TestBatchEffectsAsOneByOne(t *testing.T) {
	t.Parallel()
	start := time.Now().Add(-time.Hour).Truncate(time.Second)
	batch, alone := newEnv(t, 200, nil), newEnv(t, 200, nil)
	s, err := sms.NewStore(alone.db, sms.Deps{Outbox: alone.out, Audience: alone.reg, OptOuts: oneOptOut{alone.reg},
		Stock: oneStock{alone.rep}}, sms.Config{Commodities: commodities, Now: alone.clock.Now, SurveyReminder: 24 * time.Hour}, nil)
	if err != nil {
		t.Fatal(err)
	}
	alone.sms, alone.proc = s, s.NewProcessor(sms.ProcessorConfig{Batch: 50})
	var ids []int64
	for k, e := range []*env{batch, alone} {
		ctx := context.Background()
		e.clock.Set(start)
		if _, _, err := e.sms.CreateSurvey(ctx, surveyInput(t, nil)); err != nil {
			t.Fatal(err)
		}
		// A worker without a facility, and one with a second phone.
		if _, err := e.reg.CreateWorker(ctx, registry.WorkerInput{Name: "Nofac", MSISDN: "0886555001"}); err != nil {
			t.Fatal(err)
		}
		if _, err := e.reg.CreateWorker(ctx, registry.WorkerInput{Name: "Twophones", MSISDN: "0886555002", AltMSISDN: "0886555003",
			Facility: facilityCode(t, e)}); err != nil {
			t.Fatal(err)
		}
		got := sendMix(t, e)
		if k == 0 {
			ids = got
		} else if !slices.Equal(ids, got) {
			t.Fatalf("the two databases numbered the SMS differently")
		}
		for range 20 {
			e.drain(t)
		}
	}
	refs := regexp.MustCompile(`S-[0-9A-Z]{5,}`)
	stocks := 0
	for _, id := range ids {
		b, a := batch.outcome(t, id), alone.outcome(t, id)
		if !b.handled {
			t.Errorf("SMS %d is not handled", id)
		}
		if b.as == sms.HandledStock {
			stocks++
			// Each reference names the report of its own SMS.
			for _, e := range []*env{batch, alone} {
				o := e.outcome(t, id)
				if key := refKey(t, e, refs.FindString(o.reply)); key != fmt.Sprintf("sms:%d", id) {
					t.Errorf("SMS %d answered with %s, the report of %q", id, refs.FindString(o.reply), key)
				}
			}
		}
		b.reply, a.reply = refs.ReplaceAllString(b.reply, "S-?"), refs.ReplaceAllString(a.reply, "S-?")
		if b != a {
			t.Errorf("SMS %d: batch %+v, one by one %+v", id, b, a)
		}
	}
	if stocks < 20 {
		t.Errorf("only %d stock reports stored: the mix misses its point", stocks)
	}
	for _, q := range []string{
		`SELECT facility_id, commodity_id, quantity, stockout_days, worker_id, reported_at, idempotency_key FROM stock_reports`,
		`SELECT l.facility_id, l.commodity_id, l.quantity, l.stockout_days, l.worker_id, l.reported_at, s.idempotency_key
			FROM stock_latest l JOIN stock_reports s ON s.id = l.report_id`,
		`SELECT id, opted_out FROM workers`,
		`SELECT action, entity, entity_id, actor, key_id, detail::text FROM audit_log WHERE action IN ('opt_out', 'opt_in')`,
		`SELECT survey_id, worker_id, state, current_no, invalid_count, started_at IS NULL, completed_at IS NULL FROM survey_participants`,
		`SELECT survey_id, worker_id, question_no, value, late, inbound_id FROM survey_answers`,
		`SELECT worker_id, msisdn, priority, body ~ 'S-' FROM messages WHERE priority = 1`,
	} {
		b, a := rowSet(t, batch, q), rowSet(t, alone, q)
		if !slices.Equal(b, a) {
			t.Errorf("%s:\nbatch       %d rows %.300v\none by one  %d rows %.300v", q, len(b), b, len(a), a)
		}
	}
}

// sendMix stores the SMS of a busy hour: survey answers and keywords of every kind,
// good and bad, from workers, strangers, a worker without a facility and a worker's
// second phone, a second apart.
func sendMix(t *testing.T, e *env) []int64 {
	t.Helper()
	rows, err := e.db.Query(context.Background(), `SELECT msisdn FROM workers WHERE facility_id IS NOT NULL AND name NOT IN ('Twophones') ORDER BY id`)
	if err != nil {
		t.Fatal(err)
	}
	numbers, err := pgx.CollectRows(rows, pgx.RowTo[mhero.MSISDN])
	if err != nil {
		t.Fatal(err)
	}
	bodies := []string{"1", "STOP", "START", "stock ors 20", "STOCK ZINC 3 2", "STOCK SRO 0 3", "2", "STOCK ORS 99999999",
		"help", "Hello, when is the training?", "arrêt", "stock xyz 5", "1", "STOCK ORS 7 400", "débuter", "DEBUT", "12",
		"STOCK ZINC 1,000", "yes", "stock ors 5"}
	var ids []int64
	for i := range 600 {
		e.clock.Advance(time.Second)
		from, body := numbers[i%len(numbers)], bodies[i%len(bodies)]
		switch i % 37 {
		case 3:
			from = mhero.MSISDN(fmt.Sprintf("2318899%05d", i)) // a stranger
		case 5:
			from = "231886555001" // no facility
		case 7:
			from = "231886555003" // a second phone
		case 11:
			from = "231886555002"
		}
		ids = append(ids, e.mo(t, from, body))
	}
	return ids
}

func facilityCode(t *testing.T, e *env) string {
	t.Helper()
	var code string
	if err := e.db.QueryRow(context.Background(), `SELECT code FROM facilities ORDER BY id LIMIT 1`).Scan(&code); err != nil {
		t.Fatal(err)
	}
	return code
}

// refKey is the idempotency key of the stock report a reference names.
func refKey(t *testing.T, e *env, ref string) string {
	t.Helper()
	id, err := reports.ParseRef(reports.RefStock, ref)
	if err != nil {
		t.Fatalf("reference %q: %v", ref, err)
	}
	var key string
	if err := e.db.QueryRow(context.Background(), `SELECT idempotency_key FROM stock_reports WHERE id = $1`, id).Scan(&key); err != nil {
		t.Fatalf("report %s: %v", ref, err)
	}
	return key
}

// rowSet is the rows of a query as sorted strings, to compare as multisets.
func rowSet(t *testing.T, e *env, q string) []string {
	t.Helper()
	rows, err := e.db.Query(context.Background(), q)
	if err != nil {
		t.Fatalf("%s: %v", q, err)
	}
	out, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (string, error) {
		v, err := r.Values()
		return fmt.Sprint(v), err
	})
	if err != nil {
		t.Fatal(err)
	}
	slices.Sort(out)
	return out
}

// flakyBatchStock is a reports store whose batch API fails its first calls as a reports
// database that is down would.
type flakyBatchStock struct {
	*reports.Store
	failures atomic.Int32
}

func (f *flakyBatchStock) SubmitStockReports(ctx context.Context, tx pgx.Tx, ins []reports.StockInput) ([]reports.StockResult, error) {
	if f.failures.Add(-1) >= 0 {
		return nil, mhero.Errorf(mhero.EUNAVAILABLE, "reports database unreachable")
	}
	return f.Store.SubmitStockReports(ctx, tx, ins)
}

// TestBatchPassingFailureIsRetried is TestPassingFailureIsRetried on the batch API, with
// the rest of the batch beside it: the STOCK reports wait and are tried again, the other
// SMS of the batch are handled at once; when it keeps failing the SMS is marked failed and
// the worker told to try later.
func TestBatchPassingFailureIsRetried(t *testing.T) {
	t.Parallel()
	e := newEnv(t, 100, nil)
	ctx := context.Background()
	flaky := &flakyBatchStock{Store: e.rep}
	flaky.failures.Store(1)
	s, err := sms.NewStore(e.db, sms.Deps{Outbox: e.out, Audience: e.reg, OptOuts: e.reg, Stock: flaky},
		sms.Config{Commodities: commodities, Now: e.clock.Now}, nil)
	if err != nil {
		t.Fatal(err)
	}
	proc := s.NewProcessor(sms.ProcessorConfig{MaxAttempts: 2})
	wID, w := e.worker(t, "en")
	_, v := e.worker(t, "en", wID)
	id, other, help := e.mo(t, w, "STOCK ORS 7"), e.mo(t, v, "STOCK ZINC 2"), e.mo(t, v+"9", "help")
	if _, err := proc.Drain(ctx); err != nil {
		t.Fatal(err)
	}
	for _, x := range []int64{id, other} {
		if o := e.outcome(t, x); o.handled || !strings.Contains(o.note, "unreachable") {
			t.Errorf("after a passing failure: %+v", o)
		}
	}
	if o := e.outcome(t, help); o.as != sms.HandledUnknownSender {
		t.Errorf("the SMS beside them: %+v", o)
	}
	if _, err := e.db.Exec(ctx, `UPDATE inbound_messages SET retry_at = now() WHERE handled_at IS NULL`); err != nil {
		t.Fatal(err)
	}
	if _, err := proc.Drain(ctx); err != nil {
		t.Fatal(err)
	}
	for _, x := range []int64{id, other} {
		if o := e.outcome(t, x); o.as != sms.HandledStock || !strings.Contains(o.reply, "Thank you") {
			t.Errorf("retried: %+v", o)
		}
	}
	flaky.failures.Store(100)
	e.givenUp(t, proc, e.mo(t, w, "STOCK ORS 8"))
}

// TestBatchEffectRefusedByPostgreSQL: a stock report or an opt-out that PostgreSQL refuses
// in the batch's transaction costs only its own SMS (retried, then failed with the worker
// told to try later, as when it had a transaction of its own): the batch is not lost and
// every other SMS in it is handled at once.
func TestBatchEffectRefusedByPostgreSQL(t *testing.T) {
	t.Parallel()
	e := newEnv(t, 100, nil)
	ctx := context.Background()
	if _, err := e.db.Exec(ctx, `CREATE FUNCTION refuse_666() RETURNS trigger LANGUAGE plpgsql AS $$
		BEGIN IF NEW.quantity = 666 THEN RAISE EXCEPTION 'refused count'; END IF; RETURN NEW; END $$;
		CREATE TRIGGER refuse_666 BEFORE INSERT ON stock_reports FOR EACH ROW EXECUTE FUNCTION refuse_666()`); err != nil {
		t.Fatal(err)
	}
	w1, m1 := e.worker(t, "en")
	w2, m2 := e.worker(t, "en", w1)
	w3, m3 := e.worker(t, "en", w1, w2)
	_, m4 := e.worker(t, "en", w1, w2, w3)
	if _, err := e.db.Exec(ctx, `CREATE FUNCTION refuse_w3() RETURNS trigger LANGUAGE plpgsql AS $$
		BEGIN IF NEW.id = `+fmt.Sprint(int64(w3))+` THEN RAISE EXCEPTION 'frozen worker'; END IF; RETURN NEW; END $$;
		CREATE TRIGGER refuse_w3 BEFORE UPDATE ON workers FOR EACH ROW EXECUTE FUNCTION refuse_w3()`); err != nil {
		t.Fatal(err)
	}
	bad, good := e.mo(t, m1, "STOCK ORS 666"), e.mo(t, m2, "STOCK ORS 5")
	badStop, goodStop := e.mo(t, m3, "STOP"), e.mo(t, m4, "STOP")
	proc := e.sms.NewProcessor(sms.ProcessorConfig{MaxAttempts: 2})
	if _, err := proc.Drain(ctx); err != nil {
		t.Fatal(err)
	}
	if o := e.outcome(t, good); o.as != sms.HandledStock {
		t.Errorf("the good report: %+v", o)
	}
	if o := e.outcome(t, goodStop); o.as != sms.HandledStop {
		t.Errorf("the good STOP: %+v", o)
	}
	for x, want := range map[int64]string{bad: "refused count", badStop: "frozen worker"} {
		if o := e.outcome(t, x); o.handled || !strings.Contains(o.note, want) {
			t.Errorf("after PostgreSQL refused it: %+v", o)
		}
	}
	if _, err := e.db.Exec(ctx, `UPDATE inbound_messages SET retry_at = now() WHERE handled_at IS NULL`); err != nil {
		t.Fatal(err)
	}
	if _, err := proc.Drain(ctx); err != nil {
		t.Fatal(err)
	}
	for _, x := range []int64{bad, badStop} {
		if o := e.outcome(t, x); o.as != sms.HandledFailed || !strings.Contains(o.reply, "try again later") {
			t.Errorf("given up: %+v", o)
		}
	}
	if n := e.count(t, `SELECT count(*) FROM stock_reports`); n != 1 {
		t.Errorf("%d stock reports, want the good one", n)
	}
	if n := e.count(t, `SELECT count(*) FROM workers WHERE opted_out AND id = $1`, int64(w3)); n != 0 {
		t.Errorf("the refused STOP opted the worker out")
	}
}
