package main

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/rempart-hs/rempart/internal/testserver"
)

// buildBinary compiles the real rempart command once per test run.
func buildBinary(t *testing.T) string {
	t.Helper()
	bin := filepath.Join(t.TempDir(), "rempart")
	cmd := exec.Command("go", "build", "-o", bin, ".")
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("build: %v\n%s", err, out)
	}
	return bin
}

func freePort(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().String()
}

// writeConfig writes a config for the test backend and returns its path.
func writeConfig(t *testing.T, dir, extra string) string {
	t.Helper()
	cfg := fmt.Sprintf("data_dir: %s\nlisten: %s\nadmin_listen: %s\nlog:\n  level: warn\n", dir, freePort(t), freePort(t))
	if testserver.Backend() == "postgres" {
		cfg += "database:\n  url: " + testserver.TestConfig(t).Database.URL + "\n"
	}
	p := filepath.Join(dir, "rempart.yaml")
	if err := os.WriteFile(p, []byte(cfg+extra), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

func TestConfigExampleAndErrors(t *testing.T) {
	var out, errb bytes.Buffer
	if code := run([]string{"config", "example"}, nil, &out, &errb); code != 0 || !strings.Contains(out.String(), "registration:") {
		t.Fatalf("config example: code %d, %q", code, out.String())
	}
	dir := t.TempDir()
	bad := filepath.Join(dir, "bad.yaml")
	os.WriteFile(bad, []byte("registration:\n  mode: sometimes\n"), 0o600)
	errb.Reset()
	if code := run([]string{"serve", "--config", bad}, nil, &out, &errb); code != 2 {
		t.Fatalf("serve with bad config: exit %d, want 2", code)
	}
	if !strings.Contains(errb.String(), "registration.mode") {
		t.Fatalf("error does not name the key: %q", errb.String())
	}
	unknown := filepath.Join(dir, "unknown.yaml")
	os.WriteFile(unknown, []byte("regstration:\n  mode: open\n"), 0o600)
	errb.Reset()
	if code := run([]string{"config", "check", "--config", unknown}, nil, &out, &errb); code != 2 || !strings.Contains(errb.String(), "regstration") {
		t.Fatalf("unknown key: exit %d, %q", code, errb.String())
	}
	if code := run([]string{"frobnicate"}, nil, &out, &errb); code != 2 {
		t.Fatalf("unknown command: exit %d, want 2", code)
	}
}

// TestServeUserCreateAndSIGTERM runs the real binary: creates a user and
// a registration token from the command line, serves, logs in over HTTP,
// holds a long-poll open and checks SIGTERM stops the server promptly and
// cleanly.
func TestServeUserCreateAndSIGTERM(t *testing.T) {
	bin := buildBinary(t)
	dir := t.TempDir()
	cfgPath := writeConfig(t, dir, "registration:\n  mode: token\n")

	pwFile := filepath.Join(dir, "pw")
	os.WriteFile(pwFile, []byte("a long enough password\n"), 0o600)
	out, err := exec.Command(bin, "user", "create", "Carol", "--admin", "--password-file", pwFile, "--config", cfgPath).CombinedOutput()
	if err != nil || strings.TrimSpace(string(out)) != "@carol:localhost" {
		t.Fatalf("user create: %v %s", err, out)
	}
	out, err = exec.Command(bin, "user", "create", "carol", "--password-file", pwFile, "--config", cfgPath).CombinedOutput()
	if err == nil {
		t.Fatalf("duplicate user create succeeded: %s", out)
	}
	tok, err := exec.Command(bin, "token", "create", "--uses", "1", "--config", cfgPath).Output()
	if err != nil || len(strings.TrimSpace(string(tok))) < 16 {
		t.Fatalf("token create: %v %q", err, tok)
	}
	// Both acts are in the audit log, the token itself is not.
	out, err = exec.Command(bin, "audit", "list", "--config", cfgPath).CombinedOutput()
	if err != nil || !strings.Contains(string(out), `"action":"user.create"`) || !strings.Contains(string(out), `"target":"@carol:localhost"`) ||
		!strings.Contains(string(out), `"action":"registration_token.create"`) || strings.Contains(string(out), strings.TrimSpace(string(tok))) {
		t.Fatalf("audit list: %v %s", err, out)
	}
	out, err = exec.Command(bin, "audit", "verify", "--config", cfgPath).CombinedOutput()
	if err != nil || !strings.HasPrefix(string(out), "audit log OK: 2 records, head 2 ") {
		t.Fatalf("audit verify: %v %s", err, out)
	}

	cmd := exec.Command(bin, "serve", "--config", cfgPath)
	stderr, _ := cmd.StderrPipe()
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer cmd.Process.Kill()
	logs := make(chan string, 100)
	go func() {
		sc := bufio.NewScanner(stderr)
		for sc.Scan() {
			logs <- sc.Text()
		}
		close(logs)
	}()
	cfgText, _ := os.ReadFile(cfgPath)
	var listen string
	for _, l := range strings.Split(string(cfgText), "\n") {
		if v, ok := strings.CutPrefix(l, "listen: "); ok {
			listen = v
		}
	}
	base := "http://" + listen
	var resp *http.Response
	for i := 0; i < 100; i++ {
		if resp, err = http.Get(base + "/_matrix/client/versions"); err == nil {
			resp.Body.Close()
			break
		}
		time.Sleep(50 * time.Millisecond)
	}
	if err != nil {
		t.Fatalf("server never answered: %v", err)
	}
	body := `{"type":"m.login.password","identifier":{"type":"m.id.user","user":"carol"},"password":"a long enough password"}`
	resp, err = http.Post(base+"/_matrix/client/v3/login", "application/json", strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	var login struct {
		AccessToken string `json:"access_token"`
	}
	json.NewDecoder(resp.Body).Decode(&login)
	resp.Body.Close()
	if resp.StatusCode != 200 || login.AccessToken == "" {
		t.Fatalf("login: %d", resp.StatusCode)
	}

	// A long-poll in flight must be released by SIGTERM.
	done := make(chan int, 1)
	go func() {
		req, _ := http.NewRequest("GET", base+"/_matrix/client/v3/sync?timeout=60000&since=s0_0_0_0_0_0", nil)
		req.Header.Set("Authorization", "Bearer "+login.AccessToken)
		r, err := http.DefaultClient.Do(req)
		if err != nil {
			done <- -1
			return
		}
		r.Body.Close()
		done <- r.StatusCode
	}()
	time.Sleep(300 * time.Millisecond)
	start := time.Now()
	if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	select {
	case code := <-done:
		if code != 200 {
			t.Fatalf("long-poll ended with %d, want 200", code)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("long-poll not released on SIGTERM")
	}
	if err := cmd.Wait(); err != nil {
		t.Fatalf("server exit: %v", err)
	}
	if d := time.Since(start); d > 10*time.Second {
		t.Fatalf("shutdown took %v", d)
	}
	var all []string
	for l := range logs {
		all = append(all, l)
	}
	joined := strings.Join(all, "\n")
	if strings.Contains(joined, login.AccessToken) || strings.Contains(joined, "a long enough password") {
		t.Fatal("a secret appeared in the logs")
	}
}
