package main

import (
	"context"
	"log/slog"
	"maps"
	"slices"

	"github.com/mhero-health/mhero/outbox"
	"github.com/mhero-health/mhero/outbox/outboxsmpp"
	"github.com/mhero-health/mhero/registry"
	"github.com/mhero-health/mhero/reports"
	"github.com/mhero-health/mhero/smpp"
	"github.com/mhero-health/mhero/sms"
	"github.com/mhero-health/mhero/ussd"
)

// migrateAll applies every package's migrations in dependency order, each under its own
// version table and PostgreSQL advisory lock (safe when instances start together).
func migrateAll(ctx context.Context, url string, log *slog.Logger) error {
	if err := registry.Migrate(ctx, url, log); err != nil {
		return err
	}
	if err := registry.MigrateFS(ctx, url, outbox.Migrations(), "goose_outbox_version", log); err != nil {
		return err
	}
	if err := registry.MigrateFS(ctx, url, reports.Migrations(), "goose_reports_version", log); err != nil {
		return err
	}
	return registry.MigrateFS(ctx, url, sms.Migrations(), "goose_sms_version", log)
}

// reportCommodities is the configuration's commodity list as the reports store keeps it:
// named in English where the configuration has it, else in its first language by code.
func reportCommodities(list []Commodity) []reports.Commodity {
	out := make([]reports.Commodity, 0, len(list))
	for _, c := range list {
		name := c.Name["en"]
		if name == "" {
			langs := slices.Sorted(maps.Keys(c.Name))
			if len(langs) > 0 {
				name = c.Name[langs[0]]
			}
		}
		out = append(out, reports.Commodity{Code: c.Code, Name: name})
	}
	return out
}

// smppHandlers stores what the SMSCs send before the pool acknowledges it (see
// outboxsmpp), and answers USSD that comes through a bind with the USSD engine. engine
// and pool return the running ones (they are built after the handlers).
func smppHandlers(o *outbox.Store, rec *outbox.ReceiptRecorder, engine func() *ussd.Engine, pool func() *smpp.Pool, stored func()) smpp.Handlers {
	h := outboxsmpp.Handlers(o, rec)
	store := h.MO
	h.MO = smpp.MOHandlerFunc(func(ctx context.Context, m smpp.MO) error {
		err := store.HandleMO(ctx, m)
		if err == nil {
			stored() // the inbound processor handles it now rather than at its next poll
		}
		return err
	})
	h.USSD = ussdOverSMPP(engine, pool)
	return h
}
