package mhero

import (
	"errors"
	"fmt"
)

// Application error codes. Each edge (HTTP, USSD, CLI) maps them to its own outside world
// in one place; adapters return them so callers never inspect driver errors.
const (
	EINVALID      = "invalid"         // malformed input: wrong type, unparsable (HTTP 400)
	EUNAUTHORIZED = "unauthorized"    // no or bad credentials (401)
	EFORBIDDEN    = "forbidden"       // authenticated but outside role or scope (403)
	ENOTFOUND     = "not_found"       // (404)
	ECONFLICT     = "conflict"        // uniqueness or state conflict (409)
	ETOOLARGE     = "too_large"       // body or file over the limit (413)
	EVALIDATION   = "validation"      // well-formed but fails domain rules (422)
	EUNAVAILABLE  = "unavailable"     // a dependency is down; retry later (503)
	EINTERNAL     = "internal"        // a bug or unexpected failure (500)
	ENOTIMPLEMENT = "not_implemented" // (501)
)

// Error is an application error: a code callers can branch on, a message safe to show a
// user, and optional details (for instance every bad row of an import).
type Error struct {
	Code    string
	Message string
	Details []ErrorDetail
}

// ErrorDetail pinpoints one problem, for example one field of one CSV line.
type ErrorDetail struct {
	Line    int    `json:"line,omitempty"`
	Field   string `json:"field,omitempty"`
	Message string `json:"message"`
}

func (e *Error) Error() string {
	if len(e.Details) > 0 {
		return fmt.Sprintf("mhero %s: %s (%d details)", e.Code, e.Message, len(e.Details))
	}
	return fmt.Sprintf("mhero %s: %s", e.Code, e.Message)
}

// Errorf returns an *Error with the given code and a formatted message.
func Errorf(code, format string, args ...any) *Error {
	return &Error{Code: code, Message: fmt.Sprintf(format, args...)}
}

// ErrorCode returns the code of an application error, EINTERNAL for any other error and
// "" for nil.
func ErrorCode(err error) string {
	var e *Error
	if err == nil {
		return ""
	} else if errors.As(err, &e) {
		return e.Code
	}
	return EINTERNAL
}

// ErrorMessage returns the user-safe message of an application error; any other error
// becomes a generic message so internals never leak.
func ErrorMessage(err error) string {
	var e *Error
	if err == nil {
		return ""
	} else if errors.As(err, &e) {
		return e.Message
	}
	return "Internal error."
}

// ErrorDetails returns the details of an application error, if any.
func ErrorDetails(err error) []ErrorDetail {
	var e *Error
	if errors.As(err, &e) {
		return e.Details
	}
	return nil
}
