// Package outbox is the durable record, in PostgreSQL, of what mhero sends and receives
// over SMPP: one row per outbound SMS with its state machine, the SMSC's id for each part
// the SMSC accepted, every delivery receipt as it came, and every mobile-originated SMS.
//
// It is a top-level package because it has no home among the fixed ones: it is the
// system of record for messages that registry (workers are messaged), smpp (submits and
// receipts), ussd (replies) and the broadcasts all touch, and smpp deliberately keeps no
// state. It does not import smpp: the composition root adapts smpp.DLR and smpp.MO to
// Receipt and Inbound, and smpp.SubmitResult to RecordSubmitted's arguments. Its tables
// come from its own migrations (Migrations), applied after the registry's.
//
// # Message life
//
// Enqueue makes a message queued. Whoever sends it records the outcome: RecordSubmitted
// (the SMSC accepted it; its ids become parts and the message is submitted),
// RecordFailed (a permanent refusal such as "0x0B" → failed, or an outcome the pool could
// not know → unknown; both final) or RecordRetry (still queued, next attempt later).
// From then on receipts move it.
//
// # Receipt rules
//
// RecordReceipt (and RecordReceipts, a batch of them in one transaction) applies a
// receipt when its (MNO, SMSC id) names a known part; the part keeps what the receipt
// said (stat, err, done date). A receipt whose part is not known yet (it came before its
// submit_sm_resp, or while the submit's outcome was being recorded) is stored in
// receipts, unmatched; RecordSubmitted matches every unmatched receipt of its ids
// received within Store.MatchWindow and applies them in the order they were received.
// The SMSC ids must be normalised the same way on both sides (smpp.NormalizeMessageID
// does it).
//
// A part's state only moves forward along
//
//	submitted < enroute < accepted < unknown < final
//
// where the final states are delivered, undeliverable, expired, rejected and deleted: a
// receipt applies only when its state ranks strictly above the part's. So a duplicate
// changes nothing, ENROUTE after DELIVRD changes nothing, and the first final receipt of
// a part is the one that counts (UNDELIV after DELIVRD on the same part stays delivered).
// UNKNOWN and ACCEPTD are not final (operators send them while they do not know yet; see
// smpp.ReceiptState.Final): a later final receipt still settles the part.
//
// A message's state is derived from all its parts, in part order, whenever one changes
// (SMSCs report on the first part only, the last only, or every part):
//
//   - a failure if any part failed: that part's state (undeliverable, expired, rejected;
//     deleted becomes failed), with its err as error_code; the lowest-numbered failed
//     part decides;
//   - else delivered if any part is delivered (parts without a final receipt do not hold
//     it back);
//   - else unknown if any part reported UNKNOWN, with its err as error_code; this is not
//     final (final_at stays NULL) and a later final receipt replaces it;
//   - else submitted.
//
// final_at is set when the message first reaches a final state; receipts never clear
// it (only RecordSubmitted does, for a message that turns out to have been sent). The
// derived state is a function of the parts' states, so it does not depend on the order
// receipts of different parts arrive in. Because a failed part outranks a delivered one,
// a multipart message reported part by part can go from delivered to a failure when a
// later part's failure receipt arrives (it was not delivered whole); it never goes back
// to submitted or unknown, and a single-part message never changes once final.
//
// # Concurrency
//
// The pool handles receipts on several goroutines, and a receipt can race the
// RecordSubmitted that makes its part known. Two locks keep this right at READ COMMITTED:
//
//   - a transaction-scoped advisory lock per (MNO, SMSC id), taken first by RecordReceipt
//     (its one id) and RecordSubmitted (all its ids, in a fixed order). Whichever commits
//     first is seen by the other's next statement: a receipt either finds the part or is
//     left unmatched where RecordSubmitted, which then waits for it, finds it. A receipt
//     is never missed by both.
//   - the message row (SELECT ... FOR UPDATE), taken next by everything that changes a
//     message or its parts, so receipts for two parts of one message derive its state one
//     after the other from committed part states.
//
// Locks are always taken in that order, so the two kinds cannot deadlock.
//
// # What the SMSC may repeat
//
// Handlers must be idempotent (the SMSC delivers a PDU again when our response was lost):
// a repeated receipt changes nothing; RecordSubmitted repeated with the
// same ids is a no-op; RecordInbound stores a repeated MO again (a person may send the same
// text twice, so it is not deduplicated here).
package outbox

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/mhero-health/mhero"
)

// MessageState is the state of an outbound message (see the package documentation).
type MessageState = mhero.MessageStatus

// Message states. Queued, Submitted and (from a receipt) Unknown can still change; the
// others are final.
const (
	Queued        MessageState = mhero.MessageQueued
	Submitted     MessageState = mhero.MessageSubmitted
	Delivered     MessageState = mhero.MessageDelivered
	Undeliverable MessageState = mhero.MessageUndeliverable
	Expired       MessageState = mhero.MessageExpired
	Rejected      MessageState = mhero.MessageRejected
	Failed        MessageState = mhero.MessageFailed
	Unknown       MessageState = mhero.MessageUnknown
	Cancelled     MessageState = mhero.MessageCancelled
	Skipped       MessageState = mhero.MessageSkipped
)

// Priorities: lower goes first. Any value 0-9 may be used.
const (
	PriorityAlert  = 0 // crisis alerts
	PriorityReply  = 1 // answers to a worker's SMS or USSD session
	PriorityNormal = 5
	PriorityBulk   = 9 // surveys, reminders
)

// DefaultValidity is how long a message may wait to be sent when NewMessage.ValidFor is 0.
const DefaultValidity = 24 * time.Hour

// DefaultMatchWindow is how old an unmatched receipt may be for RecordSubmitted to match it.
const DefaultMatchWindow = time.Hour

// Message is one outbound SMS as recorded.
type Message struct {
	ID             int64          `json:"id"`
	WorkerID       mhero.WorkerID `json:"worker_id,omitempty"`
	To             mhero.MSISDN   `json:"to"`
	Sender         string         `json:"sender,omitempty"`
	Body           string         `json:"body"`
	Priority       int            `json:"priority"`
	MNO            string         `json:"mno,omitempty"`
	State          MessageState   `json:"state"`
	Segments       int            `json:"segments"`
	ErrorCode      string         `json:"error_code,omitempty"`
	Attempts       int            `json:"attempts"`
	NextAttemptAt  time.Time      `json:"next_attempt_at"`
	ValidUntil     time.Time      `json:"valid_until,omitzero"` // zero: no limit
	CreatedAt      time.Time      `json:"created_at"`
	SubmittedAt    time.Time      `json:"submitted_at,omitzero"`
	FinalAt        time.Time      `json:"final_at,omitzero"`
	BroadcastID    int64          `json:"broadcast_id,omitempty"`
	IdempotencyKey string         `json:"idempotency_key,omitempty"`
	Parts          []Part         `json:"parts,omitempty"` // filled by FindMessage
}

// Part is one segment the SMSC accepted, with the latest receipt state that applied.
type Part struct {
	No         int       `json:"no"`
	MNO        string    `json:"mno"`
	SMSCID     string    `json:"smsc_id"`
	State      string    `json:"state"` // submitted, or an smpp.ReceiptState value
	Stat       string    `json:"stat,omitempty"`
	Err        string    `json:"err,omitempty"`
	DoneAt     time.Time `json:"done_at,omitzero"`
	Superseded bool      `json:"superseded,omitempty"` // the SMSC gave its id to a later message
	UpdatedAt  time.Time `json:"updated_at"`
}

// Store is the outbox in PostgreSQL. It is safe for concurrent use.
type Store struct {
	db  *pgxpool.Pool
	log *slog.Logger
	// MatchWindow bounds how old an unmatched receipt RecordSubmitted still matches
	// (DefaultMatchWindow). A receipt comes before its submit_sm_resp by seconds at most;
	// the bound keeps an SMSC that reuses ids from matching a stale receipt.
	MatchWindow time.Duration
	// Planner, when set, routes messages to their MNO at enqueue (queue lengths per MNO),
	// counts segments for broadcasts' estimates and prices submitted segments.
	Planner Planner
	// Quiet is the deployment's quiet hours: paced broadcasts skip them (zero: none).
	Quiet QuietHours
	// Currency names the unit of the Planner's rates in estimates and reports ("USD").
	Currency string
	// Audit, when set, records a change made through the API in the audit log, in the
	// change's transaction (registry.Audit).
	Audit func(ctx context.Context, tx pgx.Tx, action, entity, entityID string, detail any) error

	// freezing lets one broadcast at a time resolve its recipients: each holds two pool
	// connections at once (its transaction, and the registry's query streaming into it),
	// so creations in parallel could take every connection and wait for each other.
	freezing chan struct{}
}

func (s *Store) audit(ctx context.Context, tx pgx.Tx, action, entity string, id int64, detail any) error {
	if s.Audit == nil {
		return nil
	}
	return s.Audit(ctx, tx, action, entity, strconv.FormatInt(id, 10), detail)
}

// Planner is what the outbox needs to know of the SMPP side, which it does not import:
// cmd adapts the smpp pool and its configuration to it.
type Planner interface {
	// Route returns the MNO account a number is sent through.
	Route(to mhero.MSISDN) (mno string, err error)
	// Segments returns how many SMS segments text takes and whether it needs UCS-2
	// (a character outside GSM 03.38).
	Segments(text string) (segments int, ucs2 bool)
	// Rate returns the price of one segment on mno, as configured (0 when unknown).
	Rate(mno string) float64
}

// rate is the price of one segment on mno, nil when no planner knows it.
func (s *Store) rate(mno string) *float64 {
	if s.Planner == nil {
		return nil
	}
	r := s.Planner.Rate(mno)
	return &r
}

// NewStore returns a Store on a pool whose database has the registry's and the outbox's
// migrations applied. log may be nil.
func NewStore(db *pgxpool.Pool, log *slog.Logger) *Store {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &Store{db: db, log: log, MatchWindow: DefaultMatchWindow, freezing: make(chan struct{}, 1)}
}

func (s *Store) tx(ctx context.Context, fn func(pgx.Tx) error) error {
	return pgx.BeginFunc(ctx, s.db, fn)
}

// pgError maps driver errors to application errors; others are wrapped and become
// EINTERNAL at the edge.
func pgError(err error, what string) error {
	var pe *pgconn.PgError
	var me *mhero.Error
	switch {
	case errors.As(err, &me):
		return err
	case errors.Is(err, pgx.ErrNoRows):
		return mhero.Errorf(mhero.ENOTFOUND, "%s not found.", what)
	case errors.As(err, &pe):
		switch pe.Code {
		case "23505": // unique_violation
			return mhero.Errorf(mhero.ECONFLICT, "%s conflicts with an existing one (%s).", what, pe.ConstraintName)
		case "23503": // foreign_key_violation
			return mhero.Errorf(mhero.EVALIDATION, "%s refers to a worker that does not exist.", what)
		case "22P02", "22003", "23514", "22001":
			return mhero.Errorf(mhero.EVALIDATION, "%s has an invalid value.", what)
		}
	}
	return fmt.Errorf("%s: %w", what, err)
}
