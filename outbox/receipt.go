package outbox

import (
	"context"
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

const partOfID = `(SELECT message_id FROM message_parts WHERE mno = $1 AND smsc_id = $2 AND NOT superseded)`

// RecordReceipt stores a delivery receipt and, when its part is known, applies it to the
// part and re-derives the message's state, in one transaction. A receipt for an id not
// submitted yet stays stored unmatched until RecordSubmitted matches it. It returns nil
// for a duplicate (stored, nothing changed), so the SMSC gets its OK.
func (s *Store) RecordReceipt(ctx context.Context, r Receipt) error {
	mno, id := clean(strings.TrimSpace(r.MNO)), clean(strings.TrimSpace(r.SMSCID))
	if mno == "" || id == "" {
		return mhero.Errorf(mhero.EVALIDATION, "A receipt needs its MNO and SMSC message id.")
	}
	state := receiptState(r.State, r.Stat)
	received := r.Received
	if received.IsZero() {
		received = time.Now()
	}
	var done *time.Time
	if !r.Done.IsZero() {
		done = &r.Done
	}
	err := s.tx(ctx, func(tx pgx.Tx) error {
		// Lock the id (against RecordSubmitted making its part known right now), store the
		// receipt matched or not, lock the message and read its parts: one round trip.
		b := &pgx.Batch{}
		b.Queue(`SELECT pg_advisory_xact_lock($1, $2)`, lockSpace, idLock(mno, id))
		b.Queue(`WITH p AS `+partOfIDRow+`
			INSERT INTO receipts (mno, smsc_id, state, stat, err, done_at, received_at, message_id, part_no, matched_at)
			SELECT $1, $2, $3, $4, $5, $6, $7, p.message_id, p.part_no, CASE WHEN p.message_id IS NOT NULL THEN now() END
			FROM (VALUES (1)) AS one LEFT JOIN p ON true
			RETURNING id, COALESCE(message_id, 0), COALESCE(part_no, 0)`,
			mno, id, state, clean(r.Stat), clean(r.Err), done, received)
		b.Queue(`SELECT state, COALESCE(error_code, ''), final_at IS NOT NULL FROM messages
			WHERE id = `+partOfID+` FOR UPDATE`, mno, id)
		b.Queue(`SELECT part_no, state, stat, err, done_at FROM message_parts
			WHERE message_id = `+partOfID+` ORDER BY part_no`, mno, id)
		br := tx.SendBatch(ctx, b)
		defer br.Close()
		if _, err := br.Exec(); err != nil {
			return err
		}
		var rid, msgID int64
		var partNo int
		if err := br.QueryRow().Scan(&rid, &msgID, &partNo); err != nil {
			return err
		}
		if msgID == 0 {
			return br.Close() // kept for RecordSubmitted to match
		}
		var msgState, msgCode string
		var msgFinal bool
		if err := br.QueryRow().Scan(&msgState, &msgCode, &msgFinal); err != nil {
			return err
		}
		rows, err := br.Query()
		if err != nil {
			return err
		}
		parts, err := pgx.CollectRows(rows, func(row pgx.CollectableRow) (partState, error) {
			var p partState
			err := row.Scan(&p.no, &p.state, &p.stat, &p.err, &p.done)
			return p, err
		})
		if err != nil {
			return err
		}
		if err := br.Close(); err != nil {
			return err
		}
		i := partNo - 1
		if i < 0 || i >= len(parts) || parts[i].no != partNo ||
			!parts[i].apply(receiptRow{id: rid, partNo: partNo, state: state, stat: clean(r.Stat), err: clean(r.Err), done: done, received: received}) {
			return nil // a duplicate or a receipt that moves nothing
		}
		st, code, final := derive(parts)
		b = &pgx.Batch{}
		queuePartUpdates(b, msgID, parts)
		if string(st) != msgState || code != msgCode || final && !msgFinal {
			b.Queue(`UPDATE messages SET state = $2, error_code = $3,
					final_at = CASE WHEN $4 THEN COALESCE(final_at, now()) ELSE final_at END
				WHERE id = $1`, msgID, string(st), nullIfZero(code), final)
		}
		return tx.SendBatch(ctx, b).Close()
	})
	if err != nil {
		return pgError(err, "Receipt")
	}
	return nil
}

const partOfIDRow = `(SELECT message_id, part_no FROM message_parts WHERE mno = $1 AND smsc_id = $2 AND NOT superseded)`
