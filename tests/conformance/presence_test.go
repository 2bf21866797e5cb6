package conformance

import (
	"strings"
	"testing"

	"github.com/rempart-hs/rempart/internal/config"
)

// Presence with the default configuration (off, threat model T9): PUT is
// accepted, nothing is stored, everyone reads as offline, and only to
// people who share a room.
func TestPresenceDisabled(t *testing.T) {
	e := newEnv(t)
	alice := e.register("psalice")
	bob := e.register("psbob")
	pa := "/_matrix/client/v3/presence/" + esc(alice.ID) + "/status"

	e.do("PUT", pa, alice.Token, map[string]any{"presence": "online", "status_msg": "at my desk"}, 200)
	if got := e.do("GET", pa, alice.Token, nil, 200).JSON(t); got["presence"] != "offline" || got["status_msg"] != nil || len(got) != 1 {
		t.Fatalf("presence with presence disabled = %v", got)
	}
	presenceErrors(e, alice, bob)

	room := e.createRoom(alice, map[string]any{"preset": "public_chat"})
	e.join(bob, room)
	if got := e.do("GET", pa, bob.Token, nil, 200).JSON(t); got["presence"] != "offline" {
		t.Fatalf("presence seen by room-mate = %v", got)
	}
}

// presenceErrors checks the error cases, the same whether presence is on
// or off. alice and bob share no room.
func presenceErrors(e *env, alice, bob user) {
	e.t.Helper()
	pa := "/_matrix/client/v3/presence/" + esc(alice.ID) + "/status"
	e.doErr("PUT", pa, bob.Token, map[string]any{"presence": "online"}, 403, "M_FORBIDDEN")
	e.doErr("GET", pa, bob.Token, nil, 403, "M_FORBIDDEN")
	e.doErr("GET", "/_matrix/client/v3/presence/"+esc("@ghost:"+e.srv.Config.ServerName)+"/status", bob.Token, nil, 403, "M_FORBIDDEN")
	e.doErr("GET", "/_matrix/client/v3/presence/not-a-user/status", bob.Token, nil, 400, "M_INVALID_PARAM")
	e.doErr("GET", pa, "", nil, 401, "M_MISSING_TOKEN")
	e.doErr("PUT", pa, alice.Token, map[string]any{"presence": "busy"}, 400, "M_INVALID_PARAM")
	e.doErr("PUT", pa, alice.Token, map[string]any{"status_msg": "no state"}, 400, "M_MISSING_PARAM")
	e.doErr("PUT", pa, alice.Token, map[string]any{"presence": "online", "status_msg": 5}, 400, "M_BAD_JSON")
	e.doErr("PUT", pa, alice.Token, map[string]any{"presence": "online", "status_msg": strings.Repeat("m", 1025)}, 400, "M_INVALID_PARAM")
	e.doErr("PUT", pa, alice.Token, "{", 400, "M_NOT_JSON")
}

// Presence when enabled in the configuration: the state is stored and
// returned to oneself and to room-mates.
func TestPresenceEnabled(t *testing.T) {
	e := newEnv(t, func(c *config.Config) { c.Presence.Enabled = true })
	alice := e.register("pealice")
	bob := e.register("pebob")
	pa := "/_matrix/client/v3/presence/" + esc(alice.ID) + "/status"

	// Never set: offline.
	if got := e.do("GET", pa, alice.Token, nil, 200).JSON(t); got["presence"] != "offline" {
		t.Fatalf("initial presence = %v", got)
	}
	e.do("PUT", pa, alice.Token, map[string]any{"presence": "online", "status_msg": "at my desk"}, 200)
	got := e.do("GET", pa, alice.Token, nil, 200).JSON(t)
	if got["presence"] != "online" || got["status_msg"] != "at my desk" || got["currently_active"] != true {
		t.Fatalf("presence = %v", got)
	}
	if ago, ok := got["last_active_ago"].(float64); !ok || ago < 0 || ago > 60000 {
		t.Fatalf("last_active_ago = %v", got["last_active_ago"])
	}
	presenceErrors(e, alice, bob)

	room := e.createRoom(alice, map[string]any{"preset": "public_chat"})
	e.join(bob, room)
	if got := e.do("GET", pa, bob.Token, nil, 200).JSON(t); got["presence"] != "online" || got["status_msg"] != "at my desk" {
		t.Fatalf("presence seen by room-mate = %v", got)
	}
	e.do("PUT", pa, alice.Token, map[string]any{"presence": "unavailable"}, 200)
	if got := e.do("GET", pa, bob.Token, nil, 200).JSON(t); got["presence"] != "unavailable" || got["status_msg"] != nil || got["currently_active"] != nil {
		t.Fatalf("presence after unavailable = %v", got)
	}
}
