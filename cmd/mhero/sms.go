package main

import (
	"context"
	"log/slog"
	"strconv"
	"sync"
	"time"

	"github.com/mhero-health/mhero"
	"github.com/mhero-health/mhero/outbox"
	"github.com/mhero-health/mhero/registry"
	"github.com/mhero-health/mhero/reports"
	"github.com/mhero-health/mhero/sms"
	"github.com/mhero-health/mhero/ussd"
)

// The adapters must fit the interfaces sms declares, the batch ones included: without
// them the processor would fall back to a transaction per STOP or STOCK.
var (
	_ sms.Outbox             = (*outbox.Store)(nil)
	_ sms.OptOuts            = (*registry.Store)(nil)
	_ sms.OptOutBatcher      = (*registry.Store)(nil)
	_ sms.StockReporter      = (*reports.Store)(nil)
	_ sms.StockBatchReporter = (*reports.Store)(nil)
)

// SMSConfig is two-way SMS: keywords, replies, surveys, reminders. Zero values take the
// sms package's defaults.
type SMSConfig struct {
	Languages      []string                `yaml:"languages"`        // keyword and reply languages, the first the fallback; default [en, fr]
	Keywords       map[string]sms.Keywords `yaml:"keywords"`         // words added per language: {fr: {stop: [STOPPER]}}
	Texts          map[string]sms.Texts    `yaml:"texts"`            // replies overridden per language, field by field
	SurveyReminder time.Duration           `yaml:"survey_reminder"`  // a survey's reminder delay when it does not say (24h); negative: none
	LateWindow     time.Duration           `yaml:"late_window"`      // how long after a deadline a reply is a late answer (168h)
	RepliesPerHour int                     `yaml:"replies_per_hour"` // replies to one number an hour at most (30)
	SchedulerTick  time.Duration           `yaml:"scheduler_tick"`   // how often schedules, reminders and deadlines are looked at (30s)
}

// newSMS builds two-way SMS on the stores: STOP/START on the registry, STOCK on the
// reports, replies and surveys through the outbox, reporting reminders on the reports'
// table. The processor wakes the dispatcher through dispatch, set later in Start.
func (a *App) newSMS(cfg Config, log *slog.Logger) error {
	c := cfg.File.SMS
	commodities := make([]sms.Commodity, 0, len(cfg.File.Commodities))
	for _, x := range cfg.File.Commodities {
		commodities = append(commodities, sms.Commodity{Code: x.Code, Name: x.Name, Aliases: x.Aliases})
	}
	country := cfg.File.Country
	var err error
	a.sms, err = sms.NewStore(a.db,
		sms.Deps{Outbox: a.outbox, Audience: a.registry, OptOuts: a.registry, Stock: a.reports, Reported: sms.StockReports{DB: a.db}},
		sms.Config{Languages: c.Languages, Keywords: c.Keywords, Texts: c.Texts, Commodities: commodities,
			SurveyReminder: c.SurveyReminder, LateWindow: c.LateWindow, RepliesPerHour: c.RepliesPerHour,
			TimeZone: cfg.File.zone, Quiet: cfg.File.quiet,
			Normalize: func(raw string) (mhero.MSISDN, error) { return registry.ParseMSISDN(raw, country) }},
		log)
	if err != nil {
		return err
	}
	a.smsProc = a.sms.NewProcessor(sms.ProcessorConfig{Wake: func() {
		if a.dispatch != nil {
			a.dispatch.Wake()
		}
	}})
	return nil
}

// startSMS runs the inbound processor and the scheduler. They outlive Start's context:
// Close stops them after HTTP and before the dispatcher, so their last batches commit with
// their replies.
func (a *App) startSMS(ctx context.Context, cfg Config, wake func()) {
	var sctx context.Context
	sctx, a.stopSMS = context.WithCancel(context.WithoutCancel(ctx))
	a.smsDone = make(chan struct{})
	sched := a.sms.NewScheduler(sms.SchedulerConfig{Tick: cfg.File.SMS.SchedulerTick, Wake: wake})
	go func() {
		defer close(a.smsDone)
		var wg sync.WaitGroup
		wg.Go(func() { _ = a.smsProc.Run(sctx) })
		wg.Go(func() { _ = sched.Run(sctx) })
		wg.Wait()
	}()
}

// surveyUSSD lets the menus' survey screens (ussd/menus/survey.yaml) answer surveys: the
// "surveys" source lists the worker's open surveys with the question they are at, and
// "survey.answer" records an answer and says what to show next.
func surveyUSSD(st *sms.Store) (ussd.Source, ussd.Action) {
	source := ussd.SourceFunc(func(ctx context.Context, r ussd.SourceRequest) ([]ussd.Choice, error) {
		list, err := st.OpenSurveys(ctx, r.Worker.ID)
		if err != nil {
			return nil, err
		}
		out := make([]ussd.Choice, len(list))
		for i, s := range list {
			out[i] = ussd.Choice{Value: strconv.FormatInt(s.SurveyID, 10), Label: s.Name,
				Extra: map[string]string{"question": s.Question, "no": strconv.Itoa(s.No)}}
		}
		return out, nil
	})
	action := ussd.ActionFunc(func(ctx context.Context, r ussd.ActionRequest) (map[string]string, error) {
		id, err := strconv.ParseInt(r.Vars["survey"], 10, 64)
		if err != nil {
			return nil, mhero.Errorf(mhero.EINVALID, "No survey chosen.")
		}
		no, _ := strconv.Atoi(r.Vars["survey.no"]) // the question the screen showed
		res, err := st.AnswerUSSD(ctx, r.Worker.ID, id, no, r.Vars["answer"], r.Key)
		if err != nil {
			return nil, err
		}
		done, hint := "0", ""
		if res.Done {
			done = "1"
		}
		if res.Hint != "" {
			hint = res.Hint + "\n"
		}
		// survey.question replaces the text the survey list gave: the question screen shows
		// it again, with the hint when the answer was refused.
		return map[string]string{"survey.question": res.Question, "survey.no": strconv.Itoa(res.No), "survey.hint": hint,
			"survey.done": done, "survey.thanks": res.Thanks}, nil
	})
	return source, action
}
