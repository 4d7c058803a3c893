package reports

import (
	"context"
	"net/http"
	"strconv"

	"github.com/gorilla/mux"
	"github.com/mhero-health/mhero"
	"github.com/mhero-health/mhero/api"
)

// ExportRoutes registers the exports under /api/v1/exports: a period's DHIS2 data value
// set (reader), the record of pushes to DHIS2 (reader), a push now (admin), and workers'
// responses as a FHIR bundle for iHRIS (reader). p is nil when DHIS2 is not configured:
// the export and the push then answer 501 and the records still list.
func (s *Store) ExportRoutes(srv *api.Server, p *Pusher) {
	h := &handler{s: s, srv: srv}
	reader, admin := mhero.RoleReader, mhero.RoleAdmin
	r := srv.API
	r.HandleFunc("/exports/dhis2", api.Require(reader, h.dhis2Export(p))).Methods(http.MethodGet)
	r.HandleFunc("/exports/dhis2/push", api.Require(admin, h.dhis2Push(p))).Methods(http.MethodPost)
	r.HandleFunc("/exports/dhis2/runs", api.Require(reader, h.dhis2Runs())).Methods(http.MethodGet)
	r.HandleFunc("/exports/dhis2/runs/{id}", api.Require(reader, api.Get(srv.Log, func(r *http.Request) (*PushRunDetail, error) {
		id, err := strconv.ParseInt(mux.Vars(r)["id"], 10, 64)
		if err != nil || id <= 0 {
			return nil, mhero.Errorf(mhero.ENOTFOUND, "DHIS2 push %q not found.", truncate(mux.Vars(r)["id"], 20))
		}
		return s.FindPush(r.Context(), id)
	}))).Methods(http.MethodGet)
	r.HandleFunc("/exports/fhir/responses", api.Require(reader, h.fhirResponses)).Methods(http.MethodGet)
}

var errDHIS2NotConfigured = mhero.Errorf(mhero.ENOTIMPLEMENT, "DHIS2 is not configured: add a dhis2 section to the configuration file.")

// dhis2Period reads ?period= for the data set: its type, and by default the previous
// complete period.
func (h *handler) dhis2Period(r *http.Request, p *Pusher, allowed ...string) (*query, Period, error) {
	q, err := h.params(r, allowed...)
	if err != nil {
		return nil, Period{}, err
	}
	if api.WantsCSV(r) {
		return nil, Period{}, mhero.Errorf(mhero.EINVALID, "The DHIS2 export is JSON only.")
	}
	period := q.f.Period
	if period.IsZero() {
		period = PreviousPeriod(p.PeriodType(), h.s.now(), h.s.tz())
	}
	if period.Type != p.PeriodType() {
		return nil, Period{}, &mhero.Error{Code: mhero.EINVALID, Message: "The data set takes " + p.cfg.PeriodType + " periods.",
			Details: []mhero.ErrorDetail{{Field: pPeriod, Message: "give a " + p.cfg.PeriodType + " period, such as " +
				PreviousPeriod(p.PeriodType(), h.s.now(), h.s.tz()).String()}}}
	}
	return q, period, nil
}

func (h *handler) dhis2Export(p *Pusher) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		if p == nil {
			api.Error(w, r, h.srv.Log, errDHIS2NotConfigured)
			return
		}
		q, period, err := h.dhis2Period(r, p, pPeriod, pLocation)
		if err != nil {
			api.Error(w, r, h.srv.Log, err)
			return
		}
		ctx, cancel := context.WithTimeout(r.Context(), viewTimeout)
		defer cancel()
		w.Header().Set("Content-Type", "application/json; charset=utf-8")
		w.Header().Set("X-Period", period.String())
		d, _, err := p.export(ctx, w, period, q.f.Location)
		if err != nil {
			if d.written() == 0 {
				api.Error(w, r, h.srv.Log, err)
				return
			}
			// Half a payload must not look whole.
			h.srv.Log.ErrorContext(ctx, "DHIS2 export broken", "period", period.String(), "error", err)
			panic(http.ErrAbortHandler)
		}
	}
}

func (h *handler) dhis2Push(p *Pusher) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		if p == nil {
			api.Error(w, r, h.srv.Log, errDHIS2NotConfigured)
			return
		}
		_, period, err := h.dhis2Period(r, p, pPeriod)
		if err != nil {
			api.Error(w, r, h.srv.Log, err)
			return
		}
		run, err := p.Push(r.Context(), period)
		if err != nil {
			api.Error(w, r, h.srv.Log, err)
			return
		}
		api.JSON(w, http.StatusOK, run)
	}
}

var pushHeader = []string{"id", "period", "data_set", "trigger", "actor", "status", "started_at", "finished_at", "values_sent",
	"skipped", "dhis2_status", "imported", "updated", "ignored", "deleted", "conflicts", "error"}

func (h *handler) dhis2Runs() http.HandlerFunc {
	return api.List(h.srv.Log, func(r *http.Request, before int64, n int) ([]PushRun, error) {
		return h.s.ListPushes(r.Context(), before, n)
	}, func(p PushRun) int64 { return p.ID }, pushHeader, func(p PushRun) []string {
		finished := ""
		if p.FinishedAt != nil {
			finished = csvTime(*p.FinishedAt)
		}
		return []string{id64(p.ID), p.Period, p.DataSet, p.Trigger, p.Actor, p.Status, csvTime(p.StartedAt), finished,
			itoa(p.ValuesSent), itoa(p.Skipped), p.DHIS2Status, itoa(p.Imported), itoa(p.Updated), itoa(p.Ignored),
			itoa(p.Deleted), itoa(p.Conflicts), p.Error}
	})
}
