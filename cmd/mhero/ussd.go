package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/mhero-health/mhero"
	"github.com/mhero-health/mhero/outbox"
	"github.com/mhero-health/mhero/registry"
	"github.com/mhero-health/mhero/reports"
	"github.com/mhero-health/mhero/smpp"
	"github.com/mhero-health/mhero/sms"
	"github.com/mhero-health/mhero/ussd"
)

// ussdHandlers are every action and data source the shipped menus may name (nil stores
// give handlers that only lint uses: they are never run).
func ussdHandlers(reg *registry.Store, rep *reports.Store, stock *reports.StockRecorder, ob *outbox.Store, st *sms.Store, wake func()) (map[string]ussd.Action, map[string]ussd.Source) {
	actions, sources := ussdActions(reg, rep, stock, ob, wake), ussdSources(reg, ob)
	sources["surveys"], actions["survey.answer"] = surveyUSSD(st)
	return actions, sources
}

// ussdActions are the menus' named handlers: each files its report once per request key
// (a retried hop gets the first result). Stock reports go through stock, stored together
// with those other hops submit at the same time.
func ussdActions(reg *registry.Store, rep *reports.Store, stock *reports.StockRecorder, ob *outbox.Store, wake func()) map[string]ussd.Action {
	atoi := func(r ussd.ActionRequest, name string) (int, error) {
		v, ok := r.Vars[name]
		if !ok || v == "" {
			return 0, nil
		}
		n, err := strconv.Atoi(v)
		if err != nil {
			return 0, mhero.Errorf(mhero.EVALIDATION, "%s must be a number.", name)
		}
		return n, nil
	}
	return map[string]ussd.Action{
		"stock.submit": ussd.ActionFunc(func(ctx context.Context, r ussd.ActionRequest) (map[string]string, error) {
			qty, err1 := atoi(r, "quantity")
			days, err2 := atoi(r, "days_out")
			if err := errors.Join(err1, err2); err != nil {
				return nil, err
			}
			s, err := stock.Submit(ctx, reports.StockInput{WorkerID: r.Worker.ID, Commodity: r.Vars["commodity"],
				Quantity: qty, StockoutDays: days, IdempotencyKey: r.Key})
			if err != nil {
				return nil, err
			}
			return map[string]string{"ref": s.Ref}, nil
		}),
		"referral.submit": ussd.ActionFunc(func(ctx context.Context, r ussd.ActionRequest) (map[string]string, error) {
			ref, err := rep.SubmitReferral(ctx, reports.ReferralInput{WorkerID: r.Worker.ID, To: r.Vars["to_facility"],
				Reason: r.Vars["reason"], Urgency: reports.Urgency(r.Vars["urgency"]), AgeBand: r.Vars["age_band"],
				Sex: r.Vars["sex"], IdempotencyKey: r.Key})
			if err != nil {
				return nil, err
			}
			if err := notifyReferral(ctx, reg, ob, ref, r.Key); err != nil {
				return nil, err // the worker retries; the referral and the SMS are each made once
			}
			if wake != nil {
				wake()
			}
			return map[string]string{"ref": ref.Ref}, nil
		}),
		"details.submit": ussd.ActionFunc(func(ctx context.Context, r ussd.ActionRequest) (map[string]string, error) {
			v, err := rep.SubmitValidation(ctx, reports.ValidationInput{WorkerID: r.Worker.ID, Facility: r.Vars["facility"],
				Cadre: r.Vars["cadre"], IdempotencyKey: r.Key})
			if err != nil {
				return nil, err
			}
			return map[string]string{"ref": v.Ref}, nil
		}),
		"language.submit": ussd.ActionFunc(func(ctx context.Context, r ussd.ActionRequest) (map[string]string, error) {
			return nil, reg.SetLanguage(ctx, r.Worker.ID, r.Vars["language"])
		}),
	}
}

// referralTexts is the SMS to the receiving facility's workers, by language.
var referralTexts = map[string]string{
	"en": "Referral %s from %s: patient %s %s, %s, %s. Please expect them.",
	"fr": "Référence %s de %s : patient %s %s, %s, %s. Merci de l'accueillir.",
}

// notifyReferral queues, ahead of bulk traffic, an SMS to every reachable worker of the
// receiving facility. Keyed on the hop, so a retried hop queues nothing twice.
func notifyReferral(ctx context.Context, reg *registry.Store, ob *outbox.Store, ref *reports.Referral, key string) error {
	workers, err := reg.ListWorkers(ctx, registry.Target{Facilities: []string{ref.To.Code}}, 0, 20)
	if err != nil {
		return err
	}
	for _, w := range workers {
		text, ok := referralTexts[w.Language]
		if !ok {
			text = referralTexts["en"]
		}
		_, err := ob.Enqueue(ctx, outbox.NewMessage{WorkerID: w.ID, To: w.MSISDN, Priority: outbox.PriorityReply,
			Body:           fmt.Sprintf(text, ref.Ref, ref.From.Name, ref.AgeBand, ref.Sex, strings.ReplaceAll(ref.Reason, "_", " "), ref.Urgency),
			IdempotencyKey: "referral:" + key + ":" + strconv.FormatInt(int64(w.ID), 10)})
		if err != nil {
			return err
		}
	}
	return nil
}

// ussdSources are the menus' data: facilities (the worker's district first, then the
// rest of the county), cadres, and the worker's inbox.
func ussdSources(reg *registry.Store, ob *outbox.Store) map[string]ussd.Source {
	return map[string]ussd.Source{
		"facilities": ussd.SourceFunc(func(ctx context.Context, r ussd.SourceRequest) ([]ussd.Choice, error) {
			var out []ussd.Choice
			seen := map[mhero.FacilityID]bool{}
			add := func(under string, n int) error {
				list, err := reg.ListFacilities(ctx, registry.FacilityFilter{Under: under, Limit: n})
				if err != nil {
					return err
				}
				for _, f := range list {
					if !seen[f.ID] && len(out) < 40 {
						seen[f.ID] = true
						out = append(out, ussd.Choice{Value: f.Code, Label: f.Name})
					}
				}
				return nil
			}
			if r.Facility.ID == 0 {
				return nil, add("", 40)
			}
			here := strconv.FormatInt(int64(r.Facility.LocationID), 10)
			if err := add(here, 40); err != nil {
				return nil, err
			}
			if loc, err := reg.FindLocation(ctx, here); err == nil && loc.ParentID != 0 {
				if err := add(strconv.FormatInt(int64(loc.ParentID), 10), 80); err != nil {
					return nil, err
				}
			}
			return out, nil
		}),
		"cadres": ussd.SourceFunc(func(ctx context.Context, r ussd.SourceRequest) ([]ussd.Choice, error) {
			codes, err := reg.ListCodes(ctx, "cadres")
			if err != nil {
				return nil, err
			}
			out := make([]ussd.Choice, 0, len(codes))
			for _, c := range codes {
				out = append(out, ussd.Choice{Value: c.Code, Label: c.Name})
			}
			return out, nil
		}),
		"inbox": ussd.SourceFunc(func(ctx context.Context, r ussd.SourceRequest) ([]ussd.Choice, error) {
			msgs, err := ob.RecentForWorker(ctx, r.Worker.ID, 5)
			if err != nil {
				return nil, err
			}
			out := make([]ussd.Choice, 0, len(msgs))
			for _, m := range msgs {
				label := m.Body
				if r := []rune(label); len(r) > 24 {
					label = string(r[:23]) + "…"
				}
				out = append(out, ussd.Choice{Value: strconv.FormatInt(m.ID, 10), Label: label,
					Extra: map[string]string{"date": m.SubmittedAt.Format("2 Jan 15:04"), "text": m.Body}})
			}
			return out, nil
		}),
	}
}

// ussdMenus loads the configured menus folder, or the menus built into the binary.
func ussdMenus(dir string) (*ussd.Menus, error) {
	if dir == "" {
		return ussd.LoadMenus(ussd.ShippedMenus())
	}
	m, err := ussd.LoadMenus(os.DirFS(dir))
	if err != nil {
		return nil, fmt.Errorf("ussd menus %s: %w", dir, err)
	}
	return m, nil
}

// startUSSD builds the engine and serves its HTTP gateways.
func (a *App) startUSSD(cfg Config, log *slog.Logger, wake func()) error {
	u := cfg.File.USSD
	if len(cfg.File.Commodities) == 0 {
		// The menus' first flow is the stock report: without commodities there is no menu.
		log.Warn("USSD is off: the configuration lists no commodities")
		return nil
	}
	menus, err := ussdMenus(u.Menus)
	if err != nil {
		return err
	}
	commodities := make([]ussd.Commodity, len(cfg.File.Commodities))
	for i, c := range cfg.File.Commodities {
		commodities[i] = ussd.Commodity{Code: c.Code, Name: c.Name}
	}
	// Stock reports are committed together; the recorder outlives HTTP and the SMPP pool,
	// the hops' two sources (Close stops it after both).
	a.stock = a.reports.NewStockRecorder(0, 0)
	var sctx context.Context
	sctx, a.stopStock = context.WithCancel(context.Background())
	a.stockDone = make(chan struct{})
	go func() {
		defer close(a.stockDone)
		a.stock.Run(sctx)
	}()
	actions, sources := ussdHandlers(a.registry, a.reports, a.stock, a.outbox, a.sms, wake)
	a.ussd, err = ussd.NewEngine(ussd.Config{Menus: menus, Sessions: a.sessions, Directory: a.registry,
		Actions: actions, Sources: sources,
		Commodities: commodities, ScreenLimit: u.ScreenLimit, SessionTTL: u.SessionTTL, RateLimit: u.RateLimit, DirectoryTTL: u.DirectoryTTL,
		SavedStates: rememberedStates(u.RememberedStatesMB),
		Location:    cfg.File.zone, Log: log})
	if err != nil {
		return err
	}
	gws := map[string]ussd.GatewayConfig{}
	for name, g := range u.Gateways {
		gc := ussd.GatewayConfig{Secret: g.secret, ScreenLimit: g.ScreenLimit}
		for _, c := range g.Allow {
			p, err := netip.ParsePrefix(c)
			if err != nil {
				return fmt.Errorf("ussd.gateways.%s.allow: %w", name, err)
			}
			gc.Allow = append(gc.Allow, p.Masked())
		}
		gws[name] = gc
	}
	h, err := ussd.NewHandler(a.ussd, ussd.HTTPConfig{Gateways: gws, Log: log})
	if err != nil {
		return err
	}
	h.Register(a.api.Root)
	return nil
}

// ussdOverSMPP answers USSD that comes through an MNO bind with the same engine: a PSSR
// indication opens the session, each USSR confirm carries the latest input; the answer
// continues (USSR request) or ends (PSSR response) the session, echoing its_session_info.
func ussdOverSMPP(engine func() *ussd.Engine, pool func() *smpp.Pool) smpp.USSDHandler {
	return smpp.USSDHandlerFunc(func(ctx context.Context, r smpp.USSDRequest) error {
		req := ussd.Request{MSISDN: r.From, ServiceCode: r.To, Network: r.MNO,
			SessionID: r.MNO + ":" + string(r.From) + ":" + fmt.Sprintf("%x", r.SessionInfo)}
		switch r.Op {
		case smpp.PSSRIndication:
			req.Kind, req.Input = ussd.Begin, ussd.NoInput()
		case smpp.USSRConfirm:
			req.Kind, req.Input = ussd.Continue, ussd.LatestInput(r.Text, 0)
		default: // a release or a notification confirm: the session is over
			e := engine()
			if e != nil {
				e.Handle(ctx, ussd.Request{MSISDN: r.From, SessionID: req.SessionID, Kind: ussd.End, Input: ussd.NoInput()})
			}
			return nil
		}
		e := engine()
		reply := ussd.Reply{Text: "This service is not available yet. Please try again later.", End: true}
		if e != nil {
			reply = e.Handle(ctx, req)
		}
		op := smpp.USSRRequest
		if reply.End {
			op = smpp.PSSRResponse
		}
		sctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		defer cancel()
		_, err := pool().Send(sctx, &smpp.Message{To: r.From, From: r.To, MNO: r.MNO, Text: reply.Text,
			USSD: &smpp.USSDOp{Op: op, SessionInfo: r.SessionInfo}})
		return err
	})
}

// rememberedStates turns ussd.remembered_states_mb into Config.SavedStates: 0 keeps the
// engine's default, a negative value turns it off.
func rememberedStates(mb int) int {
	if mb < 0 {
		return -1
	}
	return mb << 20
}
