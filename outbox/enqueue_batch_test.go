package outbox_test

import (
	"context"
	"errors"
	"fmt"
	"testing"

	"github.com/jackc/pgx/v5"
	"github.com/mhero-health/mhero"
	"github.com/mhero-health/mhero/outbox"
)

func TestEnqueueBatch(t *testing.T) {
	t.Parallel()
	s, db := newStore(t)
	ctx := context.Background()
	msgs := []outbox.NewMessage{
		{To: "231886000001", Body: "first", Priority: outbox.PriorityReply, IdempotencyKey: "mo:1"},
		{To: "231776000002", Body: "second", Priority: outbox.PriorityBulk},
		{To: "231886000003", Body: "third", Priority: outbox.PriorityReply, ValidFor: -1, MNO: "lonestar"},
	}
	ids, err := s.EnqueueBatch(ctx, nil, msgs)
	if err != nil {
		t.Fatal(err)
	}
	if len(ids) != 3 || ids[0] == 0 || ids[0] == ids[1] || ids[1] == ids[2] {
		t.Fatalf("ids %v", ids)
	}
	// Each id is its own message, in the order given, queued like Enqueue queues one.
	for i, id := range ids {
		m, err := s.FindMessage(ctx, id)
		if err != nil {
			t.Fatal(err)
		}
		if m.Body != msgs[i].Body || m.To != msgs[i].To || m.Priority != msgs[i].Priority || m.State != outbox.Queued {
			t.Errorf("message %d (id %d) = %+v, want %+v", i, id, m, msgs[i])
		}
		if (i == 2) != m.ValidUntil.IsZero() {
			t.Errorf("message %d valid until %v", i, m.ValidUntil)
		}
	}
	if n := count(t, db, `SELECT count(*) FROM message_queue WHERE message_id = ANY($1)`, ids); n != 3 {
		t.Errorf("%d queue rows, want 3", n)
	}
	if n := count(t, db, `SELECT count(*) FROM message_queue WHERE message_id = $1 AND mno = 'lonestar'`, ids[2]); n != 1 {
		t.Errorf("the MNO given is not in the queue row")
	}

	// A repeated key returns the first message and queues nothing new; with another text it
	// is a conflict and the whole batch is refused.
	again, err := s.EnqueueBatch(ctx, nil, []outbox.NewMessage{msgs[0], {To: "231886000004", Body: "fourth"}})
	if err != nil || again[0] != ids[0] || again[1] == 0 {
		t.Fatalf("repeat: %v %v", again, err)
	}
	// A message for a worker the registry does not have refuses the batch: nothing is written.
	before := count(t, db, `SELECT count(*) FROM messages`)
	if _, err := s.EnqueueBatch(ctx, nil, []outbox.NewMessage{{To: "231886000006", Body: "sixth"},
		{To: "231886000007", Body: "seventh", WorkerID: 424242}}); errCode(err) != mhero.EVALIDATION {
		t.Errorf("unknown worker: %v, want validation", err)
	}
	if n := count(t, db, `SELECT count(*) FROM messages`); n != before {
		t.Errorf("%d messages after a refused batch, want %d", n, before)
	}
	other := msgs[0]
	other.Body = "changed"
	if _, err := s.EnqueueBatch(ctx, nil, []outbox.NewMessage{{To: "231886000005", Body: "fifth"}, other}); errCode(err) != mhero.ECONFLICT {
		t.Errorf("key reused for another text: %v, want conflict", err)
	}
	if n := count(t, db, `SELECT count(*) FROM messages WHERE body = 'fifth'`); n != 0 {
		t.Errorf("a refused batch wrote %d messages", n)
	}

	// Invalid input names the message and writes nothing.
	_, err = s.EnqueueBatch(ctx, nil, []outbox.NewMessage{{To: "231886000006", Body: "ok"}, {To: "12", Body: "bad number"}})
	var me *mhero.Error
	if !errors.As(err, &me) || me.Code != mhero.EVALIDATION || me.Message != "Message 1 of the batch is not valid." {
		t.Errorf("invalid message: %v", err)
	}
	_, err = s.EnqueueBatch(ctx, nil, []outbox.NewMessage{{To: "231886000007", Body: "a", IdempotencyKey: "k"}, {To: "231886000008", Body: "b", IdempotencyKey: "k"}})
	if errCode(err) != mhero.EVALIDATION {
		t.Errorf("two messages with one key: %v", err)
	}

	// In the caller's transaction, the messages roll back with it.
	tx, err := db.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.EnqueueBatch(ctx, tx, []outbox.NewMessage{{To: "231886000009", Body: "rolled back"}}); err != nil {
		t.Fatal(err)
	}
	_ = tx.Rollback(ctx)
	if n := count(t, db, `SELECT count(*) FROM messages WHERE body = 'rolled back'`); n != 0 {
		t.Errorf("%d messages survived the rollback", n)
	}
	err = pgx.BeginFunc(ctx, db, func(tx pgx.Tx) error {
		_, err := s.EnqueueBatch(ctx, tx, []outbox.NewMessage{{To: "231886000010", Body: "committed"}})
		return err
	})
	if err != nil || count(t, db, `SELECT count(*) FROM messages m JOIN message_queue q ON q.message_id = m.id WHERE body = 'committed'`) != 1 {
		t.Errorf("committed with the caller's transaction: %v", err)
	}
}

// TestEnqueueBatchConcurrentKeys races batches that share keys: every key ends up with one
// message and every batch gets its id.
func TestEnqueueBatchConcurrentKeys(t *testing.T) {
	t.Parallel()
	s, db := newStore(t)
	ctx := context.Background()
	batch := make([]outbox.NewMessage, 50)
	for i := range batch {
		batch[i] = outbox.NewMessage{To: mhero.MSISDN(fmt.Sprintf("2318860%05d", i)), Body: "same", IdempotencyKey: fmt.Sprintf("race:%d", i)}
	}
	const racers = 4
	results := make(chan []int64, racers)
	errs := make(chan error, racers)
	for range racers {
		go func() {
			ids, err := s.EnqueueBatch(ctx, nil, batch)
			results <- ids
			errs <- err
		}()
	}
	var first []int64
	for range racers {
		ids, err := <-results, <-errs
		if err != nil {
			t.Fatal(err)
		}
		if first == nil {
			first = ids
		} else if fmt.Sprint(ids) != fmt.Sprint(first) {
			t.Errorf("racing batches got different ids:\n%v\n%v", first, ids)
		}
	}
	if n := count(t, db, `SELECT count(*) FROM messages`); n != len(batch) {
		t.Errorf("%d messages, want %d", n, len(batch))
	}
}
