package outbox

import (
	"context"
	"fmt"

	"github.com/jackc/pgx/v5"
	"github.com/mhero-health/mhero"
)

// EnqueueBatch queues many messages in one statement, as Enqueue does for one: each is
// queued and due now, routed to its MNO when the Planner knows it. It returns their ids
// in the order given. A message whose IdempotencyKey was already used gets the id of the
// message that key made (ECONFLICT when that one differs in recipient, sender or body);
// two messages of one batch may not share a key.
//
// With tx the messages are written in the caller's transaction, so they commit or roll
// back with its other writes (a reply with the effect it confirms); with tx nil in a
// transaction of their own. Nothing is written when any message is not valid: the error
// names the first bad one by its index.
func (s *Store) EnqueueBatch(ctx context.Context, tx pgx.Tx, msgs []NewMessage) ([]int64, error) {
	if len(msgs) == 0 {
		return nil, nil
	}
	n := len(msgs)
	workers, to, senders, bodies := make([]int64, n), make([]string, n), make([]string, n), make([]string, n)
	prios, mnos, valid, keys, bcasts := make([]int16, n), make([]string, n), make([]int64, n), make([]string, n), make([]int64, n)
	seen := make(map[string]int, n)
	for i, nm := range msgs {
		if err := nm.validate(); err != nil {
			return nil, batchError(i, err)
		}
		if nm.IdempotencyKey != "" {
			if j, dup := seen[nm.IdempotencyKey]; dup {
				return nil, mhero.Errorf(mhero.EVALIDATION, "Messages %d and %d of the batch share the idempotency key %q.", j, i, nm.IdempotencyKey)
			}
			seen[nm.IdempotencyKey] = i
		}
		if nm.MNO == "" && s.Planner != nil {
			nm.MNO, _ = s.Planner.Route(nm.To) // unroutable: the dispatcher fails it and says so
		}
		v := nm.validMicros()
		workers[i], to[i], senders[i], bodies[i] = int64(nm.WorkerID), string(nm.To), nm.Sender, nm.Body
		prios[i], mnos[i], valid[i], keys[i], bcasts[i] = int16(nm.Priority), nm.MNO, v, nm.IdempotencyKey, nm.BroadcastID
	}
	ids := make([]int64, n)
	run := func(tx pgx.Tx) error {
		if err := checkWorkers(ctx, tx, workers); err != nil {
			return err
		}
		// Ids are drawn from the sequence before the insert so that each input row knows its
		// own (RETURNING has no order); a key already used keeps its first message, found by
		// the final join.
		rows, err := tx.Query(ctx, `WITH i AS MATERIALIZED (
				SELECT nextval('messages_id_seq'::regclass) AS id, t.*
				FROM unnest($1::bigint[], $2::text[], $3::text[], $4::text[], $5::smallint[], $6::text[],
					$7::bigint[], $8::text[], $9::bigint[]) WITH ORDINALITY
					AS t(worker_id, msisdn, sender, body, priority, mno, valid_us, key, broadcast_id, n)
			), m AS (
				INSERT INTO messages (id, worker_id, msisdn, sender, body, priority, mno, valid_until, idempotency_key, broadcast_id)
				SELECT id, NULLIF(worker_id, 0), msisdn, sender, body, priority, NULLIF(mno, ''),
					CASE WHEN valid_us < 0 THEN NULL ELSE now() + valid_us * interval '1 microsecond' END,
					NULLIF(key, ''), NULLIF(broadcast_id, 0)
				FROM i ORDER BY n
				ON CONFLICT (idempotency_key) WHERE idempotency_key IS NOT NULL DO NOTHING
				RETURNING id, priority, next_attempt_at, mno, broadcast_id
			), q AS (
				INSERT INTO message_queue (message_id, priority, due_at, mno, broadcast_id)
				SELECT id, priority, next_attempt_at, COALESCE(mno, ''), broadcast_id FROM m
			)
			SELECT i.n, COALESCE(m.id, e.id, 0),
				m.id IS NULL AND e.id IS NOT NULL AND (e.msisdn, e.body, e.sender, COALESCE(e.worker_id, 0))
					IS DISTINCT FROM (i.msisdn, i.body, i.sender, i.worker_id)
			FROM i LEFT JOIN m ON m.id = i.id
			LEFT JOIN messages e ON m.id IS NULL AND e.idempotency_key = NULLIF(i.key, '')
			ORDER BY i.n`,
			workers, to, senders, bodies, prios, mnos, valid, keys, bcasts)
		if err != nil {
			return err
		}
		defer rows.Close()
		for rows.Next() {
			var k, id int64
			var differs bool
			if err := rows.Scan(&k, &id, &differs); err != nil {
				return err
			}
			if differs {
				return mhero.Errorf(mhero.ECONFLICT, "Idempotency key %q was already used for a different message.", keys[k-1])
			}
			ids[k-1] = id
		}
		if err := rows.Err(); err != nil {
			return err
		}
		return s.racedKeys(ctx, tx, msgs, ids)
	}
	var err error
	if tx != nil {
		err = run(tx)
	} else {
		err = s.tx(ctx, run)
	}
	if err != nil {
		return nil, pgError(err, "Message")
	}
	return ids, nil
}

// racedKeys finds the messages of keys that a concurrent transaction inserted while the
// batch's statement ran (its snapshot could not see them; the next statement can).
func (s *Store) racedKeys(ctx context.Context, tx pgx.Tx, msgs []NewMessage, ids []int64) error {
	var keys []string
	for i, id := range ids {
		if id == 0 {
			keys = append(keys, msgs[i].IdempotencyKey)
		}
	}
	if len(keys) == 0 {
		return nil
	}
	rows, err := tx.Query(ctx, `SELECT `+messageCols+` FROM messages WHERE idempotency_key = ANY($1)`, keys)
	if err != nil {
		return err
	}
	found, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (*Message, error) { return scanMessage(r) })
	if err != nil {
		return err
	}
	byKey := make(map[string]*Message, len(found))
	for _, m := range found {
		byKey[m.IdempotencyKey] = m
	}
	for i, id := range ids {
		if id != 0 {
			continue
		}
		nm := msgs[i]
		m := byKey[nm.IdempotencyKey]
		if m == nil {
			return fmt.Errorf("message %d of the batch: neither inserted nor found under its key", i)
		}
		if m.To != nm.To || m.Body != nm.Body || m.Sender != nm.Sender || m.WorkerID != nm.WorkerID {
			return mhero.Errorf(mhero.ECONFLICT, "Idempotency key %q was already used for a different message.", nm.IdempotencyKey)
		}
		ids[i] = m.ID
	}
	return nil
}

// batchError says which message of a batch is not valid.
func batchError(i int, err error) error {
	me, ok := err.(*mhero.Error)
	if !ok {
		return fmt.Errorf("message %d: %w", i, err)
	}
	return &mhero.Error{Code: me.Code, Message: fmt.Sprintf("Message %d of the batch is not valid.", i), Details: me.Details}
}
