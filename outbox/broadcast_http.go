package outbox

import (
	"encoding/csv"
	"log/slog"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/mhero-health/mhero"
	"github.com/mhero-health/mhero/api"
)

// BroadcastRoutes registers the broadcasts, the queue and the cost report:
//
//	POST /broadcasts                 create (201), repeat of an idempotency key (200), dry run (200)
//	GET  /broadcasts                 list, newest first
//	GET  /broadcasts/{id}            progress: counts by state, rates, cost
//	GET  /broadcasts/{id}/messages   per recipient (JSON pages, or CSV: all of them, streamed)
//	GET  /broadcasts/{id}/locations  delivery and response rates by county
//	POST /broadcasts/{id}/cancel     stop what is not yet submitted
//	GET  /queue                      queue length by MNO and priority
//	GET  /reports/costs?period=YYYYMM  cost per MNO for a month
//
// wake nudges the dispatcher after a broadcast is created; it may be nil.
func (s *Store) BroadcastRoutes(srv *api.Server, aud Audience, wake func()) {
	log := srv.Log
	srv.API.HandleFunc("/broadcasts", api.Require(mhero.RoleSender, func(w http.ResponseWriter, r *http.Request) {
		var in BroadcastInput
		if err := api.Decode(w, r, &in); err != nil {
			api.Error(w, r, log, err)
			return
		}
		if in.IdempotencyKey == "" {
			in.IdempotencyKey = r.Header.Get("Idempotency-Key")
		}
		b, created, err := s.CreateBroadcast(r.Context(), aud, in)
		if err != nil {
			api.Error(w, r, log, err)
			return
		}
		if created && wake != nil {
			wake()
		}
		api.Created(w, b, created, "/api/v1/broadcasts/"+strconv.FormatInt(b.ID, 10))
	})).Methods(http.MethodPost)

	srv.API.HandleFunc("/broadcasts", api.Require(mhero.RoleReader, api.List(log, func(r *http.Request, before int64, n int) ([]*Broadcast, error) {
		return s.ListBroadcasts(r.Context(), before, n)
	}, func(b *Broadcast) int64 { return b.ID }, broadcastCSVHeader, broadcastCSVRow))).Methods(http.MethodGet)

	srv.API.HandleFunc("/broadcasts/{id}", api.Require(mhero.RoleReader, api.Get(log, func(r *http.Request) (*Broadcast, error) {
		id, err := api.PathID(r)
		if err != nil {
			return nil, err
		}
		return s.FindBroadcast(r.Context(), id)
	}))).Methods(http.MethodGet)

	srv.API.HandleFunc("/broadcasts/{id}/messages", api.Require(mhero.RoleReader, func(w http.ResponseWriter, r *http.Request) {
		s.serveBroadcastMessages(w, r, log)
	})).Methods(http.MethodGet)

	srv.API.HandleFunc("/broadcasts/{id}/locations", api.Require(mhero.RoleReader, api.Get(log, func(r *http.Request) (map[string]any, error) {
		id, err := api.PathID(r)
		if err != nil {
			return nil, err
		}
		rows, err := s.BroadcastByLocation(r.Context(), id)
		if err != nil {
			return nil, err
		}
		if rows == nil {
			rows = []LocationRates{}
		}
		return map[string]any{"id": id, "items": rows}, nil
	}))).Methods(http.MethodGet)

	srv.API.HandleFunc("/broadcasts/{id}/cancel", api.Require(mhero.RoleSender, api.Get(log, func(r *http.Request) (map[string]any, error) {
		id, err := api.PathID(r)
		if err != nil {
			return nil, err
		}
		n, err := s.CancelBroadcast(r.Context(), id)
		if err != nil {
			return nil, err
		}
		return map[string]any{"id": id, "cancelled": n}, nil
	}))).Methods(http.MethodPost)

	srv.API.HandleFunc("/queue", api.Require(mhero.RoleReader, api.Get(log, func(r *http.Request) (map[string]any, error) {
		qs, err := s.QueueLengths(r.Context())
		if err != nil {
			return nil, err
		}
		if qs == nil {
			qs = []QueueLength{}
		}
		return map[string]any{"items": qs}, nil
	}))).Methods(http.MethodGet)

	srv.API.HandleFunc("/reports/costs", api.Require(mhero.RoleReader, func(w http.ResponseWriter, r *http.Request) {
		from, to, period, err := monthPeriod(r.URL.Query().Get("period"), time.Now())
		if err != nil {
			api.Error(w, r, log, err)
			return
		}
		rows, err := s.CostReport(r.Context(), from, to)
		if err != nil {
			api.Error(w, r, log, err)
			return
		}
		if rows == nil {
			rows = []MNOCost{}
		}
		if !api.WantsCSV(r) {
			var total float64
			for _, c := range rows {
				total += c.Cost
			}
			api.JSON(w, http.StatusOK, map[string]any{"period": period, "from": from, "to": to, "currency": s.Currency,
				"total": total, "items": rows})
			return
		}
		w.Header().Set("Content-Type", "text/csv; charset=utf-8")
		cw := csv.NewWriter(w)
		_ = cw.Write([]string{"period", "mno", "messages", "segments", "cost", "currency"})
		for _, c := range rows {
			_ = cw.Write([]string{period, c.MNO, strconv.Itoa(c.Messages), strconv.FormatInt(c.Segments, 10),
				strconv.FormatFloat(c.Cost, 'f', 4, 64), c.Currency})
		}
		cw.Flush()
	})).Methods(http.MethodGet)
}

// monthPeriod reads a DHIS2 monthly period ("202611"); "" is the current month.
func monthPeriod(p string, now time.Time) (from, to time.Time, period string, err error) {
	if p == "" {
		p = now.UTC().Format("200601")
	}
	t, perr := time.Parse("200601", p)
	if perr != nil || len(p) != 6 {
		return from, to, p, mhero.Errorf(mhero.EINVALID, "period must be a month as DHIS2 writes it, e.g. 202611.")
	}
	return t, t.AddDate(0, 1, 0), p, nil
}

var broadcastCSVHeader = []string{"id", "name", "priority", "send_at", "recipients", "segments", "estimated_cost", "encoding", "created_by", "created_at", "cancelled_at"}

func broadcastCSVRow(b *Broadcast) []string {
	return []string{strconv.FormatInt(b.ID, 10), b.Name, b.Priority, b.SendAt.Format(time.RFC3339), strconv.Itoa(b.Recipients),
		strconv.FormatInt(b.Segments, 10), strconv.FormatFloat(b.EstimatedCost, 'f', 4, 64), b.Encoding, b.CreatedBy,
		b.CreatedAt.Format(time.RFC3339), timeCSV(b.CancelledAt)}
}

func timeCSV(t time.Time) string {
	if t.IsZero() {
		return ""
	}
	return t.Format(time.RFC3339)
}

var recipientCSVHeader = []string{"message_id", "worker_id", "to", "mno", "state", "error_code", "smsc_ids", "segments", "submitted_at", "final_at", "replied_at"}

func recipientCSVRow(m RecipientStatus) []string {
	return []string{strconv.FormatInt(m.MessageID, 10), strconv.FormatInt(int64(m.WorkerID), 10), "+" + string(m.To), m.MNO,
		string(m.State), m.ErrorCode, strings.Join(m.SMSCIDs, " "), strconv.Itoa(m.Segments), timeCSV(m.Submitted),
		timeCSV(m.Final), timeCSV(m.Replied)}
}

// serveBroadcastMessages answers JSON pages, or CSV: the whole broadcast streamed as it
// is read (a page when ?limit= is given), so a 100,000-recipient export never sits in
// memory.
func (s *Store) serveBroadcastMessages(w http.ResponseWriter, r *http.Request, log *slog.Logger) {
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
	state := r.URL.Query().Get("state")
	if !api.WantsCSV(r) || r.URL.Query().Has("limit") {
		var items []RecipientStatus
		err := s.BroadcastMessages(r.Context(), id, state, after, n, func(m RecipientStatus) error {
			items = append(items, m)
			return nil
		})
		if err != nil {
			api.Error(w, r, log, err)
			return
		}
		api.WriteList(w, r, items, n, func(m RecipientStatus) int64 { return m.MessageID }, recipientCSVHeader, recipientCSVRow)
		return
	}
	// The first row decides the status: errors before it are answered as errors.
	var cw *csv.Writer
	rc := http.NewResponseController(w)
	rows := 0
	err = s.BroadcastMessages(r.Context(), id, state, after, 0, func(m RecipientStatus) error {
		if cw == nil {
			w.Header().Set("Content-Type", "text/csv; charset=utf-8")
			cw = csv.NewWriter(w)
			_ = cw.Write(recipientCSVHeader)
		}
		if err := cw.Write(recipientCSVRow(m)); err != nil {
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
		log.Error("broadcast messages CSV cut short", "broadcast", id, "rows", rows, "err", err)
		panic(http.ErrAbortHandler)
	case cw == nil:
		w.Header().Set("Content-Type", "text/csv; charset=utf-8")
		cw = csv.NewWriter(w)
		_ = cw.Write(recipientCSVHeader)
	}
	cw.Flush()
}
