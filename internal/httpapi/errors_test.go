package httpapi

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
)

// An internal error is logged at ERROR and answered with a generic 500; a
// request whose client went away is not an error worth an operator's eye.
func TestWriteErrorLogsFaultsNotAbandonedRequests(t *testing.T) {
	var logs bytes.Buffer
	old := slog.Default()
	slog.SetDefault(slog.New(slog.NewTextHandler(&logs, &slog.HandlerOptions{Level: slog.LevelInfo})))
	defer slog.SetDefault(old)

	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	r := httptest.NewRequest(http.MethodGet, "/_matrix/client/v3/sync", nil).WithContext(ctx)
	w := httptest.NewRecorder()
	WriteError(w, r, fmt.Errorf("read rooms: %w", context.Canceled))
	if w.Code != http.StatusInternalServerError {
		t.Fatalf("status %d, want 500", w.Code)
	}
	if logs.Len() != 0 {
		t.Fatalf("an abandoned request was logged: %s", logs.String())
	}

	// The same error while the client still waits is a fault.
	r = httptest.NewRequest(http.MethodGet, "/_matrix/client/v3/sync", nil)
	w = httptest.NewRecorder()
	WriteError(w, r, errors.New("disk on fire"))
	if !strings.Contains(logs.String(), "level=ERROR") || !strings.Contains(logs.String(), "disk on fire") {
		t.Fatalf("an internal error was not logged at ERROR: %q", logs.String())
	}
	if strings.Contains(w.Body.String(), "disk on fire") {
		t.Fatalf("the error's text reached the client: %s", w.Body.String())
	}
}
