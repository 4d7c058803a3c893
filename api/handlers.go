package api

import (
	"log/slog"
	"net/http"
	"strconv"

	"github.com/gorilla/mux"
	"github.com/mhero-health/mhero"
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

// List answers a list endpoint: the page of what fn returns for the request's cursor
// and limit, as JSON or (Accept: text/csv) CSV; see WriteList.
func List[T any](log *slog.Logger, fn func(r *http.Request, before int64, n int) ([]T, error), id func(T) int64,
	header []string, row func(T) []string) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		before, n, err := PageParams(r)
		if err != nil {
			Error(w, r, log, err)
			return
		}
		items, err := fn(r, before, n)
		if err != nil {
			Error(w, r, log, err)
			return
		}
		WriteList(w, r, items, n, id, header, row)
	}
}

// Created answers an idempotent create: 201 with Location when the request made v, 200
// with what an earlier request with the same idempotency key made otherwise.
func Created(w http.ResponseWriter, v any, created bool, location string) {
	status := http.StatusOK
	if created {
		status = http.StatusCreated
		w.Header().Set("Location", location)
	}
	JSON(w, status, v)
}

// PathID reads the route's {id}, which must be a positive number (EINVALID otherwise).
func PathID(r *http.Request) (int64, error) {
	id, err := strconv.ParseInt(mux.Vars(r)["id"], 10, 64)
	if err != nil || id <= 0 {
		return 0, mhero.Errorf(mhero.EINVALID, "id must be a positive number.")
	}
	return id, nil
}
