package outbox_test

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/mhero-health/mhero/outbox"
)

// submitted enqueues a message and records it submitted with parts SMSC ids named
// prefix-1, prefix-2, ...
func submitted(t testing.TB, s *outbox.Store, prefix string, parts int) (*outbox.Message, []string) {
	t.Helper()
	m := enqueue(t, s, prefix)
	ids := make([]string, parts)
	for i := range ids {
		ids[i] = fmt.Sprintf("%s-%d", prefix, i+1)
	}
	if err := s.RecordSubmitted(context.Background(), m.ID, "lonestar", ids, parts); err != nil {
		t.Fatal(err)
	}
	return m, ids
}

func receipt(id, stat, errCode string, received time.Time) outbox.Receipt {
	return outbox.Receipt{MNO: "lonestar", SMSCID: id, State: smppState[stat], Stat: stat, Err: errCode, Received: received}
}

// One batch carrying several receipts of one message applies them in the order they
// were received, not the order they came in the batch; duplicates change nothing.
func TestReceiptBatchReceivedOrder(t *testing.T) {
	s, _ := newStore(t)
	ctx := context.Background()
	t0 := time.Now()
	single, sIDs := submitted(t, s, "order-single", 1)
	multi, mIDs := submitted(t, s, "order-multi", 2)
	settled, stIDs := submitted(t, s, "order-settled", 1)
	if err := s.RecordReceipt(ctx, receipt(stIDs[0], "DELIVRD", "000", t0)); err != nil {
		t.Fatal(err)
	}
	err := s.RecordReceipts(ctx, []outbox.Receipt{
		receipt(sIDs[0], "DELIVRD", "000", t0.Add(2*time.Second)),
		receipt(mIDs[1], "DELIVRD", "000", t0.Add(2*time.Second)),
		receipt(stIDs[0], "UNDELIV", "001", t0.Add(2*time.Second)),
		receipt(sIDs[0], "UNDELIV", "034", t0.Add(time.Second)), // received first: it counts
		receipt(mIDs[0], "ENROUTE", "", t0.Add(time.Second)),
		receipt(sIDs[0], "UNDELIV", "034", t0.Add(3*time.Second)),
	})
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		m     *outbox.Message
		state outbox.MessageState
		code  string
		parts string
	}{
		{single, outbox.Undeliverable, "034", "[undeliverable]"},
		{multi, outbox.Delivered, "", "[enroute delivered]"},
		{settled, outbox.Delivered, "", "[delivered]"},
	} {
		got := find(t, s, c.m.ID)
		var parts []string
		for _, p := range got.Parts {
			parts = append(parts, p.State)
		}
		if got.State != c.state || got.ErrorCode != c.code || got.FinalAt.IsZero() || fmt.Sprint(parts) != c.parts {
			t.Errorf("message %q: %s %q final_at %v parts %v; want %s %q %s", c.m.Body, got.State, got.ErrorCode, got.FinalAt, parts, c.state, c.code, c.parts)
		}
	}
}

// Batches recorded at the same time, each with receipts of different parts of the same
// messages (and of single-part messages, intermediates and duplicates among them): every
// message ends derived from all its parts, whatever the batches' order.
func TestReceiptBatchesRace(t *testing.T) {
	s, db := newStore(t)
	ctx := context.Background()
	const rounds, messages, parts, batches = 40, 6, 3, 4
	type msg struct {
		m    *outbox.Message
		ids  []string
		fail bool // one part (single-part: the final receipt) is a failure
	}
	for round := range rounds {
		var multi, single []msg
		for i := range messages {
			m, ids := submitted(t, s, fmt.Sprintf("multi%d-%d", round, i), parts)
			multi = append(multi, msg{m, ids, (round+i)%2 == 0})
			m, ids = submitted(t, s, fmt.Sprintf("single%d-%d", round, i), 1)
			single = append(single, msg{m, ids, (round+i)%3 == 0})
		}
		// Batch b gets part (b+i)%parts of multipart message i (the part batch 1 gets
		// fails). Single-part message i gets an ENROUTE in batch i%batches and its final
		// receipt in the next: batches that share no id (0 and 2, 1 and 3) run at once.
		rs := make([][]outbox.Receipt, batches)
		now := time.Now()
		for b := range rs {
			for i, m := range multi {
				stat, errCode := "DELIVRD", "000"
				if m.fail && b == 1 {
					stat, errCode = "UNDELIV", "034"
				}
				rs[b] = append(rs[b], receipt(m.ids[(b+i)%parts], stat, errCode, now))
			}
		}
		for i, m := range single {
			stat, errCode := "DELIVRD", "000"
			if m.fail {
				stat, errCode = "UNDELIV", "001"
			}
			rs[i%batches] = append(rs[i%batches], receipt(m.ids[0], "ENROUTE", "", now))
			rs[(i+1)%batches] = append(rs[(i+1)%batches], receipt(m.ids[0], stat, errCode, now))
		}
		start := make(chan struct{})
		errs := make(chan error, batches)
		var wg sync.WaitGroup
		for _, batch := range rs {
			wg.Go(func() {
				<-start
				errs <- s.RecordReceipts(ctx, batch)
			})
		}
		close(start)
		wg.Wait()
		close(errs)
		for err := range errs {
			if err != nil {
				t.Fatal(err)
			}
		}
		for _, m := range multi {
			got := find(t, s, m.m.ID)
			want, code := outbox.Delivered, ""
			if m.fail {
				want, code = outbox.Undeliverable, "034"
			}
			if got.State != want || got.ErrorCode != code || got.FinalAt.IsZero() {
				t.Fatalf("message %q: %s %q final_at %v; want %s %q; parts %+v", m.m.Body, got.State, got.ErrorCode, got.FinalAt, want, code, got.Parts)
			}
			for _, p := range got.Parts {
				if p.State == "submitted" { // batches >= parts: every part got a receipt
					t.Fatalf("message %q: part %d never got its receipt", m.m.Body, p.No)
				}
			}
		}
		for _, m := range single {
			got := find(t, s, m.m.ID)
			want, code := outbox.Delivered, ""
			if m.fail {
				want, code = outbox.Undeliverable, "001"
			}
			if got.State != want || got.ErrorCode != code || got.FinalAt.IsZero() {
				t.Fatalf("message %q: %s %q final_at %v; want %s %q", m.m.Body, got.State, got.ErrorCode, got.FinalAt, want, code)
			}
		}
	}
	if n := count(t, db, `SELECT count(*) FROM receipts`); n != 0 {
		t.Errorf("%d receipts stored unmatched, want none: every part was known", n)
	}
}
