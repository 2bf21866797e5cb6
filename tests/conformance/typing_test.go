package conformance

import (
	"encoding/json"
	"testing"
)

func typingPath(roomID, userID string) string {
	return "/_matrix/client/v3/rooms/" + esc(roomID) + "/typing/" + esc(userID)
}

// ephTyping returns the user IDs of the room's m.typing event in a sync
// response, and whether there was one.
func ephTyping(t *testing.T, s ephSync, roomID string) ([]string, bool) {
	t.Helper()
	for _, ev := range s.Rooms.Join[roomID].Ephemeral.Events {
		if ev.Type == "m.typing" {
			var c struct {
				UserIDs []string `json:"user_ids"`
			}
			if err := json.Unmarshal(ev.Content, &c); err != nil {
				t.Fatalf("m.typing content: %v", err)
			}
			return c.UserIDs, true
		}
	}
	return nil, false
}

func TestTyping(t *testing.T) {
	e := newEnv(t)
	alice, bob := e.register("alice"), e.register("bob")
	room := e.createRoom(alice, map[string]any{"preset": "public_chat"})
	e.join(bob, room)
	since := e.ephDoSync(bob, "", 0).NextBatch

	e.do("PUT", typingPath(room, alice.ID), alice.Token, map[string]any{"typing": true, "timeout": 30000}, 200)
	s := e.ephDoSync(bob, since, 5000)
	since = s.NextBatch
	if users, ok := ephTyping(t, s, room); !ok || len(users) != 1 || users[0] != alice.ID {
		t.Fatalf("bob's sync m.typing = %v (present %v), want [%s]", users, ok, alice.ID)
	}
	e.do("PUT", typingPath(room, alice.ID), alice.Token, map[string]any{"typing": false}, 200)
	s = e.ephDoSync(bob, since, 5000)
	if users, ok := ephTyping(t, s, room); !ok || len(users) != 0 {
		t.Fatalf("after typing:false bob's m.typing = %v (present %v), want []", users, ok)
	}
	// A huge timeout is accepted (and capped by the server).
	e.do("PUT", typingPath(room, alice.ID), alice.Token, map[string]any{"typing": true, "timeout": 1 << 40}, 200)
}

func TestTypingErrors(t *testing.T) {
	e := newEnv(t)
	alice, bob, eve := e.register("alice"), e.register("bob"), e.register("eve")
	room := e.createRoom(alice, map[string]any{"preset": "public_chat"})
	e.join(bob, room)
	on := map[string]any{"typing": true, "timeout": 1000}

	e.doErr("PUT", typingPath(room, alice.ID), "", on, 401, "M_MISSING_TOKEN")
	// Only for oneself.
	e.doErr("PUT", typingPath(room, alice.ID), bob.Token, on, 403, "M_FORBIDDEN")
	// Only in rooms one is joined to.
	e.doErr("PUT", typingPath(room, eve.ID), eve.Token, on, 403, "M_FORBIDDEN")
	e.doErr("PUT", typingPath("!nowhere:localhost", eve.ID), eve.Token, on, 403, "M_FORBIDDEN")
	// Body checks.
	e.doErr("PUT", typingPath(room, bob.ID), bob.Token, map[string]any{"timeout": 1000}, 400, "M_BAD_JSON")
	e.doErr("PUT", typingPath(room, bob.ID), bob.Token, map[string]any{"typing": "yes"}, 400, "M_BAD_JSON")
	e.doErr("PUT", typingPath(room, bob.ID), bob.Token, map[string]any{"typing": true, "timeout": "long"}, 400, "M_BAD_JSON")
	e.doErr("PUT", typingPath(room, bob.ID), bob.Token, map[string]any{"typing": true, "timeout": -5}, 400, "M_INVALID_PARAM")
	e.doErr("PUT", typingPath(room, "not-a-user"), bob.Token, on, 400, "M_INVALID_PARAM")
	e.doErr("PUT", typingPath("not-a-room", bob.ID), bob.Token, on, 400, "M_INVALID_PARAM")
}
