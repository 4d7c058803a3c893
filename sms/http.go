package sms

import (
	"encoding/csv"
	"log/slog"
	"net/http"
	"strconv"
	"time"

	"github.com/mhero-health/mhero"
	"github.com/mhero-health/mhero/api"
)

// Routes registers the surveys and schedules under /api/v1:
//
//	POST   /surveys                  create (201), repeat of an idempotency key (200), dry run (200)   sender
//	GET    /surveys                  list, newest first                                                  reader
//	GET    /surveys/{id}             the survey with its progress                                        reader
//	GET    /surveys/{id}/responses   the answers: JSON pages, or CSV (all of them, streamed)             reader
//	POST   /surveys/{id}/close       close before the deadline                                           sender
//	POST   /schedules                create (201)                                                        sender
//	GET    /schedules                list, newest first                                                  reader
//	GET    /schedules/{id}           the schedule with its latest runs                                   reader
//	POST   /schedules/{id}/pause     stop firing until resumed                                           sender
//	POST   /schedules/{id}/resume    fire again from the next slot                                       sender
//	DELETE /schedules/{id}           stop for good (204)                                                 sender
//
// wake nudges the outbox dispatcher after a survey is sent; it may be nil.
func (s *Store) Routes(srv *api.Server, wake func()) {
	log := srv.Log
	srv.API.HandleFunc("/surveys", api.Require(mhero.RoleSender, func(w http.ResponseWriter, r *http.Request) {
		var in SurveyInput
		if err := api.Decode(w, r, &in); err != nil {
			api.Error(w, r, log, err)
			return
		}
		if in.IdempotencyKey == "" {
			in.IdempotencyKey = r.Header.Get("Idempotency-Key")
		}
		sv, created, err := s.CreateSurvey(r.Context(), in)
		if err != nil {
			api.Error(w, r, log, err)
			return
		}
		if created && wake != nil {
			wake()
		}
		api.Created(w, sv, created, "/api/v1/surveys/"+strconv.FormatInt(sv.ID, 10))
	})).Methods(http.MethodPost)

	srv.API.HandleFunc("/surveys", api.Require(mhero.RoleReader, api.List(log, func(r *http.Request, before int64, n int) ([]*Survey, error) {
		return s.ListSurveys(r.Context(), before, n)
	}, func(sv *Survey) int64 { return sv.ID }, surveyCSVHeader, surveyCSVRow))).Methods(http.MethodGet)

	srv.API.HandleFunc("/surveys/{id}", api.Require(mhero.RoleReader, api.Get(log, func(r *http.Request) (*Survey, error) {
		id, err := api.PathID(r)
		if err != nil {
			return nil, err
		}
		return s.FindSurvey(r.Context(), id)
	}))).Methods(http.MethodGet)

	srv.API.HandleFunc("/surveys/{id}/responses", api.Require(mhero.RoleReader, func(w http.ResponseWriter, r *http.Request) {
		s.serveResponses(w, r, log)
	})).Methods(http.MethodGet)

	srv.API.HandleFunc("/surveys/{id}/close", api.Require(mhero.RoleSender, api.Get(log, func(r *http.Request) (*Survey, error) {
		id, err := api.PathID(r)
		if err != nil {
			return nil, err
		}
		return s.CloseSurvey(r.Context(), id)
	}))).Methods(http.MethodPost)

	srv.API.HandleFunc("/schedules", api.Require(mhero.RoleSender, api.With(log, http.StatusCreated,
		func(r *http.Request, in ScheduleInput) (*Schedule, error) {
			return s.CreateSchedule(r.Context(), in)
		}))).Methods(http.MethodPost)

	srv.API.HandleFunc("/schedules", api.Require(mhero.RoleReader, api.List(log, func(r *http.Request, before int64, n int) ([]*Schedule, error) {
		return s.ListSchedules(r.Context(), before, n)
	}, func(sc *Schedule) int64 { return sc.ID }, scheduleCSVHeader, scheduleCSVRow))).Methods(http.MethodGet)

	srv.API.HandleFunc("/schedules/{id}", api.Require(mhero.RoleReader, api.Get(log, func(r *http.Request) (*Schedule, error) {
		id, err := api.PathID(r)
		if err != nil {
			return nil, err
		}
		return s.FindSchedule(r.Context(), id)
	}))).Methods(http.MethodGet)

	for _, op := range []struct {
		path   string
		paused bool
	}{{"/schedules/{id}/pause", true}, {"/schedules/{id}/resume", false}} {
		srv.API.HandleFunc(op.path, api.Require(mhero.RoleSender, api.Get(log, func(r *http.Request) (*Schedule, error) {
			id, err := api.PathID(r)
			if err != nil {
				return nil, err
			}
			return s.PauseSchedule(r.Context(), id, op.paused)
		}))).Methods(http.MethodPost)
	}

	srv.API.HandleFunc("/schedules/{id}", api.Require(mhero.RoleSender, api.Do(log, func(r *http.Request) error {
		id, err := api.PathID(r)
		if err != nil {
			return err
		}
		return s.DeleteSchedule(r.Context(), id)
	}))).Methods(http.MethodDelete)
}

var surveyCSVHeader = []string{"id", "name", "state", "languages", "questions", "send_at", "deadline", "created_by", "created_at", "closed_at"}

func surveyCSVRow(sv *Survey) []string {
	langs := ""
	for i, l := range sv.Languages {
		if i > 0 {
			langs += " "
		}
		langs += l
	}
	return []string{strconv.FormatInt(sv.ID, 10), sv.Name, sv.State, langs, strconv.Itoa(len(sv.Questions)),
		timeCSV(sv.SendAt), timeCSV(sv.Deadline), sv.CreatedBy, timeCSV(sv.CreatedAt), timeCSV(sv.ClosedAt)}
}

var scheduleCSVHeader = []string{"id", "name", "spec", "time_zone", "priority", "reporting_period", "paused", "next_run_at", "last_run_at", "created_by"}

func scheduleCSVRow(sc *Schedule) []string {
	period := ""
	if sc.Reporting != nil {
		period = sc.Reporting.Period
		if sc.Reporting.Previous {
			period = "previous " + period
		}
	}
	return []string{strconv.FormatInt(sc.ID, 10), sc.Name, sc.Spec, sc.TimeZone, sc.Priority, period,
		strconv.FormatBool(sc.Paused), timeCSV(sc.NextRunAt), timeCSV(sc.LastRunAt), sc.CreatedBy}
}

var responseCSVHeader = []string{"answer_id", "worker_id", "worker_ihris_id", "facility_code", "location_code", "language",
	"question_no", "kind", "value", "label", "late", "channel", "answered_at"}

func responseCSVRow(a Response) []string {
	return []string{strconv.FormatInt(a.ID, 10), strconv.FormatInt(int64(a.WorkerID), 10), a.IHRISID, a.Facility, a.Location,
		a.Language, strconv.Itoa(a.QuestionNo), string(a.Kind), a.Value, a.Label, strconv.FormatBool(a.Late), a.Channel,
		timeCSV(a.AnsweredAt)}
}

func timeCSV(t time.Time) string {
	if t.IsZero() {
		return ""
	}
	return t.UTC().Format(time.RFC3339)
}

// serveResponses answers JSON pages, or CSV: every answer streamed as it is read (a page
// when ?limit= is given), so a national survey's export never sits in memory.
func (s *Store) serveResponses(w http.ResponseWriter, r *http.Request, log *slog.Logger) {
	id, err := api.PathID(r)
	if err != nil {
		api.Error(w, r, log, err)
		return
	}
	after, n, err := api.PageParams(r)
	if err != nil {
		api.Error(w, r, log, err)
		return
	}
	if !api.WantsCSV(r) || r.URL.Query().Has("limit") {
		var items []Response
		err := s.Responses(r.Context(), id, after, n, func(a Response) error {
			items = append(items, a)
			return nil
		})
		if err != nil {
			api.Error(w, r, log, err)
			return
		}
		api.WriteList(w, r, items, n, func(a Response) int64 { return a.ID }, responseCSVHeader, responseCSVRow)
		return
	}
	var cw *csv.Writer
	rc := http.NewResponseController(w)
	rows := 0
	start := func() {
		w.Header().Set("Content-Type", "text/csv; charset=utf-8")
		cw = csv.NewWriter(w)
		_ = cw.Write(responseCSVHeader)
	}
	err = s.Responses(r.Context(), id, after, 0, func(a Response) error {
		if cw == nil {
			start()
		}
		if err := cw.Write(responseCSVRow(a)); err != nil {
			return err
		}
		if rows++; rows%4096 == 0 {
			cw.Flush()
			_ = rc.Flush()
		}
		return cw.Error()
	})
	switch {
	case err != nil && cw == nil:
		api.Error(w, r, log, err)
		return
	case err != nil:
		// Mid-stream: the status is sent; cut the response so the client sees it incomplete.
		log.Error("survey responses CSV cut short", "survey", id, "rows", rows, "error", err)
		panic(http.ErrAbortHandler)
	case cw == nil:
		start()
	}
	cw.Flush()
}
