package main

import (
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

// TestRawConn: the send scenario's own HTTP/1.1 connection against
// net/http's server: requests as sent, answers framed by Content-Length,
// chunked or a closed connection, reconnection, and Matrix errors.
func TestRawConn(t *testing.T) {
	var conns atomic.Int64
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		if r.Method != http.MethodPut || r.Header.Get("Authorization") != "Bearer tok" || r.Header.Get("Content-Type") != "application/json" {
			http.Error(w, "bad request line or headers", http.StatusBadRequest)
			return
		}
		switch {
		case strings.HasSuffix(r.URL.Path, "/chunked"):
			for _, part := range []string{`{"echo":`, string(body), `}`} {
				_, _ = io.WriteString(w, part)
				w.(http.Flusher).Flush()
			}
		case strings.HasSuffix(r.URL.Path, "/close"):
			w.Header().Set("Connection", "close")
			_, _ = w.Write(body)
		case strings.HasSuffix(r.URL.Path, "/forbidden"):
			w.Header().Set("Content-Type", "application/json")
			w.WriteHeader(http.StatusForbidden)
			_, _ = io.WriteString(w, `{"errcode":"M_FORBIDDEN","error":"no"}`)
		default:
			_, _ = w.Write(body)
		}
	}))
	srv.Config.ConnState = func(_ net.Conn, s http.ConnState) {
		if s == http.StateNew {
			conns.Add(1)
		}
	}
	srv.Start()
	defer srv.Close()
	ctx := context.Background()
	rc := newRawConn(srv.URL, 5*time.Second)
	if rc == nil {
		t.Fatal("no raw connection for a plain http URL")
	}
	defer rc.close()

	put := func(path, body string) (int, string) {
		t.Helper()
		status, resp, err := rc.put(ctx, path, "tok", []byte(body))
		if err != nil {
			t.Fatalf("PUT %s: %v", path, err)
		}
		return status, string(resp)
	}
	for i := range 3 {
		if status, resp := put("/a", `{"n":1}`); status != 200 || resp != `{"n":1}` {
			t.Fatalf("request %d: %d %q", i, status, resp)
		}
	}
	if n := conns.Load(); n != 1 {
		t.Fatalf("%d connections for three requests, want one kept alive", n)
	}
	if status, resp := put("/chunked", `[1,2]`); status != 200 || resp != `{"echo":[1,2]}` {
		t.Fatalf("chunked: %d %q", status, resp)
	}
	if status, resp := put("/close", `"x"`); status != 200 || resp != `"x"` {
		t.Fatalf("connection close: %d %q", status, resp)
	}
	if status, resp := put("/a", `"after close"`); status != 200 || resp != `"after close"` {
		t.Fatalf("after the server closed: %d %q", status, resp)
	}
	// A kept connection the server dropped while idle: sent again on a
	// new one.
	srv.CloseClientConnections()
	if status, resp := put("/a", `"after drop"`); status != 200 || resp != `"after drop"` {
		t.Fatalf("after the server dropped the connection: %d %q", status, resp)
	}
	if n := conns.Load(); n != 3 {
		t.Fatalf("%d connections, want 3 (first, after close, after drop)", n)
	}
	err := rc.sendRaw(ctx, &user{Token: "tok"}, "!r:x", "forbidden", []byte(`{}`))
	var me *matrixError
	if !errors.As(err, &me) || me.Status != http.StatusForbidden || me.Errcode != "M_FORBIDDEN" {
		t.Fatalf("error answer: %v", err)
	}
	if newRawConn("https://example.org", time.Second) != nil {
		t.Fatal("raw connection for https")
	}
}
