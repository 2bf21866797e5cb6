package integration

import (
	"io"
	"net/http"
	"strings"
	"testing"

	"github.com/rempart-hs/rempart/internal/config"
	"github.com/rempart-hs/rempart/internal/testserver"
)

func get(t *testing.T, url string) (int, string) {
	t.Helper()
	res, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	b, _ := io.ReadAll(res.Body)
	return res.StatusCode, string(b)
}

// TestAdminListener: the admin listener is separate from the client one;
// it answers health checks, and serves the profiler only when configured.
func TestAdminListener(t *testing.T) {
	srv := testserver.Start(t)
	if code, body := get(t, srv.AdminURL()+"/health"); code != 200 || !strings.Contains(body, `"ok"`) {
		t.Fatalf("health: %d %s", code, body)
	}
	if code, body := get(t, srv.AdminURL()+"/debug/pprof/"); code != 404 || !strings.Contains(body, "M_UNRECOGNIZED") {
		t.Fatalf("profiler served by default: %d", code)
	}
	if code, _ := get(t, srv.URL+"/health"); code != 404 {
		t.Fatalf("admin endpoint on the client listener: %d", code)
	}

	prof := testserver.Start(t, func(c *config.Config) { c.AdminPprof = true })
	if code, body := get(t, prof.AdminURL()+"/debug/pprof/"); code != 200 || !strings.Contains(body, "goroutine") {
		t.Fatalf("profiler index: %d", code)
	}
	if code, body := get(t, prof.AdminURL()+"/debug/pprof/heap?debug=1"); code != 200 || !strings.Contains(body, "heap profile") {
		t.Fatalf("heap profile: %d", code)
	}
	if code, _ := get(t, prof.URL+"/debug/pprof/"); code != 404 {
		t.Fatalf("profiler on the client listener: %d", code)
	}
}
