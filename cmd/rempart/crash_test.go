package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
)

// startBinary starts `rempart serve` and waits until it answers.
func startBinary(t *testing.T, bin, cfgPath, base string) *exec.Cmd {
	t.Helper()
	cmd := exec.Command(bin, "serve", "--config", cfgPath)
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 200; i++ {
		if resp, err := http.Get(base + "/_matrix/client/versions"); err == nil {
			resp.Body.Close()
			return cmd
		}
		time.Sleep(25 * time.Millisecond)
	}
	cmd.Process.Kill()
	t.Fatal("server did not start")
	return nil
}

func call(t *testing.T, method, u, token string, body any, out any) int {
	t.Helper()
	var rd *bytes.Reader
	if body != nil {
		b, _ := json.Marshal(body)
		rd = bytes.NewReader(b)
	} else {
		rd = bytes.NewReader(nil)
	}
	req, _ := http.NewRequest(method, u, rd)
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return 0
	}
	defer resp.Body.Close()
	if out != nil {
		json.NewDecoder(resp.Body).Decode(out)
	}
	return resp.StatusCode
}

// TestAcknowledgedEventsSurviveACrash sends messages concurrently, kills
// the server with SIGKILL the moment the last one is acknowledged, restarts
// it and checks that every acknowledged event is there.
func TestAcknowledgedEventsSurviveACrash(t *testing.T) {
	bin := buildBinary(t)
	dir := t.TempDir()
	cfgPath := writeConfig(t, dir, "rate_limits:\n  enabled: false\n")
	pwFile := filepath.Join(dir, "pw")
	os.WriteFile(pwFile, []byte("durable password"), 0o600)
	if out, err := exec.Command(bin, "user", "create", "dora", "--password-file", pwFile, "--config", cfgPath).CombinedOutput(); err != nil {
		t.Fatalf("user create: %v %s", err, out)
	}
	cfgText, _ := os.ReadFile(cfgPath)
	var listen string
	for _, l := range strings.Split(string(cfgText), "\n") {
		if v, ok := strings.CutPrefix(l, "listen: "); ok {
			listen = v
		}
	}
	base := "http://" + listen
	cmd := startBinary(t, bin, cfgPath, base)
	var login struct {
		AccessToken string `json:"access_token"`
	}
	call(t, "POST", base+"/_matrix/client/v3/login", "", map[string]any{"type": "m.login.password", "identifier": map[string]string{"type": "m.id.user", "user": "dora"}, "password": "durable password"}, &login)
	var room struct {
		RoomID string `json:"room_id"`
	}
	if code := call(t, "POST", base+"/_matrix/client/v3/createRoom", login.AccessToken, map[string]any{}, &room); code != 200 {
		t.Fatalf("createRoom: %d", code)
	}
	var mu sync.Mutex
	acked := map[string]bool{}
	var wg sync.WaitGroup
	for w := 0; w < 8; w++ {
		wg.Add(1)
		go func(w int) {
			defer wg.Done()
			for i := 0; i < 25; i++ {
				var r struct {
					EventID string `json:"event_id"`
				}
				u := fmt.Sprintf("%s/_matrix/client/v3/rooms/%s/send/m.room.message/w%d-%d", base, url.PathEscape(room.RoomID), w, i)
				if call(t, "PUT", u, login.AccessToken, map[string]string{"msgtype": "m.text", "body": "x"}, &r) == 200 {
					mu.Lock()
					acked[r.EventID] = true
					mu.Unlock()
				}
			}
		}(w)
	}
	wg.Wait()
	cmd.Process.Kill() // SIGKILL: no graceful shutdown
	cmd.Wait()
	if len(acked) != 200 {
		t.Fatalf("only %d of 200 sends acknowledged", len(acked))
	}

	cmd = startBinary(t, bin, cfgPath, base)
	defer func() { cmd.Process.Kill(); cmd.Wait() }()
	found := map[string]bool{}
	from := ""
	for page := 0; page < 20; page++ {
		var msgs struct {
			Chunk []struct {
				EventID string `json:"event_id"`
			} `json:"chunk"`
			End string `json:"end"`
		}
		u := base + "/_matrix/client/v3/rooms/" + url.PathEscape(room.RoomID) + "/messages?dir=b&limit=100"
		if from != "" {
			u += "&from=" + url.QueryEscape(from)
		}
		if code := call(t, "GET", u, login.AccessToken, nil, &msgs); code != 200 {
			t.Fatalf("messages after restart: %d", code)
		}
		for _, e := range msgs.Chunk {
			found[e.EventID] = true
		}
		if msgs.End == "" {
			break
		}
		from = msgs.End
	}
	for id := range acked {
		if !found[id] {
			t.Fatalf("acknowledged event %s lost after a crash", id)
		}
	}
}
