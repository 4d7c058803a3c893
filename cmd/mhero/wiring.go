package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"time"

	"github.com/mhero-health/mhero/outbox"
	"github.com/mhero-health/mhero/registry"
	"github.com/mhero-health/mhero/smpp"
)

// migrateAll applies every package's migrations in dependency order, each under its own
// version table and PostgreSQL advisory lock (safe when instances start together).
func migrateAll(ctx context.Context, url string, log *slog.Logger) error {
	if err := registry.Migrate(ctx, url, log); err != nil {
		return err
	}
	return registry.MigrateFS(ctx, url, outbox.Migrations(), "goose_outbox_version", log)
}

// smppHandlers stores what the SMSCs send before the pool acknowledges it: delivery
// receipts (matched to messages, or kept until their submit is recorded) and MO SMS.
// Until the USSD menus are served, a worker who dials in over an SMPP USSD bind is told so
// and the session ends, rather than left waiting for a timeout. pool returns the running
// pool (it is built after its handlers).
func smppHandlers(o *outbox.Store, pool func() *smpp.Pool) smpp.Handlers {
	return smpp.Handlers{
		USSD: smpp.USSDHandlerFunc(func(ctx context.Context, r smpp.USSDRequest) error {
			if r.Op != smpp.PSSRIndication && r.Op != smpp.USSRConfirm {
				return nil // a release or notification confirm: nothing to answer
			}
			_, err := pool().Send(ctx, &smpp.Message{To: r.From, From: r.To, MNO: r.MNO,
				Text: "This service is not available yet. Please try again later.",
				USSD: &smpp.USSDOp{Op: smpp.PSSRResponse, SessionInfo: r.SessionInfo}})
			return err
		}),
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

// poolSender adapts the SMPP pool to the outbox dispatcher, classifying its errors: a
// submit whose response never came is never sent again (outcome unknown); retryable
// statuses and lost binds are retried on the dispatcher's schedule; the rest fail with the
// SMSC's command_status kept.
type poolSender struct{ pool *smpp.Pool }

func (p poolSender) Send(ctx context.Context, m outbox.Outgoing) (outbox.SendResult, error) {
	msg := &smpp.Message{ID: strconv.FormatInt(m.ID, 10), To: m.To, From: m.Sender, Text: m.Body, MNO: m.MNO,
		RequestReceipt: true, Priority: m.Priority}
	if !m.ValidUntil.IsZero() {
		msg.Validity = time.Until(m.ValidUntil)
		if msg.Validity <= 0 {
			return outbox.SendResult{}, outbox.Permanent("expired", errors.New("validity period passed before sending"))
		}
	}
	res, err := p.pool.Send(ctx, msg)
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
		return out, outbox.OutcomeUnknown(code, err)
	case smpp.IsTemporary(err):
		return out, outbox.Temporary(code, 0, err)
	case errors.Is(err, smpp.ErrUnroutable):
		return out, outbox.Permanent("unroutable", err)
	}
	return out, outbox.Permanent(code, err)
}
