// Package conformance checks Rempart against the Matrix Client-Server
// specification v1.19, one file per spec module. Every request goes over
// HTTP to a real server; every JSON response body, success or error, is
// validated against the spec's OpenAPI definitions in ../shared/matrix-spec
// (the suite skips with a clear message when that directory is absent).
package conformance

import (
	"bytes"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/url"
	"strings"
	"testing"

	"github.com/rempart-hs/rempart/internal/specschema"
	"github.com/rempart-hs/rempart/internal/testserver"
)

// env is one test's server, spec and HTTP client.
type env struct {
	t    *testing.T
	srv  *testserver.Server
	spec *specschema.Spec
}

// newEnv starts a server for the test and loads the spec (skipping the
// test when the spec is absent).
func newEnv(t *testing.T, opts ...testserver.Option) *env {
	t.Helper()
	spec := specschema.Require(t)
	return &env{t: t, srv: testserver.Start(t, opts...), spec: spec}
}

// user is a registered account with its access token.
type user struct {
	ID       string
	Token    string
	DeviceID string
}

// register creates a user through the spec's registration flow.
func (e *env) register(prefix string) user {
	e.t.Helper()
	cli := e.srv.RegisterUser(prefix)
	return user{ID: cli.UserID.String(), Token: cli.AccessToken, DeviceID: cli.DeviceID.String()}
}

// response is a decoded HTTP response.
type response struct {
	Status int
	Body   []byte
	Header http.Header
}

// JSON decodes the body into a generic map.
func (r response) JSON(t *testing.T) map[string]any {
	t.Helper()
	var m map[string]any
	if err := json.Unmarshal(r.Body, &m); err != nil {
		t.Fatalf("response is not a JSON object: %v: %s", err, r.Body)
	}
	return m
}

// Decode decodes the body into v.
func (r response) Decode(t *testing.T, v any) {
	t.Helper()
	if err := json.Unmarshal(r.Body, v); err != nil {
		t.Fatalf("decode response: %v: %s", err, r.Body)
	}
}

// do sends a request (token may be ""; body may be nil, a string sent raw,
// or a value encoded as JSON), checks the status and validates the body
// against the spec's schema for that operation and status. A response whose
// status has no schema in the spec fails unless it is an error with a
// proper errcode.
func (e *env) do(method, path, token string, body any, wantStatus int) response {
	e.t.Helper()
	resp := e.raw(method, path, token, body)
	if resp.Status != wantStatus {
		e.t.Fatalf("%s %s: status %d, want %d: %s", method, path, resp.Status, wantStatus, resp.Body)
	}
	e.validate(method, path, resp)
	return resp
}

// doErr is do for an expected error: it also checks the errcode.
func (e *env) doErr(method, path, token string, body any, wantStatus int, wantCode string) response {
	e.t.Helper()
	resp := e.do(method, path, token, body, wantStatus)
	var m struct {
		Errcode string `json:"errcode"`
		Error   string `json:"error"`
	}
	if err := json.Unmarshal(resp.Body, &m); err != nil {
		e.t.Fatalf("%s %s: error body is not JSON: %s", method, path, resp.Body)
	}
	if m.Errcode != wantCode {
		e.t.Fatalf("%s %s: errcode %q, want %q (%s)", method, path, m.Errcode, wantCode, resp.Body)
	}
	return resp
}

// validate checks a response body against the spec.
func (e *env) validate(method, path string, resp response) {
	e.t.Helper()
	p := path
	if i := strings.IndexByte(p, '?'); i >= 0 {
		p = p[:i]
	}
	err := e.spec.Validate(method, p, resp.Status, resp.Body)
	if err == nil {
		return
	}
	if errors.Is(err, specschema.ErrNoSchema) {
		if resp.Status >= 400 {
			// Every error must still be a Matrix error body.
			var m struct {
				Errcode string `json:"errcode"`
			}
			if json.Unmarshal(resp.Body, &m) != nil || !strings.HasPrefix(m.Errcode, "M_") {
				e.t.Fatalf("%s %s: status %d without a Matrix error body: %s", method, p, resp.Status, resp.Body)
			}
			return
		}
		e.t.Fatalf("%s %s: %v", method, p, err)
	}
	e.t.Fatalf("%s %s (%d) does not match the spec:\n%v\nbody: %s", method, p, resp.Status, err, resp.Body)
}

// raw sends a request without any check.
func (e *env) raw(method, path, token string, body any) response {
	e.t.Helper()
	var rd io.Reader
	switch b := body.(type) {
	case nil:
	case string:
		rd = strings.NewReader(b)
	case []byte:
		rd = bytes.NewReader(b)
	default:
		js, err := json.Marshal(b)
		if err != nil {
			e.t.Fatalf("encode body: %v", err)
		}
		rd = bytes.NewReader(js)
	}
	req, err := http.NewRequest(method, e.srv.URL+path, rd)
	if err != nil {
		e.t.Fatalf("new request: %v", err)
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	if rd != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		e.t.Fatalf("%s %s: %v", method, path, err)
	}
	defer res.Body.Close()
	b, err := io.ReadAll(res.Body)
	if err != nil {
		e.t.Fatalf("read body: %v", err)
	}
	return response{Status: res.StatusCode, Body: b, Header: res.Header}
}

// esc escapes a path segment (room IDs, user IDs, event IDs).
func esc(s string) string { return url.PathEscape(s) }

// createRoom makes a room as u and returns its ID.
func (e *env) createRoom(u user, body map[string]any) string {
	e.t.Helper()
	if body == nil {
		body = map[string]any{}
	}
	resp := e.do("POST", "/_matrix/client/v3/createRoom", u.Token, body, 200)
	var r struct {
		RoomID string `json:"room_id"`
	}
	resp.Decode(e.t, &r)
	return r.RoomID
}

// sendMessage sends an m.text message and returns its event ID.
func (e *env) sendMessage(u user, roomID, text string) string {
	e.t.Helper()
	resp := e.do("PUT", "/_matrix/client/v3/rooms/"+esc(roomID)+"/send/m.room.message/"+esc(testserver.UniqueName("txn")), u.Token,
		map[string]any{"msgtype": "m.text", "body": text}, 200)
	var r struct {
		EventID string `json:"event_id"`
	}
	resp.Decode(e.t, &r)
	return r.EventID
}

// join makes u join roomID.
func (e *env) join(u user, roomID string) {
	e.t.Helper()
	e.do("POST", "/_matrix/client/v3/rooms/"+esc(roomID)+"/join", u.Token, map[string]any{}, 200)
}
