package conformance

import (
	"encoding/json"
	"net/url"
	"testing"
)

// ephSync is the part of a /sync response the ephemeral tests read.
type ephSync struct {
	NextBatch string `json:"next_batch"`
	Rooms     struct {
		Join map[string]struct {
			Ephemeral struct {
				Events []struct {
					Type    string          `json:"type"`
					Content json.RawMessage `json:"content"`
				} `json:"events"`
			} `json:"ephemeral"`
			AccountData struct {
				Events []struct {
					Type    string          `json:"type"`
					Content json.RawMessage `json:"content"`
				} `json:"events"`
			} `json:"account_data"`
			Timeline struct {
				Events []json.RawMessage `json:"events"`
			} `json:"timeline"`
		} `json:"join"`
	} `json:"rooms"`
}

// ephDoSync runs one /sync for u (initial when since is "") with the given
// long-poll timeout in milliseconds, validated against the spec.
func (e *env) ephDoSync(u user, since string, timeoutMS int) ephSync {
	e.t.Helper()
	q := url.Values{}
	q.Set("timeout", itoa(timeoutMS))
	if since != "" {
		q.Set("since", since)
	}
	var s ephSync
	e.do("GET", "/_matrix/client/v3/sync?"+q.Encode(), u.Token, nil, 200).Decode(e.t, &s)
	return s
}

func itoa(n int) string {
	b, _ := json.Marshal(n)
	return string(b)
}

// receiptEntry is one user's receipt in m.receipt content.
type receiptEntry struct {
	TS       int64  `json:"ts"`
	ThreadID string `json:"thread_id"`
}

// ephReceipts merges the m.receipt content of a room in a sync response:
// event ID → receipt type → user → entry.
func ephReceipts(t *testing.T, s ephSync, roomID string) map[string]map[string]map[string]receiptEntry {
	t.Helper()
	out := map[string]map[string]map[string]receiptEntry{}
	jr, ok := s.Rooms.Join[roomID]
	if !ok {
		return out
	}
	for _, ev := range jr.Ephemeral.Events {
		if ev.Type != "m.receipt" {
			continue
		}
		var c map[string]map[string]map[string]receiptEntry
		if err := json.Unmarshal(ev.Content, &c); err != nil {
			t.Fatalf("m.receipt content: %v: %s", err, ev.Content)
		}
		for evID, byType := range c {
			if out[evID] == nil {
				out[evID] = map[string]map[string]receiptEntry{}
			}
			for typ, byUser := range byType {
				if out[evID][typ] == nil {
					out[evID][typ] = map[string]receiptEntry{}
				}
				for u, en := range byUser {
					out[evID][typ][u] = en
				}
			}
		}
	}
	return out
}

func receiptPath(roomID, typ, eventID string) string {
	return "/_matrix/client/v3/rooms/" + esc(roomID) + "/receipt/" + esc(typ) + "/" + esc(eventID)
}

func TestReceiptsPublicPrivateAndThreaded(t *testing.T) {
	e := newEnv(t)
	alice, bob := e.register("alice"), e.register("bob")
	room := e.createRoom(alice, map[string]any{"preset": "public_chat"})
	e.join(bob, room)
	msg1 := e.sendMessage(alice, room, "one")
	msg2 := e.sendMessage(alice, room, "two")
	aliceSince := e.ephDoSync(alice, "", 0).NextBatch
	bobSince := e.ephDoSync(bob, "", 0).NextBatch

	// A public receipt reaches the other member.
	e.do("POST", receiptPath(room, "m.read", msg1), bob.Token, map[string]any{}, 200)
	s := e.ephDoSync(alice, aliceSince, 5000)
	aliceSince = s.NextBatch
	rc := ephReceipts(t, s, room)
	en, ok := rc[msg1]["m.read"][bob.ID]
	if !ok || en.TS == 0 || en.ThreadID != "" {
		t.Fatalf("alice does not see bob's unthreaded m.read on %s: %+v", msg1, rc)
	}

	// A private receipt is shown to its owner only.
	e.do("POST", receiptPath(room, "m.read.private", msg2), bob.Token, map[string]any{}, 200)
	s = e.ephDoSync(bob, bobSince, 5000)
	if _, ok := ephReceipts(t, s, room)[msg2]["m.read.private"][bob.ID]; !ok {
		t.Fatalf("bob does not see his own private receipt: %+v", ephReceipts(t, s, room))
	}
	s = e.ephDoSync(alice, aliceSince, 0)
	if rc := ephReceipts(t, s, room); rc[msg2] != nil {
		t.Fatalf("alice sees bob's private receipt: %+v", rc)
	}
	if full := ephReceipts(t, e.ephDoSync(alice, "", 0), room); full[msg2] != nil {
		t.Fatalf("alice's initial sync shows bob's private receipt: %+v", full)
	}

	// Threaded receipts: on the main timeline and in a thread.
	root := e.sendMessage(alice, room, "thread root")
	reply := relSend(e, alice, room, "in thread", "m.thread", root)
	e.do("POST", receiptPath(room, "m.read", root), bob.Token, map[string]any{"thread_id": "main"}, 200)
	e.do("POST", receiptPath(room, "m.read", reply), bob.Token, map[string]any{"thread_id": root}, 200)
	s = e.ephDoSync(alice, aliceSince, 5000)
	rc = ephReceipts(t, s, room)
	if rc[root]["m.read"][bob.ID].ThreadID != "main" || rc[reply]["m.read"][bob.ID].ThreadID != root {
		t.Fatalf("threaded receipts not delivered with their thread_id: %+v", rc)
	}

	// The thread_id must agree with the event.
	e.doErr("POST", receiptPath(room, "m.read", reply), bob.Token, map[string]any{"thread_id": "main"}, 400, "M_INVALID_PARAM")
	e.doErr("POST", receiptPath(room, "m.read", msg1), bob.Token, map[string]any{"thread_id": root}, 400, "M_INVALID_PARAM")
	e.doErr("POST", receiptPath(room, "m.read", msg1), bob.Token, map[string]any{"thread_id": "not-an-event"}, 400, "M_INVALID_PARAM")
}

func TestReceiptErrors(t *testing.T) {
	e := newEnv(t)
	alice, bob, eve := e.register("alice"), e.register("bob"), e.register("eve")
	room := e.createRoom(alice, map[string]any{"preset": "public_chat"})
	other := e.createRoom(eve, nil)
	e.join(bob, room)
	msg := e.sendMessage(alice, room, "hello")
	elsewhere := e.sendMessage(eve, other, "elsewhere")

	e.doErr("POST", receiptPath(room, "m.read", msg), "", map[string]any{}, 401, "M_MISSING_TOKEN")
	e.doErr("POST", receiptPath(room, "m.unknown", msg), bob.Token, map[string]any{}, 400, "M_INVALID_PARAM")
	// thread_id: not a string, empty, or with m.fully_read.
	e.doErr("POST", receiptPath(room, "m.read", msg), bob.Token, map[string]any{"thread_id": 5}, 400, "M_INVALID_PARAM")
	e.doErr("POST", receiptPath(room, "m.read", msg), bob.Token, map[string]any{"thread_id": ""}, 400, "M_INVALID_PARAM")
	e.doErr("POST", receiptPath(room, "m.fully_read", msg), bob.Token, map[string]any{"thread_id": "main"}, 400, "M_INVALID_PARAM")
	e.doErr("POST", receiptPath(room, "m.read", msg), bob.Token, "[]", 400, "M_BAD_JSON")
	e.doErr("POST", receiptPath(room, "m.read", msg), bob.Token, "{", 400, "M_NOT_JSON")
	// Unknown events, events of another room.
	e.doErr("POST", receiptPath(room, "m.read", "$nope:localhost"), bob.Token, map[string]any{}, 404, "M_NOT_FOUND")
	e.doErr("POST", receiptPath(room, "m.read", elsewhere), bob.Token, map[string]any{}, 404, "M_NOT_FOUND")
	e.doErr("POST", receiptPath(room, "m.read", "not-an-event-id"), bob.Token, map[string]any{}, 400, "M_INVALID_PARAM")
	// Only joined members may send receipts.
	e.doErr("POST", receiptPath(room, "m.read", msg), eve.Token, map[string]any{}, 403, "M_FORBIDDEN")
	e.doErr("POST", receiptPath("!unknown:localhost", "m.read", msg), eve.Token, map[string]any{}, 403, "M_FORBIDDEN")
	e.do("POST", "/_matrix/client/v3/rooms/"+esc(room)+"/leave", bob.Token, map[string]any{}, 200)
	e.doErr("POST", receiptPath(room, "m.read", msg), bob.Token, map[string]any{}, 403, "M_FORBIDDEN")
}

func TestReceiptFullyReadSetsAccountData(t *testing.T) {
	e := newEnv(t)
	alice := e.register("alice")
	room := e.createRoom(alice, nil)
	first := e.sendMessage(alice, room, "first")
	second := e.sendMessage(alice, room, "second")
	since := e.ephDoSync(alice, "", 0).NextBatch

	e.do("POST", receiptPath(room, "m.fully_read", second), alice.Token, map[string]any{}, 200)
	s := e.ephDoSync(alice, since, 5000)
	if got := ephFullyRead(t, s, room); got != second {
		t.Fatalf("m.fully_read account data = %q, want %q", got, second)
	}
	if rc := ephReceipts(t, s, room); len(rc) != 0 {
		t.Fatalf("m.fully_read appeared under m.receipt: %+v", rc)
	}
	var ad struct {
		EventID string `json:"event_id"`
	}
	e.do("GET", "/_matrix/client/v3/user/"+esc(alice.ID)+"/rooms/"+esc(room)+"/account_data/m.fully_read", alice.Token, nil, 200).Decode(t, &ad)
	if ad.EventID != second {
		t.Fatalf("GET m.fully_read = %q, want %q", ad.EventID, second)
	}
	// Markers do not move backwards.
	e.do("POST", receiptPath(room, "m.fully_read", first), alice.Token, map[string]any{}, 200)
	e.do("GET", "/_matrix/client/v3/user/"+esc(alice.ID)+"/rooms/"+esc(room)+"/account_data/m.fully_read", alice.Token, nil, 200).Decode(t, &ad)
	if ad.EventID != second {
		t.Fatalf("m.fully_read moved back to %q", ad.EventID)
	}
}

// ephFullyRead returns the m.fully_read event ID in a room's account data
// of a sync response ("" if absent).
func ephFullyRead(t *testing.T, s ephSync, roomID string) string {
	t.Helper()
	for _, ev := range s.Rooms.Join[roomID].AccountData.Events {
		if ev.Type == "m.fully_read" {
			var c struct {
				EventID string `json:"event_id"`
			}
			if err := json.Unmarshal(ev.Content, &c); err != nil {
				t.Fatalf("m.fully_read content: %v", err)
			}
			return c.EventID
		}
	}
	return ""
}
