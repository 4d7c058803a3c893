package api

import (
	"encoding/json"
	"log/slog"
	"net/http"

	"github.com/mhero-health/mhero"
)

// statuses maps application error codes to HTTP statuses: the one place the REST edge
// translates errors.
var statuses = map[string]int{
	mhero.EINVALID:      http.StatusBadRequest,
	mhero.EUNAUTHORIZED: http.StatusUnauthorized,
	mhero.EFORBIDDEN:    http.StatusForbidden,
	mhero.ENOTFOUND:     http.StatusNotFound,
	mhero.ECONFLICT:     http.StatusConflict,
	mhero.ETOOLARGE:     http.StatusRequestEntityTooLarge,
	mhero.EVALIDATION:   http.StatusUnprocessableEntity,
	mhero.EUNAVAILABLE:  http.StatusServiceUnavailable,
	mhero.ENOTIMPLEMENT: http.StatusNotImplemented,
	mhero.EINTERNAL:     http.StatusInternalServerError,
}

// ErrorBody is the JSON shape of every error the API returns.
type ErrorBody struct {
	Error struct {
		Code    string              `json:"code"`
		Message string              `json:"message"`
		Details []mhero.ErrorDetail `json:"details"`
	} `json:"error"`
}

// Error writes err as the API's error envelope with the matching status. Internal errors
// are logged here, once, and reach the client only as a generic message.
func Error(w http.ResponseWriter, r *http.Request, log *slog.Logger, err error) {
	code := mhero.ErrorCode(err)
	status, ok := statuses[code]
	if !ok {
		status = http.StatusInternalServerError
	}
	if code == mhero.EINTERNAL && log != nil {
		log.ErrorContext(r.Context(), "error handling request", "method", r.Method, "path", r.URL.Path, "err", err)
	}
	var body ErrorBody
	body.Error.Code = code
	body.Error.Message = mhero.ErrorMessage(err)
	body.Error.Details = mhero.ErrorDetails(err)
	if body.Error.Details == nil {
		body.Error.Details = []mhero.ErrorDetail{}
	}
	if status == http.StatusUnauthorized {
		w.Header().Set("WWW-Authenticate", `Bearer realm="mhero"`)
	}
	JSON(w, status, body)
}

// JSON writes v with the given status.
func JSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json; charset=utf-8")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v) // the client may have gone; nothing useful to do
}
