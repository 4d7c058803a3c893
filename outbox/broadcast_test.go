package outbox_test

import (
	"context"
	"encoding/json"
	"errors"
	"net"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/mhero-health/mhero"
	"github.com/mhero-health/mhero/outbox"
	"github.com/mhero-health/mhero/outbox/outboxsmpp"
	"github.com/mhero-health/mhero/registry"
	"github.com/mhero-health/mhero/registry/demo"
	"github.com/mhero-health/mhero/smpp"
	"github.com/mhero-health/mhero/smpp/smpptest"
)

// testPlanner routes the demo country's two networks and counts segments as the pool does.
type testPlanner struct{}

func (testPlanner) Route(to mhero.MSISDN) (string, error) {
	switch {
	case strings.HasPrefix(string(to), "23188"):
		return "lonestar", nil
	case strings.HasPrefix(string(to), "23177"):
		return "orange", nil
	}
	return "", smpp.ErrUnroutable
}

func (testPlanner) Segments(text string) (int, bool) {
	n, c := smpp.CountSegments(text)
	return n, c == smpp.CodingUCS2
}

func (testPlanner) Rate(mno string) float64 {
	return map[string]float64{"lonestar": 0.004, "orange": 0.005}[mno]
}

// country seeds a small demo country and returns the registry and an outbox on it.
func country(tb testing.TB) (*registry.Store, *outbox.Store, *pgxpool.Pool) {
	tb.Helper()
	s, db := newStore(tb)
	s.Planner, s.Currency = testPlanner{}, "USD"
	rs := registry.NewStore(db, "LR", nil)
	sz := demo.Size{Counties: 3, DistrictsPerCounty: 2, Depth: 2, Facilities: 12, Workers: 240, Seed: 7}
	if err := demo.Seed(context.Background(), rs, sz); err != nil {
		tb.Fatal(err)
	}
	return rs, s, db
}

func broadcastInput(target, text string) outbox.BroadcastInput {
	return outbox.BroadcastInput{Text: text, Target: json.RawMessage(target)}
}

func errCode(err error) string {
	var me *mhero.Error
	if errors.As(err, &me) {
		return me.Code
	}
	if err == nil {
		return ""
	}
	return "other: " + err.Error()
}

func TestBroadcastFreezesRecipients(t *testing.T) {
	rs, s, db := country(t)
	ctx := context.Background()
	want := count(t, db, `SELECT count(*) FROM workers w JOIN cadres c ON c.id = w.cadre_id
		WHERE c.code = 'chw' AND w.active AND NOT w.opted_out`)
	if want == 0 {
		t.Fatal("the demo country has no reachable CHW")
	}
	in := broadcastInput(`{"cadres": ["chw"]}`, "Hello {first_name} ({facility}): measles campaign on Saturday.")
	in.IdempotencyKey = "measles-1"
	b, created, err := s.CreateBroadcast(ctx, rs, in)
	if err != nil || !created {
		t.Fatalf("create: %v, created %v", err, created)
	}
	if b.Recipients != want {
		t.Errorf("recipients %d, want the %d reachable CHWs", b.Recipients, want)
	}
	if n := count(t, db, `SELECT count(*) FROM messages WHERE broadcast_id = $1`, b.ID); n != want {
		t.Errorf("%d messages, want %d", n, want)
	}
	if n := count(t, db, `SELECT count(*) FROM message_queue q JOIN messages m ON m.id = q.message_id WHERE m.broadcast_id = $1`, b.ID); n != want {
		t.Errorf("%d queued, want %d", n, want)
	}
	// Each text is filled with its own worker's first name and facility.
	if n := count(t, db, `SELECT count(*) FROM messages m JOIN workers w ON w.id = m.worker_id
		JOIN facilities f ON f.id = w.facility_id
		WHERE m.broadcast_id = $1 AND m.body = 'Hello ' || split_part(w.name, ' ', 1) || ' (' || f.name || '): measles campaign on Saturday.'`, b.ID); n != want {
		t.Errorf("%d of %d texts filled with the worker's first name and facility", n, want)
	}
	var recipients, cost = 0, 0.0
	var segments int64
	for _, e := range b.Estimate {
		recipients += e.Recipients
		segments += e.Segments
		cost += e.Cost
		if e.MNO != "lonestar" && e.MNO != "orange" {
			t.Errorf("estimate for MNO %q", e.MNO)
		}
		if e.Cost != float64(e.Segments)*(testPlanner{}).Rate(e.MNO) {
			t.Errorf("%s: cost %v for %d segments", e.MNO, e.Cost, e.Segments)
		}
	}
	if recipients != want || segments != b.Segments || b.Encoding != "gsm7" || len(b.Estimate) != 2 {
		t.Errorf("estimate %+v: %d recipients, %d segments, encoding %s", b.Estimate, recipients, segments, b.Encoding)
	}

	// The same request again is the same broadcast; another request under the key is refused.
	again, created, err := s.CreateBroadcast(ctx, rs, in)
	if err != nil || created || again.ID != b.ID {
		t.Errorf("repeat: %v, created %v, id %d want %d", err, created, again.ID, b.ID)
	}
	other := in
	other.Text = "Something else"
	if _, _, err := s.CreateBroadcast(ctx, rs, other); errCode(err) != mhero.ECONFLICT {
		t.Errorf("key reused for another text: %v, want conflict", err)
	}
	if n := count(t, db, `SELECT count(*) FROM messages`); n != want {
		t.Errorf("%d messages after the repeats, want %d", n, want)
	}

	// Later registry changes do not touch a created broadcast's recipients.
	if _, err := db.Exec(ctx, `UPDATE workers SET cadre_id = (SELECT id FROM cadres WHERE code = 'chw')`); err != nil {
		t.Fatal(err)
	}
	got, err := s.FindBroadcast(ctx, b.ID)
	if err != nil || got.Recipients != want || got.Counts.Queued != want || got.State != "sending" {
		t.Errorf("read back: %v %+v", err, got)
	}
}

func TestBroadcastRefusesBadInput(t *testing.T) {
	rs, s, db := country(t)
	ctx := context.Background()
	past := time.Now().Add(-time.Hour)
	tiny := 0.001
	cases := []struct {
		name string
		in   outbox.BroadcastInput
		code string
		says string
	}{
		{"no target", broadcastInput(``, "Hello"), mhero.EVALIDATION, "target"},
		{"empty target", broadcastInput(`{}`, "Hello"), mhero.EVALIDATION, "names no one"},
		{"unknown target field", broadcastInput(`{"cadre": ["chw"]}`, "Hello"), mhero.EINVALID, "cadre"},
		{"target of the wrong type", broadcastInput(`{"cadres": "chw"}`, "Hello"), mhero.EINVALID, "cadres"},
		{"unknown cadre", broadcastInput(`{"cadres": ["astronaut"]}`, "Hello"), mhero.EVALIDATION, "astronaut"},
		{"no one matches", broadcastInput(`{"languages": ["zz"]}`, "Hello"), mhero.EVALIDATION, "reaches no one"},
		{"no text", broadcastInput(`{"cadres": ["chw"]}`, "  "), mhero.EVALIDATION, "text"},
		{"unknown placeholder", broadcastInput(`{"cadres": ["chw"]}`, "Hello {nickname}"), mhero.EVALIDATION, "{nickname}"},
		{"send_at in the past", func() outbox.BroadcastInput {
			in := broadcastInput(`{"cadres": ["chw"]}`, "Hello")
			in.SendAt = &past
			return in
		}(), mhero.EVALIDATION, "past"},
		{"priority", func() outbox.BroadcastInput {
			in := broadcastInput(`{"cadres": ["chw"]}`, "Hello")
			in.Priority = "urgent"
			return in
		}(), mhero.EVALIDATION, "priority"},
		{"over max_cost", func() outbox.BroadcastInput {
			in := broadcastInput(`{"cadres": ["chw"]}`, "Hello")
			in.MaxCost = &tiny
			return in
		}(), mhero.EVALIDATION, "max_cost"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			_, _, err := s.CreateBroadcast(ctx, rs, c.in)
			if errCode(err) != c.code || !strings.Contains(errorText(err), c.says) {
				t.Errorf("got %v, want %s saying %q", err, c.code, c.says)
			}
		})
	}
	// Nothing half-made.
	if n := count(t, db, `SELECT (SELECT count(*) FROM broadcasts) + (SELECT count(*) FROM messages) + (SELECT count(*) FROM message_queue)`); n != 0 {
		t.Errorf("%d rows left behind by refused broadcasts", n)
	}
}

// errorText is the message and details of an application error.
func errorText(err error) string {
	var me *mhero.Error
	if !errors.As(err, &me) {
		return ""
	}
	s := me.Message
	for _, d := range me.Details {
		s += " " + d.Field + ": " + d.Message
	}
	return s
}

func TestBroadcastEstimates(t *testing.T) {
	rs, s, db := country(t)
	ctx := context.Background()
	t.Run("dry run creates nothing", func(t *testing.T) {
		in := broadcastInput(`{"cadres": ["chw", "nurse"]}`, "Reminder: weekly stock report due Friday.")
		in.DryRun = true
		b, created, err := s.CreateBroadcast(ctx, rs, in)
		if err != nil || created || b.ID != 0 || b.Recipients == 0 || b.EstimatedCost <= 0 {
			t.Fatalf("dry run: %v created %v %+v", err, created, b)
		}
		if n := count(t, db, `SELECT (SELECT count(*) FROM broadcasts) + (SELECT count(*) FROM messages)`); n != 0 {
			t.Errorf("dry run left %d rows", n)
		}
	})
	t.Run("text outside GSM goes as UCS-2 and says so", func(t *testing.T) {
		in := broadcastInput(`{"cadres": ["chw"]}`, "“Wash hands” – cholera alert")
		in.DryRun = true
		b, _, err := s.CreateBroadcast(ctx, rs, in)
		if err != nil || b.Encoding != "ucs2" || len(b.Warnings) == 0 || !strings.Contains(b.Warnings[0], "“") {
			t.Fatalf("%v: encoding %s, warnings %q", err, b.Encoding, b.Warnings)
		}
	})
	t.Run("long text bills more segments", func(t *testing.T) {
		short := broadcastInput(`{"cadres": ["chw"]}`, "Short.")
		short.DryRun = true
		long := broadcastInput(`{"cadres": ["chw"]}`, strings.Repeat("Long text. ", 30))
		long.DryRun = true
		a, _, err1 := s.CreateBroadcast(ctx, rs, short)
		b, _, err2 := s.CreateBroadcast(ctx, rs, long)
		if err1 != nil || err2 != nil || b.Segments != 3*a.Segments || b.EstimatedCost <= a.EstimatedCost {
			t.Errorf("segments %d and %d (%v %v), want three times", a.Segments, b.Segments, err1, err2)
		}
	})
}

func TestBroadcastPacing(t *testing.T) {
	rs, s, db := country(t)
	ctx := context.Background()
	start := time.Now().Add(time.Hour).Truncate(time.Second)
	in := broadcastInput(`{"cadres": ["chw"]}`, "Survey: how many ORS sachets do you have?")
	in.SendAt, in.SpreadOver, in.Priority = &start, "2h", "bulk"
	b, _, err := s.CreateBroadcast(ctx, rs, in)
	if err != nil {
		t.Fatal(err)
	}
	var first, last time.Time
	var distinct int
	if err := db.QueryRow(ctx, `SELECT min(due_at), max(due_at), count(DISTINCT due_at) FROM message_queue WHERE broadcast_id = $1`, b.ID).
		Scan(&first, &last, &distinct); err != nil {
		t.Fatal(err)
	}
	step := 2 * time.Hour / time.Duration(b.Recipients)
	if !first.Equal(start) || last.Sub(start) < 2*time.Hour-2*step || last.Sub(start) >= 2*time.Hour || distinct != b.Recipients {
		t.Errorf("due from %v to %v (%d distinct) for %d recipients starting %v over 2h", first, last, distinct, b.Recipients, start)
	}
	got, err := s.FindBroadcast(ctx, b.ID)
	if err != nil || got.State != "scheduled" || got.Priority != "bulk" || got.SpreadOver != "2h0m0s" {
		t.Errorf("%v: state %s priority %s spread %s", err, got.State, got.Priority, got.SpreadOver)
	}
	// Queue lengths show it waiting, not due.
	qs, err := s.QueueLengths(ctx)
	if err != nil {
		t.Fatal(err)
	}
	total := 0
	for _, q := range qs {
		total += q.Queued
		if q.Due != 0 || q.Priority != "bulk" {
			t.Errorf("queue %+v: a paced broadcast an hour ahead is not due", q)
		}
	}
	if total != b.Recipients {
		t.Errorf("queue holds %d, want %d", total, b.Recipients)
	}

	// Cancel takes back everything not sent.
	n, err := s.CancelBroadcast(ctx, b.ID)
	if err != nil || n != b.Recipients {
		t.Fatalf("cancel: %d, %v", n, err)
	}
	if n, _ := s.CancelBroadcast(ctx, b.ID); n != 0 {
		t.Errorf("cancelling again cancelled %d", n)
	}
	got, err = s.FindBroadcast(ctx, b.ID)
	if err != nil || got.State != "cancelled" || got.Counts.Cancelled != b.Recipients || got.Counts.Queued != 0 {
		t.Errorf("after cancel: %v %+v %+v", err, got, got.Counts)
	}
	if n := count(t, db, `SELECT count(*) FROM message_queue`); n != 0 {
		t.Errorf("%d left in the queue", n)
	}
}

func TestBroadcastScope(t *testing.T) {
	rs, s, _ := country(t)
	ctx := context.Background()
	one := 1
	counties, err := rs.ListLocations(ctx, registry.LocationFilter{Level: &one, Limit: 10})
	if err != nil || len(counties) < 2 {
		t.Fatalf("counties: %v %d", err, len(counties))
	}
	a, b := counties[0], counties[1]
	scoped := mhero.NewContextWithPrincipal(ctx, &mhero.Principal{Name: "county-a", Role: mhero.RoleSender, Scope: a})
	if _, _, err := s.CreateBroadcast(scoped, rs, broadcastInput(`{"locations": ["`+b.Code+`"]}`, "Hello")); errCode(err) != mhero.EFORBIDDEN {
		t.Errorf("targeting another county: %v, want forbidden", err)
	}
	mine, _, err := s.CreateBroadcast(scoped, rs, broadcastInput(`{"cadres": ["chw"]}`, "Hello"))
	if err != nil {
		t.Fatal(err)
	}
	national, _, err := s.CreateBroadcast(ctx, rs, broadcastInput(`{"cadres": ["chw"]}`, "Hello"))
	if err != nil {
		t.Fatal(err)
	}
	if mine.Recipients >= national.Recipients {
		t.Errorf("scoped broadcast reaches %d, national %d: the scope did not narrow it", mine.Recipients, national.Recipients)
	}
	otherCounty := mhero.NewContextWithPrincipal(ctx, &mhero.Principal{Name: "county-b", Role: mhero.RoleReader, Scope: b})
	if _, err := s.FindBroadcast(otherCounty, mine.ID); errCode(err) != mhero.ENOTFOUND {
		t.Errorf("another county's key reads it: %v", err)
	}
	if _, err := s.FindBroadcast(scoped, national.ID); errCode(err) != mhero.ENOTFOUND {
		t.Errorf("a county key reads a national broadcast: %v", err)
	}
	list, err := s.ListBroadcasts(scoped, 0, 10)
	if err != nil || len(list) != 1 || list[0].ID != mine.ID {
		t.Errorf("county list: %v %d", err, len(list))
	}
	if _, err := s.CancelBroadcast(otherCounty, mine.ID); errCode(err) != mhero.ENOTFOUND {
		t.Errorf("another county cancels it: %v", err)
	}
	// Idempotency keys are global: another scope's key is taken, not reusable.
	keyed := broadcastInput(`{"cadres": ["chw"]}`, "Hello")
	keyed.IdempotencyKey = "county-a-weekly"
	if _, _, err := s.CreateBroadcast(scoped, rs, keyed); err != nil {
		t.Fatal(err)
	}
	otherSender := mhero.NewContextWithPrincipal(ctx, &mhero.Principal{Name: "county-b", Role: mhero.RoleSender, Scope: b})
	if _, _, err := s.CreateBroadcast(otherSender, rs, keyed); errCode(err) != mhero.ECONFLICT {
		t.Errorf("another county reusing the key: %v, want conflict", err)
	}
}

// TestBroadcastIdempotentUnderRace: the same request sent several times at once (a client
// retrying on a timeout) makes one broadcast, and every caller gets it.
func TestBroadcastIdempotentUnderRace(t *testing.T) {
	rs, s, db := country(t)
	in := broadcastInput(`{"cadres": ["chw"]}`, "Polio round on Monday")
	in.IdempotencyKey = "polio-round-3"
	ids := make(chan int64, 4)
	errs := make(chan error, 4)
	for range 4 {
		go func() {
			b, _, err := s.CreateBroadcast(context.Background(), rs, in)
			if err != nil {
				errs <- err
				return
			}
			ids <- b.ID
		}()
	}
	var first int64
	for range 4 {
		select {
		case err := <-errs:
			t.Fatal(err)
		case id := <-ids:
			if first == 0 {
				first = id
			} else if id != first {
				t.Errorf("broadcasts %d and %d for one key", first, id)
			}
		}
	}
	if n := count(t, db, `SELECT count(*) FROM broadcasts`); n != 1 {
		t.Errorf("%d broadcasts, want 1", n)
	}
}

// TestBroadcastDelivered sends a broadcast through a real pool to the simulator with
// receipts, one worker opting out after it was made and another replying.
func TestBroadcastDelivered(t *testing.T) {
	rs, s, db := country(t)
	ctx := context.Background()
	smsc := smpptest.NewServer(smpptest.Config{SystemID: "mhero", Password: "secret", Receipts: true, ReceiptDelay: time.Millisecond})
	t.Cleanup(smsc.Close)
	host, port, _ := net.SplitHostPort(smsc.Addr())
	p, _ := strconv.Atoi(port)
	var cfgs []smpp.Config
	for _, mno := range []struct{ name, prefix string }{{"lonestar", "+23188"}, {"orange", "+23177"}} {
		cfgs = append(cfgs, smpp.Config{Name: mno.name, Host: host, Port: p, SystemID: "mhero", Password: "secret",
			SourceAddr: "384", Prefixes: []string{mno.prefix}, Window: 10, ResponseTimeout: 5 * time.Second})
	}
	rec := s.NewReceiptRecorder(0, 0)
	rctx, stopRec := context.WithCancel(ctx)
	recorded := make(chan struct{})
	go func() { defer close(recorded); rec.Run(rctx) }()
	t.Cleanup(func() { stopRec(); <-recorded })
	pool, err := smpp.NewPool(cfgs, outboxsmpp.Handlers(s, rec), nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	pctx, cancelPool := context.WithCancel(ctx)
	t.Cleanup(cancelPool)
	if err := pool.Start(pctx); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = pool.Stop(context.Background()) })

	b, _, err := s.CreateBroadcast(ctx, rs, broadcastInput(`{"cadres": ["chw", "nurse"]}`, "Cholera alert: report any case of watery diarrhoea."))
	if err != nil {
		t.Fatal(err)
	}
	var optOut mhero.MSISDN
	if err := db.QueryRow(ctx, `SELECT msisdn FROM messages WHERE broadcast_id = $1 ORDER BY id LIMIT 1`, b.ID).Scan(&optOut); err != nil {
		t.Fatal(err)
	}
	if err := rs.SetOptOut(ctx, optOut, true); err != nil { // STOP after the broadcast was made
		t.Fatal(err)
	}
	start(t, s.NewDispatcher(outboxsmpp.Sender{Pool: pool}, fast, nil))
	var got *outbox.Broadcast
	waitFor(t, "every message delivered or skipped", 30*time.Second, func() bool {
		got, err = s.FindBroadcast(ctx, b.ID)
		return err == nil && got.State == "finished"
	})
	c := got.Counts
	if c.Delivered != b.Recipients-1 || c.OptedOut != 1 || c.Sent != b.Recipients-1 || got.Rates.Delivered != 1 {
		t.Errorf("counts %+v rates %+v, want %d delivered and 1 opted out", c, got.Rates, b.Recipients-1)
	}
	if st := smsc.Stats(); int(st.Submits) != b.Recipients-1 {
		t.Errorf("SMSC got %d submits, want %d (the opted-out worker is not messaged)", st.Submits, b.Recipients-1)
	}
	if got.Cost == nil || *got.Cost <= 0 || got.StartedAt.IsZero() || got.FinishedAt.Before(got.StartedAt) {
		t.Errorf("cost %v started %v finished %v", got.Cost, got.StartedAt, got.FinishedAt)
	}

	// A reply from a recipient counts for the broadcast.
	var replier string
	if err := db.QueryRow(ctx, `SELECT msisdn FROM messages WHERE broadcast_id = $1 AND state = 'delivered' ORDER BY id LIMIT 1`, b.ID).Scan(&replier); err != nil {
		t.Fatal(err)
	}
	if _, err := s.RecordInbound(ctx, outbox.Inbound{MNO: "lonestar", From: mhero.MSISDN(replier), To: "384", Body: "Received, thanks"}); err != nil {
		t.Fatal(err)
	}
	got, _ = s.FindBroadcast(ctx, b.ID)
	if got.Counts.Replied != 1 || got.Rates.Replied == 0 {
		t.Errorf("replied %d (rate %v), want 1", got.Counts.Replied, got.Rates.Replied)
	}

	// By county: every recipient counted once, the reply in its county.
	byLoc, err := s.BroadcastByLocation(ctx, b.ID)
	if err != nil {
		t.Fatal(err)
	}
	reached, replied := 0, 0
	for _, l := range byLoc {
		reached += l.Recipients
		replied += l.Replied
		if l.Code == "" || l.Delivered != l.Sent || l.Delivery != 1 {
			t.Errorf("county %+v", l)
		}
	}
	if len(byLoc) != 3 || reached != b.Recipients || replied != 1 {
		t.Errorf("%d counties, %d recipients, %d replies; want 3, %d, 1", len(byLoc), reached, replied, b.Recipients)
	}

	// Per recipient: the SMSC's id, the state; the opted-out worker with its reason.
	var rows []outbox.RecipientStatus
	if err := s.BroadcastMessages(ctx, b.ID, "", 0, 0, func(r outbox.RecipientStatus) error { rows = append(rows, r); return nil }); err != nil {
		t.Fatal(err)
	}
	skipped := 0
	for _, r := range rows {
		switch {
		case r.State == outbox.Skipped && r.ErrorCode == "opted_out" && r.To == optOut:
			skipped++
		case r.State != outbox.Delivered || len(r.SMSCIDs) != 1 || r.MNO == "":
			t.Errorf("recipient %+v", r)
		}
	}
	if len(rows) != b.Recipients || skipped != 1 {
		t.Errorf("%d rows (%d skipped), want %d", len(rows), skipped, b.Recipients)
	}

	// What it cost, this month, per MNO.
	now := time.Now().UTC()
	from := time.Date(now.Year(), now.Month(), 1, 0, 0, 0, 0, time.UTC)
	costs, err := s.CostReport(ctx, from, from.AddDate(0, 1, 0))
	if err != nil {
		t.Fatal(err)
	}
	var total float64
	var msgs int
	for _, c := range costs {
		total += c.Cost
		msgs += c.Messages
	}
	if msgs != b.Recipients-1 || total < *got.Cost-1e-9 || total > *got.Cost+1e-9 {
		t.Errorf("cost report %+v: %d messages costing %v; the broadcast cost %v", costs, msgs, total, *got.Cost)
	}
}
