package outbox

import (
	"context"
	"errors"
	"hash/fnv"
	"slices"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/mhero-health/mhero"
)

// NewMessage is a message to queue.
type NewMessage struct {
	WorkerID mhero.WorkerID // 0 for a number outside the registry
	To       mhero.MSISDN   // E.164 digits
	Sender   string         // "" = the MNO's configured source address
	Body     string
	Priority int           // 0 (PriorityAlert) ... 9 (PriorityBulk); lower goes first
	MNO      string        // the MNO it routes to, when known at enqueue (queue length per MNO)
	ValidFor time.Duration // not sent after this long; 0 = DefaultValidity, negative = no limit
	// IdempotencyKey makes Enqueue safe to repeat: a second Enqueue with the same key
	// returns the first message (ECONFLICT if it differs in recipient, sender or body).
	IdempotencyKey string
	BroadcastID    int64 // 0 = not part of a broadcast
}

const messageCols = `id, COALESCE(worker_id, 0), msisdn, sender, body, priority, COALESCE(mno, ''), state,
	segments, COALESCE(error_code, ''), attempts, next_attempt_at, valid_until, created_at, submitted_at,
	final_at, COALESCE(broadcast_id, 0), COALESCE(idempotency_key, '')`

func scanMessage(row pgx.Row) (*Message, error) {
	var m Message
	var worker int64
	var to, state string
	var valid, submitted, final *time.Time
	err := row.Scan(&m.ID, &worker, &to, &m.Sender, &m.Body, &m.Priority, &m.MNO, &state,
		&m.Segments, &m.ErrorCode, &m.Attempts, &m.NextAttemptAt, &valid, &m.CreatedAt, &submitted,
		&final, &m.BroadcastID, &m.IdempotencyKey)
	if err != nil {
		return nil, err
	}
	m.WorkerID, m.To, m.State = mhero.WorkerID(worker), mhero.MSISDN(to), MessageState(state)
	m.ValidUntil, m.SubmittedAt, m.FinalAt = deref(valid), deref(submitted), deref(final)
	return &m, nil
}

func deref(t *time.Time) time.Time {
	if t == nil {
		return time.Time{}
	}
	return *t
}

func (m *NewMessage) validate() error {
	var d []mhero.ErrorDetail
	if len(m.To) < 7 || len(m.To) > 15 || strings.Trim(string(m.To), "0123456789") != "" {
		d = append(d, mhero.ErrorDetail{Field: "to", Message: "phone number must be E.164 digits"})
	}
	if m.Body == "" {
		d = append(d, mhero.ErrorDetail{Field: "body", Message: "text is required"})
	}
	if m.Priority < 0 || m.Priority > 9 {
		d = append(d, mhero.ErrorDetail{Field: "priority", Message: "priority must be 0 (alert) to 9 (bulk)"})
	}
	if m.WorkerID < 0 || m.BroadcastID < 0 {
		d = append(d, mhero.ErrorDetail{Field: "worker_id", Message: "ids must be positive"})
	}
	if len(d) > 0 {
		return &mhero.Error{Code: mhero.EVALIDATION, Message: "Message is not valid.", Details: d}
	}
	return nil
}

// validMicros is how long the message stays valid after it is due, in microseconds:
// DefaultValidity when ValidFor is zero, -1 for no limit.
func (m *NewMessage) validMicros() int64 {
	switch {
	case m.ValidFor == 0:
		return DefaultValidity.Microseconds()
	case m.ValidFor < 0:
		return -1
	}
	return m.ValidFor.Microseconds()
}

func nullIfZero[T comparable](v T) *T {
	var zero T
	if v == zero {
		return nil
	}
	return &v
}

// Enqueue records a message to send, queued and due now. With an IdempotencyKey already
// used, it returns the message that key made.
func (s *Store) Enqueue(ctx context.Context, nm NewMessage) (*Message, error) {
	if err := nm.validate(); err != nil {
		return nil, err
	}
	validFor := nm.validMicros()
	if nm.MNO == "" && s.Planner != nil {
		nm.MNO, _ = s.Planner.Route(nm.To) // unroutable: the dispatcher fails it and says so
	}
	if err := checkWorkers(ctx, s.db, []int64{int64(nm.WorkerID)}); err != nil {
		return nil, err
	}
	m, err := scanMessage(s.db.QueryRow(ctx, `WITH m AS (INSERT INTO messages
			(worker_id, msisdn, sender, body, priority, mno, valid_until, idempotency_key, broadcast_id)
		VALUES ($1, $2, $3, $4, $5, $6,
			CASE WHEN $7::bigint < 0 THEN NULL ELSE now() + $7::bigint * interval '1 microsecond' END, $8, $9)
		ON CONFLICT (idempotency_key) WHERE idempotency_key IS NOT NULL DO NOTHING
		RETURNING *
		), q AS (
			INSERT INTO message_queue (message_id, priority, due_at, mno, broadcast_id)
			SELECT id, priority, next_attempt_at, COALESCE(mno, ''), broadcast_id FROM m
		)
		SELECT `+messageCols+` FROM m`,
		nullIfZero(int64(nm.WorkerID)), string(nm.To), nm.Sender, nm.Body, nm.Priority, nullIfZero(nm.MNO),
		validFor, nullIfZero(nm.IdempotencyKey), nullIfZero(nm.BroadcastID)))
	if errors.Is(err, pgx.ErrNoRows) && nm.IdempotencyKey != "" {
		return s.existing(ctx, nm)
	}
	if err != nil {
		return nil, pgError(err, "Message")
	}
	return m, nil
}

// checkWorkers fails with EVALIDATION when a non-zero id names no worker. messages has
// no foreign key to workers (it cost a lookup and a row lock per message of every
// broadcast); the messages that callers name workers for are checked here instead.
// Workers are never deleted, so a worker that exists now still does at commit.
func checkWorkers(ctx context.Context, q interface {
	QueryRow(context.Context, string, ...any) pgx.Row
}, ids []int64) error {
	if !slices.ContainsFunc(ids, func(id int64) bool { return id != 0 }) {
		return nil
	}
	var missing []int64
	err := q.QueryRow(ctx, `SELECT COALESCE(array_agg(DISTINCT i), '{}') FROM unnest($1::bigint[]) AS i
		WHERE i <> 0 AND NOT EXISTS (SELECT 1 FROM workers w WHERE w.id = i)`, ids).Scan(&missing)
	if err != nil {
		return pgError(err, "Message")
	}
	if len(missing) > 0 {
		return mhero.Errorf(mhero.EVALIDATION, "Message refers to a worker that does not exist (worker %d).", missing[0])
	}
	return nil
}

// existing returns the message an idempotency key already made, if it is the same message.
func (s *Store) existing(ctx context.Context, nm NewMessage) (*Message, error) {
	m, err := scanMessage(s.db.QueryRow(ctx, `SELECT `+messageCols+` FROM messages WHERE idempotency_key = $1`, nm.IdempotencyKey))
	if err != nil {
		return nil, pgError(err, "Message")
	}
	if m.To != nm.To || m.Body != nm.Body || m.Sender != nm.Sender || m.WorkerID != nm.WorkerID {
		return nil, mhero.Errorf(mhero.ECONFLICT, "Idempotency key %q was already used for a different message.", nm.IdempotencyKey)
	}
	return m, nil
}

// FindMessage returns a message with its parts; ENOTFOUND when there is none.
func (s *Store) FindMessage(ctx context.Context, id int64) (*Message, error) {
	b := &pgx.Batch{}
	b.Queue(`SELECT `+messageCols+` FROM messages WHERE id = $1`, id)
	b.Queue(`SELECT part_no, mno, smsc_id, state, stat, err, done_at, superseded, updated_at
		FROM message_parts WHERE message_id = $1 ORDER BY part_no`, id)
	br := s.db.SendBatch(ctx, b)
	defer br.Close()
	m, err := scanMessage(br.QueryRow())
	if err != nil {
		return nil, pgError(err, "Message")
	}
	rows, err := br.Query()
	if err != nil {
		return nil, pgError(err, "Message parts")
	}
	m.Parts, err = pgx.CollectRows(rows, func(r pgx.CollectableRow) (Part, error) {
		var p Part
		var done *time.Time
		err := r.Scan(&p.No, &p.MNO, &p.SMSCID, &p.State, &p.Stat, &p.Err, &done, &p.Superseded, &p.UpdatedAt)
		p.DoneAt = deref(done)
		return p, err
	})
	if err != nil {
		return nil, pgError(err, "Message parts")
	}
	return m, br.Close()
}

// lockSpace is the first key of the outbox's two-key advisory locks ("mhob"), so they
// never collide with single-key locks (goose's, the test template's).
const lockSpace int32 = 0x6d686f62

// idLock is the second key of the advisory lock serialising everything about one SMSC id.
// A collision only serialises two unrelated ids.
func idLock(mno, smscID string) int32 {
	h := fnv.New32a()
	h.Write([]byte(mno))
	h.Write([]byte{0})
	h.Write([]byte(smscID))
	return int32(h.Sum32())
}

// RecordSubmitted records that the SMSC accepted message id through mno: one part per
// SMSC id (normalised like receipts' ids; duplicates count once), in order, and segments
// billed. It then matches the receipts of those ids that came first and applies them, all
// in one transaction, and the message becomes submitted (or what the receipts make it).
//
// It records a fact, so it applies to a message in any state that has no parts yet except
// failed (the SMSC refused it: ECONFLICT); a queued, cancelled, unknown or expired message
// was sent after all. Repeated with the same MNO and ids it does nothing; with others it
// is ECONFLICT. When fewer ids than segments were accepted, the message's state comes
// from the parts it has.
func (s *Store) RecordSubmitted(ctx context.Context, id int64, mno string, smscIDs []string, segments int) error {
	mno = strings.TrimSpace(mno)
	ids := make([]string, 0, len(smscIDs))
	for _, x := range smscIDs {
		if x = strings.TrimSpace(x); x != "" && !slices.Contains(ids, x) {
			ids = append(ids, x)
		}
	}
	if mno == "" || len(ids) == 0 {
		return mhero.Errorf(mhero.EVALIDATION, "A submitted message needs its MNO and at least one SMSC message id.")
	}
	segments = max(segments, len(ids))
	keys := make([]int32, len(ids))
	for i, x := range ids {
		keys[i] = idLock(mno, x)
	}
	slices.Sort(keys) // one order for every transaction: no deadlock between two submits
	keys = slices.Compact(keys)

	var matched, superseded int64
	err := s.tx(ctx, func(tx pgx.Tx) error {
		// Ids first, then the message: the order RecordReceipt takes them in.
		b := &pgx.Batch{}
		b.Queue(`SELECT count(pg_advisory_xact_lock($1, k)) FROM unnest($2::int4[]) AS k`, lockSpace, keys)
		b.Queue(`SELECT state FROM messages WHERE id = $1 FOR UPDATE`, id)
		b.Queue(`SELECT mno, smsc_id FROM message_parts WHERE message_id = $1 ORDER BY part_no`, id)
		br := tx.SendBatch(ctx, b)
		defer br.Close()
		if _, err := br.Exec(); err != nil {
			return err
		}
		var state string
		if err := br.QueryRow().Scan(&state); err != nil {
			return err
		}
		rows, err := br.Query()
		if err != nil {
			return err
		}
		var have []string
		sameMNO := true
		for rows.Next() {
			var m, x string
			if err := rows.Scan(&m, &x); err != nil {
				return err
			}
			have, sameMNO = append(have, x), sameMNO && m == mno
		}
		if err := rows.Err(); err != nil {
			return err
		}
		if err := br.Close(); err != nil {
			return err
		}
		switch {
		case len(have) > 0 && sameMNO && slices.Equal(have, ids):
			return nil // a repeat
		case len(have) > 0:
			return mhero.Errorf(mhero.ECONFLICT, "Message %d was already recorded as submitted with other SMSC ids.", id)
		case MessageState(state) == Failed:
			return mhero.Errorf(mhero.ECONFLICT, "Message %d was recorded as failed.", id)
		}

		b = &pgx.Batch{}
		b.Queue(`UPDATE message_parts SET superseded = true, updated_at = now()
			WHERE mno = $1 AND smsc_id = ANY($2) AND NOT superseded AND message_id <> $3`, mno, ids, id)
		b.Queue(`INSERT INTO message_parts (message_id, part_no, mno, smsc_id)
			SELECT $1, n, $2, x FROM unnest($3::text[]) WITH ORDINALITY AS t(x, n)`, id, mno, ids)
		b.Queue(`UPDATE receipts r SET message_id = $1, part_no = p.part_no, matched_at = now()
			FROM message_parts p
			WHERE r.mno = $2 AND r.smsc_id = ANY($3) AND r.message_id IS NULL
			  AND r.received_at >= now() - $4::bigint * interval '1 microsecond'
			  AND p.message_id = $1 AND p.smsc_id = r.smsc_id
			RETURNING r.id, p.part_no, r.state, r.stat, r.err, r.done_at, r.received_at`,
			id, mno, ids, s.matchWindow().Microseconds())
		br = tx.SendBatch(ctx, b)
		tag, err := br.Exec()
		if err != nil {
			return err
		}
		superseded = tag.RowsAffected()
		if _, err := br.Exec(); err != nil {
			return err
		}
		rows, err = br.Query()
		if err != nil {
			return err
		}
		rcpts, err := pgx.CollectRows(rows, scanReceiptRow)
		if err != nil {
			return err
		}
		if err := br.Close(); err != nil {
			return err
		}
		matched = int64(len(rcpts))

		parts := make([]partState, len(ids))
		for i := range parts {
			parts[i] = partState{no: i + 1, state: partSubmitted}
		}
		slices.SortFunc(rcpts, func(a, b receiptRow) int {
			if c := a.received.Compare(b.received); c != 0 {
				return c
			}
			return int(a.id - b.id)
		})
		for _, r := range rcpts {
			parts[r.partNo-1].apply(r)
		}
		st, code, final := derive(parts)
		b = &pgx.Batch{}
		queuePartUpdates(b, id, parts)
		b.Queue(`DELETE FROM message_queue WHERE message_id = $1`, id)
		b.Queue(`UPDATE messages SET state = $2, mno = $3, segments = $4, error_code = $5,
				attempts = attempts + 1, submitted_at = now(),
				final_at = CASE WHEN $6 THEN now() END, segment_cost = $7
			WHERE id = $1`, id, string(st), mno, segments, nullIfZero(code), final, s.rate(mno))
		return tx.SendBatch(ctx, b).Close()
	})
	if err != nil {
		return pgError(err, "Message")
	}
	if superseded > 0 {
		s.log.Warn("SMSC reused message ids; receipts now go to the newer message", "smsc", mno, "message", id, "parts", superseded)
	}
	if matched > 0 {
		s.log.Debug("receipts matched after submit", "smsc", mno, "message", id, "receipts", matched)
	}
	return nil
}

func (s *Store) matchWindow() time.Duration {
	if s.MatchWindow > 0 {
		return s.MatchWindow
	}
	return DefaultMatchWindow
}

// RecordFailed records that message id will not be sent: state Failed for a permanent
// refusal (code is the command_status, e.g. "0x0B"), Unknown when the pool could not know
// whether the SMSC took it (smpp.ErrOutcomeUnknown), Expired when its validity ran out
// before it was sent, Rejected when it was refused before submission. The message must
// be queued or cancelled; repeating the same call is a no-op; anything else is ECONFLICT.
func (s *Store) RecordFailed(ctx context.Context, id int64, code string, state MessageState) error {
	switch state {
	case Failed, Unknown, Expired, Rejected:
	default:
		return mhero.Errorf(mhero.EVALIDATION, "A message cannot fail with state %q.", state)
	}
	tag, err := s.db.Exec(ctx, `WITH q AS (DELETE FROM message_queue WHERE message_id = $1)
		UPDATE messages SET state = $2, error_code = $3, attempts = attempts + 1, final_at = now()
		WHERE id = $1 AND state IN ('queued', 'cancelled')`, id, string(state), nullIfZero(code))
	if err != nil {
		return pgError(err, "Message")
	}
	if tag.RowsAffected() == 1 {
		return nil
	}
	return s.settled(ctx, id, state, code)
}

// settled explains why an update of message id in the queue found nothing to change.
func (s *Store) settled(ctx context.Context, id int64, want MessageState, code string) error {
	var state, have string
	err := s.db.QueryRow(ctx, `SELECT state, COALESCE(error_code, '') FROM messages WHERE id = $1`, id).Scan(&state, &have)
	if err != nil {
		return pgError(err, "Message")
	}
	if want != "" && MessageState(state) == want && have == code {
		return nil
	}
	return mhero.Errorf(mhero.ECONFLICT, "Message %d is already %s.", id, state)
}

// RecordRetry records a temporary failure of a queued message (code, e.g. "0x58" or
// "no_bind") and when to try again. ECONFLICT when it is no longer queued.
func (s *Store) RecordRetry(ctx context.Context, id int64, code string, at time.Time) error {
	tag, err := s.db.Exec(ctx, `WITH q AS (UPDATE message_queue SET due_at = $3, leased_until = NULL WHERE message_id = $1)
		UPDATE messages SET error_code = $2, attempts = attempts + 1, next_attempt_at = $3
		WHERE id = $1 AND state = 'queued'`, id, nullIfZero(code), at)
	if err != nil {
		return pgError(err, "Message")
	}
	if tag.RowsAffected() == 1 {
		return nil
	}
	return s.settled(ctx, id, "", code)
}

// RecentForWorker returns the last n messages sent to a worker (handed to an SMSC),
// newest first: a worker's inbox on the phone.
func (s *Store) RecentForWorker(ctx context.Context, worker mhero.WorkerID, n int) ([]*Message, error) {
	rows, err := s.db.Query(ctx, `SELECT `+messageCols+` FROM messages
		WHERE worker_id = $1 AND submitted_at IS NOT NULL ORDER BY created_at DESC LIMIT $2`, int64(worker), n)
	if err != nil {
		return nil, pgError(err, "Messages")
	}
	return pgx.CollectRows(rows, func(r pgx.CollectableRow) (*Message, error) { return scanMessage(r) })
}
