package conformance

import (
	"encoding/json"
	"strings"
	"testing"
)

// roomPath is /_matrix/client/v3/rooms/{roomId} followed by rest.
func roomPath(roomID, rest string) string {
	return "/_matrix/client/v3/rooms/" + esc(roomID) + rest
}

// stateContent returns the content of a state event of the room as seen by u.
func (e *env) stateContent(u user, roomID, evType, stateKey string) map[string]any {
	e.t.Helper()
	return e.do("GET", roomPath(roomID, "/state/"+evType+"/"+esc(stateKey)), u.Token, nil, 200).JSON(e.t)
}

// stateEvent returns a whole state event (?format=event) and validates it
// against the spec's event schema.
func (e *env) stateEvent(u user, roomID, evType, stateKey string) map[string]any {
	e.t.Helper()
	// The spec's schema for this response is a oneOf of "content" (any
	// object) and a ClientEvent, which a whole event matches twice; so
	// the event is checked against its event schema instead.
	r := e.raw("GET", roomPath(roomID, "/state/"+evType+"/"+esc(stateKey)+"?format=event"), u.Token, nil)
	if r.Status != 200 {
		e.t.Fatalf("GET state %s/%s: %d %s", evType, stateKey, r.Status, r.Body)
	}
	e.validateEvent(r.Body)
	return r.JSON(e.t)
}

// validateEvent checks a client-format event against its event schema, when
// the spec has one.
func (e *env) validateEvent(raw []byte) {
	e.t.Helper()
	var ev struct {
		Type string `json:"type"`
	}
	if err := json.Unmarshal(raw, &ev); err != nil {
		e.t.Fatalf("event is not JSON: %s", raw)
	}
	if err := e.spec.ValidateEvent(ev.Type, raw); err != nil && !strings.Contains(err.Error(), "no schema") {
		e.t.Fatalf("event does not match the spec: %v\n%s", err, raw)
	}
}

// createRoom with each preset and its resulting state.
func TestCreateRoomPresets(t *testing.T) {
	e := newEnv(t)
	alice := e.register("crp")
	bob := e.register("crpbob")
	for _, tc := range []struct {
		preset, joinRule, guest string
	}{
		{"private_chat", "invite", "can_join"},
		{"public_chat", "public", "forbidden"},
		{"trusted_private_chat", "invite", "can_join"},
	} {
		t.Run(tc.preset, func(t *testing.T) {
			room := e.createRoom(alice, map[string]any{"preset": tc.preset, "invite": []string{bob.ID}})
			if jr := e.stateContent(alice, room, "m.room.join_rules", ""); jr["join_rule"] != tc.joinRule {
				t.Fatalf("join_rule = %v", jr)
			}
			if hv := e.stateContent(alice, room, "m.room.history_visibility", ""); hv["history_visibility"] != "shared" {
				t.Fatalf("history_visibility = %v", hv)
			}
			if ga := e.stateContent(alice, room, "m.room.guest_access", ""); ga["guest_access"] != tc.guest {
				t.Fatalf("guest_access = %v", ga)
			}
			pl := e.stateContent(alice, room, "m.room.power_levels", "")
			users := pl["users"].(map[string]any)
			if users[alice.ID] != float64(100) {
				t.Fatalf("creator power = %v", users)
			}
			wantBob := any(nil)
			if tc.preset == "trusted_private_chat" {
				wantBob = float64(100)
			}
			if users[bob.ID] != wantBob {
				t.Fatalf("invitee power = %v, want %v", users[bob.ID], wantBob)
			}
			if m := e.stateContent(alice, room, "m.room.member", bob.ID); m["membership"] != "invite" {
				t.Fatalf("invitee membership = %v", m)
			}
			for _, ev := range []string{"m.room.create", "m.room.power_levels", "m.room.join_rules", "m.room.history_visibility", "m.room.guest_access"} {
				e.stateEvent(alice, room, ev, "")
			}
			e.stateEvent(alice, room, "m.room.member", alice.ID)
		})
	}
	// Without a preset: visibility decides.
	pub := e.createRoom(alice, map[string]any{"visibility": "public"})
	if jr := e.stateContent(alice, pub, "m.room.join_rules", ""); jr["join_rule"] != "public" {
		t.Fatalf("public room join_rule = %v", jr)
	}
	priv := e.createRoom(alice, nil)
	if jr := e.stateContent(alice, priv, "m.room.join_rules", ""); jr["join_rule"] != "invite" {
		t.Fatalf("default join_rule = %v", jr)
	}
	e.doErr("POST", "/_matrix/client/v3/createRoom", alice.Token, map[string]any{"preset": "everyone"}, 400, "M_BAD_JSON")
}

// createRoom's content options: name, topic, initial_state, creation_content,
// power_level_content_override, is_direct, room_alias_name, and errors.
func TestCreateRoomOptions(t *testing.T) {
	e := newEnv(t)
	alice := e.register("cro")
	bob := e.register("crobob")
	alias := strings.ToLower(strings.TrimPrefix(strings.Split(alice.ID, ":")[0], "@")) + "-room"
	room := e.createRoom(alice, map[string]any{
		"name": "The room", "topic": "What we talk about",
		"room_alias_name":              alias,
		"creation_content":             map[string]any{"m.federate": false},
		"power_level_content_override": map[string]any{"events_default": 10, "users": map[string]any{alice.ID: 100, bob.ID: 60}},
		"initial_state": []any{
			map[string]any{"type": "m.room.history_visibility", "content": map[string]any{"history_visibility": "joined"}},
			map[string]any{"type": "org.example.custom", "state_key": "a/b", "content": map[string]any{"x": 1}},
		},
		"invite":    []string{bob.ID},
		"is_direct": true,
	})
	if n := e.stateContent(alice, room, "m.room.name", ""); n["name"] != "The room" {
		t.Fatalf("name = %v", n)
	}
	topic := e.stateEvent(alice, room, "m.room.topic", "")
	if topic["content"].(map[string]any)["topic"] != "What we talk about" {
		t.Fatalf("topic = %v", topic)
	}
	mt := topic["content"].(map[string]any)["m.topic"].(map[string]any)["m.text"].([]any)[0].(map[string]any)
	if mt["body"] != "What we talk about" {
		t.Fatalf("m.topic = %v", mt)
	}
	if c := e.stateContent(alice, room, "m.room.create", ""); c["m.federate"] != false || c["room_version"] != "11" {
		t.Fatalf("create = %v", c)
	}
	pl := e.stateContent(alice, room, "m.room.power_levels", "")
	if pl["events_default"] != float64(10) || pl["users"].(map[string]any)[bob.ID] != float64(60) || pl["ban"] != float64(50) {
		t.Fatalf("power levels = %v", pl)
	}
	if hv := e.stateContent(alice, room, "m.room.history_visibility", ""); hv["history_visibility"] != "joined" {
		t.Fatalf("initial_state did not override the preset: %v", hv)
	}
	// The override replaced the preset's event, built on the state the
	// events before it made.
	hvEv := e.stateEvent(alice, room, "m.room.history_visibility", "")
	uns, _ := hvEv["unsigned"].(map[string]any)
	if prev, _ := uns["prev_content"].(map[string]any); prev["history_visibility"] != "shared" || uns["replaces_state"] == nil {
		t.Fatalf("initial_state override's unsigned = %v", hvEv["unsigned"])
	}
	if c := e.stateContent(alice, room, "org.example.custom", "a/b"); c["x"] != float64(1) {
		t.Fatalf("custom state = %v", c)
	}
	if ca := e.stateContent(alice, room, "m.room.canonical_alias", ""); ca["alias"] != "#"+alias+":"+e.srv.Config.ServerName {
		t.Fatalf("canonical alias = %v", ca)
	}
	res := e.do("GET", "/_matrix/client/v3/directory/room/"+esc("#"+alias+":"+e.srv.Config.ServerName), alice.Token, nil, 200).JSON(t)
	if res["room_id"] != room {
		t.Fatalf("alias resolves to %v", res)
	}
	// is_direct marks the invite, not the creator's own join.
	if inv := e.stateContent(alice, room, "m.room.member", bob.ID); inv["is_direct"] != true {
		t.Fatalf("invite = %v", inv)
	}
	if own := e.stateContent(alice, room, "m.room.member", alice.ID); own["is_direct"] != nil {
		t.Fatalf("creator's join carries is_direct: %v", own)
	}

	// Errors.
	cr := "/_matrix/client/v3/createRoom"
	e.doErr("POST", cr, alice.Token, map[string]any{"room_alias_name": alias}, 400, "M_ROOM_IN_USE")
	e.doErr("POST", cr, alice.Token, map[string]any{"room_alias_name": "bad:alias"}, 400, "M_INVALID_PARAM")
	e.doErr("POST", cr, alice.Token, map[string]any{"room_version": "9"}, 400, "M_UNSUPPORTED_ROOM_VERSION")
	e.doErr("POST", cr, alice.Token, map[string]any{"room_version": "banana"}, 400, "M_UNSUPPORTED_ROOM_VERSION")
	e.doErr("POST", cr, alice.Token, map[string]any{"visibility": "secret"}, 400, "M_INVALID_PARAM")
	e.doErr("POST", cr, alice.Token, map[string]any{"invite": []string{"not-a-user"}}, 400, "M_INVALID_PARAM")
	e.doErr("POST", cr, alice.Token, map[string]any{"name": 5}, 400, "M_BAD_JSON")
	e.doErr("POST", cr, alice.Token, map[string]any{"creation_content": "x"}, 400, "M_BAD_JSON")
	e.doErr("POST", cr, alice.Token, map[string]any{"power_level_content_override": []any{1}}, 400, "M_BAD_JSON")
	e.doErr("POST", cr, alice.Token, map[string]any{"initial_state": []any{map[string]any{"content": map[string]any{}}}}, 400, "M_BAD_JSON")
	e.doErr("POST", cr, alice.Token, `{"name": "a", "name": "b"}`, 400, "M_BAD_JSON")
	e.doErr("POST", cr, alice.Token, "{not json", 400, "M_NOT_JSON")
	e.doErr("POST", cr, "", map[string]any{}, 401, "M_MISSING_TOKEN")
	e.doErr("GET", cr, alice.Token, nil, 405, "M_UNRECOGNIZED")
	// An override that locks the creator out is an invalid initial state.
	e.doErr("POST", cr, alice.Token, map[string]any{"name": "x", "power_level_content_override": map[string]any{"users": map[string]any{}, "state_default": 100}},
		400, "M_INVALID_ROOM_STATE")
}

// createRoom with room versions 10, 11 and 12.
func TestCreateRoomVersions(t *testing.T) {
	e := newEnv(t)
	alice := e.register("crv")
	bob := e.register("crvbob")
	for _, v := range []string{"10", "11", "12"} {
		t.Run("v"+v, func(t *testing.T) {
			room := e.createRoom(alice, map[string]any{"room_version": v, "preset": "trusted_private_chat", "invite": []string{bob.ID}, "name": "v" + v})
			create := e.stateEvent(alice, room, "m.room.create", "")
			c := create["content"].(map[string]any)
			if c["room_version"] != v {
				t.Fatalf("room_version = %v", c)
			}
			_, hasCreator := c["creator"]
			if hasCreator != (v == "10") {
				t.Fatalf("creator field present = %v in v%s", hasCreator, v)
			}
			pl := e.stateContent(alice, room, "m.room.power_levels", "")
			users := pl["users"].(map[string]any)
			if v == "12" {
				// Creators hold unlimited power outside the power levels;
				// trusted_private_chat invitees become additional creators.
				if _, ok := users[alice.ID]; ok {
					t.Fatalf("v12 creator listed in power levels: %v", users)
				}
				if ac, _ := c["additional_creators"].([]any); len(ac) != 1 || ac[0] != bob.ID {
					t.Fatalf("additional_creators = %v", c["additional_creators"])
				}
				if strings.Contains(room, ":") {
					t.Fatalf("v12 room ID with a server name: %s", room)
				}
				if "$"+room[1:] != create["event_id"] {
					t.Fatalf("v12 room ID %s does not derive from create event %v", room, create["event_id"])
				}
			} else if users[alice.ID] != float64(100) {
				t.Fatalf("creator power = %v", users)
			}
			// The room works: bob joins, both talk.
			e.join(bob, room)
			e.sendMessage(bob, room, "hello")
			e.sendMessage(alice, room, "hi")
			// Redaction works in each version's format.
			ev := e.sendMessage(bob, room, "oops")
			e.do("PUT", roomPath(room, "/redact/"+esc(ev)+"/r1"), bob.Token, map[string]any{"reason": "typo"}, 200)
			got := e.do("GET", roomPath(room, "/event/"+esc(ev)), alice.Token, nil, 200).JSON(t)
			if len(got["content"].(map[string]any)) != 0 {
				t.Fatalf("redacted content = %v", got["content"])
			}
		})
	}
}

// Room upgrades: POST /rooms/{roomId}/upgrade creates the replacement room
// with its predecessor and the copied state, moves the aliases and
// tombstones the old room.
func TestRoomUpgrade(t *testing.T) {
	e := newEnv(t)
	alice := e.register("upa")
	bob := e.register("upb")
	mallory := e.register("upm")
	for _, tc := range []struct{ from, to string }{{"10", "11"}, {"11", "12"}, {"12", "11"}} {
		t.Run(tc.from+"-"+tc.to, func(t *testing.T) {
			aliasName := localpartOf(alice.ID) + "-up" + tc.from + tc.to
			alias := "#" + aliasName + ":" + e.srv.Config.ServerName
			users := map[string]any{alice.ID: 100, bob.ID: 50}
			if tc.from == "12" {
				delete(users, alice.ID) // creators are above the power levels
			}
			old := e.createRoom(alice, map[string]any{"room_version": tc.from, "preset": "public_chat", "name": "Old name", "topic": "Old topic",
				"room_alias_name": aliasName, "power_level_content_override": map[string]any{"users_default": 0, "users": users},
				"initial_state": []any{map[string]any{"type": "m.room.history_visibility", "content": map[string]any{"history_visibility": "joined"}}}})
			e.join(bob, old)
			e.join(mallory, old)
			e.do("POST", roomPath(old, "/ban"), alice.Token, map[string]any{"user_id": mallory.ID}, 200)
			e.sendMessage(bob, old, "old message")

			up := roomPath(old, "/upgrade")
			e.doErr("POST", up, bob.Token, map[string]any{"new_version": tc.to}, 403, "M_FORBIDDEN") // 50 < tombstone level
			e.doErr("POST", up, alice.Token, map[string]any{"new_version": "9"}, 400, "M_UNSUPPORTED_ROOM_VERSION")
			e.doErr("POST", up, alice.Token, map[string]any{}, 400, "M_MISSING_PARAM")
			e.doErr("POST", up, alice.Token, map[string]any{"new_version": 11}, 400, "M_BAD_JSON")
			e.doErr("POST", up, mallory.Token, map[string]any{"new_version": tc.to}, 403, "M_FORBIDDEN")
			body := map[string]any{"new_version": tc.to}
			if tc.to == "12" {
				body["additional_creators"] = []string{bob.ID}
			}
			newRoom := e.do("POST", up, alice.Token, body, 200).JSON(t)["replacement_room"].(string)

			create := e.stateEvent(alice, newRoom, "m.room.create", "")["content"].(map[string]any)
			if create["room_version"] != tc.to || create["predecessor"].(map[string]any)["room_id"] != old {
				t.Fatalf("new create = %v", create)
			}
			if tc.to == "12" {
				if ac, _ := create["additional_creators"].([]any); len(ac) != 1 || ac[0] != bob.ID {
					t.Fatalf("additional_creators = %v", create["additional_creators"])
				}
			}
			if n := e.stateContent(alice, newRoom, "m.room.name", ""); n["name"] != "Old name" {
				t.Fatalf("name not copied: %v", n)
			}
			if tp := e.stateContent(alice, newRoom, "m.room.topic", ""); tp["topic"] != "Old topic" {
				t.Fatalf("topic not copied: %v", tp)
			}
			if jr := e.stateContent(alice, newRoom, "m.room.join_rules", ""); jr["join_rule"] != "public" {
				t.Fatalf("join rule not copied: %v", jr)
			}
			if hv := e.stateContent(alice, newRoom, "m.room.history_visibility", ""); hv["history_visibility"] != "joined" {
				t.Fatalf("history visibility not copied: %v", hv)
			}
			pl := e.stateContent(alice, newRoom, "m.room.power_levels", "")
			newUsers := pl["users"].(map[string]any)
			if tc.to == "12" {
				if _, ok := newUsers[alice.ID]; ok {
					t.Fatalf("v12 creator in power levels: %v", newUsers)
				}
			} else if newUsers[alice.ID] != float64(100) || newUsers[bob.ID] != float64(50) {
				t.Fatalf("power levels not carried: %v", newUsers)
			}
			if m := e.membershipOf(alice, newRoom, mallory.ID); m != "ban" {
				t.Fatalf("ban not carried: %s", m)
			}
			// Aliases follow the room.
			if r := e.do("GET", "/_matrix/client/v3/directory/room/"+esc(alias), alice.Token, nil, 200).JSON(t); r["room_id"] != newRoom {
				t.Fatalf("alias points to %v", r["room_id"])
			}
			// The old room: tombstone, and ordinary members silenced.
			tomb := e.stateEvent(alice, old, "m.room.tombstone", "")
			if tomb["content"].(map[string]any)["replacement_room"] != newRoom {
				t.Fatalf("tombstone = %v", tomb)
			}
			oldPL := e.stateContent(alice, old, "m.room.power_levels", "")
			if oldPL["events_default"] != float64(50) || oldPL["invite"] != float64(50) {
				t.Fatalf("old power levels = %v", oldPL)
			}
			if oldPL["users"].(map[string]any)[bob.ID] != float64(50) {
				t.Fatalf("old room lost its moderators: %v", oldPL["users"])
			}
			// Members move by joining; the new room works.
			e.join(bob, newRoom)
			e.sendMessage(bob, newRoom, "new message")
			e.doErr("POST", roomPath(newRoom, "/join"), mallory.Token, map[string]any{}, 403, "M_FORBIDDEN")
		})
	}
	e.doErr("POST", roomPath("!nope:"+e.srv.Config.ServerName, "/upgrade"), alice.Token, map[string]any{"new_version": "11"}, 404, "M_NOT_FOUND")
}
