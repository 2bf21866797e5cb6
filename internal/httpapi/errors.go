// Package httpapi holds what every Rempart HTTP endpoint shares: the Matrix
// error type, JSON request decoding with limits, response writing, and the
// middleware chain (limits, CORS, logging, authentication, rate limiting).
package httpapi

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
)

// Error is a Matrix error response: an HTTP status with a JSON body
// {"errcode": …, "error": …} plus optional extra fields.
type Error struct {
	Status  int
	Code    string
	Message string
	Extra   map[string]any
}

func (e *Error) Error() string { return fmt.Sprintf("%s (%d): %s", e.Code, e.Status, e.Message) }

// MarshalJSON renders the spec error body.
func (e *Error) MarshalJSON() ([]byte, error) {
	m := make(map[string]any, len(e.Extra)+2)
	for k, v := range e.Extra {
		m[k] = v
	}
	m["errcode"] = e.Code
	m["error"] = e.Message
	return json.Marshal(m)
}

// With returns a copy of e with an extra body field.
func (e *Error) With(key string, value any) *Error {
	c := *e
	c.Extra = make(map[string]any, len(e.Extra)+1)
	for k, v := range e.Extra {
		c.Extra[k] = v
	}
	c.Extra[key] = value
	return &c
}

func newErr(status int, code string) func(format string, args ...any) *Error {
	return func(format string, args ...any) *Error {
		return &Error{Status: status, Code: code, Message: fmt.Sprintf(format, args...)}
	}
}

// Constructors for the spec's error codes.
var (
	Forbidden               = newErr(http.StatusForbidden, "M_FORBIDDEN")
	UnknownToken            = newErr(http.StatusUnauthorized, "M_UNKNOWN_TOKEN")
	MissingToken            = newErr(http.StatusUnauthorized, "M_MISSING_TOKEN")
	BadJSON                 = newErr(http.StatusBadRequest, "M_BAD_JSON")
	NotJSON                 = newErr(http.StatusBadRequest, "M_NOT_JSON")
	NotFound                = newErr(http.StatusNotFound, "M_NOT_FOUND")
	LimitExceeded           = newErr(http.StatusTooManyRequests, "M_LIMIT_EXCEEDED")
	Unrecognized            = newErr(http.StatusNotFound, "M_UNRECOGNIZED")
	MethodNotAllowed        = newErr(http.StatusMethodNotAllowed, "M_UNRECOGNIZED")
	Unknown                 = newErr(http.StatusBadRequest, "M_UNKNOWN")
	Internal                = newErr(http.StatusInternalServerError, "M_UNKNOWN")
	Unauthorized            = newErr(http.StatusUnauthorized, "M_UNAUTHORIZED")
	UserDeactivated         = newErr(http.StatusForbidden, "M_USER_DEACTIVATED")
	UserInUse               = newErr(http.StatusBadRequest, "M_USER_IN_USE")
	InvalidUsername         = newErr(http.StatusBadRequest, "M_INVALID_USERNAME")
	RoomInUse               = newErr(http.StatusBadRequest, "M_ROOM_IN_USE")
	InvalidRoomState        = newErr(http.StatusBadRequest, "M_INVALID_ROOM_STATE")
	UnsupportedRoomVersion  = newErr(http.StatusBadRequest, "M_UNSUPPORTED_ROOM_VERSION")
	GuestAccessForbidden    = newErr(http.StatusForbidden, "M_GUEST_ACCESS_FORBIDDEN")
	MissingParam            = newErr(http.StatusBadRequest, "M_MISSING_PARAM")
	InvalidParam            = newErr(http.StatusBadRequest, "M_INVALID_PARAM")
	TooLarge                = newErr(http.StatusRequestEntityTooLarge, "M_TOO_LARGE")
	Exclusive               = newErr(http.StatusBadRequest, "M_EXCLUSIVE")
	WeakPassword            = newErr(http.StatusBadRequest, "M_WEAK_PASSWORD")
	ThreepidInUse           = newErr(http.StatusBadRequest, "M_THREEPID_IN_USE")
	ServerNotTrusted        = newErr(http.StatusForbidden, "M_SERVER_NOT_TRUSTED")
	IncompatibleRoomVersion = newErr(http.StatusBadRequest, "M_INCOMPATIBLE_ROOM_VERSION")
)

// WriteJSON writes v as a JSON response with the given status.
func WriteJSON(w http.ResponseWriter, status int, v any) {
	body, err := json.Marshal(v)
	if err != nil {
		slog.Error("encode response", "err", err)
		status = http.StatusInternalServerError
		body = []byte(`{"errcode":"M_UNKNOWN","error":"internal error encoding response"}`)
	}
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_, _ = w.Write(body)
}

// WriteError writes err as a Matrix error. Errors that are not *Error are
// logged and reported as a generic 500 without their text.
func WriteError(w http.ResponseWriter, r *http.Request, err error) {
	var me *Error
	if !errors.As(err, &me) {
		if errors.Is(err, context.Canceled) && r.Context().Err() != nil {
			// The client went away (an abandoned long-poll, a closed
			// tab): nobody reads the answer, and it is not a fault.
			slog.DebugContext(r.Context(), "request abandoned by the client", "method", r.Method, "path", RedactedPath(r))
		} else {
			slog.ErrorContext(r.Context(), "internal error", "method", r.Method, "path", RedactedPath(r), "err", err)
		}
		me = Internal("internal server error")
	}
	if me.Status == http.StatusTooManyRequests {
		if ms, ok := me.Extra["retry_after_ms"].(int64); ok {
			w.Header().Set("Retry-After", fmt.Sprint((ms+999)/1000))
		}
	}
	WriteJSON(w, me.Status, me)
}
