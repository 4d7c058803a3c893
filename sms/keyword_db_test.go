package sms_test

import (
	"context"
	"fmt"
	"strings"
	"testing"

	"github.com/mhero-health/mhero"
	"github.com/mhero-health/mhero/outbox"
	"github.com/mhero-health/mhero/registry"
	"github.com/mhero-health/mhero/sms"
)

// TestKeywords sends each keyword in each language, as people type them, and checks what
// was done, what was answered, in which language, and that the answer is a reply (ahead
// of bulk, and sent even to a worker who just opted out).
func TestKeywords(t *testing.T) {
	t.Parallel()
	e := newEnv(t, 400, nil)
	ctx := context.Background()
	enID, en := e.worker(t, "en")
	frID, fr := e.worker(t, "fr")
	optedOut := func(m mhero.MSISDN) bool {
		w, err := e.reg.FindWorkerByMSISDN(ctx, m)
		if err != nil {
			t.Fatal(err)
		}
		return w.OptedOut
	}
	steps := []struct {
		name      string
		from      mhero.MSISDN
		text      string
		as        string
		reply     string // a part of the reply
		optedOut  bool
		workerID  mhero.WorkerID
		noteParts string
	}{
		{"en STOP", en, "STOP", sms.HandledStop, "You will no longer receive mHero messages. Send START", true, enID, ""},
		{"en START lower case", en, "start", sms.HandledStart, "Welcome back", false, enID, ""},
		{"en stop with punctuation", en, "Stop!", sms.HandledStop, "no longer receive", true, enID, ""},
		{"en unsubscribe then resume", en, "Resume", sms.HandledStart, "Welcome back", false, enID, ""},
		{"en HELP", en, "help", sms.HandledHelp, "send STOCK <code> <quantity> to report stock (codes: ORS, ZINC)", false, enID, ""},
		{"en worker writes French", en, "Aide", sms.HandledHelp, "envoyez STOCK <code> <quantité>", false, enID, ""},
		{"fr ARRÊT", fr, "ARRÊT", sms.HandledStop, "Vous ne recevrez plus les messages mHero. Envoyez DEBUT", true, frID, ""},
		{"fr debut without accent", fr, "debut", sms.HandledStart, "Bon retour", false, frID, ""},
		{"fr arrêter accented lower", fr, "arrêter svp", sms.HandledStop, "Vous ne recevrez plus", true, frID, ""},
		{"fr DÉBUT accented", fr, "DÉBUT", sms.HandledStart, "Bon retour", false, frID, ""},
		{"fr STOP shared word answers in French", fr, "STOP", sms.HandledStop, "Vous ne recevrez plus", true, frID, ""},
		{"fr démarrer", fr, "Démarrer", sms.HandledStart, "Bon retour", false, frID, ""},
		{"fr AIDE", fr, "AIDE", sms.HandledHelp, "pour un rapport de stock", false, frID, ""},
		{"en stock", en, "stock ors 20", sms.HandledStock, "Thank you. Stock of ORS sachets: 20 recorded. Reference: S-", false, enID, ""},
		{"fr stock alias", fr, "STOCK SRO 0 3", sms.HandledStock, "Merci. Stock de Sachets de SRO : 0 enregistré", false, frID, ""},
		{"unknown commodity", en, "STOCK XYZ 5", sms.HandledStockRefused, "Unknown commodity XYZ. Send STOCK <code> <quantity> with one of: ORS, ZINC", false, enID, "unknown_commodity"},
		{"incomplete stock", fr, "stock ors", sms.HandledStockRefused, "Pour un rapport de stock envoyez STOCK <code>", false, frID, "incomplete"},
		{"bad quantity", en, "STOCK ORS 2.5", sms.HandledStockRefused, "whole number", false, enID, "bad_quantity"},
		{"unknown text", en, "Hello, is the meeting tomorrow?", sms.HandledUnknown, "Sorry, mHero did not understand", false, enID, ""},
		{"unknown text French worker", fr, "Bonjour", sms.HandledUnknown, "Désolé, mHero n'a pas compris", false, frID, ""},
		{"long text starting with stop", en, "stop the stock outs in our district please", sms.HandledUnknown, "did not understand", false, enID, ""},
	}
	for _, st := range steps {
		id := e.mo(t, st.from, st.text)
		e.drain(t)
		o := e.outcome(t, id)
		if !o.handled || o.as != st.as || !strings.Contains(o.reply, st.reply) || o.worker != int64(st.workerID) ||
			!strings.Contains(o.note, st.noteParts) {
			t.Errorf("%s: %q handled %v as %q (note %q), worker %d, reply %q; want %q, worker %d, reply with %q",
				st.name, st.text, o.handled, o.as, o.note, o.worker, o.reply, st.as, st.workerID, st.reply)
		}
		if o.priority != outbox.PriorityReply || o.replyTo != string(st.from) {
			t.Errorf("%s: reply to %s at priority %d, want %s at %d", st.name, o.replyTo, o.priority, st.from, outbox.PriorityReply)
		}
		if got := optedOut(st.from); got != st.optedOut {
			t.Errorf("%s: opted out %v, want %v", st.name, got, st.optedOut)
		}
	}
	// Each stock report is keyed by its SMS: the same SMS handled again stores nothing new.
	if n := e.count(t, `SELECT count(*) FROM stock_reports WHERE idempotency_key LIKE 'sms:%'`); n != 2 {
		t.Errorf("%d stock reports from SMS, want 2", n)
	}
	// STOP is confirmed even though the worker is opted out when the reply is dispatched:
	// the dispatcher sends replies (priority 1) to opted-out workers, and skips the rest.
	if n := e.count(t, `SELECT count(*) FROM messages WHERE worker_id = $1 AND priority = $2 AND body LIKE 'You will no longer%'`,
		int64(enID), outbox.PriorityReply); n != 2 {
		t.Errorf("%d STOP confirmations queued, want 2", n)
	}
}

// TestStrangersAndOddMessages covers the SMS that are not a worker's clean keyword: a
// number the registry does not know (kept, answered politely, in the keyword's language),
// a number in national format, a partial SMS, a worker without a facility reporting stock,
// and a number that gets more replies than an hour allows.
func TestStrangersAndOddMessages(t *testing.T) {
	t.Parallel()
	e := newEnv(t, 200, func(c *sms.Config) { c.RepliesPerHour = 3 })
	ctx := context.Background()
	const stranger = mhero.MSISDN("231889999001")
	if _, err := e.reg.FindWorkerByMSISDN(ctx, stranger); mhero.ErrorCode(err) != mhero.ENOTFOUND {
		t.Fatalf("the stranger's number belongs to a worker: %v", err)
	}
	id := e.mo(t, stranger, "STOP")
	frID := e.mo(t, "231889999002", "Aide svp")
	e.drain(t)
	if o := e.outcome(t, id); o.as != sms.HandledUnknownSender || o.worker != 0 || o.replyTo != string(stranger) ||
		!strings.Contains(o.reply, "not registered with mHero") || o.priority != outbox.PriorityReply {
		t.Errorf("stranger: %+v", o)
	}
	if o := e.outcome(t, frID); !strings.Contains(o.reply, "n'est pas enregistré") {
		t.Errorf("a stranger writing French is answered %q", o.reply)
	}
	if n := e.count(t, `SELECT count(*) FROM inbound_messages WHERE from_msisdn = $1 AND body = 'STOP'`, string(stranger)); n != 1 {
		t.Errorf("the stranger's SMS is not kept (%d)", n)
	}

	// A national number (an SMSC that does not send TON international) is read with the
	// deployment's country when Normalize is registry.ParseMSISDN.
	national := newEnv(t, 200, func(c *sms.Config) {
		c.Normalize = func(raw string) (mhero.MSISDN, error) { return registry.ParseMSISDN(raw, "LR") }
	})
	wid, m := national.worker(t, "en")
	nid := national.mo(t, mhero.MSISDN("0"+string(m)[3:]), "help")
	national.drain(t)
	if o := national.outcome(t, nid); o.as != sms.HandledHelp || o.worker != int64(wid) || o.replyTo != string(m) {
		t.Errorf("national number: %+v, want worker %d answered at %s", o, wid, m)
	}

	// Part of a long SMS never arrived: the worker is asked to send it again.
	_, w := e.worker(t, "en")
	pid, err := e.out.RecordInbound(ctx, outbox.Inbound{MNO: "lonestar", From: w, To: "384", Body: "STOCK ORS 2", Parts: 2, Partial: true})
	if err != nil {
		t.Fatal(err)
	}
	e.drain(t)
	if o := e.outcome(t, pid); o.as != sms.HandledPartial || !strings.Contains(o.reply, "did not arrive") {
		t.Errorf("partial SMS: %+v", o)
	}
	if n := e.count(t, `SELECT count(*) FROM stock_reports`); n != 0 {
		t.Errorf("a partial SMS made %d stock reports", n)
	}

	// A worker with no facility cannot report stock; the reports say why and so do we.
	nf, err := e.reg.CreateWorker(ctx, registry.WorkerInput{Name: "Nofac Worker", MSISDN: "+231886555001", Language: "en"})
	if err != nil {
		t.Fatal(err)
	}
	sid := e.mo(t, nf.MSISDN, "STOCK ORS 5")
	e.drain(t)
	if o := e.outcome(t, sid); o.as != sms.HandledStockRefused || !strings.Contains(o.reply, "not linked to a facility") {
		t.Errorf("stock without a facility: %+v", o)
	}

	// At most RepliesPerHour replies to one number: two auto-responders cannot loop.
	const robot = mhero.MSISDN("231889999003")
	var ids []int64
	for i := range 5 {
		ids = append(ids, e.mo(t, robot, fmt.Sprintf("Auto-reply %d", i)))
	}
	e.drain(t)
	replied := 0
	for _, id := range ids {
		o := e.outcome(t, id)
		if !o.handled {
			t.Errorf("SMS %d not handled", id)
		}
		if o.reply != "" {
			replied++
		} else if !strings.Contains(o.note, "reply suppressed") {
			t.Errorf("no reply and no note: %+v", o)
		}
	}
	if replied != 3 {
		t.Errorf("%d replies to one number within the hour, want 3", replied)
	}
}

// TestProcessorsShareTheWork runs three processors at once on one database: every SMS is
// handled once, with one reply each.
func TestProcessorsShareTheWork(t *testing.T) {
	t.Parallel()
	e := newEnv(t, 300, func(c *sms.Config) { c.RepliesPerHour = 100 })
	ctx := context.Background()
	rows, err := e.db.Query(ctx, `SELECT msisdn FROM workers ORDER BY id LIMIT 150`)
	if err != nil {
		t.Fatal(err)
	}
	var numbers []mhero.MSISDN
	for rows.Next() {
		var m string
		_ = rows.Scan(&m)
		numbers = append(numbers, mhero.MSISDN(m))
	}
	rows.Close()
	const each = 3
	for i := range each {
		for _, m := range numbers {
			e.mo(t, m, []string{"help", "hello", "AIDE"}[i])
		}
	}
	procs := make([]*sms.Processor, 3)
	errs := make(chan error, len(procs))
	for i := range procs {
		procs[i] = e.sms.NewProcessor(sms.ProcessorConfig{Batch: 20})
		go func() {
			_, err := procs[i].Drain(ctx)
			errs <- err
		}()
	}
	for range procs {
		if err := <-errs; err != nil {
			t.Fatal(err)
		}
	}
	e.drain(t) // whatever a sender's order held back from the racing drains
	total := len(numbers) * each
	if n := e.count(t, `SELECT count(*) FROM inbound_messages WHERE handled_at IS NOT NULL`); n != total {
		t.Errorf("%d of %d handled", n, total)
	}
	if n := e.count(t, `SELECT count(*) FROM messages WHERE priority = 1`); n != total {
		t.Errorf("%d replies for %d SMS", n, total)
	}
	if n := e.count(t, `SELECT count(DISTINCT reply_message_id) FROM inbound_messages`); n != total {
		t.Errorf("%d distinct replies for %d SMS", n, total)
	}
}
