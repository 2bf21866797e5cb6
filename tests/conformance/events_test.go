package conformance

import (
	"encoding/json"
	"net/url"
	"slices"
	"sort"
	"strings"
	"testing"
)

// Redaction: PUT /rooms/{roomId}/redact/{eventId}/{txnId} of one's own
// events and others' (with and without power); the content is pruned and
// unsigned.redacted_because set.
func TestRedaction(t *testing.T) {
	e := newEnv(t)
	alice := e.register("rda") // power 100
	bob := e.register("rdb")
	carol := e.register("rdc")
	room := e.createRoom(alice, map[string]any{"preset": "public_chat"})
	e.join(bob, room)
	e.join(carol, room)
	redact := func(u user, id, txn string, body any, status int) map[string]any {
		t.Helper()
		return e.do("PUT", roomPath(room, "/redact/"+esc(id)+"/"+txn), u.Token, body, status).JSON(t)
	}
	check := func(id, redactionID, reason string) {
		t.Helper()
		r := e.do("GET", roomPath(room, "/event/"+esc(id)), carol.Token, nil, 200)
		ev := r.JSON(t)
		if len(ev["content"].(map[string]any)) != 0 {
			t.Fatalf("redacted content = %v", ev["content"])
		}
		because, _ := ev["unsigned"].(map[string]any)["redacted_because"].(map[string]any)
		if because == nil || because["event_id"] != redactionID || because["type"] != "m.room.redaction" {
			t.Fatalf("redacted_because = %v", ev["unsigned"])
		}
		if reason != "" && because["content"].(map[string]any)["reason"] != reason {
			t.Fatalf("redaction reason = %v", because["content"])
		}
		// The pruned event no longer matches its type's schema; the
		// redaction event must match its own.
		raw, _ := json.Marshal(because)
		e.validateEvent(raw)
	}

	own := e.sendMessage(bob, room, "mine")
	r := redact(bob, own, "r1", map[string]any{"reason": "typo"}, 200)
	check(own, r["event_id"].(string), "typo")
	// Idempotent per transaction.
	if again := redact(bob, own, "r1", map[string]any{}, 200); again["event_id"] != r["event_id"] {
		t.Fatalf("redaction txn not idempotent: %v vs %v", again, r)
	}

	theirs := e.sendMessage(carol, room, "carol's")
	redact(bob, theirs, "r2", map[string]any{}, 403) // bob has power 0 < redact 50
	if ev := e.do("GET", roomPath(room, "/event/"+esc(theirs)), carol.Token, nil, 200).JSON(t); ev["content"].(map[string]any)["body"] != "carol's" {
		t.Fatalf("refused redaction still pruned: %v", ev)
	}
	r = redact(alice, theirs, "r3", nil, 200)
	check(theirs, r["event_id"].(string), "")

	// State events keep the keys the redaction algorithm preserves.
	e.do("PUT", roomPath(room, "/state/m.room.name/"), alice.Token, map[string]any{"name": "before"}, 200)
	jr := e.stateEvent(alice, room, "m.room.join_rules", "")
	r = redact(alice, jr["event_id"].(string), "r4", map[string]any{}, 200)
	if r["event_id"] == nil {
		t.Fatalf("redaction of join rules returned %v", r)
	}
	if c := e.stateContent(alice, room, "m.room.join_rules", ""); c["join_rule"] != "public" {
		t.Fatalf("redacted join rules lost join_rule: %v", c)
	}

	// The redaction shows up in /messages with the pruned target.
	p := e.messages(carol, room, url.Values{"dir": {"b"}, "limit": {"30"}})
	var sawRedaction bool
	for _, ev := range p.Chunk {
		if ev["event_id"] == own && len(ev["content"].(map[string]any)) != 0 {
			t.Fatalf("/messages shows redacted content: %v", ev)
		}
		if ev["type"] == "m.room.redaction" && ev["redacts"] == own {
			sawRedaction = true
		}
	}
	if !sawRedaction {
		t.Fatal("no redaction event with redacts in /messages")
	}

	e.doErr("PUT", roomPath(room, "/redact/"+esc("$unknown")+"/r5"), alice.Token, map[string]any{}, 404, "M_NOT_FOUND")
	e.doErr("PUT", roomPath(room, "/redact/"+esc(own)+"/r6"), alice.Token, "{not json", 400, "M_NOT_JSON")
	e.doErr("PUT", roomPath(room, "/redact/"+esc(own)+"/r7"), alice.Token, map[string]any{"reason": 1}, 400, "M_BAD_JSON")
	outsider := e.register("rdo")
	e.doErr("PUT", roomPath(room, "/redact/"+esc(own)+"/r8"), outsider.Token, map[string]any{}, 403, "M_FORBIDDEN")
	other := e.createRoom(alice, nil)
	e.doErr("PUT", roomPath(other, "/redact/"+esc(theirs)+"/r9"), alice.Token, map[string]any{}, 404, "M_NOT_FOUND")
}

// Single events: GET /rooms/{roomId}/event/{eventId}, 404 for what the user
// may not see.
func TestGetEvent(t *testing.T) {
	e := newEnv(t)
	alice := e.register("gea")
	bob := e.register("geb")
	room := e.createRoom(alice, map[string]any{"preset": "public_chat", "initial_state": []any{
		map[string]any{"type": "m.room.history_visibility", "content": map[string]any{"history_visibility": "joined"}},
	}})
	before := e.sendMessage(alice, room, "before bob")
	e.join(bob, room)
	during := e.sendMessage(alice, room, "with bob")
	r := e.do("GET", roomPath(room, "/event/"+esc(during)), bob.Token, nil, 200)
	ev := r.JSON(t)
	if ev["event_id"] != during || ev["room_id"] != room || ev["sender"] != alice.ID || ev["content"].(map[string]any)["body"] != "with bob" {
		t.Fatalf("event = %v", ev)
	}
	e.validateEvent(r.Body)
	e.doErr("GET", roomPath(room, "/event/"+esc(before)), bob.Token, nil, 404, "M_NOT_FOUND") // history_visibility joined
	e.do("POST", roomPath(room, "/leave"), bob.Token, map[string]any{}, 200)
	after := e.sendMessage(alice, room, "after bob")
	e.doErr("GET", roomPath(room, "/event/"+esc(after)), bob.Token, nil, 404, "M_NOT_FOUND")
	e.do("GET", roomPath(room, "/event/"+esc(during)), bob.Token, nil, 200)
	stranger := e.register("ges")
	e.doErr("GET", roomPath(room, "/event/"+esc(during)), stranger.Token, nil, 404, "M_NOT_FOUND")
	e.doErr("GET", roomPath(room, "/event/"+esc("$nope")), alice.Token, nil, 404, "M_NOT_FOUND")
	other := e.createRoom(alice, nil)
	e.doErr("GET", roomPath(other, "/event/"+esc(during)), alice.Token, nil, 404, "M_NOT_FOUND")
}

// Members: GET /rooms/{roomId}/members with at/membership/not_membership,
// and GET /rooms/{roomId}/joined_members.
func TestMembers(t *testing.T) {
	e := newEnv(t)
	alice := e.register("mma")
	bob := e.register("mmb")
	carol := e.register("mmc")
	dave := e.register("mmd")
	room := e.createRoom(alice, map[string]any{"preset": "public_chat"})
	e.join(bob, room)
	e.join(carol, room)
	e.do("POST", roomPath(room, "/invite"), alice.Token, map[string]any{"user_id": dave.ID}, 200)
	// A token from before carol leaves.
	atBefore := e.messages(alice, room, url.Values{"dir": {"b"}, "limit": {"1"}}).Start
	e.do("POST", roomPath(room, "/leave"), carol.Token, map[string]any{}, 200)
	e.do("PUT", "/_matrix/client/v3/profile/"+esc(bob.ID)+"/displayname", bob.Token, map[string]any{"displayname": "Bobby"}, 200)

	members := func(u user, q string) map[string]string {
		t.Helper()
		var r struct {
			Chunk []map[string]any `json:"chunk"`
		}
		e.do("GET", roomPath(room, "/members"+q), u.Token, nil, 200).Decode(t, &r)
		out := map[string]string{}
		for _, ev := range r.Chunk {
			if ev["type"] != "m.room.member" {
				t.Fatalf("members chunk has %v", ev["type"])
			}
			out[ev["state_key"].(string)] = ev["content"].(map[string]any)["membership"].(string)
		}
		return out
	}
	keys := func(m map[string]string) []string {
		var k []string
		for x := range m {
			k = append(k, x)
		}
		sort.Strings(k)
		return k
	}
	all := members(alice, "")
	if all[alice.ID] != "join" || all[bob.ID] != "join" || all[carol.ID] != "leave" || all[dave.ID] != "invite" || len(all) != 4 {
		t.Fatalf("members = %v", all)
	}
	if got := keys(members(alice, "?membership=join")); !slices.Equal(got, keys(map[string]string{alice.ID: "", bob.ID: ""})) {
		t.Fatalf("membership=join = %v", got)
	}
	if got := members(alice, "?not_membership=leave"); len(got) != 3 || got[carol.ID] != "" {
		t.Fatalf("not_membership=leave = %v", got)
	}
	if got := members(alice, "?membership=invite&not_membership=join"); len(got) != 1 || got[dave.ID] != "invite" {
		t.Fatalf("membership=invite = %v", got)
	}
	if got := members(alice, "?at="+url.QueryEscape(atBefore)); got[carol.ID] != "join" {
		t.Fatalf("members at an earlier token = %v", got)
	}
	// A left user sees the members as of their leave.
	if got := members(carol, ""); got[carol.ID] != "leave" || got[bob.ID] != "join" {
		t.Fatalf("left user's members = %v", got)
	}
	stranger := e.register("mms")
	e.doErr("GET", roomPath(room, "/members"), stranger.Token, nil, 403, "M_FORBIDDEN")
	e.doErr("GET", roomPath(room, "/members?at=garbage"), alice.Token, nil, 400, "M_INVALID_PARAM")

	// joined_members, with profiles.
	var jm struct {
		Joined map[string]struct {
			DisplayName *string `json:"display_name"`
		} `json:"joined"`
	}
	e.do("GET", roomPath(room, "/joined_members"), bob.Token, nil, 200).Decode(t, &jm)
	if len(jm.Joined) != 2 || jm.Joined[bob.ID].DisplayName == nil || *jm.Joined[bob.ID].DisplayName != "Bobby" {
		t.Fatalf("joined_members = %+v", jm.Joined)
	}
	e.doErr("GET", roomPath(room, "/joined_members"), carol.Token, nil, 403, "M_FORBIDDEN")
	e.doErr("GET", roomPath(room, "/joined_members"), stranger.Token, nil, 403, "M_FORBIDDEN")
}

// History visibility: what a user joining late sees of earlier events in
// /messages, for each m.room.history_visibility value.
func TestHistoryVisibility(t *testing.T) {
	e := newEnv(t)
	alice := e.register("hva")
	for _, tc := range []struct {
		vis         string
		seesBefore  bool // messages sent before any invite
		seesInvited bool // messages sent while invited
	}{
		{"joined", false, false},
		{"invited", false, true},
		{"shared", true, true},
		{"world_readable", true, true},
	} {
		t.Run(tc.vis, func(t *testing.T) {
			bob := e.register("hvb")
			room := e.createRoom(alice, map[string]any{"preset": "private_chat", "initial_state": []any{
				map[string]any{"type": "m.room.history_visibility", "content": map[string]any{"history_visibility": tc.vis}},
			}})
			e.sendMessage(alice, room, "before")
			e.do("POST", roomPath(room, "/invite"), alice.Token, map[string]any{"user_id": bob.ID}, 200)
			e.sendMessage(alice, room, "while invited")
			e.join(bob, room)
			e.sendMessage(alice, room, "joined")
			got := strings.Join(bodies(e.messages(bob, room, url.Values{"dir": {"b"}, "limit": {"50"}}).Chunk), ",")
			want := []string{}
			if tc.seesBefore {
				want = append(want, "before")
			}
			if tc.seesInvited {
				want = append(want, "while invited")
			}
			want = append(want, "joined")
			slices.Reverse(want)
			if got != strings.Join(want, ",") {
				t.Fatalf("bob sees %q, want %q", got, strings.Join(want, ","))
			}
			// Sync for the newly joined user agrees.
			s := e.do("GET", "/_matrix/client/v3/sync?filter="+url.QueryEscape(`{"room":{"timeline":{"limit":50}}}`), bob.Token, nil, 200).JSON(t)
			tl := s["rooms"].(map[string]any)["join"].(map[string]any)[room].(map[string]any)["timeline"].(map[string]any)["events"].([]any)
			var chunk []map[string]any
			for _, ev := range tl {
				chunk = append(chunk, ev.(map[string]any))
			}
			slices.Reverse(want)
			if got := strings.Join(bodies(chunk), ","); got != strings.Join(want, ",") {
				t.Fatalf("sync timeline %q, want %q", got, strings.Join(want, ","))
			}
		})
	}
}
