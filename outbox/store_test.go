package outbox_test

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/mhero-health/mhero"
	"github.com/mhero-health/mhero/outbox"
)

func enqueue(t testing.TB, s *outbox.Store, body string) *outbox.Message {
	t.Helper()
	m, err := s.Enqueue(context.Background(), outbox.NewMessage{To: "231881234567", Body: body, Priority: outbox.PriorityBulk})
	if err != nil {
		t.Fatalf("Enqueue: %v", err)
	}
	return m
}

func find(t testing.TB, s *outbox.Store, id int64) *outbox.Message {
	t.Helper()
	m, err := s.FindMessage(context.Background(), id)
	if err != nil {
		t.Fatalf("FindMessage(%d): %v", id, err)
	}
	return m
}

func TestEnqueue(t *testing.T) {
	s, db := newStore(t)
	ctx := context.Background()
	before := time.Now()
	m, err := s.Enqueue(ctx, outbox.NewMessage{To: "231881234567", Sender: "MOH", Body: "Cholera alert", Priority: outbox.PriorityAlert, IdempotencyKey: "k1"})
	if err != nil {
		t.Fatal(err)
	}
	if m.ID == 0 || m.State != outbox.Queued || m.Priority != 0 || m.To != "231881234567" || m.Sender != "MOH" || m.WorkerID != 0 {
		t.Fatalf("enqueued %+v", m)
	}
	if d := m.ValidUntil.Sub(before); d < outbox.DefaultValidity-time.Minute || d > outbox.DefaultValidity+time.Minute {
		t.Errorf("valid_until %v after now, want about %v", d, outbox.DefaultValidity)
	}
	again, err := s.Enqueue(ctx, outbox.NewMessage{To: "231881234567", Sender: "MOH", Body: "Cholera alert", Priority: outbox.PriorityAlert, IdempotencyKey: "k1"})
	if err != nil || again.ID != m.ID {
		t.Fatalf("repeat with the same key: %v, %v; want message %d", again, err, m.ID)
	}
	_, err = s.Enqueue(ctx, outbox.NewMessage{To: "231881234567", Body: "something else", IdempotencyKey: "k1"})
	if mhero.ErrorCode(err) != mhero.ECONFLICT {
		t.Errorf("same key, other body: %v, want conflict", err)
	}
	nolimit, err := s.Enqueue(ctx, outbox.NewMessage{To: "231881234567", Body: "x", ValidFor: -1})
	if err != nil || !nolimit.ValidUntil.IsZero() {
		t.Errorf("ValidFor < 0: %v, %v; want no valid_until", nolimit, err)
	}
	for _, bad := range []outbox.NewMessage{
		{To: "", Body: "x"}, {To: "+231881234567", Body: "x"}, {To: "231881234567"}, {To: "231881234567", Body: "x", Priority: 10},
	} {
		if _, err := s.Enqueue(ctx, bad); mhero.ErrorCode(err) != mhero.EVALIDATION {
			t.Errorf("Enqueue(%+v) = %v, want validation", bad, err)
		}
	}
	if _, err := s.Enqueue(ctx, outbox.NewMessage{To: "231881234567", Body: "x", WorkerID: 999}); mhero.ErrorCode(err) != mhero.EVALIDATION {
		t.Errorf("unknown worker: %v, want validation", err)
	}
	if _, err := s.FindMessage(ctx, 424242); mhero.ErrorCode(err) != mhero.ENOTFOUND {
		t.Errorf("FindMessage(missing) = %v, want not found", err)
	}
	if n := count(t, db, `SELECT count(*) FROM messages`); n != 2 {
		t.Errorf("%d messages, want 2", n)
	}
}

// step is one event in a receipt scenario: a submit, or a receipt for part (1-based).
type step struct {
	submit bool
	part   int
	stat   string // appendix B word; the receipt's State is what smpp maps it to
	err    string
}

func submit() step                         { return step{submit: true} }
func rcpt(part int, stat, err string) step { return step{part: part, stat: stat, err: err} }

// smppState is smpp.StateFromStat for the words used here (the outbox does not import smpp).
var smppState = map[string]string{"DELIVRD": "delivered", "UNDELIV": "undeliverable", "EXPIRED": "expired",
	"REJECTD": "rejected", "DELETED": "deleted", "ACCEPTD": "accepted", "UNKNOWN": "unknown", "ENROUTE": "enroute"}

func TestReceiptRules(t *testing.T) {
	s, db := newStore(t)
	ctx := context.Background()
	cases := []struct {
		name      string
		parts     int
		steps     []step
		state     outbox.MessageState
		code      string
		final     bool
		partState []string
	}{
		{"receipt after submit", 1, []step{submit(), rcpt(1, "DELIVRD", "000")}, outbox.Delivered, "", true, []string{"delivered"}},
		{"receipt before submit", 1, []step{rcpt(1, "DELIVRD", "000"), submit()}, outbox.Delivered, "", true, []string{"delivered"}},
		{"no receipt yet", 1, []step{submit()}, outbox.Submitted, "", false, []string{"submitted"}},
		{"duplicate", 1, []step{submit(), rcpt(1, "DELIVRD", "000"), rcpt(1, "DELIVRD", "000")}, outbox.Delivered, "", true, []string{"delivered"}},
		{"duplicate before submit", 1, []step{rcpt(1, "UNDELIV", "001"), rcpt(1, "UNDELIV", "001"), submit()}, outbox.Undeliverable, "001", true, []string{"undeliverable"}},
		{"enroute then delivered", 1, []step{submit(), rcpt(1, "ENROUTE", ""), rcpt(1, "DELIVRD", "000")}, outbox.Delivered, "", true, []string{"delivered"}},
		{"delivered then enroute", 1, []step{submit(), rcpt(1, "DELIVRD", "000"), rcpt(1, "ENROUTE", "")}, outbox.Delivered, "", true, []string{"delivered"}},
		{"undeliv after delivered", 1, []step{submit(), rcpt(1, "DELIVRD", "000"), rcpt(1, "UNDELIV", "001")}, outbox.Delivered, "", true, []string{"delivered"}},
		{"delivered after undeliv", 1, []step{submit(), rcpt(1, "UNDELIV", "001"), rcpt(1, "DELIVRD", "000")}, outbox.Undeliverable, "001", true, []string{"undeliverable"}},
		{"out of order before submit", 1, []step{rcpt(1, "DELIVRD", "000"), rcpt(1, "ENROUTE", ""), rcpt(1, "UNDELIV", "9"), submit()}, outbox.Delivered, "", true, []string{"delivered"}},
		{"accepted is not final", 1, []step{submit(), rcpt(1, "ACCEPTD", "")}, outbox.Submitted, "", false, []string{"accepted"}},
		{"unknown until settled", 1, []step{submit(), rcpt(1, "UNKNOWN", "007")}, outbox.Unknown, "007", false, []string{"unknown"}},
		{"unknown then delivered", 1, []step{submit(), rcpt(1, "UNKNOWN", "007"), rcpt(1, "DELIVRD", "000")}, outbox.Delivered, "", true, []string{"delivered"}},
		{"accepted after unknown", 1, []step{submit(), rcpt(1, "UNKNOWN", "007"), rcpt(1, "ACCEPTD", "")}, outbox.Unknown, "007", false, []string{"unknown"}},
		{"expired", 1, []step{submit(), rcpt(1, "EXPIRED", "")}, outbox.Expired, "", true, []string{"expired"}},
		{"rejected", 1, []step{submit(), rcpt(1, "REJECTD", "0x0B")}, outbox.Rejected, "0x0B", true, []string{"rejected"}},
		{"deleted fails", 1, []step{submit(), rcpt(1, "DELETED", "12")}, outbox.Failed, "12", true, []string{"deleted"}},
		{"multipart first only", 3, []step{submit(), rcpt(1, "DELIVRD", "000")}, outbox.Delivered, "", true, []string{"delivered", "submitted", "submitted"}},
		{"multipart last only", 3, []step{submit(), rcpt(3, "DELIVRD", "000")}, outbox.Delivered, "", true, []string{"submitted", "submitted", "delivered"}},
		{"multipart every part", 3, []step{submit(), rcpt(2, "DELIVRD", "000"), rcpt(1, "DELIVRD", "000"), rcpt(3, "DELIVRD", "000")}, outbox.Delivered, "", true, []string{"delivered", "delivered", "delivered"}},
		{"multipart one part undeliv", 3, []step{submit(), rcpt(1, "DELIVRD", "000"), rcpt(2, "UNDELIV", "034"), rcpt(3, "DELIVRD", "000")}, outbox.Undeliverable, "034", true, []string{"delivered", "undeliverable", "delivered"}},
		{"multipart undeliv first", 3, []step{submit(), rcpt(3, "UNDELIV", "034"), rcpt(1, "DELIVRD", "000")}, outbox.Undeliverable, "034", true, []string{"delivered", "submitted", "undeliverable"}},
		{"multipart lowest failed part decides", 3, []step{submit(), rcpt(3, "EXPIRED", "e3"), rcpt(2, "REJECTD", "r2")}, outbox.Rejected, "r2", true, []string{"submitted", "rejected", "expired"}},
		{"multipart before submit", 2, []step{rcpt(2, "DELIVRD", "000"), rcpt(1, "ENROUTE", ""), submit(), rcpt(1, "DELIVRD", "000")}, outbox.Delivered, "", true, []string{"delivered", "delivered"}},
		{"multipart unknown and delivered", 2, []step{submit(), rcpt(1, "UNKNOWN", "7"), rcpt(2, "DELIVRD", "000")}, outbox.Delivered, "", true, []string{"unknown", "delivered"}},
		{"multipart enroute only", 2, []step{submit(), rcpt(1, "ENROUTE", ""), rcpt(2, "ACCEPTD", "")}, outbox.Submitted, "", false, []string{"enroute", "accepted"}},
	}
	for ci, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			m := enqueue(t, s, c.name)
			ids := make([]string, c.parts)
			for i := range ids {
				ids[i] = fmt.Sprintf("%x", ci*100+i+1)
			}
			early, submitted := 0, false // receipts before the submit: stored until it matches them
			for _, st := range c.steps {
				var err error
				if st.submit {
					err = s.RecordSubmitted(ctx, m.ID, "lonestar", ids, c.parts)
					submitted = true
				} else {
					if !submitted {
						early++
					}
					err = s.RecordReceipt(ctx, outbox.Receipt{MNO: "lonestar", SMSCID: ids[st.part-1], State: smppState[st.stat],
						Stat: st.stat, Err: st.err, Done: time.Now().Truncate(time.Minute), Received: time.Now()})
				}
				if err != nil {
					t.Fatalf("step %+v: %v", st, err)
				}
			}
			got := find(t, s, m.ID)
			if got.State != c.state || got.ErrorCode != c.code || got.FinalAt.IsZero() == c.final {
				t.Errorf("message %s code %q final_at %v; want %s %q final %v", got.State, got.ErrorCode, got.FinalAt, c.state, c.code, c.final)
			}
			if got.MNO != "lonestar" || got.Segments != c.parts || got.SubmittedAt.IsZero() || got.Attempts != 1 {
				t.Errorf("message %+v", got)
			}
			var parts []string
			for _, p := range got.Parts {
				parts = append(parts, p.State)
			}
			if fmt.Sprint(parts) != fmt.Sprint(c.partState) {
				t.Errorf("parts %v, want %v", parts, c.partState)
			}
			if n := count(t, db, `SELECT count(*) FROM receipts WHERE message_id = $1`, m.ID); n != early {
				t.Errorf("%d receipts stored and matched for the message, want the %d that came before the submit", n, early)
			}
		})
	}
	if n := count(t, db, `SELECT count(*) FROM receipts WHERE message_id IS NULL`); n != 0 {
		t.Errorf("%d receipts left unmatched", n)
	}
}

func TestReceiptStateFromStat(t *testing.T) {
	s, _ := newStore(t)
	ctx := context.Background()
	for i, c := range []struct{ state, stat, want string }{
		{"", "DELIVRD", "delivered"}, {"", "undeliv", "undeliverable"}, {"", "BOGUS", "unknown"},
		{"Delivered", "", "delivered"}, {"nonsense", "DELIVRD", "unknown"},
	} {
		m := enqueue(t, s, "x")
		id := fmt.Sprintf("s%d", i)
		if err := s.RecordSubmitted(ctx, m.ID, "lonestar", []string{id}, 1); err != nil {
			t.Fatal(err)
		}
		if err := s.RecordReceipt(ctx, outbox.Receipt{MNO: "lonestar", SMSCID: id, State: c.state, Stat: c.stat}); err != nil {
			t.Fatal(err)
		}
		if got := find(t, s, m.ID).Parts[0].State; got != c.want {
			t.Errorf("State %q Stat %q → part %s, want %s", c.state, c.stat, got, c.want)
		}
	}
}

func TestRecordSubmitted(t *testing.T) {
	s, db := newStore(t)
	ctx := context.Background()
	m := enqueue(t, s, "hello")
	if err := s.RecordSubmitted(ctx, m.ID, "lonestar", []string{"a1", "a2", "a1"}, 2); err != nil {
		t.Fatal(err)
	}
	got := find(t, s, m.ID)
	if got.State != outbox.Submitted || len(got.Parts) != 2 || got.Parts[1].SMSCID != "a2" || got.Segments != 2 {
		t.Fatalf("after submit: %+v", got)
	}
	if err := s.RecordSubmitted(ctx, m.ID, "lonestar", []string{"a1", "a2"}, 2); err != nil {
		t.Errorf("repeat: %v", err)
	}
	if find(t, s, m.ID).Attempts != 1 {
		t.Error("a repeated RecordSubmitted counted an attempt")
	}
	if err := s.RecordSubmitted(ctx, m.ID, "lonestar", []string{"b1"}, 1); mhero.ErrorCode(err) != mhero.ECONFLICT {
		t.Errorf("other ids: %v, want conflict", err)
	}
	if err := s.RecordSubmitted(ctx, 9999, "lonestar", []string{"c1"}, 1); mhero.ErrorCode(err) != mhero.ENOTFOUND {
		t.Errorf("missing message: %v, want not found", err)
	}
	if err := s.RecordSubmitted(ctx, m.ID, "", nil, 1); mhero.ErrorCode(err) != mhero.EVALIDATION {
		t.Errorf("no ids: %v, want validation", err)
	}
	failed := enqueue(t, s, "bad number")
	if err := s.RecordFailed(ctx, failed.ID, "0x0B", outbox.Failed); err != nil {
		t.Fatal(err)
	}
	if err := s.RecordSubmitted(ctx, failed.ID, "lonestar", []string{"d1"}, 1); mhero.ErrorCode(err) != mhero.ECONFLICT {
		t.Errorf("submit after failed: %v, want conflict", err)
	}

	// An SMSC that restarted its counter hands "a1" out again: the newer message takes it.
	newer := enqueue(t, s, "later")
	if err := s.RecordSubmitted(ctx, newer.ID, "lonestar", []string{"a1"}, 1); err != nil {
		t.Fatal(err)
	}
	if err := s.RecordReceipt(ctx, outbox.Receipt{MNO: "lonestar", SMSCID: "a1", State: "delivered"}); err != nil {
		t.Fatal(err)
	}
	if got := find(t, s, newer.ID); got.State != outbox.Delivered {
		t.Errorf("newer message %s, want delivered", got.State)
	}
	if got := find(t, s, m.ID); got.State != outbox.Submitted || !got.Parts[0].Superseded {
		t.Errorf("older message %s, part %+v; want submitted with part 1 superseded", got.State, got.Parts[0])
	}
	// The same id at another MNO is another message's.
	other := enqueue(t, s, "other network")
	if err := s.RecordSubmitted(ctx, other.ID, "orange", []string{"a2"}, 1); err != nil {
		t.Fatal(err)
	}
	if find(t, s, m.ID).Parts[1].Superseded {
		t.Error("an id at another MNO superseded a part")
	}

	// A receipt older than the match window stays unmatched (an id reused long after).
	stale := enqueue(t, s, "stale")
	old := time.Now().Add(-2 * outbox.DefaultMatchWindow)
	if err := s.RecordReceipt(ctx, outbox.Receipt{MNO: "lonestar", SMSCID: "e1", State: "undeliverable", Received: old}); err != nil {
		t.Fatal(err)
	}
	if err := s.RecordSubmitted(ctx, stale.ID, "lonestar", []string{"e1"}, 1); err != nil {
		t.Fatal(err)
	}
	if got := find(t, s, stale.ID); got.State != outbox.Submitted {
		t.Errorf("a stale receipt was matched: %s", got.State)
	}
	if n := count(t, db, `SELECT count(*) FROM receipts WHERE message_id IS NULL`); n != 1 {
		t.Errorf("%d unmatched receipts, want the stale one", n)
	}
}

func TestRecordFailedAndRetry(t *testing.T) {
	s, _ := newStore(t)
	ctx := context.Background()
	m := enqueue(t, s, "x")
	at := time.Now().Add(time.Minute).Truncate(time.Millisecond)
	if err := s.RecordRetry(ctx, m.ID, "0x58", at); err != nil {
		t.Fatal(err)
	}
	got := find(t, s, m.ID)
	if got.State != outbox.Queued || got.ErrorCode != "0x58" || got.Attempts != 1 || !got.NextAttemptAt.Equal(at) {
		t.Errorf("after retry: %+v", got)
	}
	if err := s.RecordFailed(ctx, m.ID, "", outbox.Unknown); err != nil {
		t.Fatal(err)
	}
	got = find(t, s, m.ID)
	if got.State != outbox.Unknown || got.ErrorCode != "" || got.FinalAt.IsZero() || got.Attempts != 2 {
		t.Errorf("after outcome unknown: %+v", got)
	}
	if err := s.RecordFailed(ctx, m.ID, "", outbox.Unknown); err != nil {
		t.Errorf("repeat: %v", err)
	}
	if err := s.RecordFailed(ctx, m.ID, "0x0B", outbox.Failed); mhero.ErrorCode(err) != mhero.ECONFLICT {
		t.Errorf("fail an unknown message: %v, want conflict", err)
	}
	if err := s.RecordRetry(ctx, m.ID, "", at); mhero.ErrorCode(err) != mhero.ECONFLICT {
		t.Errorf("retry an unknown message: %v, want conflict", err)
	}
	if err := s.RecordFailed(ctx, m.ID, "", outbox.Delivered); mhero.ErrorCode(err) != mhero.EVALIDATION {
		t.Errorf("fail as delivered: %v, want validation", err)
	}
	if err := s.RecordFailed(ctx, 9999, "", outbox.Failed); mhero.ErrorCode(err) != mhero.ENOTFOUND {
		t.Errorf("missing: %v, want not found", err)
	}
	// The SMSC took it after all (a late answer found in its logs): submitted wins.
	if err := s.RecordSubmitted(ctx, m.ID, "lonestar", []string{"f1"}, 1); err != nil {
		t.Fatal(err)
	}
	if got := find(t, s, m.ID); got.State != outbox.Submitted || !got.FinalAt.IsZero() {
		t.Errorf("submitted after unknown: %s final_at %v", got.State, got.FinalAt)
	}
}

// TestSubmitReceiptRace runs RecordSubmitted and the receipts of every part of the same
// message at the same moment, many times: every receipt must end matched and applied,
// whichever transaction wins.
func TestSubmitReceiptRace(t *testing.T) {
	s, db := newStore(t)
	ctx := context.Background()
	const iterations, parts = 200, 3
	for it := range iterations {
		m := enqueue(t, s, "race")
		ids := make([]string, parts)
		for i := range ids {
			ids[i] = fmt.Sprintf("%x", it*parts+i+1)
		}
		start := make(chan struct{})
		errs := make(chan error, parts+1)
		var wg sync.WaitGroup
		wg.Go(func() {
			<-start
			errs <- s.RecordSubmitted(ctx, m.ID, "lonestar", ids, parts)
		})
		for i := range ids {
			stat := "DELIVRD"
			if it%4 == 0 && i == 1 { // some with a failed part: it must win whatever the order
				stat = "UNDELIV"
			}
			wg.Go(func() {
				<-start
				errs <- s.RecordReceipt(ctx, outbox.Receipt{MNO: "lonestar", SMSCID: ids[i], State: smppState[stat], Stat: stat, Err: "0" + stat[:2]})
			})
		}
		close(start)
		wg.Wait()
		close(errs)
		for err := range errs {
			if err != nil {
				t.Fatalf("iteration %d: %v", it, err)
			}
		}
		got := find(t, s, m.ID)
		want := outbox.Delivered
		if it%4 == 0 {
			want = outbox.Undeliverable
		}
		if got.State != want || got.FinalAt.IsZero() {
			t.Fatalf("iteration %d: message %s, want %s; parts %+v", it, got.State, want, got.Parts)
		}
		for _, p := range got.Parts {
			if p.State == "submitted" {
				t.Fatalf("iteration %d: part %d never got its receipt", it, p.No)
			}
		}
	}
	if n := count(t, db, `SELECT count(*) FROM receipts WHERE message_id IS NULL`); n != 0 {
		t.Errorf("%d receipts left unmatched", n)
	}
	if n := count(t, db, `SELECT count(*) FROM receipts WHERE message_id IS NOT NULL`); n > iterations*parts {
		t.Errorf("%d receipts stored, more than the %d sent", n, iterations*parts)
	}
}

func TestRecordInbound(t *testing.T) {
	s, db := newStore(t)
	ctx := context.Background()
	at := time.Date(2026, 3, 1, 10, 0, 0, 0, time.UTC)
	id, err := s.RecordInbound(ctx, outbox.Inbound{MNO: "lonestar", From: "231881234567", To: "384", Body: "STOCK ORS 20", Parts: 2, Partial: true, Received: at})
	if err != nil || id == 0 {
		t.Fatalf("RecordInbound: %d, %v", id, err)
	}
	var from, to, body string
	var parts int
	var partial, handled bool
	var received time.Time
	err = db.QueryRow(ctx, `SELECT from_msisdn, to_addr, body, parts, partial, received_at, handled_at IS NOT NULL
		FROM inbound_messages WHERE id = $1`, id).Scan(&from, &to, &body, &parts, &partial, &received, &handled)
	if err != nil {
		t.Fatal(err)
	}
	if from != "231881234567" || to != "384" || body != "STOCK ORS 20" || parts != 2 || !partial || !received.Equal(at) || handled {
		t.Errorf("stored %q %q %q %d %v %v %v", from, to, body, parts, partial, received, handled)
	}
	// Text PostgreSQL would refuse is still kept.
	id2, err := s.RecordInbound(ctx, outbox.Inbound{MNO: "lonestar", From: "231881234567", Body: "a\x00b\xffc"})
	if err != nil {
		t.Fatal(err)
	}
	if err := db.QueryRow(ctx, `SELECT body FROM inbound_messages WHERE id = $1`, id2).Scan(&body); err != nil || body != "ab\uFFFDc" {
		t.Errorf("body %q, %v", body, err)
	}
	if _, err := s.RecordInbound(ctx, outbox.Inbound{Body: "x"}); mhero.ErrorCode(err) != mhero.EVALIDATION {
		t.Errorf("no sender: %v, want validation", err)
	}
}
