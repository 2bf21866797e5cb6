package main

import (
	"bytes"
	"context"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"maunium.net/go/mautrix"
	"maunium.net/go/mautrix/event"
	"maunium.net/go/mautrix/id"

	"github.com/rempart-hs/rempart/internal/testserver"
)

// TestMediaCommands: `rempart media` quarantines and deletes media by ID,
// by user and by room, against a running server's database.
func TestMediaCommands(t *testing.T) {
	srv := testserver.Start(t)
	ctx := context.Background()
	alice, bob := srv.RegisterUser("alice"), srv.RegisterUser("bob")
	up := func(cli *mautrix.Client, body string) id.ContentURI {
		t.Helper()
		r, err := cli.UploadBytes(ctx, []byte(body), "text/plain")
		if err != nil {
			t.Fatal(err)
		}
		return r.ContentURI
	}
	status := func(uri id.ContentURI) int {
		t.Helper()
		req, _ := http.NewRequest("GET", srv.URL+"/_matrix/client/v1/media/download/"+uri.Homeserver+"/"+uri.FileID, nil)
		req.Header.Set("Authorization", "Bearer "+bob.AccessToken)
		res, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		res.Body.Close()
		return res.StatusCode
	}
	cfgYAML := fmt.Sprintf("server_name: %s\ndata_dir: %s\nlog:\n  level: warn\n", srv.Config.ServerName, srv.Config.DataDir)
	if srv.Config.Database.URL != "" {
		cfgYAML += "database:\n  url: " + srv.Config.Database.URL + "\n"
	}
	cfgPath := filepath.Join(t.TempDir(), "rempart.yaml")
	if err := os.WriteFile(cfgPath, []byte(cfgYAML), 0o600); err != nil {
		t.Fatal(err)
	}
	media := func(args ...string) (int, string) {
		var out, errb bytes.Buffer
		code := run(append(append([]string{"media"}, args...), "--config", cfgPath), nil, &out, &errb)
		return code, out.String() + errb.String()
	}

	a1, a2 := up(alice, "alice one"), up(alice, "alice two")
	b1 := up(bob, "bob one")

	if code, out := media("quarantine", a1.String()); code != 0 || status(a1) != 404 || status(a2) != 200 {
		t.Fatalf("quarantine by ID: %d %s", code, out)
	}
	if code, out := media("unquarantine", a1.FileID); code != 0 || status(a1) != 200 {
		t.Fatalf("unquarantine: %d %s", code, out)
	}
	if code, out := media("list", "--user", alice.UserID.String()); code != 0 || !strings.Contains(out, a1.String()) || !strings.Contains(out, a2.String()) || strings.Contains(out, b1.String()) {
		t.Fatalf("list: %d %s", code, out)
	}
	if code, out := media("quarantine", "--user", alice.UserID.String()); code != 0 || status(a1) != 404 || status(a2) != 404 || status(b1) != 200 {
		t.Fatalf("quarantine by user: %d %s", code, out)
	}

	// By room: the media its events refer to.
	room, err := bob.CreateRoom(ctx, &mautrix.ReqCreateRoom{})
	if err != nil {
		t.Fatal(err)
	}
	b2 := up(bob, "bob two")
	if _, err := bob.SendMessageEvent(ctx, room.RoomID, event.EventMessage, &event.MessageEventContent{MsgType: event.MsgFile, Body: "f", URL: b2.CUString()}); err != nil {
		t.Fatal(err)
	}
	files := func() int {
		n := 0
		_ = filepath.Walk(srv.Config.MediaPath(), func(_ string, fi os.FileInfo, err error) error {
			if err == nil && !fi.IsDir() {
				n++
			}
			return nil
		})
		return n
	}
	before := files()
	if code, out := media("delete", "--room", room.RoomID.String()); code != 0 || status(b2) != 404 || status(b1) != 200 {
		t.Fatalf("delete by room: %d %s", code, out)
	}
	if files() != before-1 {
		t.Fatalf("delete left the content on disk")
	}
	if code, _ := media("delete", "mxc://elsewhere.example/abc"); code != 2 {
		t.Fatalf("remote media: exit %d", code)
	}
	if code, _ := media("delete", "nosuchmedia"); code != 1 {
		t.Fatalf("unknown media: exit %d", code)
	}
	if code, _ := media("frobnicate"); code != 2 {
		t.Fatalf("bad action: exit %d", code)
	}

	// Every quarantine and deletion is audited, and the chain verifies.
	auditCmd := func(args ...string) (int, string) {
		var out, errb bytes.Buffer
		code := run(append(append([]string{"audit"}, args...), "--config", cfgPath), nil, &out, &errb)
		return code, out.String() + errb.String()
	}
	if code, out := auditCmd("list", "--action", "media.quarantine"); code != 0 || strings.Count(out, "\n") != 3 || !strings.Contains(out, a1.String()) {
		t.Fatalf("audit list: %d %s", code, out)
	}
	if code, out := auditCmd("list", "--action", "media.delete"); code != 0 || !strings.Contains(out, b2.String()) || !strings.Contains(out, `"actor":"cli:media delete"`) {
		t.Fatalf("audit list deletions: %d %s", code, out)
	}
	if code, out := auditCmd("verify"); code != 0 || !strings.HasPrefix(out, "audit log OK: ") {
		t.Fatalf("audit verify: %d %s", code, out)
	}
	if code, _ := auditCmd("frobnicate"); code != 2 {
		t.Fatalf("bad audit action: exit %d", code)
	}
}
