package conformance

import (
	"strings"
	"testing"
)

// Room state: PUT/GET /rooms/{roomId}/state/{eventType}/{stateKey} with
// and without a state key (and with '/' in it), GET /rooms/{roomId}/state.
func TestRoomState(t *testing.T) {
	e := newEnv(t)
	alice := e.register("sta")
	bob := e.register("stb")
	stranger := e.register("sts")
	room := e.createRoom(alice, map[string]any{"preset": "public_chat"})
	e.join(bob, room)

	// Empty state key, with and without the trailing slash.
	r := e.do("PUT", roomPath(room, "/state/m.room.name"), alice.Token, map[string]any{"name": "First"}, 200).JSON(t)
	if r["event_id"] == nil {
		t.Fatalf("PUT state = %v", r)
	}
	if n := e.do("GET", roomPath(room, "/state/m.room.name/"), bob.Token, nil, 200).JSON(t); n["name"] != "First" {
		t.Fatalf("name = %v", n)
	}
	e.do("PUT", roomPath(room, "/state/m.room.name/"), alice.Token, map[string]any{"name": "Second"}, 200)
	if n := e.do("GET", roomPath(room, "/state/m.room.name"), bob.Token, nil, 200).JSON(t); n["name"] != "Second" {
		t.Fatalf("name = %v", n)
	}
	full := e.stateEvent(bob, room, "m.room.name", "")
	if full["event_id"] == nil || full["sender"] != alice.ID || full["content"].(map[string]any)["name"] != "Second" {
		t.Fatalf("format=event = %v", full)
	}
	if uns, _ := full["unsigned"].(map[string]any); uns == nil || uns["prev_content"].(map[string]any)["name"] != "First" {
		t.Fatalf("prev_content = %v", full["unsigned"])
	}

	// State keys with slashes, encoded or not, and other odd characters.
	for _, key := range []string{"a/b", "a/b/c/", "with space", alice.ID, "%2F"} {
		e.do("PUT", roomPath(room, "/state/org.example.k/"+esc(key)), alice.Token, map[string]any{"key": key}, 200)
		if got := e.stateContent(bob, room, "org.example.k", key); got["key"] != key {
			t.Fatalf("state key %q: got %v", key, got)
		}
	}
	// An unencoded slash is not a spec path (so no schema check), but works.
	if r := e.raw("PUT", roomPath(room, "/state/org.example.k/x/y"), alice.Token, map[string]any{"key": "x/y raw"}); r.Status != 200 {
		t.Fatalf("PUT raw slash key: %d %s", r.Status, r.Body)
	}
	if r := e.raw("GET", roomPath(room, "/state/org.example.k/x/y"), bob.Token, nil); r.Status != 200 || r.JSON(t)["key"] != "x/y raw" {
		t.Fatalf("GET raw slash key: %d %s", r.Status, r.Body)
	}
	if got := e.stateContent(bob, room, "org.example.k", "x/y"); got["key"] != "x/y raw" {
		t.Fatalf("raw and encoded slash differ: %v", got)
	}

	// The whole state.
	var all []map[string]any
	e.do("GET", roomPath(room, "/state"), bob.Token, nil, 200).Decode(t, &all)
	seen := map[string]bool{}
	for _, ev := range all {
		sk, _ := ev["state_key"].(string)
		k := ev["type"].(string) + "|" + sk
		if seen[k] {
			t.Fatalf("state lists %s twice", k)
		}
		seen[k] = true
	}
	for _, k := range []string{"m.room.create|", "m.room.name|", "m.room.member|" + alice.ID, "m.room.member|" + bob.ID, "org.example.k|a/b", "m.room.power_levels|"} {
		if !seen[k] {
			t.Fatalf("state lacks %s: %v", k, seen)
		}
	}

	// Errors.
	e.doErr("GET", roomPath(room, "/state/m.room.topic/"), bob.Token, nil, 404, "M_NOT_FOUND")
	e.doErr("GET", roomPath(room, "/state/org.example.k/nope"), bob.Token, nil, 404, "M_NOT_FOUND")
	e.doErr("GET", roomPath(room, "/state/m.room.name/"), stranger.Token, nil, 403, "M_FORBIDDEN")
	e.doErr("GET", roomPath(room, "/state"), stranger.Token, nil, 403, "M_FORBIDDEN")
	e.doErr("GET", roomPath("!unknown:"+e.srv.Config.ServerName, "/state"), bob.Token, nil, 403, "M_FORBIDDEN")
	e.doErr("PUT", roomPath(room, "/state/m.room.name/"), bob.Token, map[string]any{"name": "Mine"}, 403, "M_FORBIDDEN") // power 0 < 50
	e.doErr("PUT", roomPath(room, "/state/m.room.name/"), stranger.Token, map[string]any{"name": "Mine"}, 403, "M_FORBIDDEN")
	e.doErr("PUT", roomPath(room, "/state/m.room.name/"), alice.Token, "{not json", 400, "M_NOT_JSON")
	e.doErr("PUT", roomPath(room, "/state/m.room.name/"), alice.Token, "[1,2]", 400, "M_BAD_JSON")
	e.doErr("PUT", roomPath(room, "/state/m.room.name/"), alice.Token, `{"name":"a","name":"b"}`, 400, "M_BAD_JSON")
	e.doErr("PUT", roomPath(room, "/state/m.room.member/"+esc(bob.ID)), alice.Token, map[string]any{}, 400, "M_BAD_JSON")
	e.doErr("PUT", roomPath(room, "/state/org.example.big/"), alice.Token, map[string]any{"x": strings.Repeat("a", 70000)}, 413, "M_TOO_LARGE")
	e.doErr("PUT", roomPath(room, "/state/m.room.name/"), "", map[string]any{"name": "x"}, 401, "M_MISSING_TOKEN")
	e.doErr("PUT", roomPath("!unknown:"+e.srv.Config.ServerName, "/state/m.room.name/"), alice.Token, map[string]any{"name": "x"}, 404, "M_NOT_FOUND")
	e.doErr("DELETE", roomPath(room, "/state/m.room.name/"), alice.Token, nil, 405, "M_UNRECOGNIZED")
	// A state key naming another user belongs to that user.
	e.doErr("PUT", roomPath(room, "/state/org.example.k/"+esc(bob.ID)), alice.Token, map[string]any{}, 403, "M_FORBIDDEN")
	// Power levels that would lock everyone out are refused by the auth rules.
	e.doErr("PUT", roomPath(room, "/state/m.room.power_levels/"), bob.Token, map[string]any{"users": map[string]any{bob.ID: 100}}, 403, "M_FORBIDDEN")

	// After leaving, a user sees the state as it was when they left.
	e.do("POST", roomPath(room, "/leave"), bob.Token, map[string]any{}, 200)
	e.do("PUT", roomPath(room, "/state/m.room.name"), alice.Token, map[string]any{"name": "After bob"}, 200)
	if n := e.stateContent(bob, room, "m.room.name", ""); n["name"] != "Second" {
		t.Fatalf("left user sees name %v", n)
	}
	var after []map[string]any
	e.do("GET", roomPath(room, "/state"), bob.Token, nil, 200).Decode(t, &after)
	for _, ev := range after {
		if ev["type"] == "m.room.name" && ev["content"].(map[string]any)["name"] != "Second" {
			t.Fatalf("left user's /state shows %v", ev)
		}
	}
}

// Who may read a room: invitees, knockers and users who rejected an
// invite have never been members, so /state, /members, /messages and
// /event refuse them; a former member reads up to their departure, even
// when invited again.
func TestRoomReadAccess(t *testing.T) {
	e := newEnv(t)
	alice := e.register("raa")
	invitee := e.register("rai")
	rejecter := e.register("rar")
	knocker := e.register("rak")
	former := e.register("raf")
	room := e.createRoom(alice, map[string]any{"preset": "private_chat", "initial_state": []any{
		map[string]any{"type": "m.room.join_rules", "content": map[string]any{"join_rule": "knock"}},
	}})
	ev := e.sendMessage(alice, room, "secret")
	for _, u := range []user{invitee, rejecter, former} {
		e.do("POST", roomPath(room, "/invite"), alice.Token, map[string]any{"user_id": u.ID}, 200)
	}
	e.do("POST", roomPath(room, "/leave"), rejecter.Token, map[string]any{}, 200)
	e.do("POST", "/_matrix/client/v3/knock/"+esc(room), knocker.Token, map[string]any{}, 200)
	e.join(former, room)
	e.do("POST", roomPath(room, "/leave"), former.Token, map[string]any{}, 200)
	e.do("PUT", roomPath(room, "/state/m.room.name/"), alice.Token, map[string]any{"name": "after former left"}, 200)
	e.do("POST", roomPath(room, "/invite"), alice.Token, map[string]any{"user_id": former.ID}, 200)

	for _, u := range []user{invitee, rejecter, knocker} {
		e.doErr("GET", roomPath(room, "/state"), u.Token, nil, 403, "M_FORBIDDEN")
		e.doErr("GET", roomPath(room, "/state/m.room.create/"), u.Token, nil, 403, "M_FORBIDDEN")
		e.doErr("GET", roomPath(room, "/members"), u.Token, nil, 403, "M_FORBIDDEN")
		e.doErr("GET", roomPath(room, "/messages?dir=b"), u.Token, nil, 403, "M_FORBIDDEN")
		e.doErr("GET", roomPath(room, "/event/"+esc(ev)), u.Token, nil, 404, "M_NOT_FOUND")
	}
	// The former member, invited again, sees the room as they left it.
	e.doErr("GET", roomPath(room, "/state/m.room.name/"), former.Token, nil, 404, "M_NOT_FOUND")
	e.do("GET", roomPath(room, "/event/"+esc(ev)), former.Token, nil, 200)
}
