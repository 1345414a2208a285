package server

import (
	"context"
	"errors"
	"fmt"
	"net/http"
)

// Error is the edge's one error type: a stable code for clients, a sentence
// for people, and extra fields the contract names (field, current_revision,
// operation).
type Error struct {
	Code    string
	Message string
	Extra   map[string]any
}

func (e *Error) Error() string { return e.Code + ": " + e.Message }

// Error codes of the wire contract.
const (
	CodeBadRequest       = "bad_request"
	CodeInvalid          = "invalid"
	CodeUnauthenticated  = "unauthenticated"
	CodeForbiddenOrigin  = "forbidden_origin"
	CodeNotFound         = "not_found"
	CodeStaleRevision    = "stale_revision"
	CodeAlreadySubmitted = "already_submitted"
	CodeDraftSubmitted   = "draft_submitted"
	CodeTooLarge         = "too_large"
	CodeRateLimited      = "rate_limited"
	CodeUnavailable      = "unavailable"
	CodeInternal         = "internal"
	CodeNotRetryable     = "not_retryable"
)

var statusOf = map[string]int{
	CodeBadRequest:       http.StatusBadRequest,
	CodeInvalid:          http.StatusUnprocessableEntity,
	CodeUnauthenticated:  http.StatusUnauthorized,
	CodeForbiddenOrigin:  http.StatusForbidden,
	CodeNotFound:         http.StatusNotFound,
	CodeStaleRevision:    http.StatusConflict,
	CodeAlreadySubmitted: http.StatusConflict,
	CodeDraftSubmitted:   http.StatusConflict,
	CodeNotRetryable:     http.StatusConflict,
	CodeTooLarge:         http.StatusRequestEntityTooLarge,
	CodeRateLimited:      http.StatusTooManyRequests,
	CodeUnavailable:      http.StatusServiceUnavailable,
	CodeInternal:         http.StatusInternalServerError,
}

func errorf(code, format string, args ...any) *Error {
	return &Error{Code: code, Message: fmt.Sprintf(format, args...)}
}

func invalid(field, format string, args ...any) *Error {
	return &Error{Code: CodeInvalid, Message: fmt.Sprintf(format, args...), Extra: map[string]any{"field": field}}
}

var errNotFound = &Error{Code: CodeNotFound, Message: "Not found."}

// asError maps any error to the contract. Errors that are not *Error come
// from storage (the only other thing the edge talks to), so they answer
// "unavailable": the request changed nothing, and the client may try again.
func asError(err error) *Error {
	var e *Error
	if errors.As(err, &e) {
		return e
	}
	if errors.Is(err, context.Canceled) {
		return &Error{Code: CodeUnavailable, Message: "The request was cancelled; nothing was changed."}
	}
	return &Error{Code: CodeUnavailable, Message: "Storage is unavailable right now; nothing was changed. Please try again."}
}

// body is the wire form of an error.
func (e *Error) body() map[string]any {
	inner := map[string]any{"code": e.Code, "message": e.Message}
	for k, v := range e.Extra {
		inner[k] = v
	}
	return map[string]any{"error": inner}
}

// status is the HTTP status of the error's code.
func (e *Error) status() int {
	if s, ok := statusOf[e.Code]; ok {
		return s
	}
	return http.StatusInternalServerError
}
