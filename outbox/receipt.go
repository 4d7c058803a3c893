package outbox

import (
	"cmp"
	"context"
	"slices"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/mhero-health/mhero"
)

// Receipt is a delivery receipt as the pool handed it on (from smpp.DLR).
type Receipt struct {
	MNO    string
	SMSCID string // normalised like the ids given to RecordSubmitted (smpp.NormalizeMessageID)
	// State is an smpp.ReceiptState value: delivered, undeliverable, expired, rejected,
	// deleted, accepted, unknown or enroute. When empty, Stat's appendix B word decides;
	// anything else is unknown.
	State    string
	Stat     string    // raw stat word, e.g. "DELIVRD"
	Err      string    // raw err, e.g. "000"
	Done     time.Time // done date; zero when absent
	Received time.Time // zero = now
}

// Part states: submitted until a receipt applies, then an smpp.ReceiptState value.
const (
	partSubmitted     = "submitted"
	partEnroute       = "enroute"
	partAccepted      = "accepted"
	partUnknown       = "unknown"
	partDelivered     = "delivered"
	partUndeliverable = "undeliverable"
	partExpired       = "expired"
	partRejected      = "rejected"
	partDeleted       = "deleted"
)

// statWords maps appendix B stat words to states, for a receipt that came without State.
var statWords = map[string]string{
	"DELIVRD": partDelivered, "UNDELIV": partUndeliverable, "EXPIRED": partExpired, "REJECTD": partRejected,
	"DELETED": partDeleted, "ACCEPTD": partAccepted, "UNKNOWN": partUnknown, "ENROUTE": partEnroute,
}

// receiptState returns the part state a receipt reports.
func receiptState(state, stat string) string {
	switch s := strings.ToLower(strings.TrimSpace(state)); s {
	case partEnroute, partAccepted, partUnknown, partDelivered, partUndeliverable, partExpired, partRejected, partDeleted:
		return s
	case "":
		if s, ok := statWords[strings.ToUpper(strings.TrimSpace(stat))]; ok {
			return s
		}
	}
	return partUnknown
}

// rank orders part states: a receipt applies only when it ranks strictly higher, so
// every final state (4) stays.
func rank(state string) int {
	switch state {
	case partEnroute:
		return 1
	case partAccepted:
		return 2
	case partUnknown:
		return 3
	case partDelivered, partUndeliverable, partExpired, partRejected, partDeleted:
		return 4
	}
	return 0 // submitted
}

// partState is a part as the state rules see it.
type partState struct {
	no               int
	state, stat, err string
	done             *time.Time
	changed          bool
}

// receiptRow is a stored receipt matched to a part.
type receiptRow struct {
	id               int64
	partNo           int
	state, stat, err string
	done             *time.Time
	received         time.Time
}

func scanReceiptRow(row pgx.CollectableRow) (receiptRow, error) {
	var r receiptRow
	err := row.Scan(&r.id, &r.partNo, &r.state, &r.stat, &r.err, &r.done, &r.received)
	return r, err
}

// apply moves the part forward to the receipt's state; false when it ranks no higher
// (a duplicate, a late intermediate, a second final).
func (p *partState) apply(r receiptRow) bool {
	if rank(r.state) <= rank(p.state) {
		return false
	}
	p.state, p.stat, p.err, p.done, p.changed = r.state, r.stat, r.err, r.done, true
	return true
}

// derive returns a message's state from its parts in part order, its error code, and
// whether the state is final (see the package documentation).
func derive(parts []partState) (state MessageState, code string, final bool) {
	delivered := false
	var unknown *partState
	for i := range parts {
		p := &parts[i]
		switch p.state {
		case partUndeliverable:
			return Undeliverable, p.err, true
		case partExpired:
			return Expired, p.err, true
		case partRejected:
			return Rejected, p.err, true
		case partDeleted:
			return Failed, p.err, true
		case partDelivered:
			delivered = true
		case partUnknown:
			if unknown == nil {
				unknown = p
			}
		}
	}
	switch {
	case delivered:
		return Delivered, "", true
	case unknown != nil:
		return Unknown, unknown.err, false
	}
	return Submitted, "", false
}

// queuePartUpdates queues an update of every changed part.
func queuePartUpdates(b *pgx.Batch, messageID int64, parts []partState) {
	for _, p := range parts {
		if p.changed {
			b.Queue(`UPDATE message_parts SET state = $3, stat = $4, err = $5, done_at = $6, updated_at = now()
				WHERE message_id = $1 AND part_no = $2`, messageID, p.no, p.state, p.stat, p.err, p.done)
		}
	}
}

// RecordReceipt applies a delivery receipt to its part and re-derives the message's
// state, in one transaction. A receipt for an id not submitted yet is stored unmatched
// until RecordSubmitted matches it. It returns nil for a duplicate (nothing changes), so
// the SMSC gets its OK.
func (s *Store) RecordReceipt(ctx context.Context, r Receipt) error {
	return s.RecordReceipts(ctx, []Receipt{r})
}

// normalized is a receipt cleaned for storage.
type normalized struct {
	mno, id, state, stat, err string
	done                      *time.Time
	received                  time.Time
}

func (r Receipt) normalize() (normalized, error) {
	n := normalized{mno: clean(strings.TrimSpace(r.MNO)), id: clean(strings.TrimSpace(r.SMSCID)),
		state: receiptState(r.State, r.Stat), stat: clean(r.Stat), err: clean(r.Err), received: r.Received}
	if n.mno == "" || n.id == "" {
		return n, mhero.Errorf(mhero.EVALIDATION, "A receipt needs its MNO and SMSC message id.")
	}
	if n.received.IsZero() {
		n.received = time.Now()
	}
	if !r.Done.IsZero() {
		n.done = &r.Done
	}
	return n, nil
}

// Validate reports whether RecordReceipts can take r (it needs its MNO and SMSC id).
func (r Receipt) Validate() error {
	_, err := r.normalize()
	return err
}

// RecordReceipts records receipts as RecordReceipt does, all in one transaction with a
// fixed number of statements whatever their count: the rate does not hang on one commit
// per receipt. Receipts of one message are applied in the order received. EVALIDATION,
// with nothing stored, when any receipt lacks its MNO or SMSC id.
func (s *Store) RecordReceipts(ctx context.Context, rs []Receipt) error {
	if len(rs) == 0 {
		return nil
	}
	ns := make([]normalized, len(rs))
	keys := make([]int32, len(rs))
	var (
		mnos, ids, states, stats, errs []string
		dones                          []*time.Time
		receiveds                      []time.Time
	)
	for i, r := range rs {
		n, err := r.normalize()
		if err != nil {
			return err
		}
		ns[i], keys[i] = n, idLock(n.mno, n.id)
		mnos, ids, states, stats, errs = append(mnos, n.mno), append(ids, n.id), append(states, n.state), append(stats, n.stat), append(errs, n.err)
		dones, receiveds = append(dones, n.done), append(receiveds, n.received)
	}
	slices.Sort(keys) // one order for every transaction: no deadlock with submits or other batches
	keys = slices.Compact(keys)

	err := s.tx(ctx, func(tx pgx.Tx) error {
		// Lock the ids (against RecordSubmitted making their parts known right now), then
		// store every receipt, matched to its part when the part is known.
		b := &pgx.Batch{}
		b.Queue(`SELECT count(pg_advisory_xact_lock($1, k)) FROM unnest($2::int4[]) AS k`, lockSpace, keys)
		// A receipt whose part is known is applied below and kept on the part (stat, err,
		// done date); only the others are stored, for RecordSubmitted to match. (Storing
		// every receipt cost a fifth of the database's work per message.) Within the batch,
		// rid orders receipts received at the same instant.
		b.Queue(`WITH j AS (
				SELECT v.*, p.message_id, p.part_no
				FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::text[], $6::timestamptz[], $7::timestamptz[])
					WITH ORDINALITY AS v(mno, smsc_id, state, stat, err, done_at, received_at, rid)
				LEFT JOIN message_parts p ON p.mno = v.mno AND p.smsc_id = v.smsc_id AND NOT p.superseded
			), kept AS (
				INSERT INTO receipts (mno, smsc_id, state, stat, err, done_at, received_at)
				SELECT mno, smsc_id, state, stat, err, done_at, received_at FROM j WHERE message_id IS NULL
			)
			SELECT rid, COALESCE(message_id, 0), COALESCE(part_no, 0), state, stat, err, done_at, received_at FROM j`,
			mnos, ids, states, stats, errs, dones, receiveds)
		br := tx.SendBatch(ctx, b)
		if _, err := br.Exec(); err != nil {
			br.Close()
			return err
		}
		rows, err := br.Query()
		if err != nil {
			br.Close()
			return err
		}
		byMsg := map[int64][]receiptRow{}
		for rows.Next() {
			var r receiptRow
			var msg int64
			if err := rows.Scan(&r.id, &msg, &r.partNo, &r.state, &r.stat, &r.err, &r.done, &r.received); err != nil {
				br.Close()
				return err
			}
			if msg != 0 {
				byMsg[msg] = append(byMsg[msg], r)
			}
		}
		if err := rows.Err(); err != nil {
			br.Close()
			return err
		}
		if err := br.Close(); err != nil {
			return err
		}
		if len(byMsg) == 0 {
			return nil // all kept for RecordSubmitted to match
		}
		return s.applyReceipts(ctx, tx, byMsg)
	})
	if err != nil {
		return pgError(err, "Receipt")
	}
	return nil
}

// applyReceipts applies stored receipts to their messages' parts and re-derives the
// messages' states: the messages are locked in id order, then read with their parts, and
// what changed is written back in two set-based statements.
func (s *Store) applyReceipts(ctx context.Context, tx pgx.Tx, byMsg map[int64][]receiptRow) error {
	msgIDs := make([]int64, 0, len(byMsg))
	for id := range byMsg {
		msgIDs = append(msgIDs, id)
	}
	slices.Sort(msgIDs)
	b := &pgx.Batch{}
	b.Queue(`SELECT id, state, COALESCE(error_code, ''), final_at IS NOT NULL FROM messages
		WHERE id = ANY($1) ORDER BY id FOR UPDATE`, msgIDs)
	b.Queue(`SELECT message_id, part_no, state, stat, err, done_at FROM message_parts
		WHERE message_id = ANY($1) ORDER BY message_id, part_no`, msgIDs)
	br := tx.SendBatch(ctx, b)
	defer br.Close()
	type msgState struct {
		state, code string
		final       bool
	}
	msgs := make(map[int64]msgState, len(msgIDs))
	rows, err := br.Query()
	if err != nil {
		return err
	}
	for rows.Next() {
		var id int64
		var m msgState
		if err := rows.Scan(&id, &m.state, &m.code, &m.final); err != nil {
			return err
		}
		msgs[id] = m
	}
	if err := rows.Err(); err != nil {
		return err
	}
	parts := make(map[int64][]partState, len(msgIDs))
	rows, err = br.Query()
	if err != nil {
		return err
	}
	for rows.Next() {
		var id int64
		var p partState
		if err := rows.Scan(&id, &p.no, &p.state, &p.stat, &p.err, &p.done); err != nil {
			return err
		}
		parts[id] = append(parts[id], p)
	}
	if err := rows.Err(); err != nil {
		return err
	}
	if err := br.Close(); err != nil {
		return err
	}

	var (
		pMsg                []int64
		pNo                 []int32
		pState, pStat, pErr []string
		pDone               []*time.Time
		mIDs                []int64
		mStates, mCodes     []string
		mFinal              []bool
	)
	for _, id := range msgIDs {
		ps, rcpts := parts[id], byMsg[id]
		slices.SortFunc(rcpts, func(a, b receiptRow) int {
			return cmp.Or(a.received.Compare(b.received), cmp.Compare(a.id, b.id))
		})
		changed := false
		for _, r := range rcpts {
			i := r.partNo - 1
			if i >= 0 && i < len(ps) && ps[i].no == r.partNo && ps[i].apply(r) {
				changed = true
			}
		}
		if !changed {
			continue // duplicates, or receipts that move nothing
		}
		for _, p := range ps {
			if p.changed {
				pMsg, pNo, pState, pStat, pErr, pDone = append(pMsg, id), append(pNo, int32(p.no)), append(pState, p.state),
					append(pStat, p.stat), append(pErr, p.err), append(pDone, p.done)
			}
		}
		st, code, final := derive(ps)
		if m := msgs[id]; string(st) != m.state || code != m.code || final && !m.final {
			mIDs, mStates, mCodes, mFinal = append(mIDs, id), append(mStates, string(st)), append(mCodes, code), append(mFinal, final)
		}
	}
	b = &pgx.Batch{}
	if len(pMsg) > 0 {
		b.Queue(`UPDATE message_parts p SET state = v.state, stat = v.stat, err = v.err, done_at = v.done_at, updated_at = now()
			FROM unnest($1::bigint[], $2::int[], $3::text[], $4::text[], $5::text[], $6::timestamptz[])
				AS v(message_id, part_no, state, stat, err, done_at)
			WHERE p.message_id = v.message_id AND p.part_no = v.part_no`, pMsg, pNo, pState, pStat, pErr, pDone)
	}
	if len(mIDs) > 0 {
		b.Queue(`UPDATE messages m SET state = v.state, error_code = NULLIF(v.code, ''),
				final_at = CASE WHEN v.final THEN COALESCE(m.final_at, now()) ELSE m.final_at END
			FROM unnest($1::bigint[], $2::text[], $3::text[], $4::bool[]) AS v(id, state, code, final)
			WHERE m.id = v.id`, mIDs, mStates, mCodes, mFinal)
	}
	if b.Len() == 0 {
		return nil
	}
	return tx.SendBatch(ctx, b).Close()
}
