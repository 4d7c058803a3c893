package outbox

import (
	"context"
	"encoding/json"
	"math"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/mhero-health/mhero"
)

const broadcastCols = `id, name, body, target, priority, send_at, spread_seconds, quiet_hours, valid_until,
	max_cost::float8, recipients, segments, estimate, encoding, COALESCE(scope_path, ''), created_by, created_at,
	cancelled_at, COALESCE(request_hash, ''::bytea)`

func scanBroadcast(row pgx.Row) (*Broadcast, error) {
	var b Broadcast
	var target, estimate []byte
	var prio int
	var spread int
	var valid, cancelled *time.Time
	err := row.Scan(&b.ID, &b.Name, &b.Text, &target, &prio, &b.SendAt, &spread, &b.QuietHours, &valid,
		&b.MaxCost, &b.Recipients, &b.Segments, &estimate, &b.Encoding, &b.scopePath, &b.CreatedBy, &b.CreatedAt,
		&cancelled, &b.requestHash)
	if err != nil {
		return nil, err
	}
	b.Target, b.Priority = json.RawMessage(target), priorityName(prio)
	if spread > 0 {
		b.SpreadOver = (time.Duration(spread) * time.Second).String()
	}
	b.ValidUntil, b.CancelledAt = deref(valid), deref(cancelled)
	if err := json.Unmarshal(estimate, &b.Estimate); err != nil {
		return nil, err
	}
	for _, e := range b.Estimate {
		b.EstimatedCost += e.Cost
	}
	b.EstimatedCost = math.Round(b.EstimatedCost*1e4) / 1e4
	return &b, nil
}

// visible reports whether the caller may see a broadcast: a scoped key sees those made
// by keys scoped inside its subtree; a national key sees all.
func visible(ctx context.Context, scopePath string) bool {
	p := mhero.PrincipalFromContext(ctx)
	if p == nil || p.Scope == nil {
		return true
	}
	return scopePath == p.Scope.Path || strings.HasPrefix(scopePath, p.Scope.Path+"/")
}

func (s *Store) broadcastByKey(ctx context.Context, key string) (*Broadcast, error) {
	b, err := scanBroadcast(s.db.QueryRow(ctx, `SELECT `+broadcastCols+` FROM broadcasts WHERE idempotency_key = $1`, key))
	if err != nil {
		return nil, pgError(err, "Broadcast")
	}
	if !visible(ctx, b.scopePath) {
		// Keys are global: one made under another scope is taken, not absent.
		return nil, mhero.Errorf(mhero.ECONFLICT, "Idempotency key %q was already used for a broadcast outside this key's scope.", key)
	}
	return b, nil
}

// FindBroadcast returns a broadcast with its progress: counts by state, rates, cost so
// far, and when sending started and finished. ENOTFOUND when there is none the caller
// may see.
func (s *Store) FindBroadcast(ctx context.Context, id int64) (*Broadcast, error) {
	bt := &pgx.Batch{}
	bt.Queue(`SELECT `+broadcastCols+` FROM broadcasts WHERE id = $1`, id)
	bt.Queue(`SELECT state, COALESCE(error_code, ''), count(*), count(replied_at), count(submitted_at),
			min(submitted_at), max(COALESCE(final_at, submitted_at)), COALESCE(sum(segments * segment_cost) FILTER (WHERE submitted_at IS NOT NULL), 0)::float8
		FROM messages WHERE broadcast_id = $1 GROUP BY 1, 2`, id)
	br := s.db.SendBatch(ctx, bt)
	defer br.Close()
	b, err := scanBroadcast(br.QueryRow())
	if err != nil {
		return nil, pgError(err, "Broadcast")
	}
	if !visible(ctx, b.scopePath) {
		return nil, mhero.Errorf(mhero.ENOTFOUND, "Broadcast not found.")
	}
	rows, err := br.Query()
	if err != nil {
		return nil, pgError(err, "Broadcast")
	}
	c := &BroadcastCounts{FailedByCode: map[string]int{}}
	var cost float64
	var last time.Time
	for rows.Next() {
		var state, code string
		var n, replied, sent int
		var first, lastAt *time.Time
		var spent float64
		if err := rows.Scan(&state, &code, &n, &replied, &sent, &first, &lastAt, &spent); err != nil {
			return nil, pgError(err, "Broadcast")
		}
		c.Replied += replied
		c.Sent += sent
		cost += spent
		if first != nil && (b.StartedAt.IsZero() || first.Before(b.StartedAt)) {
			b.StartedAt = *first
		}
		if lastAt != nil && lastAt.After(last) {
			last = *lastAt
		}
		switch MessageState(state) {
		case Queued:
			c.Queued += n
		case Submitted:
			c.Submitted += n
		case Delivered:
			c.Delivered += n
		case Undeliverable, Rejected, Failed:
			c.Failed += n
			c.FailedByCode[cmpOr(code, state)] += n
		case Expired:
			c.Expired += n
		case Unknown:
			c.Unknown += n
		case Cancelled:
			c.Cancelled += n
		case Skipped:
			if code == "inactive" {
				c.Inactive += n
			} else {
				c.OptedOut += n
			}
		}
	}
	if err := rows.Err(); err != nil {
		return nil, pgError(err, "Broadcast")
	}
	if len(c.FailedByCode) == 0 {
		c.FailedByCode = nil
	}
	b.Counts = c
	cost = math.Round(cost*1e4) / 1e4
	b.Cost = &cost
	if c.Sent > 0 {
		f := float64(c.Sent)
		b.Rates = &BroadcastRates{Delivered: round3(float64(c.Delivered) / f), Failed: round3(float64(c.Failed) / f),
			Replied: round3(float64(c.Replied) / f)}
	} else {
		b.Rates = &BroadcastRates{}
	}
	switch {
	case !b.CancelledAt.IsZero():
		b.State = "cancelled"
	case c.Queued == 0 && c.Submitted == 0:
		b.State, b.FinishedAt = "finished", last
	case c.Sent == 0 && b.SendAt.After(time.Now()):
		b.State = "scheduled"
	default:
		b.State = "sending"
	}
	b.Currency = s.Currency
	return b, nil
}

func round3(f float64) float64 { return math.Round(f*1000) / 1000 }

// ListBroadcasts lists the broadcasts the caller may see, newest first, before the cursor
// (0 = from the newest). Progress is not filled in: FindBroadcast has it.
func (s *Store) ListBroadcasts(ctx context.Context, before int64, n int) ([]*Broadcast, error) {
	if before <= 0 {
		before = math.MaxInt64
	}
	scope := ""
	if p := mhero.PrincipalFromContext(ctx); p != nil && p.Scope != nil {
		scope = p.Scope.Path
	}
	rows, err := s.db.Query(ctx, `SELECT `+broadcastCols+` FROM broadcasts
		WHERE id < $1 AND ($3 = '' OR scope_path = $3 OR scope_path LIKE $3 || '/%')
		ORDER BY id DESC LIMIT $2`, before, n, scope)
	if err != nil {
		return nil, pgError(err, "Broadcasts")
	}
	list, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (*Broadcast, error) { return scanBroadcast(r) })
	if err != nil {
		return nil, pgError(err, "Broadcasts")
	}
	for _, b := range list {
		b.Currency = s.Currency
	}
	return list, nil
}

// Recipient is one message of a broadcast as its sender follows it.
type RecipientStatus struct {
	MessageID int64          `json:"message_id"`
	WorkerID  mhero.WorkerID `json:"worker_id,omitempty"`
	To        mhero.MSISDN   `json:"to"`
	MNO       string         `json:"mno,omitempty"`
	State     MessageState   `json:"state"`
	ErrorCode string         `json:"error_code,omitempty"`
	SMSCIDs   []string       `json:"smsc_ids,omitempty"` // the SMSC's message id of each part
	Segments  int            `json:"segments"`
	Submitted time.Time      `json:"submitted_at,omitzero"`
	Final     time.Time      `json:"final_at,omitzero"`
	Replied   time.Time      `json:"replied_at,omitzero"`
}

// BroadcastMessages streams a broadcast's messages in id order after the cursor, at most
// n (0 = all), optionally only those in one state, to fn. The broadcast must be visible.
func (s *Store) BroadcastMessages(ctx context.Context, id int64, state string, after int64, n int, fn func(RecipientStatus) error) error {
	var scope string
	if err := s.db.QueryRow(ctx, `SELECT COALESCE(scope_path, '') FROM broadcasts WHERE id = $1`, id).Scan(&scope); err != nil {
		return pgError(err, "Broadcast")
	}
	if !visible(ctx, scope) {
		return mhero.Errorf(mhero.ENOTFOUND, "Broadcast not found.")
	}
	if state != "" && !knownState(state) {
		return mhero.Errorf(mhero.EINVALID, "state %q is not a message state.", state)
	}
	limit := int64(n)
	if n <= 0 {
		limit = math.MaxInt64
	}
	rows, err := s.db.Query(ctx, `SELECT m.id, COALESCE(m.worker_id, 0), m.msisdn, COALESCE(m.mno, ''), m.state,
			COALESCE(m.error_code, ''), m.segments, m.submitted_at, m.final_at, m.replied_at,
			ARRAY(SELECT p.smsc_id FROM message_parts p WHERE p.message_id = m.id ORDER BY p.part_no)
		FROM messages m
		WHERE m.broadcast_id = $1 AND m.id > $2 AND ($3 = '' OR m.state = $3)
		ORDER BY m.id LIMIT $4`, id, after, state, limit)
	if err != nil {
		return pgError(err, "Broadcast messages")
	}
	defer rows.Close()
	for rows.Next() {
		var r RecipientStatus
		var to, st string
		var sub, fin, rep *time.Time
		if err := rows.Scan(&r.MessageID, &r.WorkerID, &to, &r.MNO, &st, &r.ErrorCode, &r.Segments, &sub, &fin, &rep, &r.SMSCIDs); err != nil {
			return pgError(err, "Broadcast messages")
		}
		r.To, r.State = mhero.MSISDN(to), MessageState(st)
		r.Submitted, r.Final, r.Replied = deref(sub), deref(fin), deref(rep)
		if err := fn(r); err != nil {
			return err
		}
	}
	return rows.Err()
}

func knownState(s string) bool {
	switch MessageState(s) {
	case Queued, Submitted, Delivered, Undeliverable, Expired, Rejected, Failed, Unknown, Cancelled, Skipped:
		return true
	}
	return false
}

// CancelBroadcast stops what of a broadcast is not yet submitted: its queued messages
// become cancelled. Messages already handed to an SMSC go on (their outcomes are still
// recorded). It returns how many were cancelled; cancelling again cancels nothing more.
func (s *Store) CancelBroadcast(ctx context.Context, id int64) (int, error) {
	var n int
	err := s.tx(ctx, func(tx pgx.Tx) error {
		var scope string
		if err := tx.QueryRow(ctx, `UPDATE broadcasts SET cancelled_at = COALESCE(cancelled_at, now()) WHERE id = $1
			RETURNING COALESCE(scope_path, '')`, id).Scan(&scope); err != nil {
			return err
		}
		if !visible(ctx, scope) {
			return mhero.Errorf(mhero.ENOTFOUND, "Broadcast not found.")
		}
		err := tx.QueryRow(ctx, `WITH q AS (
				DELETE FROM message_queue q USING messages m
				WHERE m.broadcast_id = $1 AND q.message_id = m.id RETURNING q.message_id
			), c AS (
				UPDATE messages m SET state = 'cancelled', final_at = now() FROM q
				WHERE m.id = q.message_id AND m.state = 'queued' RETURNING 1
			) SELECT count(*) FROM c`, id).Scan(&n)
		if err != nil {
			return err
		}
		return s.audit(ctx, tx, "cancel", "broadcast", id, map[string]any{"cancelled": n})
	})
	if err != nil {
		return 0, pgError(err, "Broadcast")
	}
	s.log.Info("broadcast cancelled", "broadcast", id, "messages", n)
	return n, nil
}

// LocationRates is a broadcast's reach in one top-level location (county).
type LocationRates struct {
	LocationID int64   `json:"location_id"`
	Code       string  `json:"code"`
	Name       string  `json:"name"`
	Recipients int     `json:"recipients"`
	Sent       int     `json:"sent"` // reached the SMSC
	Delivered  int     `json:"delivered"`
	Failed     int     `json:"failed"`
	Replied    int     `json:"replied"`
	Delivery   float64 `json:"delivery_rate"` // delivered / sent
	Response   float64 `json:"response_rate"` // replied / sent
}

// BroadcastByLocation breaks a broadcast's delivery and response down by the recipients'
// top-level location (where the worker is now). The broadcast must be visible.
func (s *Store) BroadcastByLocation(ctx context.Context, id int64) ([]LocationRates, error) {
	var scope string
	if err := s.db.QueryRow(ctx, `SELECT COALESCE(scope_path, '') FROM broadcasts WHERE id = $1`, id).Scan(&scope); err != nil {
		return nil, pgError(err, "Broadcast")
	}
	if !visible(ctx, scope) {
		return nil, mhero.Errorf(mhero.ENOTFOUND, "Broadcast not found.")
	}
	rows, err := s.db.Query(ctx, `SELECT COALESCE(l.id, 0), COALESCE(l.code, ''), COALESCE(l.name, ''), count(*),
			count(m.submitted_at), count(*) FILTER (WHERE m.state = 'delivered'),
			count(*) FILTER (WHERE m.state IN ('undeliverable', 'rejected', 'failed')), count(m.replied_at)
		FROM messages m LEFT JOIN workers w ON w.id = m.worker_id LEFT JOIN locations l ON l.id = w.top_location_id
		WHERE m.broadcast_id = $1
		GROUP BY 1, 2, 3 ORDER BY 2`, id)
	if err != nil {
		return nil, pgError(err, "Broadcast")
	}
	return pgx.CollectRows(rows, func(r pgx.CollectableRow) (LocationRates, error) {
		var l LocationRates
		err := r.Scan(&l.LocationID, &l.Code, &l.Name, &l.Recipients, &l.Sent, &l.Delivered, &l.Failed, &l.Replied)
		if l.Sent > 0 {
			l.Delivery, l.Response = round3(float64(l.Delivered)/float64(l.Sent)), round3(float64(l.Replied)/float64(l.Sent))
		}
		return l, err
	})
}
