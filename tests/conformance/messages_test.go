package conformance

import (
	"fmt"
	"net/url"
	"strings"
	"testing"
)

// messagesPage is a decoded /messages response.
type messagesPage struct {
	Chunk []map[string]any `json:"chunk"`
	Start string           `json:"start"`
	End   string           `json:"end"`
	State []map[string]any `json:"state"`
}

// messages calls GET /rooms/{roomId}/messages with the query parameters.
func (e *env) messages(u user, roomID string, q url.Values) messagesPage {
	e.t.Helper()
	var p messagesPage
	e.do("GET", roomPath(roomID, "/messages?"+q.Encode()), u.Token, nil, 200).Decode(e.t, &p)
	return p
}

// bodies returns the message bodies of a chunk, in order.
func bodies(chunk []map[string]any) []string {
	var out []string
	for _, ev := range chunk {
		if ev["type"] == "m.room.message" {
			c, _ := ev["content"].(map[string]any)
			b, _ := c["body"].(string)
			out = append(out, b)
		}
	}
	return out
}

// eventIDs returns the event IDs of a chunk, in order.
func eventIDs(chunk []map[string]any) []string {
	out := make([]string, 0, len(chunk))
	for _, ev := range chunk {
		out = append(out, ev["event_id"].(string))
	}
	return out
}

// Sending: PUT /rooms/{roomId}/send/{eventType}/{txnId} with transaction
// idempotency per device, and the event size limit.
func TestSend(t *testing.T) {
	e := newEnv(t)
	alice := e.register("snd")
	stranger := e.register("snds")
	room := e.createRoom(alice, map[string]any{"preset": "public_chat"})
	send := func(u user, txn string, body any) string {
		t.Helper()
		return e.do("PUT", roomPath(room, "/send/m.room.message/"+esc(txn)), u.Token, body, 200).JSON(t)["event_id"].(string)
	}
	msg := map[string]any{"msgtype": "m.text", "body": "once"}
	first := send(alice, "t1", msg)
	if again := send(alice, "t1", map[string]any{"msgtype": "m.text", "body": "different"}); again != first {
		t.Fatalf("same txn on the same device gave %s then %s", first, again)
	}
	// The same transaction ID from another device of the same user is a new event.
	other := e.passwordLogin(alice.ID, nil, 200)
	alice2 := user{ID: alice.ID, Token: other["access_token"].(string), DeviceID: other["device_id"].(string)}
	if ev := send(alice2, "t1", msg); ev == first {
		t.Fatal("same txn from another device returned the first device's event")
	}
	// And from the same device in another room.
	room2 := e.createRoom(alice, nil)
	if ev := e.do("PUT", roomPath(room2, "/send/m.room.message/t1"), alice.Token, msg, 200).JSON(t)["event_id"]; ev == first {
		t.Fatal("same txn in another room returned the first room's event")
	}
	// Only one event was stored for the repeated txn.
	p := e.messages(alice, room, url.Values{"dir": {"b"}, "limit": {"50"}})
	if n := strings.Count(strings.Join(bodies(p.Chunk), "|"), "once"); n != 2 {
		t.Fatalf("found %d 'once' messages, want 2 (one per device): %v", n, bodies(p.Chunk))
	}
	// transaction_id is shown to the sending device only.
	ev := e.do("GET", roomPath(room, "/event/"+esc(first)), alice.Token, nil, 200).JSON(t)
	if ev["unsigned"].(map[string]any)["transaction_id"] != "t1" {
		t.Fatalf("sender's device does not see transaction_id: %v", ev["unsigned"])
	}
	ev = e.do("GET", roomPath(room, "/event/"+esc(first)), alice2.Token, nil, 200).JSON(t)
	if _, ok := ev["unsigned"].(map[string]any)["transaction_id"]; ok {
		t.Fatalf("another device sees transaction_id: %v", ev["unsigned"])
	}

	// Custom event types and any JSON object content are accepted.
	e.do("PUT", roomPath(room, "/send/org.example.custom/t2"), alice.Token, map[string]any{"nested": map[string]any{"a": []any{1, "x"}}}, 200)
	e.do("PUT", roomPath(room, "/send/m.room.message/t3"), alice.Token, "", 200) // empty body = {}

	// Size limit: the whole event must fit in 65,536 bytes.
	send(alice, "big-ok", map[string]any{"msgtype": "m.text", "body": strings.Repeat("x", 60000)})
	e.doErr("PUT", roomPath(room, "/send/m.room.message/big"), alice.Token, map[string]any{"msgtype": "m.text", "body": strings.Repeat("x", 65500)}, 413, "M_TOO_LARGE")
	e.doErr("PUT", roomPath(room, "/send/m.room.message/bigger"), alice.Token, map[string]any{"msgtype": "m.text", "body": strings.Repeat("x", 200000)}, 413, "M_TOO_LARGE")

	// Errors.
	e.doErr("PUT", roomPath(room, "/send/m.room.message/t4"), stranger.Token, msg, 403, "M_FORBIDDEN")
	e.doErr("PUT", roomPath("!nope:"+e.srv.Config.ServerName, "/send/m.room.message/t5"), alice.Token, msg, 404, "M_NOT_FOUND")
	e.doErr("PUT", roomPath("nope", "/send/m.room.message/t5"), alice.Token, msg, 400, "M_INVALID_PARAM")
	e.doErr("PUT", roomPath(room, "/send/m.room.message/t6"), alice.Token, "{not json", 400, "M_NOT_JSON")
	e.doErr("PUT", roomPath(room, "/send/m.room.message/t7"), alice.Token, `"a string"`, 400, "M_BAD_JSON")
	e.doErr("PUT", roomPath(room, "/send/m.room.message/t8"), alice.Token, `{"body":"a","body":"b"}`, 400, "M_BAD_JSON")
	e.doErr("PUT", roomPath(room, "/send/m.room.message/t9"), "", msg, 401, "M_MISSING_TOKEN")
	e.doErr("PUT", roomPath(room, "/send/"+strings.Repeat("t", 300)+"/t10"), alice.Token, msg, 400, "M_INVALID_PARAM")
	e.doErr("POST", roomPath(room, "/send/m.room.message/t11"), alice.Token, msg, 405, "M_UNRECOGNIZED")
	// A power level above the sender's refuses the event type.
	e.do("PUT", roomPath(room, "/state/m.room.power_levels/"), alice.Token, map[string]any{
		"users": map[string]any{alice.ID: 100}, "events": map[string]any{"org.example.locked": 100}, "state_default": 50, "events_default": 0}, 200)
	e.join(stranger, room)
	e.doErr("PUT", roomPath(room, "/send/org.example.locked/t12"), stranger.Token, map[string]any{}, 403, "M_FORBIDDEN")
	e.do("PUT", roomPath(room, "/send/org.example.locked/t12"), alice.Token, map[string]any{}, 200)
}

// Pagination: GET /rooms/{roomId}/messages in both directions with
// from/to/limit and filters.
func TestMessages(t *testing.T) {
	e := newEnv(t)
	alice := e.register("msa")
	bob := e.register("msb")
	stranger := e.register("mss")
	room := e.createRoom(alice, map[string]any{"preset": "public_chat"})
	e.join(bob, room)
	var sent []string
	for i := 1; i <= 25; i++ {
		u := alice
		if i%5 == 0 {
			u = bob
		}
		sent = append(sent, fmt.Sprintf("m%02d", i))
		e.sendMessage(u, room, sent[len(sent)-1])
	}
	// Another room's events interleave in the stream without showing up.
	noise := e.createRoom(alice, nil)
	e.sendMessage(alice, noise, "elsewhere")
	e.sendMessage(alice, room, "m26")
	sent = append(sent, "m26")

	// Backwards from the end, page by page, until no end token.
	var back []string
	var backIDs []string
	q := url.Values{"dir": {"b"}, "limit": {"7"}}
	pages := 0
	for {
		p := e.messages(alice, room, q)
		pages++
		if len(p.Chunk) > 7 {
			t.Fatalf("page of %d events with limit 7", len(p.Chunk))
		}
		back = append(back, bodies(p.Chunk)...)
		backIDs = append(backIDs, eventIDs(p.Chunk)...)
		if q.Get("from") != "" && p.Start != q.Get("from") {
			t.Fatalf("start %q != from %q", p.Start, q.Get("from"))
		}
		if p.End == "" {
			break
		}
		if pages > 20 {
			t.Fatal("pagination does not terminate")
		}
		q.Set("from", p.End)
	}
	for i, b := range back {
		if want := sent[len(sent)-1-i]; b != want {
			t.Fatalf("backwards message %d = %s, want %s (all: %v)", i, b, want, back)
		}
	}
	if len(back) != len(sent) {
		t.Fatalf("backwards pagination saw %d messages, want %d", len(back), len(sent))
	}
	if backIDs[len(backIDs)-1] == "" {
		t.Fatal("empty event ID")
	}

	// Forwards from the start: the same events in the opposite order,
	// ending with the create event first.
	var fwdIDs []string
	q = url.Values{"dir": {"f"}, "limit": {"9"}}
	for pages = 0; ; pages++ {
		p := e.messages(alice, room, q)
		fwdIDs = append(fwdIDs, eventIDs(p.Chunk)...)
		if p.End == "" || pages > 20 {
			break
		}
		q.Set("from", p.End)
	}
	if len(fwdIDs) != len(backIDs) {
		t.Fatalf("forwards saw %d events, backwards %d", len(fwdIDs), len(backIDs))
	}
	for i := range fwdIDs {
		if fwdIDs[i] != backIDs[len(backIDs)-1-i] {
			t.Fatalf("forwards and backwards orders differ at %d", i)
		}
	}
	first := e.messages(alice, room, url.Values{"dir": {"f"}, "limit": {"1"}})
	if first.Chunk[0]["type"] != "m.room.create" {
		t.Fatalf("first event is %v", first.Chunk[0]["type"])
	}

	// from/to: the window between two tokens.
	p1 := e.messages(alice, room, url.Values{"dir": {"b"}, "limit": {"5"}})  // m26..m22
	p2 := e.messages(alice, room, url.Values{"dir": {"b"}, "limit": {"10"}}) // m26..m17
	win := e.messages(alice, room, url.Values{"dir": {"b"}, "from": {p1.End}, "to": {p2.End}, "limit": {"100"}})
	if got := strings.Join(bodies(win.Chunk), ","); got != "m21,m20,m19,m18,m17" {
		t.Fatalf("window b = %s", got)
	}
	if win.End != "" {
		t.Fatalf("window reached its bound but has end %q", win.End)
	}
	win = e.messages(alice, room, url.Values{"dir": {"f"}, "from": {p2.End}, "to": {p1.End}, "limit": {"100"}})
	if got := strings.Join(bodies(win.Chunk), ","); got != "m17,m18,m19,m20,m21" {
		t.Fatalf("window f = %s", got)
	}

	// Filters.
	f := func(js string, limit int) messagesPage {
		return e.messages(alice, room, url.Values{"dir": {"b"}, "limit": {fmt.Sprint(limit)}, "filter": {js}})
	}
	for _, ev := range f(`{"types":["m.room.message"]}`, 30).Chunk {
		if ev["type"] != "m.room.message" {
			t.Fatalf("types filter let through %v", ev["type"])
		}
	}
	if got := bodies(f(`{"senders":["`+bob.ID+`"]}`, 30).Chunk); strings.Join(got, ",") != "m25,m20,m15,m10,m05" {
		t.Fatalf("senders filter = %v", got)
	}
	// A sparse filter still fills the page when enough events match.
	if got := bodies(f(`{"senders":["`+bob.ID+`"]}`, 3).Chunk); strings.Join(got, ",") != "m25,m20,m15" {
		t.Fatalf("senders filter with limit = %v", got)
	}
	for _, ev := range f(`{"not_types":["m.room.message"]}`, 30).Chunk {
		if ev["type"] == "m.room.message" {
			t.Fatal("not_types let a message through")
		}
	}
	for _, ev := range f(`{"not_senders":["`+alice.ID+`"]}`, 30).Chunk {
		if ev["sender"] == alice.ID {
			t.Fatal("not_senders let alice through")
		}
	}
	lazy := f(`{"lazy_load_members":true,"types":["m.room.message"]}`, 3) // m26 (alice), m25 (bob), m24 (alice)
	members := map[string]bool{}
	for _, ev := range lazy.State {
		if ev["type"] != "m.room.member" {
			t.Fatalf("lazy-loading state has %v", ev["type"])
		}
		members[ev["state_key"].(string)] = true
	}
	if !members[alice.ID] || !members[bob.ID] || len(members) != 2 {
		t.Fatalf("lazy-loaded members = %v", members)
	}
	if none := f(`{"types":["org.example.nothing"]}`, 10); len(none.Chunk) != 0 || none.End != "" {
		t.Fatalf("filter matching nothing = %d events, end %q", len(none.Chunk), none.End)
	}

	// Errors.
	mp := roomPath(room, "/messages")
	e.doErr("GET", mp+"?dir=x", alice.Token, nil, 400, "M_INVALID_PARAM")
	e.doErr("GET", mp, alice.Token, nil, 400, "M_INVALID_PARAM")
	e.doErr("GET", mp+"?dir=b&limit=many", alice.Token, nil, 400, "M_INVALID_PARAM")
	e.doErr("GET", mp+"?dir=b&limit=-1", alice.Token, nil, 400, "M_INVALID_PARAM")
	e.doErr("GET", mp+"?dir=b&from=garbage", alice.Token, nil, 400, "M_INVALID_PARAM")
	e.doErr("GET", mp+"?dir=b&to=garbage", alice.Token, nil, 400, "M_INVALID_PARAM")
	e.doErr("GET", mp+"?dir=b&filter="+url.QueryEscape("{not json"), alice.Token, nil, 400, "M_INVALID_PARAM")
	e.doErr("GET", mp+"?dir=b", stranger.Token, nil, 403, "M_FORBIDDEN")
	e.doErr("GET", mp+"?dir=b", "", nil, 401, "M_MISSING_TOKEN")

	// A user who left reads up to their leave, not beyond.
	e.do("POST", roomPath(room, "/leave"), bob.Token, map[string]any{}, 200)
	e.sendMessage(alice, room, "after bob left")
	left := e.messages(bob, room, url.Values{"dir": {"b"}, "limit": {"3"}})
	if left.Chunk[0]["type"] != "m.room.member" || left.Chunk[0]["state_key"] != bob.ID {
		t.Fatalf("left user's newest event = %v", left.Chunk[0])
	}
	all := e.messages(bob, room, url.Values{"dir": {"f"}, "limit": {"100"}})
	if strings.Contains(strings.Join(bodies(all.Chunk), ","), "after bob left") {
		t.Fatal("a left user reads messages sent after they left")
	}
}

// Event context: GET /rooms/{roomId}/context/{eventId}.
func TestContext(t *testing.T) {
	e := newEnv(t)
	alice := e.register("cxa")
	bob := e.register("cxb")
	room := e.createRoom(alice, map[string]any{"preset": "public_chat"})
	e.join(bob, room)
	var ids []string
	for i := 1; i <= 9; i++ {
		ids = append(ids, e.sendMessage(alice, room, fmt.Sprintf("c%d", i)))
	}
	ctxPath := func(id string, q string) string { return roomPath(room, "/context/"+esc(id)+q) }
	var c struct {
		Event        map[string]any   `json:"event"`
		EventsBefore []map[string]any `json:"events_before"`
		EventsAfter  []map[string]any `json:"events_after"`
		Start, End   string
		State        []map[string]any `json:"state"`
	}
	e.do("GET", ctxPath(ids[4], "?limit=4"), bob.Token, nil, 200).Decode(t, &c)
	if c.Event["event_id"] != ids[4] {
		t.Fatalf("event = %v", c.Event["event_id"])
	}
	if got := strings.Join(bodies(c.EventsBefore), ","); got != "c4,c3" {
		t.Fatalf("events_before = %s", got)
	}
	if got := strings.Join(bodies(c.EventsAfter), ","); got != "c6,c7" {
		t.Fatalf("events_after = %s", got)
	}
	if len(c.State) == 0 {
		t.Fatal("no state in context")
	}
	// The tokens continue where the context stops.
	before := e.messages(bob, room, url.Values{"dir": {"b"}, "from": {c.Start}, "limit": {"2"}})
	if got := strings.Join(bodies(before.Chunk), ","); got != "c2,c1" {
		t.Fatalf("/messages from context start = %s", got)
	}
	after := e.messages(bob, room, url.Values{"dir": {"f"}, "from": {c.End}, "limit": {"2"}})
	if got := strings.Join(bodies(after.Chunk), ","); got != "c8,c9" {
		t.Fatalf("/messages from context end = %s", got)
	}
	// Lazy loading keeps only the members that matter.
	e.do("GET", ctxPath(ids[4], "?limit=2&filter="+url.QueryEscape(`{"lazy_load_members":true}`)), bob.Token, nil, 200).Decode(t, &c)
	for _, ev := range c.State {
		if ev["type"] == "m.room.member" && ev["state_key"] != alice.ID {
			t.Fatalf("lazy context state has member %v", ev["state_key"])
		}
	}
	e.do("GET", ctxPath(ids[0], "?limit=0"), bob.Token, nil, 200)

	stranger := e.register("cxs")
	e.doErr("GET", ctxPath(ids[4], ""), stranger.Token, nil, 403, "M_FORBIDDEN")
	e.doErr("GET", ctxPath("$nope", ""), bob.Token, nil, 404, "M_NOT_FOUND")
	e.doErr("GET", ctxPath(ids[4], "?limit=x"), bob.Token, nil, 400, "M_INVALID_PARAM")
	other := e.createRoom(alice, map[string]any{"preset": "public_chat"})
	e.join(bob, other)
	e.doErr("GET", roomPath(other, "/context/"+esc(ids[4])), bob.Token, nil, 404, "M_NOT_FOUND") // event of another room
}
