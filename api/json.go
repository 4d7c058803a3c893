package api

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"

	"github.com/mhero-health/mhero"
)

// MaxJSONBody bounds every JSON request body; imports stream files and have their own
// limit.
const MaxJSONBody = 1 << 20

// Decode reads a JSON body into v strictly: unknown fields, wrong types, trailing data
// and oversized bodies are errors with a message that says which.
func Decode(w http.ResponseWriter, r *http.Request, v any) error {
	if ct := r.Header.Get("Content-Type"); ct != "" && !strings.HasPrefix(ct, "application/json") {
		return mhero.Errorf(mhero.EINVALID, "Content-Type must be application/json, not %q.", ct)
	}
	dec := json.NewDecoder(http.MaxBytesReader(w, r.Body, MaxJSONBody))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return jsonError(err)
	}
	if err := dec.Decode(&struct{}{}); !errors.Is(err, io.EOF) {
		return mhero.Errorf(mhero.EINVALID, "Request body must hold a single JSON value.")
	}
	return nil
}

func jsonError(err error) error {
	var syn *json.SyntaxError
	var typ *json.UnmarshalTypeError
	var tooBig *http.MaxBytesError
	switch {
	case errors.As(err, &tooBig):
		return mhero.Errorf(mhero.ETOOLARGE, "Request body is larger than %d bytes.", tooBig.Limit)
	case errors.As(err, &syn):
		return mhero.Errorf(mhero.EINVALID, "Request body is not valid JSON (at byte %d).", syn.Offset)
	case errors.As(err, &typ):
		field := typ.Field
		if field == "" {
			field = "(body)"
		}
		return &mhero.Error{Code: mhero.EINVALID, Message: "Request body has a value of the wrong type.",
			Details: []mhero.ErrorDetail{{Field: field, Message: fmt.Sprintf("expected %s, got JSON %s", typ.Type, typ.Value)}}}
	case errors.Is(err, io.EOF):
		return mhero.Errorf(mhero.EINVALID, "Request body is empty.")
	case errors.Is(err, io.ErrUnexpectedEOF):
		return mhero.Errorf(mhero.EINVALID, "Request body is truncated JSON.")
	case strings.HasPrefix(err.Error(), "json: unknown field "):
		field := strings.Trim(strings.TrimPrefix(err.Error(), "json: unknown field "), `"`)
		return &mhero.Error{Code: mhero.EINVALID, Message: "Request body has an unknown field.",
			Details: []mhero.ErrorDetail{{Field: field, Message: "unknown field"}}}
	}
	var e *mhero.Error
	if errors.As(err, &e) { // a field's own UnmarshalText, e.g. an MSISDN
		return e
	}
	return mhero.Errorf(mhero.EINVALID, "Request body cannot be read: %v", err)
}
