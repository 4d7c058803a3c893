package sms_test

import (
	"context"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/mhero-health/mhero"
	"github.com/mhero-health/mhero/reports"
	"github.com/mhero-health/mhero/sms"
)

// flakyStock fails its first calls as a reports database that is down would.
type flakyStock struct {
	failures atomic.Int32
	real     sms.StockReporter
}

func (f *flakyStock) SubmitStockReport(ctx context.Context, in reports.StockInput) (*reports.StockReport, error) {
	if f.failures.Add(-1) >= 0 {
		return nil, mhero.Errorf(mhero.EUNAVAILABLE, "reports database unreachable")
	}
	return f.real.SubmitStockReport(ctx, in)
}

// TestPassingFailureIsRetried: a STOCK report the reports cannot take now is not lost
// and not answered wrongly: the SMS waits, is tried again, and is stored once it works;
// when it keeps failing it is marked failed, kept, and the worker told to try later.
func TestPassingFailureIsRetried(t *testing.T) {
	t.Parallel()
	e := newEnv(t, 100, nil)
	ctx := context.Background()
	flaky := &flakyStock{real: e.rep}
	flaky.failures.Store(1)
	s, err := sms.NewStore(e.db, sms.Deps{Outbox: e.out, Audience: e.reg, OptOuts: e.reg, Stock: flaky},
		sms.Config{Commodities: commodities, Now: e.clock.Now}, nil)
	if err != nil {
		t.Fatal(err)
	}
	proc := s.NewProcessor(sms.ProcessorConfig{MaxAttempts: 2})
	_, w := e.worker(t, "en")
	id := e.mo(t, w, "STOCK ORS 7")
	next := e.mo(t, w, "help")
	if _, err := proc.Drain(ctx); err != nil {
		t.Fatal(err)
	}
	if o := e.outcome(t, id); o.handled || !strings.Contains(o.note, "unreachable") {
		t.Fatalf("after a passing failure: %+v", o)
	}
	if o := e.outcome(t, next); o.handled {
		t.Errorf("the worker's next SMS went ahead of the one waiting: %+v", o)
	}
	// Its back-off over, it is tried again and works; the next one follows.
	if _, err := e.db.Exec(ctx, `UPDATE inbound_messages SET retry_at = now() WHERE id = $1`, id); err != nil {
		t.Fatal(err)
	}
	if _, err := proc.Drain(ctx); err != nil {
		t.Fatal(err)
	}
	if o := e.outcome(t, id); o.as != sms.HandledStock || !strings.Contains(o.reply, "Thank you") {
		t.Errorf("retried: %+v", o)
	}
	if o := e.outcome(t, next); o.as != sms.HandledHelp {
		t.Errorf("the next SMS: %+v", o)
	}

	// Failing every time: after MaxAttempts it is given up, kept, and answered "try later".
	flaky.failures.Store(100)
	e.givenUp(t, proc, e.mo(t, w, "STOCK ORS 8"))
}

// TestPoisonMessage: an SMS whose handling PostgreSQL refuses every time does not block
// the others; alone it uses up its attempts and is marked failed, kept with the error.
func TestPoisonMessage(t *testing.T) {
	t.Parallel()
	e := newEnv(t, 100, nil)
	ctx := context.Background()
	// A survey whose answers PostgreSQL refuses when they say "poison".
	if _, err := e.db.Exec(ctx, `CREATE FUNCTION refuse_poison() RETURNS trigger LANGUAGE plpgsql AS $$
		BEGIN IF NEW.value LIKE '%poison%' THEN RAISE EXCEPTION 'poisoned answer'; END IF; RETURN NEW; END $$`); err != nil {
		t.Fatal(err)
	}
	if _, err := e.db.Exec(ctx, `CREATE TRIGGER refuse_poison BEFORE INSERT ON survey_answers FOR EACH ROW EXECUTE FUNCTION refuse_poison()`); err != nil {
		t.Fatal(err)
	}
	in := surveyInput(t, func(in *sms.SurveyInput) {
		in.Questions = in.Questions[2:] // the text question
	})
	if _, _, err := e.sms.CreateSurvey(ctx, in); err != nil {
		t.Fatal(err)
	}
	_, bad := e.worker(t, "en")
	badID, goodID := e.mo(t, bad, "poison"), e.mo(t, bad+"1", "help") // the second from a stranger
	proc := e.sms.NewProcessor(sms.ProcessorConfig{MaxAttempts: 2, Batch: 10})
	if _, err := proc.Drain(ctx); err == nil || !strings.Contains(err.Error(), "poisoned") {
		t.Fatalf("the poisoned batch: %v", err)
	}
	// Batch by batch as Run does after a failure: the others are handled around it.
	one := e.sms.NewProcessor(sms.ProcessorConfig{MaxAttempts: 2, Batch: 1})
	for range 3 {
		_, _ = one.Drain(ctx)
		if _, err := e.db.Exec(ctx, `UPDATE inbound_messages SET retry_at = now() WHERE handled_at IS NULL`); err != nil {
			t.Fatal(err)
		}
	}
	if o := e.outcome(t, goodID); o.as != sms.HandledUnknownSender {
		t.Errorf("the SMS after the poisoned one: %+v", o)
	}
	if o := e.outcome(t, badID); !o.handled || o.as != sms.HandledFailed || !strings.Contains(o.note, "poisoned answer") ||
		!strings.Contains(o.reply, "try again later") {
		t.Errorf("the poisoned SMS: %+v", o)
	}
	if n := e.count(t, `SELECT count(*) FROM inbound_messages WHERE body = 'poison'`); n != 1 {
		t.Errorf("the poisoned SMS is not kept")
	}
}
