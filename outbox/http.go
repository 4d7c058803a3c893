package outbox

import (
	"context"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/gorilla/mux"
	"github.com/mhero-health/mhero"
	"github.com/mhero-health/mhero/api"
)

// WorkerFinder finds a worker within the caller's scope (registry.Store is one). Messages
// are addressed to workers, so scope and opt-out are the registry's to decide.
type WorkerFinder interface {
	FindWorker(ctx context.Context, ref string) (*mhero.Worker, error)
}

// MaxBody is the longest text a single message may carry: six concatenated GSM parts
// (three in UCS-2), beyond which operators start refusing or phones garble.
const MaxBody = 6 * 153

// Routes registers POST /messages and GET /messages/{id}. wake nudges the dispatcher so
// a new message does not wait for its next poll; it may be nil.
func (s *Store) Routes(srv *api.Server, workers WorkerFinder, wake func()) {
	log := srv.Log
	srv.API.HandleFunc("/messages", api.Require(mhero.RoleSender, api.With(log, http.StatusAccepted,
		func(r *http.Request, in messageInput) (*Message, error) {
			m, err := s.sendToWorker(r.Context(), workers, in)
			if err == nil && wake != nil {
				wake()
			}
			return m, err
		}))).Methods(http.MethodPost)
	srv.API.HandleFunc("/messages/{id}", api.Require(mhero.RoleReader, api.Get(log, func(r *http.Request) (*Message, error) {
		id, err := strconv.ParseInt(mux.Vars(r)["id"], 10, 64)
		if err != nil {
			return nil, mhero.Errorf(mhero.EINVALID, "message id must be a number.")
		}
		m, err := s.FindMessage(r.Context(), id)
		if err != nil {
			return nil, err
		}
		// The message is visible to whoever can see its worker.
		if m.WorkerID != 0 {
			if _, err := workers.FindWorker(r.Context(), strconv.FormatInt(int64(m.WorkerID), 10)); err != nil {
				return nil, err
			}
		} else if p := mhero.PrincipalFromContext(r.Context()); p != nil && p.Scope != nil {
			return nil, mhero.Errorf(mhero.EFORBIDDEN, "Message is outside this key's location scope.")
		}
		return m, nil
	}))).Methods(http.MethodGet)
}

// messageInput is the body of POST /messages: one SMS to one worker.
type messageInput struct {
	Worker         string `json:"worker"`   // worker id or iHRIS id
	Text           string `json:"text"`     // {name} is replaced by the worker's name
	Priority       string `json:"priority"` // alert, normal (default) or bulk
	ValidFor       string `json:"valid_for,omitempty"`
	IdempotencyKey string `json:"idempotency_key,omitempty"`
}

func (s *Store) sendToWorker(ctx context.Context, workers WorkerFinder, in messageInput) (*Message, error) {
	var d []mhero.ErrorDetail
	text := strings.TrimSpace(in.Text)
	if in.Worker == "" {
		d = append(d, mhero.ErrorDetail{Field: "worker", Message: "worker is required"})
	}
	if text == "" {
		d = append(d, mhero.ErrorDetail{Field: "text", Message: "text is required"})
	} else if len([]rune(text)) > MaxBody {
		d = append(d, mhero.ErrorDetail{Field: "text", Message: "text is longer than " + strconv.Itoa(MaxBody) + " characters"})
	}
	prio := PriorityNormal
	switch in.Priority {
	case "", "normal":
	case "alert":
		prio = PriorityAlert
	case "bulk":
		prio = PriorityBulk
	default:
		d = append(d, mhero.ErrorDetail{Field: "priority", Message: "priority must be alert, normal or bulk"})
	}
	var valid time.Duration
	if in.ValidFor != "" {
		v, err := time.ParseDuration(in.ValidFor)
		if err != nil || v <= 0 || v > 7*24*time.Hour {
			d = append(d, mhero.ErrorDetail{Field: "valid_for", Message: "valid_for must be a duration such as 6h, at most 168h"})
		}
		valid = v
	}
	if len(d) > 0 {
		return nil, &mhero.Error{Code: mhero.EVALIDATION, Message: "Message is not valid.", Details: d}
	}
	w, err := workers.FindWorker(ctx, in.Worker)
	if err != nil {
		return nil, err
	}
	switch {
	case w.OptedOut:
		return nil, mhero.Errorf(mhero.EVALIDATION, "Worker %d has opted out of messages (sent STOP).", w.ID)
	case !w.Active:
		return nil, mhero.Errorf(mhero.EVALIDATION, "Worker %d is inactive.", w.ID)
	}
	return s.Enqueue(ctx, NewMessage{WorkerID: w.ID, To: w.MSISDN, Body: strings.ReplaceAll(text, "{name}", w.Name),
		Priority: prio, ValidFor: valid, IdempotencyKey: in.IdempotencyKey})
}
