package outbox

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/mhero-health/mhero"
)

// Audience resolves a broadcast's target to its recipients (registry.Store is one): the
// active workers who have not opted out, within the caller's scope, in worker id order.
// target is the registry's targeting query as JSON; a bad one is a *mhero.Error.
type Audience interface {
	Recipients(ctx context.Context, target []byte, fn func(mhero.Recipient) error) error
}

// Broadcast limits.
const (
	MaxSegments   = 6                   // per message, after placeholders are filled
	MaxSpread     = 7 * 24 * time.Hour  // the longest a broadcast may be paced over
	MaxSendAhead  = 90 * 24 * time.Hour // the furthest send_at may be
	sendAtSkew    = time.Minute         // a send_at this far in the past still counts as now
	maxNameLength = 200
)

// placeholders are the fields a broadcast's text may name, filled per recipient.
var placeholders = map[string]func(mhero.Recipient) string{
	"name": func(r mhero.Recipient) string { return r.Name },
	"first_name": func(r mhero.Recipient) string {
		first, _, _ := strings.Cut(strings.TrimSpace(r.Name), " ")
		return first
	},
	"facility": func(r mhero.Recipient) string { return r.Facility },
	"cadre":    func(r mhero.Recipient) string { return r.Cadre },
}

var placeholderRE = regexp.MustCompile(`\{([A-Za-z_]+)\}`)

// BroadcastInput is what a sender asks for (the body of POST /broadcasts).
type BroadcastInput struct {
	Name   string          `json:"name,omitempty"`
	Text   string          `json:"text"`   // {name}, {first_name}, {facility}, {cadre} are filled per worker
	Target json.RawMessage `json:"target"` // the registry's targeting query; must name something
	// SendAt is when sending starts; absent = now. In the past (beyond a minute) is refused.
	SendAt *time.Time `json:"send_at,omitempty"`
	// Priority: alert (ahead of everything, ignores quiet hours), normal (default) or bulk.
	Priority string `json:"priority,omitempty"`
	// SpreadOver paces the messages evenly over this long ("2h"), so a large send does not
	// arrive as one herd; quiet hours are skipped, not counted.
	SpreadOver string `json:"spread_over,omitempty"`
	// QuietHours keeps the messages out of the deployment's quiet hours; default true,
	// except for alerts.
	QuietHours *bool `json:"quiet_hours,omitempty"`
	// ValidFor is how long each message may wait past its due time before it expires
	// instead of arriving late; default 24h.
	ValidFor       string   `json:"valid_for,omitempty"`
	MaxCost        *float64 `json:"max_cost,omitempty"`        // refuse (422) when the estimate is above
	IdempotencyKey string   `json:"idempotency_key,omitempty"` // or the Idempotency-Key header
	DryRun         bool     `json:"dry_run,omitempty"`         // estimate only; nothing is created
}

// MNOEstimate is the part of a broadcast one operator carries.
type MNOEstimate struct {
	MNO        string  `json:"mno"` // "" for numbers no MNO's prefixes cover (they will fail unroutable)
	Recipients int     `json:"recipients"`
	Segments   int64   `json:"segments"`
	Rate       float64 `json:"rate_per_segment"`
	Cost       float64 `json:"cost"`
}

// Broadcast is a broadcast as created, with its progress when read back.
type Broadcast struct {
	ID            int64           `json:"id"`
	Name          string          `json:"name,omitempty"`
	Text          string          `json:"text"`
	Target        json.RawMessage `json:"target"`
	Priority      string          `json:"priority"`
	SendAt        time.Time       `json:"send_at"`
	SpreadOver    string          `json:"spread_over,omitempty"`
	QuietHours    bool            `json:"quiet_hours"`
	ValidUntil    time.Time       `json:"valid_until"` // the last message's expiry
	MaxCost       *float64        `json:"max_cost,omitempty"`
	Recipients    int             `json:"recipients"`
	Segments      int64           `json:"segments"`
	Encoding      string          `json:"encoding"` // gsm7, ucs2, or mixed (some recipients' texts need UCS-2)
	Estimate      []MNOEstimate   `json:"estimate"`
	EstimatedCost float64         `json:"estimated_cost"`
	Currency      string          `json:"currency,omitempty"`
	Warnings      []string        `json:"warnings,omitempty"`
	CreatedBy     string          `json:"created_by,omitempty"`
	CreatedAt     time.Time       `json:"created_at,omitzero"`
	DryRun        bool            `json:"dry_run,omitempty"`

	// Filled when read back (GET).
	State       string           `json:"state,omitempty"` // scheduled, sending, finished, cancelled
	Counts      *BroadcastCounts `json:"counts,omitempty"`
	Rates       *BroadcastRates  `json:"rates,omitempty"`
	Cost        *float64         `json:"cost,omitempty"` // of the segments submitted so far, at the rates then
	StartedAt   time.Time        `json:"started_at,omitzero"`
	FinishedAt  time.Time        `json:"finished_at,omitzero"`
	CancelledAt time.Time        `json:"cancelled_at,omitzero"`

	requestHash []byte
	scopePath   string
}

// BroadcastCounts counts a broadcast's messages by state. Failed counts every refusal
// (undeliverable, rejected, failed); FailedByCode breaks it down by error code.
type BroadcastCounts struct {
	Queued       int            `json:"queued"`
	Submitted    int            `json:"submitted"` // with the SMSC, no final receipt yet
	Delivered    int            `json:"delivered"`
	Failed       int            `json:"failed"`
	Expired      int            `json:"expired"`
	Unknown      int            `json:"unknown"` // the SMSC's answer or receipt left it open
	Cancelled    int            `json:"cancelled"`
	OptedOut     int            `json:"opted_out"` // skipped: the worker sent STOP after the broadcast was made
	Inactive     int            `json:"inactive"`  // skipped: the worker was deactivated since
	Replied      int            `json:"replied"`   // recipients who sent an SMS after theirs was submitted
	Sent         int            `json:"sent"`      // reached the SMSC
	FailedByCode map[string]int `json:"failed_by_code,omitempty"`
}

// BroadcastRates are fractions of the messages that reached the SMSC.
type BroadcastRates struct {
	Delivered float64 `json:"delivered"`
	Failed    float64 `json:"failed"`
	Replied   float64 `json:"replied"`
}

var priorities = map[string]int{"alert": PriorityAlert, "normal": PriorityNormal, "bulk": PriorityBulk}

func priorityName(p int) string {
	for n, v := range priorities {
		if v == p {
			return n
		}
	}
	return strconv.Itoa(p)
}

// plan is a validated BroadcastInput.
type plan struct {
	in       BroadcastInput
	priority int
	pace     pacing
	validFor time.Duration
	quiet    bool
	hash     []byte
}

func (s *Store) planBroadcast(in BroadcastInput, now time.Time) (*plan, error) {
	var d []mhero.ErrorDetail
	bad := func(field, msg string) { d = append(d, mhero.ErrorDetail{Field: field, Message: msg}) }
	p := &plan{in: in, validFor: DefaultValidity}
	in.Text = strings.TrimSpace(in.Text)
	p.in.Text = in.Text
	switch {
	case in.Text == "":
		bad("text", "text is required")
	case len([]rune(in.Text)) > MaxBody:
		bad("text", fmt.Sprintf("text is longer than %d characters", MaxBody))
	}
	for _, m := range placeholderRE.FindAllStringSubmatch(in.Text, -1) {
		if placeholders[m[1]] == nil {
			bad("text", fmt.Sprintf("unknown placeholder {%s}; use {name}, {first_name}, {facility} or {cadre}", m[1]))
		}
	}
	if len(in.Name) > maxNameLength {
		bad("name", fmt.Sprintf("name is longer than %d characters", maxNameLength))
	}
	if t := bytes.TrimSpace(in.Target); len(t) == 0 || bytes.Equal(t, []byte("null")) {
		bad("target", "target is required: name cadres, locations, facilities, skills or languages (the country's code for everyone)")
	}
	var ok bool
	if p.priority, ok = priorities[cmpOr(in.Priority, "normal")]; !ok {
		bad("priority", "priority must be alert, normal or bulk")
	}
	start := now
	if in.SendAt != nil {
		switch {
		case in.SendAt.Before(now.Add(-sendAtSkew)):
			bad("send_at", "send_at is in the past")
		case in.SendAt.After(now.Add(MaxSendAhead)):
			bad("send_at", "send_at is more than 90 days ahead")
		case in.SendAt.After(now):
			start = *in.SendAt
		}
	}
	var spread time.Duration
	if in.SpreadOver != "" {
		v, err := time.ParseDuration(in.SpreadOver)
		if err != nil || v < 0 || v > MaxSpread {
			bad("spread_over", "spread_over must be a duration such as 2h, at most 168h")
		}
		spread = v
	}
	if in.ValidFor != "" {
		v, err := time.ParseDuration(in.ValidFor)
		if err != nil || v < time.Minute || v > 7*24*time.Hour {
			bad("valid_for", "valid_for must be a duration such as 6h, from 1m to 168h")
		}
		p.validFor = v
	}
	if in.MaxCost != nil && (*in.MaxCost < 0 || math.IsNaN(*in.MaxCost) || math.IsInf(*in.MaxCost, 0)) {
		bad("max_cost", "max_cost must be a positive amount")
	}
	if len(in.IdempotencyKey) > 200 {
		bad("idempotency_key", "idempotency_key is longer than 200 characters")
	}
	if len(d) > 0 {
		return nil, &mhero.Error{Code: mhero.EVALIDATION, Message: "Broadcast is not valid.", Details: d}
	}
	p.quiet = p.priority != PriorityAlert
	if in.QuietHours != nil {
		p.quiet = *in.QuietHours
	}
	p.pace = pacing{start: start, spread: spread}
	if p.quiet {
		p.pace.quiet = s.Quiet
	}
	// What makes two requests the same broadcast, for the idempotency key.
	h := sha256.New()
	canon := in
	canon.DryRun, canon.IdempotencyKey = false, ""
	if canon.SendAt == nil {
		canon.SendAt = &time.Time{}
	}
	_ = json.NewEncoder(h).Encode(canon)
	p.hash = h.Sum(nil)
	return p, nil
}

func cmpOr(a, b string) string {
	if a == "" {
		return b
	}
	return a
}

func fill(text string, r mhero.Recipient) string {
	if !strings.Contains(text, "{") {
		return text
	}
	return placeholderRE.ReplaceAllStringFunc(text, func(m string) string {
		return strings.TrimSpace(placeholders[m[1:len(m)-1]](r))
	})
}

// CreateBroadcast resolves the target to its recipients and freezes them: one queued
// message per recipient, with the text filled, routed to its MNO, paced and priced, all
// in one transaction. It refuses (EVALIDATION, nothing created) a target that reaches no
// one and an estimate above MaxCost. With DryRun it only estimates. A repeat with the
// same idempotency key returns the broadcast the key made (created false), or ECONFLICT
// when the request differs.
func (s *Store) CreateBroadcast(ctx context.Context, aud Audience, in BroadcastInput) (b *Broadcast, created bool, err error) {
	if s.Planner == nil {
		return nil, false, mhero.Errorf(mhero.EUNAVAILABLE, "Broadcasts need the SMSC configuration (no MNO is configured).")
	}
	now := time.Now()
	p, err := s.planBroadcast(in, now)
	if err != nil {
		return nil, false, err
	}
	principal := mhero.PrincipalFromContext(ctx)
	var createdBy, scopePath string
	if principal != nil {
		createdBy = principal.Name
		if principal.Scope != nil {
			scopePath = principal.Scope.Path
		}
	}
	if key := p.in.IdempotencyKey; key != "" && !p.in.DryRun {
		if b, err := s.broadcastByKey(ctx, key); err == nil {
			if !bytes.Equal(b.requestHash, p.hash) {
				return nil, false, mhero.Errorf(mhero.ECONFLICT, "Idempotency key %q was already used for a different broadcast.", key)
			}
			b, err := s.FindBroadcast(ctx, b.ID)
			return b, false, err
		} else if !isNotFound(err) {
			return nil, false, err
		}
	}

	select {
	case s.freezing <- struct{}{}:
		defer func() { <-s.freezing }()
	case <-ctx.Done():
		return nil, false, ctx.Err()
	}
	b = &Broadcast{Name: p.in.Name, Text: p.in.Text, Target: p.in.Target, Priority: priorityName(p.priority),
		SendAt: p.pace.start, SpreadOver: p.in.SpreadOver, QuietHours: p.quiet, MaxCost: p.in.MaxCost,
		CreatedBy: createdBy, Currency: s.Currency, DryRun: p.in.DryRun, scopePath: scopePath}
	err = s.tx(ctx, func(tx pgx.Tx) error {
		if !p.in.DryRun {
			err := tx.QueryRow(ctx, `INSERT INTO broadcasts (name, body, target, priority, send_at, spread_seconds,
					quiet_hours, max_cost, recipients, segments, estimate, encoding, scope_path, created_by,
					idempotency_key, request_hash)
				VALUES ($1, $2, $3, $4, $5, $6, $7, $8, 0, 0, '[]', '', $9, $10, $11, $12)
				ON CONFLICT (idempotency_key) DO NOTHING
				RETURNING id, created_at`,
				b.Name, b.Text, string(b.Target), p.priority, b.SendAt, int(p.pace.spread.Seconds()), p.quiet, b.MaxCost,
				nullIfZero(scopePath), createdBy, nullIfZero(p.in.IdempotencyKey), p.hash).Scan(&b.ID, &b.CreatedAt)
			if errors.Is(err, pgx.ErrNoRows) {
				return errRaced
			}
			if err != nil {
				return err
			}
		}
		return s.freeze(ctx, tx, aud, p, b)
	})
	if errors.Is(err, errRaced) { // another request with the same key won the race: answer with its broadcast
		won, err := s.broadcastByKey(ctx, p.in.IdempotencyKey)
		if err != nil {
			return nil, false, err
		}
		if !bytes.Equal(won.requestHash, p.hash) {
			return nil, false, mhero.Errorf(mhero.ECONFLICT, "Idempotency key %q was already used for a different broadcast.", p.in.IdempotencyKey)
		}
		b, err := s.FindBroadcast(ctx, won.ID)
		return b, false, err
	}
	if err != nil {
		return nil, false, pgError(err, "Broadcast")
	}
	if b.DryRun {
		return b, false, nil
	}
	s.log.Info("broadcast created", "broadcast", b.ID, "recipients", b.Recipients, "segments", b.Segments,
		"priority", b.Priority, "send_at", b.SendAt, "by", createdBy)
	return b, true, nil
}

var errRaced = errors.New("idempotency key raced")

func isNotFound(err error) bool {
	var me *mhero.Error
	return errors.As(err, &me) && me.Code == mhero.ENOTFOUND
}

// freeze streams the recipients into messages with COPY (the recipients never sit in
// memory), then queues them and records the estimate; over max_cost or with no one to
// send to it fails, and the transaction takes it all back.
func (s *Store) freeze(ctx context.Context, tx pgx.Tx, aud Audience, p *plan, b *Broadcast) error {
	// A paced broadcast counts its recipients first, so their due times spread evenly.
	if p.pace.spread > 0 {
		if err := aud.Recipients(ctx, p.in.Target, func(mhero.Recipient) error { p.pace.n++; return nil }); err != nil {
			return err
		}
	}
	n := 0
	_, templateUCS2 := s.Planner.Segments(placeholderRE.ReplaceAllString(p.in.Text, ""))
	est := map[string]*MNOEstimate{}
	var ucs2, gsm, tooLong int
	var tooLongExample mhero.WorkerID

	src := &recipientSource{ctx: ctx, rows: make(chan []any, 256)}
	produceCtx, cancel := context.WithCancel(ctx)
	defer cancel()
	produced := make(chan error, 1)
	go func() {
		err := aud.Recipients(produceCtx, p.in.Target, func(r mhero.Recipient) error {
			body := fill(p.in.Text, r)
			segs, u := s.Planner.Segments(body)
			if u {
				ucs2++
			} else {
				gsm++
			}
			if segs > MaxSegments {
				if tooLong == 0 {
					tooLongExample = r.WorkerID
				}
				tooLong++
			}
			mno, _ := s.Planner.Route(r.MSISDN)
			e := est[mno]
			if e == nil {
				e = &MNOEstimate{MNO: mno, Rate: s.Planner.Rate(mno)}
				est[mno] = e
			}
			e.Recipients++
			e.Segments += int64(segs)
			due := p.pace.due(min(n, max(p.pace.n-1, 0)))
			n++
			row := []any{int64(r.WorkerID), string(r.MSISDN), body, int16(p.priority), nullIfZero(mno), due,
				due.Add(p.validFor), b.ID, int32(segs)}
			select {
			case src.rows <- row:
				return nil
			case <-produceCtx.Done():
				return produceCtx.Err()
			}
		})
		close(src.rows)
		produced <- err
	}()
	if p.in.DryRun {
		for range src.rows {
		}
	} else {
		// segments holds the estimate until the message is submitted and the SMSC's count
		// replaces it.
		_, err := tx.CopyFrom(ctx, pgx.Identifier{"messages"},
			[]string{"worker_id", "msisdn", "body", "priority", "mno", "next_attempt_at", "valid_until", "broadcast_id", "segments"}, src)
		if err != nil {
			cancel()
			<-produced
			return err
		}
	}
	if err := <-produced; err != nil {
		return err
	}
	if n == 0 {
		return mhero.Errorf(mhero.EVALIDATION, "The target reaches no one who can be messaged (no active worker who has not opted out matches it).")
	}
	if tooLong > 0 {
		return mhero.Errorf(mhero.EVALIDATION, "The text is longer than %d SMS segments for %d recipients once placeholders are filled (worker %d, for one); shorten it.",
			MaxSegments, tooLong, tooLongExample)
	}

	for _, e := range est {
		e.Cost = float64(e.Segments) * e.Rate
		b.Estimate = append(b.Estimate, *e)
		b.Segments += e.Segments
		b.EstimatedCost += e.Cost
	}
	slices.SortFunc(b.Estimate, func(x, y MNOEstimate) int { return strings.Compare(x.MNO, y.MNO) })
	b.Recipients = n
	b.EstimatedCost = math.Round(b.EstimatedCost*1e4) / 1e4
	b.ValidUntil = p.pace.end().Add(p.validFor)
	switch {
	case ucs2 == 0:
		b.Encoding = "gsm7"
	case gsm == 0:
		b.Encoding = "ucs2"
	default:
		b.Encoding = "mixed"
	}
	if templateUCS2 {
		b.Warnings = append(b.Warnings, fmt.Sprintf("The text has characters GSM 03.38 cannot carry (%s): it is sent as UCS-2, 70 characters per segment instead of 160, which can double the cost.",
			s.nonGSM(p.in.Text)))
	} else if ucs2 > 0 {
		b.Warnings = append(b.Warnings, fmt.Sprintf("%d recipients' texts need UCS-2 because of characters in their names or facilities (70 characters per segment).", ucs2))
	}
	if est[""] != nil {
		b.Warnings = append(b.Warnings, fmt.Sprintf("%d recipients' numbers match no MNO's prefixes; their messages will fail as unroutable.", est[""].Recipients))
	}
	if b.MaxCost != nil && b.EstimatedCost > *b.MaxCost {
		return &mhero.Error{Code: mhero.EVALIDATION,
			Message: fmt.Sprintf("The estimated cost %.4f %s is above max_cost %.4f.", b.EstimatedCost, s.Currency, *b.MaxCost),
			Details: []mhero.ErrorDetail{{Field: "max_cost", Message: fmt.Sprintf("estimate %.4f for %d segments to %d recipients", b.EstimatedCost, b.Segments, n)}}}
	}
	if p.in.DryRun {
		return nil
	}
	estJSON, _ := json.Marshal(b.Estimate)
	bt := &pgx.Batch{}
	bt.Queue(`INSERT INTO message_queue (message_id, priority, due_at, mno, broadcast_id)
		SELECT id, priority, next_attempt_at, COALESCE(mno, ''), broadcast_id FROM messages WHERE broadcast_id = $1`, b.ID)
	bt.Queue(`UPDATE broadcasts SET recipients = $2, segments = $3, estimate = $4, encoding = $5, valid_until = $6
		WHERE id = $1`, b.ID, b.Recipients, b.Segments, string(estJSON), b.Encoding, b.ValidUntil)
	// A broadcast can grow the queue from nothing to 100,000 rows in one transaction.
	// Autovacuum would notice within a minute; until then the planner, believing the queue
	// nearly empty, claims by sorting the whole table (100+ ms a claim) instead of reading
	// the index head. The statistics commit with the rows.
	bt.Queue(`ANALYZE message_queue`)
	if err := tx.SendBatch(ctx, bt).Close(); err != nil {
		return err
	}
	return s.audit(ctx, tx, "create", "broadcast", b.ID, map[string]any{"name": b.Name, "target": b.Target,
		"priority": b.Priority, "recipients": b.Recipients, "estimated_cost": b.EstimatedCost, "send_at": b.SendAt})
}

// nonGSM lists the characters of text that GSM 03.38 cannot carry.
func (s *Store) nonGSM(text string) string {
	var out []string
	for _, r := range placeholderRE.ReplaceAllString(text, "") {
		c := string(r)
		if _, u := s.Planner.Segments(c); u && !slices.Contains(out, c) {
			out = append(out, c)
		}
	}
	return strings.Join(out, " ")
}

// recipientSource feeds COPY from the producer's channel.
type recipientSource struct {
	ctx  context.Context
	rows chan []any
	cur  []any
}

func (r *recipientSource) Next() bool {
	row, ok := <-r.rows
	r.cur = row
	return ok
}
func (r *recipientSource) Values() ([]any, error) { return r.cur, nil }
func (r *recipientSource) Err() error             { return nil }
