package outbox

import (
	"context"
	"strings"
	"time"

	"github.com/mhero-health/mhero"
)

// Inbound is a mobile-originated SMS as the pool handed it on (from smpp.MO).
type Inbound struct {
	MNO      string
	From     mhero.MSISDN // E.164 digits, or national as the SMSC sent it
	To       string       // the short code
	Body     string
	Parts    int       // 1 for a single SMS; 0 counts as 1
	Partial  bool      // some parts never arrived
	Received time.Time // zero = now
}

// ReplyWindow is how long after a message was created an SMS from its worker still
// counts as a reply to it.
const ReplyWindow = 7 * 24 * time.Hour

// RecordInbound stores an incoming SMS, unhandled, and returns its id. Call it before the
// SMSC is acknowledged. A repeat (the SMSC delivering again after a lost response) is
// stored again.
func (s *Store) RecordInbound(ctx context.Context, in Inbound) (int64, error) {
	if in.MNO == "" || in.From == "" {
		return 0, mhero.Errorf(mhero.EVALIDATION, "An inbound SMS needs its MNO and sender.")
	}
	if in.Received.IsZero() {
		in.Received = time.Now()
	}
	// PostgreSQL text takes neither NUL nor invalid UTF-8; an SMS with them must still be kept.
	in.Body = clean(in.Body)
	var id int64
	// The SMS is a reply to the last message the worker was sent (within ReplyWindow):
	// broadcasts count their replies from it.
	err := s.db.QueryRow(ctx, `WITH i AS (
			INSERT INTO inbound_messages (mno, from_msisdn, to_addr, body, parts, partial, received_at)
			VALUES ($1, $2, $3, $4, $5, $6, $7) RETURNING id
		), r AS (
			UPDATE messages SET replied_at = $7
			WHERE id = (SELECT m.id FROM messages m JOIN workers w ON w.id = m.worker_id
				WHERE w.msisdn = $2 AND m.created_at > $7::timestamptz - $8::bigint * interval '1 second'
				  AND m.submitted_at IS NOT NULL AND m.submitted_at <= $7
				ORDER BY m.created_at DESC LIMIT 1)
			  AND replied_at IS NULL
		)
		SELECT id FROM i`,
		in.MNO, clean(string(in.From)), clean(in.To), in.Body, max(in.Parts, 1), in.Partial, in.Received,
		int64(ReplyWindow.Seconds())).Scan(&id)
	if err != nil {
		return 0, pgError(err, "Inbound SMS")
	}
	return id, nil
}

// clean makes s storable as PostgreSQL text: invalid UTF-8 becomes U+FFFD, NULs go.
func clean(s string) string {
	return strings.ReplaceAll(strings.ToValidUTF8(s, "\uFFFD"), "\x00", "")
}
