package conformance

import "testing"

func readMarkersPath(roomID string) string {
	return "/_matrix/client/v3/rooms/" + esc(roomID) + "/read_markers"
}

func TestReadMarkers(t *testing.T) {
	e := newEnv(t)
	alice, bob := e.register("alice"), e.register("bob")
	room := e.createRoom(alice, map[string]any{"preset": "public_chat"})
	e.join(bob, room)
	m1 := e.sendMessage(alice, room, "one")
	m2 := e.sendMessage(alice, room, "two")
	m3 := e.sendMessage(alice, room, "three")
	aliceSince := e.ephDoSync(alice, "", 0).NextBatch
	bobSince := e.ephDoSync(bob, "", 0).NextBatch

	e.do("POST", readMarkersPath(room), bob.Token, map[string]any{"m.fully_read": m1, "m.read": m2, "m.read.private": m3}, 200)

	s := e.ephDoSync(bob, bobSince, 5000)
	if got := ephFullyRead(t, s, room); got != m1 {
		t.Fatalf("bob's m.fully_read = %q, want %q", got, m1)
	}
	rc := ephReceipts(t, s, room)
	if _, ok := rc[m2]["m.read"][bob.ID]; !ok {
		t.Fatalf("bob's m.read missing from his sync: %+v", rc)
	}
	if _, ok := rc[m3]["m.read.private"][bob.ID]; !ok {
		t.Fatalf("bob's m.read.private missing from his sync: %+v", rc)
	}
	s = e.ephDoSync(alice, aliceSince, 5000)
	rc = ephReceipts(t, s, room)
	if _, ok := rc[m2]["m.read"][bob.ID]; !ok {
		t.Fatalf("alice does not see bob's m.read: %+v", rc)
	}
	if rc[m3] != nil || rc[m1] != nil {
		t.Fatalf("alice sees bob's private receipt or read marker: %+v", rc)
	}
	if ephFullyRead(t, s, room) != "" {
		t.Fatal("alice sees bob's m.fully_read")
	}

	// Every field is optional.
	e.do("POST", readMarkersPath(room), bob.Token, map[string]any{}, 200)
	e.do("POST", readMarkersPath(room), bob.Token, map[string]any{"m.read": m3}, 200)
}

func TestReadMarkersErrors(t *testing.T) {
	e := newEnv(t)
	alice, eve := e.register("alice"), e.register("eve")
	room := e.createRoom(alice, nil)
	other := e.createRoom(eve, nil)
	msg := e.sendMessage(alice, room, "hello")
	elsewhere := e.sendMessage(eve, other, "elsewhere")

	e.doErr("POST", readMarkersPath(room), "", map[string]any{"m.fully_read": msg}, 401, "M_MISSING_TOKEN")
	e.doErr("POST", readMarkersPath(room), eve.Token, map[string]any{"m.fully_read": msg}, 403, "M_FORBIDDEN")
	e.doErr("POST", readMarkersPath(room), alice.Token, map[string]any{"m.fully_read": "$missing:localhost"}, 404, "M_NOT_FOUND")
	e.doErr("POST", readMarkersPath(room), alice.Token, map[string]any{"m.read": elsewhere}, 404, "M_NOT_FOUND")
	e.doErr("POST", readMarkersPath(room), alice.Token, map[string]any{"m.read": 12}, 400, "M_BAD_JSON")
	e.doErr("POST", readMarkersPath(room), alice.Token, "not json", 400, "M_NOT_JSON")
	// Nothing is stored when one of the markers is bad.
	e.doErr("POST", readMarkersPath(room), alice.Token, map[string]any{"m.fully_read": msg, "m.read": "$missing:localhost"}, 404, "M_NOT_FOUND")
	e.doErr("GET", "/_matrix/client/v3/user/"+esc(alice.ID)+"/rooms/"+esc(room)+"/account_data/m.fully_read", alice.Token, nil, 404, "M_NOT_FOUND")
}
