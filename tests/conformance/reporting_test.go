package conformance

import (
	"context"
	"strings"
	"testing"
)

// Reporting content: POST /rooms/{roomId}/report/{eventId},
// POST /rooms/{roomId}/report (v1.13) and POST /users/{userId}/report (v1.14).
func TestReportEvent(t *testing.T) {
	e := newEnv(t)
	alice := e.register("rpalice")
	bob := e.register("rpbob")
	room := e.createRoom(alice, map[string]any{"preset": "public_chat"})
	ev := e.sendMessage(alice, room, "offensive")
	other := e.createRoom(alice, nil)
	otherEv := e.sendMessage(alice, other, "elsewhere")
	report := func(roomID, eventID string) string {
		return "/_matrix/client/v3/rooms/" + esc(roomID) + "/report/" + esc(eventID)
	}

	// The reporter must be joined to the room (spec v1.8).
	e.doErr("POST", report(room, ev), bob.Token, map[string]any{"reason": "rude"}, 404, "M_NOT_FOUND")
	e.join(bob, room)
	e.do("POST", report(room, ev), bob.Token, map[string]any{"reason": "this makes me sad"}, 200)
	e.do("POST", report(room, ev), bob.Token, map[string]any{}, 200) // reason is optional
	e.do("POST", report(room, ev), bob.Token, map[string]any{"reason": "", "score": -100}, 200)
	// Score (removed in v1.18) is still checked when given.
	e.doErr("POST", report(room, ev), bob.Token, map[string]any{"score": 10}, 400, "M_INVALID_PARAM")
	e.doErr("POST", report(room, ev), bob.Token, map[string]any{"score": -101}, 400, "M_INVALID_PARAM")
	e.doErr("POST", report(room, ev), bob.Token, map[string]any{"score": "bad"}, 400, "M_INVALID_PARAM")
	e.doErr("POST", report(room, ev), bob.Token, map[string]any{"score": -5.5}, 400, "M_INVALID_PARAM")
	e.doErr("POST", report(room, ev), bob.Token, map[string]any{"reason": 5}, 400, "M_BAD_JSON")
	e.doErr("POST", report(room, ev), bob.Token, map[string]any{"reason": strings.Repeat("r", 4097)}, 400, "M_INVALID_PARAM")
	e.doErr("POST", report(room, ev), bob.Token, "{", 400, "M_NOT_JSON")

	// Unknown events, events of another room, unknown rooms.
	e.doErr("POST", report(room, "$nope"), bob.Token, map[string]any{}, 404, "M_NOT_FOUND")
	e.doErr("POST", report(room, otherEv), bob.Token, map[string]any{}, 404, "M_NOT_FOUND")
	e.doErr("POST", report(other, otherEv), bob.Token, map[string]any{}, 404, "M_NOT_FOUND")
	e.doErr("POST", report("!unknown:"+e.srv.Config.ServerName, ev), bob.Token, map[string]any{}, 404, "M_NOT_FOUND")
	e.doErr("POST", report("not-a-room", ev), bob.Token, map[string]any{}, 400, "M_INVALID_PARAM")
	e.doErr("POST", report(room, ev), "", map[string]any{}, 401, "M_MISSING_TOKEN")

	// An event the reporter may not see (history visibility "joined",
	// sent before they joined) is not found.
	hidden := e.createRoom(alice, map[string]any{"preset": "public_chat", "initial_state": []any{
		map[string]any{"type": "m.room.history_visibility", "state_key": "", "content": map[string]any{"history_visibility": "joined"}},
	}})
	secret := e.sendMessage(alice, hidden, "before bob")
	e.join(bob, hidden)
	e.doErr("POST", report(hidden, secret), bob.Token, map[string]any{"reason": "?"}, 404, "M_NOT_FOUND")
	after := e.sendMessage(alice, hidden, "after bob")
	e.do("POST", report(hidden, after), bob.Token, map[string]any{"reason": "!"}, 200)

	// Having left, one can no longer report.
	e.do("POST", "/_matrix/client/v3/rooms/"+esc(room)+"/leave", bob.Token, map[string]any{}, 200)
	e.doErr("POST", report(room, ev), bob.Token, map[string]any{}, 404, "M_NOT_FOUND")

	events, _, _, err := e.srv.Srv.DB.CountReports(context.Background(), bob.ID)
	if err != nil || events != 4 {
		t.Fatalf("bob's stored event reports: %d (%v), want 4", events, err)
	}
}

func TestReportRoomAndUser(t *testing.T) {
	e := newEnv(t)
	alice := e.register("rralice")
	bob := e.register("rrbob")
	room := e.createRoom(alice, nil)

	// Room reports need no membership (spec v1.13).
	e.do("POST", "/_matrix/client/v3/rooms/"+esc(room)+"/report", bob.Token, map[string]any{"reason": "spam room"}, 200)
	e.do("POST", "/_matrix/client/v3/rooms/"+esc(room)+"/report", bob.Token, map[string]any{"reason": ""}, 200)
	e.doErr("POST", "/_matrix/client/v3/rooms/"+esc(room)+"/report", bob.Token, map[string]any{}, 400, "M_MISSING_PARAM")
	e.doErr("POST", "/_matrix/client/v3/rooms/"+esc(room)+"/report", bob.Token, map[string]any{"reason": []any{}}, 400, "M_BAD_JSON")
	e.doErr("POST", "/_matrix/client/v3/rooms/"+esc("!unknown:"+e.srv.Config.ServerName)+"/report", bob.Token, map[string]any{"reason": "x"}, 404, "M_NOT_FOUND")
	e.doErr("POST", "/_matrix/client/v3/rooms/bad/report", bob.Token, map[string]any{"reason": "x"}, 400, "M_INVALID_PARAM")
	e.doErr("POST", "/_matrix/client/v3/rooms/"+esc(room)+"/report", "", map[string]any{"reason": "x"}, 401, "M_MISSING_TOKEN")

	// User reports need no shared room (spec v1.14); whether a local user
	// exists is not disclosed (threat model T2).
	e.do("POST", "/_matrix/client/v3/users/"+esc(alice.ID)+"/report", bob.Token, map[string]any{"reason": "harassment"}, 200)
	e.do("POST", "/_matrix/client/v3/users/"+esc("@ghost:"+e.srv.Config.ServerName)+"/report", bob.Token, map[string]any{"reason": "x"}, 200)
	e.do("POST", "/_matrix/client/v3/users/"+esc("@someone:remote.example")+"/report", bob.Token, map[string]any{"reason": "x"}, 200)
	e.doErr("POST", "/_matrix/client/v3/users/"+esc(alice.ID)+"/report", bob.Token, map[string]any{}, 400, "M_MISSING_PARAM")
	e.doErr("POST", "/_matrix/client/v3/users/not-a-user/report", bob.Token, map[string]any{"reason": "x"}, 400, "M_INVALID_PARAM")

	_, rooms, users, err := e.srv.Srv.DB.CountReports(context.Background(), bob.ID)
	if err != nil || rooms != 2 || users != 2 {
		t.Fatalf("bob's stored reports: rooms %d users %d (%v), want 2 and 2 (the unknown local user is dropped)", rooms, users, err)
	}
}
