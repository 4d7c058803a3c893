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

	"github.com/mhero-health/mhero/outbox"
	"github.com/mhero-health/mhero/smpp"
)

// Handlers stores delivery receipts (matched to message parts, or kept until their
// submit is recorded) and MO SMS in the outbox. USSD is left to the caller.
func Handlers(o *outbox.Store) smpp.Handlers {
	return smpp.Handlers{
		Receipt: smpp.ReceiptHandlerFunc(func(ctx context.Context, d smpp.DLR) error {
			return o.RecordReceipt(ctx, outbox.Receipt{MNO: d.MNO, SMSCID: d.MessageID, State: string(d.State),
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
