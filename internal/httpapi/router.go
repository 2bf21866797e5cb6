package httpapi

import (
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"net"
	"net/http"
	"runtime/debug"
	"strings"
	"time"
)

// Requester is the authenticated caller of a request.
type Requester struct {
	UserID    string
	DeviceID  string
	IsAdmin   bool
	IsGuest   bool
	TokenHash string
}

type ctxKey int

const (
	requesterKey ctxKey = 1
	clientIPKey  ctxKey = 2
)

// ClientIP is the remote address of the request's connection (reverse-proxy
// headers are not trusted).
func ClientIP(r *http.Request) string {
	host, _, err := net.SplitHostPort(r.RemoteAddr)
	if err != nil {
		return r.RemoteAddr
	}
	return host
}

// ClientIPFrom returns the client address that Middleware attached to the
// request's context ("" outside a request).
func ClientIPFrom(ctx context.Context) string {
	ip, _ := ctx.Value(clientIPKey).(string)
	return ip
}

// RequesterFrom returns the authenticated caller, or nil on public endpoints.
func RequesterFrom(ctx context.Context) *Requester {
	r, _ := ctx.Value(requesterKey).(*Requester)
	return r
}

// WithRequester attaches an authenticated caller to a context.
func WithRequester(ctx context.Context, r *Requester) context.Context {
	return context.WithValue(ctx, requesterKey, r)
}

// Authenticator resolves an access token to its requester. It returns an
// *Error (M_UNKNOWN_TOKEN, …) when the token is not valid.
type Authenticator interface {
	Authenticate(ctx context.Context, token string) (*Requester, error)
}

// Hook runs on every routed request after authentication (req is nil on
// public endpoints). It is the one place for rate limiting, authorisation
// policy and audit that apply across endpoints; a returned error is sent to
// the client and the handler does not run.
type Hook interface {
	BeforeRequest(r *http.Request, route string, req *Requester) error
}

// HandlerFunc is an endpoint handler: it returns the JSON body of a 200
// response (or a Response for another status), or an error.
type HandlerFunc func(r *http.Request) (any, error)

// Response is a JSON response with an explicit status.
type Response struct {
	Status int
	Body   any
}

// RawHandler is an endpoint that writes its own response (media, redirects).
type RawHandler func(w http.ResponseWriter, r *http.Request) error

// Router maps Matrix endpoints to handlers on a net/http ServeMux and
// applies authentication, hooks, error rendering and logging uniformly.
type Router struct {
	mux   *http.ServeMux
	auth  Authenticator
	hooks []Hook
}

// NewRouter returns a router that authenticates with auth.
func NewRouter(auth Authenticator) *Router {
	return &Router{mux: http.NewServeMux(), auth: auth}
}

// AddHook appends a hook run on every request.
func (rt *Router) AddHook(h Hook) { rt.hooks = append(rt.hooks, h) }

// Public registers an endpoint that needs no access token. If a token is
// nevertheless supplied and valid, the requester is available to the handler.
func (rt *Router) Public(pattern string, h HandlerFunc) { rt.handle(pattern, false, jsonAdapter(h)) }

// Authed registers an endpoint that requires a valid access token.
func (rt *Router) Authed(pattern string, h HandlerFunc) { rt.handle(pattern, true, jsonAdapter(h)) }

// PublicRaw registers a public endpoint writing its own response.
func (rt *Router) PublicRaw(pattern string, h RawHandler) { rt.handle(pattern, false, h) }

// AuthedRaw registers an authenticated endpoint writing its own response.
func (rt *Router) AuthedRaw(pattern string, h RawHandler) { rt.handle(pattern, true, h) }

func jsonAdapter(h HandlerFunc) RawHandler {
	return func(w http.ResponseWriter, r *http.Request) error {
		v, err := h(r)
		if err != nil {
			return err
		}
		if resp, ok := v.(Response); ok {
			WriteJSON(w, resp.Status, resp.Body)
			return nil
		}
		if raw, ok := v.(json.RawMessage); ok {
			w.Header().Set("Content-Type", "application/json")
			_, err := w.Write(raw)
			return err
		}
		WriteJSON(w, http.StatusOK, v)
		return nil
	}
}

// AccessToken extracts the access token from the Authorization header or
// the deprecated access_token query parameter.
func AccessToken(r *http.Request) string {
	if h := r.Header.Get("Authorization"); h != "" {
		if t, ok := strings.CutPrefix(h, "Bearer "); ok {
			return strings.TrimSpace(t)
		}
		return ""
	}
	return r.URL.Query().Get("access_token")
}

func (rt *Router) handle(pattern string, authRequired bool, h RawHandler) {
	_, route, _ := strings.Cut(pattern, " ")
	rt.mux.HandleFunc(pattern, func(w http.ResponseWriter, r *http.Request) {
		var req *Requester
		if tok := AccessToken(r); tok != "" {
			var err error
			req, err = rt.auth.Authenticate(r.Context(), tok)
			if err != nil && authRequired {
				WriteError(w, r, err)
				return
			}
			if err == nil {
				r = r.WithContext(WithRequester(r.Context(), req))
			}
		} else if authRequired {
			WriteError(w, r, MissingToken("missing access token"))
			return
		}
		for _, hook := range rt.hooks {
			if err := hook.BeforeRequest(r, route, req); err != nil {
				WriteError(w, r, err)
				return
			}
		}
		if err := h(w, r); err != nil {
			WriteError(w, r, err)
		}
	})
}

// ServeHTTP dispatches to the registered endpoint, answering unknown
// endpoints with 404 M_UNRECOGNIZED and known paths with a wrong method with
// 405 M_UNRECOGNIZED.
func (rt *Router) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if _, pattern := rt.mux.Handler(r); pattern != "" {
		rt.mux.ServeHTTP(w, r)
		return
	}
	for _, m := range []string{http.MethodGet, http.MethodPut, http.MethodPost, http.MethodDelete} {
		if m == r.Method {
			continue
		}
		probe := r.Clone(r.Context())
		probe.Method = m
		if _, pattern := rt.mux.Handler(probe); pattern != "" {
			WriteError(w, r, MethodNotAllowed("method %s not allowed on this endpoint", r.Method))
			return
		}
	}
	WriteError(w, r, Unrecognized("unrecognized request"))
}

// Limits configures the outermost middleware.
type Limits struct {
	MaxBodyBytes int64
	// BodyLimitFor, when set, may give a request another body limit (media
	// uploads); it returns 0 to keep MaxBodyBytes.
	BodyLimitFor func(r *http.Request) int64
}

// Middleware wraps the router with panic recovery, body size limits, CORS
// and access logging. Logs carry the method, the path without query string
// (where access tokens may hide), the status and the duration.
func Middleware(next http.Handler, lim Limits) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		start := time.Now()
		sw := &statusWriter{ResponseWriter: w, status: http.StatusOK}
		h := sw.Header()
		h.Set("Access-Control-Allow-Origin", "*")
		h.Set("Access-Control-Allow-Methods", "GET, HEAD, POST, PUT, DELETE, OPTIONS")
		h.Set("Access-Control-Allow-Headers", "X-Requested-With, Content-Type, Authorization")
		h.Set("Access-Control-Expose-Headers", "Content-Disposition")
		defer func() {
			if p := recover(); p != nil {
				if p == http.ErrAbortHandler {
					panic(p)
				}
				slog.Error("panic in handler", "path", r.URL.Path, "panic", p, "stack", string(debug.Stack()))
				if !sw.wrote {
					WriteError(sw, r, Internal("internal server error"))
				}
			}
			slog.Debug("request", "method", r.Method, "path", RedactedPath(r), "status", sw.status, "ms", time.Since(start).Milliseconds())
		}()
		if r.Method == http.MethodOptions {
			sw.WriteHeader(http.StatusOK)
			return
		}
		if limit := lim.MaxBodyBytes; limit > 0 && r.Body != nil {
			if lim.BodyLimitFor != nil {
				if l := lim.BodyLimitFor(r); l > 0 {
					limit = l
				}
			}
			r.Body = http.MaxBytesReader(sw, r.Body, limit)
		}
		next.ServeHTTP(sw, r.WithContext(context.WithValue(r.Context(), clientIPKey, ClientIP(r))))
	})
}

// RedactedPath is the request path for logs: never the query string.
func RedactedPath(r *http.Request) string { return r.URL.EscapedPath() }

type statusWriter struct {
	http.ResponseWriter
	status int
	wrote  bool
}

func (s *statusWriter) WriteHeader(code int) {
	if !s.wrote {
		s.status, s.wrote = code, true
	}
	s.ResponseWriter.WriteHeader(code)
}

func (s *statusWriter) Write(b []byte) (int, error) {
	s.wrote = true
	return s.ResponseWriter.Write(b)
}

func (s *statusWriter) Flush() {
	if f, ok := s.ResponseWriter.(http.Flusher); ok {
		f.Flush()
	}
}

// Unwrap lets http.ResponseController reach the underlying writer.
func (s *statusWriter) Unwrap() http.ResponseWriter { return s.ResponseWriter }

// ErrIs reports whether err is a Matrix error with the given code.
func ErrIs(err error, code string) bool {
	var me *Error
	return errors.As(err, &me) && me.Code == code
}
