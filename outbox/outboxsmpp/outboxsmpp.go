// Package outboxsmpp connects the outbox to the SMPP pool: the handlers that store what
// the SMSCs send before the pool acknowledges it, and the Sender the dispatcher submits
// through. It is the one place that knows both packages, so neither imports the other.
package outboxsmpp

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"time"

	"github.com/mhero-health/mhero"
	"github.com/mhero-health/mhero/outbox"
	"github.com/mhero-health/mhero/smpp"
)

// Handlers stores delivery receipts (matched to message parts, or kept until their
// submit is recorded) and MO SMS in the outbox. USSD is left to the caller. Receipts go
// through rec, which commits those that arrive together in one transaction; with rec nil
// each is its own transaction.
func Handlers(o *outbox.Store, rec *outbox.ReceiptRecorder) smpp.Handlers {
	record := o.RecordReceipt
	if rec != nil {
		record = rec.Record
	}
	return smpp.Handlers{
		Receipt: smpp.ReceiptHandlerFunc(func(ctx context.Context, d smpp.DLR) error {
			return record(ctx, outbox.Receipt{MNO: d.MNO, SMSCID: d.MessageID, State: string(d.State),
				Stat: d.Stat, Err: d.Err, Done: d.Done, Received: d.Received})
		}),
		MO: smpp.MOHandlerFunc(func(ctx context.Context, m smpp.MO) error {
			_, err := o.RecordInbound(ctx, outbox.Inbound{MNO: m.MNO, From: m.From, To: m.To, Body: m.Text,
				Parts: m.Parts, Partial: m.Partial, Received: m.Received})
			return err
		}),
	}
}

// Sender submits the dispatcher's messages through the pool and classifies its errors:
// a submit whose response never came is never sent again (outcome unknown); retryable
// statuses and lost binds are retried on the dispatcher's schedule; the rest fail with the
// SMSC's command_status ("0x0B"), "unroutable", or "error" when the SMSC never answered.
type Sender struct{ Pool *smpp.Pool }

// Sendable implements outbox.Availability: the accounts with a bind up in this instance.
func (s Sender) Sendable() []string { return s.Pool.Sendable() }

// Send implements outbox.Sender.
func (s Sender) Send(ctx context.Context, m outbox.Outgoing) (outbox.SendResult, error) {
	msg := &smpp.Message{ID: strconv.FormatInt(m.ID, 10), To: m.To, From: m.Sender, Text: m.Body, MNO: m.MNO,
		RequestReceipt: true, Priority: m.Priority}
	if !m.ValidUntil.IsZero() {
		// The SMSC's validity is relative and coarse; a message claimed just before its
		// end still gets a minute, rather than a validity the SMSC would refuse.
		msg.Validity = max(time.Until(m.ValidUntil), time.Minute)
	}
	res, err := s.Pool.Send(ctx, msg)
	out := outbox.SendResult{MNO: res.MNO, SMSCIDs: res.MessageIDs, Segments: res.Segments}
	if err == nil {
		return out, nil
	}
	code := ""
	var se *smpp.SubmitError
	if errors.As(err, &se) && se.Status != 0 {
		code = fmt.Sprintf("0x%02X", se.Status)
	}
	switch {
	case errors.Is(err, smpp.ErrOutcomeUnknown):
		return out, outbox.OutcomeUnknown(or(code, "timeout"), err)
	case smpp.IsTemporary(err):
		return out, outbox.Temporary(or(code, "error"), 0, err)
	case errors.Is(err, smpp.ErrUnroutable):
		return out, outbox.Permanent("unroutable", err)
	}
	return out, outbox.Permanent(or(code, "error"), err)
}

func or(a, b string) string {
	if a == "" {
		return b
	}
	return a
}

// Planner tells the outbox what the SMPP side knows: routes by the pool's prefixes,
// segments as the pool would split the text with automatic coding (an MNO forced to
// UCS-2 by data_coding bills more than this estimates), rates from the configuration.
type Planner struct {
	Pool  *smpp.Pool
	Rates map[string]float64 // per MNO account name: price of one segment
}

// NewPlanner returns a Planner over pool with the rates of cfgs.
func NewPlanner(pool *smpp.Pool, cfgs []smpp.Config) Planner {
	rates := make(map[string]float64, len(cfgs))
	for _, c := range cfgs {
		rates[c.Name] = c.RatePerSegment
	}
	return Planner{Pool: pool, Rates: rates}
}

// Route implements outbox.Planner.
func (p Planner) Route(to mhero.MSISDN) (string, error) { return p.Pool.Route(to) }

// Segments implements outbox.Planner.
func (Planner) Segments(text string) (int, bool) {
	n, coding := smpp.CountSegments(text)
	return n, coding == smpp.CodingUCS2
}

// Rate implements outbox.Planner.
func (p Planner) Rate(mno string) float64 { return p.Rates[mno] }
