package server

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"reflect"
	"strings"
)

// maxBody bounds every request body.
const maxBody = 64 << 10

// decode reads exactly one JSON object into v, rejecting unknown fields,
// trailing data and bodies over maxBody.
func decode(w http.ResponseWriter, r *http.Request, v any) error {
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, maxBody))
	if err != nil {
		var tooLarge *http.MaxBytesError
		if errors.As(err, &tooLarge) {
			return errorf(CodeTooLarge, "The request body is larger than %d KiB.", maxBody>>10)
		}
		return errorf(CodeBadRequest, "The request body could not be read.")
	}
	return decodeBytes(body, v)
}

// decodeBytes is decode for a body already read (also WebSocket frames).
func decodeBytes(body []byte, v any) error {
	if bytes.Contains(body, []byte(`\u0000`)) {
		return errorf(CodeBadRequest, "Text must not contain NUL characters.")
	}
	if err := checkKeys(body, reflect.TypeOf(v)); err != nil {
		return errorf(CodeBadRequest, "The body is not valid: %s.", err)
	}
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return errorf(CodeBadRequest, "The body is not valid: %s.", describeJSONError(err))
	}
	if dec.More() {
		return errorf(CodeBadRequest, "The body has data after its JSON object.")
	}
	if _, err := dec.Token(); err != io.EOF {
		return errorf(CodeBadRequest, "The body has data after its JSON object.")
	}
	return nil
}

func describeJSONError(err error) string {
	var typeErr *json.UnmarshalTypeError
	var syntaxErr *json.SyntaxError
	switch {
	case errors.As(err, &typeErr):
		if typeErr.Field != "" {
			return fmt.Sprintf("field %q must be %s", typeErr.Field, kindName(typeErr.Type.Kind().String()))
		}
		return "a value has the wrong type"
	case errors.As(err, &syntaxErr):
		return fmt.Sprintf("malformed JSON at byte %d", syntaxErr.Offset)
	case errors.Is(err, io.EOF):
		return "it is empty"
	case strings.HasPrefix(err.Error(), "json: unknown field "):
		return "unknown field " + strings.TrimPrefix(err.Error(), "json: unknown field ")
	default:
		return strings.TrimPrefix(err.Error(), "json: ")
	}
}

func kindName(k string) string {
	switch {
	case strings.HasPrefix(k, "int"), strings.HasPrefix(k, "uint"), strings.HasPrefix(k, "float"):
		return "a number"
	case k == "string":
		return "a string"
	case k == "bool":
		return "true or false"
	case k == "slice":
		return "an array"
	default:
		return "an object"
	}
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}

// writeError answers with the contract's error body; storage errors are
// logged, contract errors are not (they are the client's business).
func (s *Server) writeError(w http.ResponseWriter, r *http.Request, err error) {
	e := asError(err)
	if e.Code == CodeUnavailable || e.Code == CodeInternal {
		s.log.ErrorContext(r.Context(), "request failed", "method", r.Method, "path", r.URL.Path, "err", err)
	}
	if e.Code == CodeRateLimited {
		if ra, ok := e.Extra["retry_after"]; ok {
			w.Header().Set("Retry-After", fmt.Sprint(ra))
		}
	}
	writeJSON(w, e.status(), e.body())
}

// sameOrigin refuses state-changing requests whose Origin is present and is
// not this server's own origin.
func sameOrigin(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.Method {
		case http.MethodGet, http.MethodHead, http.MethodOptions:
		default:
			if !sameOriginRequest(r) {
				writeJSON(w, http.StatusForbidden, foreignOrigin(r).body())
				return
			}
		}
		next.ServeHTTP(w, r)
	})
}

// sameOriginRequest reports whether a request has no Origin or this
// server's own: the same scheme and host.
func sameOriginRequest(r *http.Request) bool {
	origin := r.Header.Get("Origin")
	if origin == "" {
		return true
	}
	u, err := url.Parse(origin)
	if err != nil || u.Host == "" {
		return false
	}
	scheme := "http"
	if r.TLS != nil || strings.EqualFold(r.Header.Get("X-Forwarded-Proto"), "https") {
		scheme = "https"
	}
	return strings.EqualFold(u.Scheme, scheme) && strings.EqualFold(u.Host, r.Host)
}

func foreignOrigin(r *http.Request) *Error {
	return errorf(CodeForbiddenOrigin, "Requests from %s are not allowed.", r.Header.Get("Origin"))
}

// handler adapts a handler that returns an error.
func (s *Server) handle(fn func(w http.ResponseWriter, r *http.Request) error) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		if err := fn(w, r); err != nil {
			s.writeError(w, r, err)
		}
	}
}
