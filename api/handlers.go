package api

import (
	"log/slog"
	"net/http"
)

// With adapts fn, which reads a strictly decoded JSON body, to a handler that answers
// status with fn's result, or the error envelope.
func With[In, Out any](log *slog.Logger, status int, fn func(r *http.Request, in In) (Out, error)) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		var in In
		if err := Decode(w, r, &in); err != nil {
			Error(w, r, log, err)
			return
		}
		out, err := fn(r, in)
		if err != nil {
			Error(w, r, log, err)
			return
		}
		JSON(w, status, out)
	}
}

// Get adapts fn, which needs no body, to a handler that answers 200 with its result.
func Get[Out any](log *slog.Logger, fn func(r *http.Request) (Out, error)) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		out, err := fn(r)
		if err != nil {
			Error(w, r, log, err)
			return
		}
		JSON(w, http.StatusOK, out)
	}
}

// Do adapts fn to a handler that answers 204 No Content when fn succeeds.
func Do(log *slog.Logger, fn func(r *http.Request) error) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		if err := fn(r); err != nil {
			Error(w, r, log, err)
			return
		}
		w.WriteHeader(http.StatusNoContent)
	}
}
