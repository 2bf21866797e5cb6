package conformance

import (
	"encoding/json"
	"testing"

	"github.com/rempart-hs/rempart/internal/testserver"
)

// relSend sends an m.room.message relating to target with relType and
// returns its event ID.
func relSend(e *env, u user, roomID, body, relType, target string) string {
	e.t.Helper()
	return relSendContent(e, u, roomID, "m.room.message", map[string]any{
		"msgtype": "m.text", "body": body,
		"m.relates_to": map[string]any{"rel_type": relType, "event_id": target},
	})
}

// relSendContent sends an event with arbitrary content.
func relSendContent(e *env, u user, roomID, evType string, content map[string]any) string {
	e.t.Helper()
	var r struct {
		EventID string `json:"event_id"`
	}
	e.do("PUT", "/_matrix/client/v3/rooms/"+esc(roomID)+"/send/"+esc(evType)+"/"+esc(testserver.UniqueName("txn")), u.Token, content, 200).Decode(e.t, &r)
	return r.EventID
}

// relPage is a relations or threads response.
type relPage struct {
	Chunk []struct {
		EventID  string         `json:"event_id"`
		Type     string         `json:"type"`
		Unsigned map[string]any `json:"unsigned"`
	} `json:"chunk"`
	NextBatch      string `json:"next_batch"`
	PrevBatch      string `json:"prev_batch"`
	RecursionDepth *int   `json:"recursion_depth"`
}

// relGet fetches a relations or threads page.
func relGet(e *env, path, token string) relPage {
	e.t.Helper()
	var p relPage
	e.do("GET", path, token, nil, 200).Decode(e.t, &p)
	return p
}

func (p relPage) ids() []string {
	var out []string
	for _, c := range p.Chunk {
		out = append(out, c.EventID)
	}
	return out
}

func relPath(roomID, eventID string, rest ...string) string {
	p := "/_matrix/client/v1/rooms/" + esc(roomID) + "/relations/" + esc(eventID)
	for _, r := range rest {
		p += "/" + esc(r)
	}
	return p
}

func sameIDs(a, b []string) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

func TestRelations(t *testing.T) {
	e := newEnv(t)
	alice, bob, eve := e.register("alice"), e.register("bob"), e.register("eve")
	room := e.createRoom(alice, map[string]any{"preset": "public_chat"})
	e.join(bob, room)
	root := e.sendMessage(alice, room, "root")
	t1 := relSend(e, bob, room, "t1", "m.thread", root)
	react := relSendContent(e, alice, room, "m.reaction", map[string]any{"m.relates_to": map[string]any{"rel_type": "m.annotation", "event_id": root, "key": "👍"}})
	t2 := relSend(e, alice, room, "t2", "m.thread", root)
	t3 := relSend(e, bob, room, "t3", "m.thread", root)
	nested := relSendContent(e, alice, room, "m.reaction", map[string]any{"m.relates_to": map[string]any{"rel_type": "m.annotation", "event_id": t1, "key": "x"}})

	var p relPage
	p = relGet(e, relPath(room, root), alice.Token)
	if want := []string{t3, t2, react, t1}; !sameIDs(p.ids(), want) || p.NextBatch != "" || p.RecursionDepth != nil {
		t.Fatalf("relations = %v next=%q depth=%v, want %v newest first, no next_batch, no recursion_depth", p.ids(), p.NextBatch, p.RecursionDepth, want)
	}
	p = relGet(e, relPath(room, root, "m.thread"), alice.Token)
	if want := []string{t3, t2, t1}; !sameIDs(p.ids(), want) {
		t.Fatalf("m.thread relations = %v, want %v", p.ids(), want)
	}
	p = relGet(e, relPath(room, root, "m.annotation", "m.reaction"), alice.Token)
	if want := []string{react}; !sameIDs(p.ids(), want) {
		t.Fatalf("m.annotation/m.reaction relations = %v, want %v", p.ids(), want)
	}
	p = relGet(e, relPath(room, root, "m.annotation", "m.room.message"), alice.Token)
	if len(p.Chunk) != 0 {
		t.Fatalf("m.annotation/m.room.message relations = %v, want none", p.ids())
	}

	// Pagination backwards, then forwards.
	var got []string
	from := ""
	for page := 0; page < 5; page++ {
		path := relPath(room, root) + "?limit=2"
		if from != "" {
			path += "&from=" + from
		}
		p = relGet(e, path, alice.Token)
		got = append(got, p.ids()...)
		if from != "" && p.PrevBatch != from {
			t.Fatalf("prev_batch %q, want the from token %q", p.PrevBatch, from)
		}
		if p.NextBatch == "" {
			break
		}
		from = p.NextBatch
	}
	if want := []string{t3, t2, react, t1}; !sameIDs(got, want) {
		t.Fatalf("paginated relations = %v, want %v", got, want)
	}
	p = relGet(e, relPath(room, root)+"?dir=f&limit=3", alice.Token)
	if want := []string{t1, react, t2}; !sameIDs(p.ids(), want) || p.NextBatch == "" {
		t.Fatalf("dir=f relations = %v (next %q), want %v with a next_batch", p.ids(), p.NextBatch, want)
	}
	p = relGet(e, relPath(room, root)+"?dir=f&limit=3&from="+p.NextBatch, alice.Token)
	if want := []string{t3}; !sameIDs(p.ids(), want) || p.NextBatch != "" {
		t.Fatalf("second dir=f page = %v (next %q), want %v", p.ids(), p.NextBatch, want)
	}

	// Recursion includes the reaction to a thread reply.
	p = relGet(e, relPath(room, root)+"?recurse=true", alice.Token)
	if want := []string{nested, t3, t2, react, t1}; !sameIDs(p.ids(), want) || p.RecursionDepth == nil || *p.RecursionDepth < 3 {
		t.Fatalf("recurse=true relations = %v depth %v, want %v and a depth ≥ 3", p.ids(), p.RecursionDepth, want)
	}
	p = relGet(e, relPath(room, root)+"?recurse=false", alice.Token)
	if p.RecursionDepth == nil || len(p.Chunk) != 4 {
		t.Fatalf("recurse=false: %v depth %v, want 4 direct children and a recursion_depth", p.ids(), p.RecursionDepth)
	}

	// Errors.
	e.doErr("GET", relPath(room, root), "", nil, 401, "M_MISSING_TOKEN")
	e.doErr("GET", relPath(room, "$unknown:localhost"), alice.Token, nil, 404, "M_NOT_FOUND")
	e.doErr("GET", relPath(room, root), eve.Token, nil, 404, "M_NOT_FOUND")
	e.doErr("GET", relPath(room, root)+"?dir=sideways", alice.Token, nil, 400, "M_INVALID_PARAM")
	e.doErr("GET", relPath(room, root)+"?from=garbage", alice.Token, nil, 400, "M_INVALID_PARAM")
	e.doErr("GET", relPath(room, root)+"?to=garbage", alice.Token, nil, 400, "M_INVALID_PARAM")
	e.doErr("GET", relPath(room, root)+"?recurse=maybe", alice.Token, nil, 400, "M_INVALID_PARAM")
	e.doErr("GET", relPath(room, root)+"?limit=many", alice.Token, nil, 400, "M_INVALID_PARAM")
}

func TestRelationsHistoryVisibility(t *testing.T) {
	e := newEnv(t)
	alice, bob := e.register("alice"), e.register("bob")
	room := e.createRoom(alice, map[string]any{"preset": "public_chat"})
	e.do("PUT", "/_matrix/client/v3/rooms/"+esc(room)+"/state/m.room.history_visibility", alice.Token, map[string]any{"history_visibility": "joined"}, 200)
	early := e.sendMessage(alice, room, "before bob")
	relSend(e, alice, room, "reply before bob", "m.thread", early)
	e.join(bob, room)
	// Bob cannot see the earlier root, so its relations are not found.
	e.doErr("GET", relPath(room, early), bob.Token, nil, 404, "M_NOT_FOUND")

	root := e.sendMessage(alice, room, "while bob is here")
	in := relSend(e, alice, room, "bob sees this", "m.thread", root)
	e.do("POST", "/_matrix/client/v3/rooms/"+esc(room)+"/leave", bob.Token, map[string]any{}, 200)
	out := relSend(e, alice, room, "after bob left", "m.thread", root)
	var p relPage
	p = relGet(e, relPath(room, root), bob.Token)
	if want := []string{in}; !sameIDs(p.ids(), want) {
		t.Fatalf("bob (who left) sees %v, want only %v", p.ids(), want)
	}
	p = relGet(e, relPath(room, root), alice.Token)
	if want := []string{out, in}; !sameIDs(p.ids(), want) {
		t.Fatalf("alice sees %v, want %v", p.ids(), want)
	}
}

// relThread returns the m.thread bundle of an event's unsigned, or nil.
func relThread(t *testing.T, unsigned map[string]any) map[string]any {
	t.Helper()
	rels, _ := unsigned["m.relations"].(map[string]any)
	th, _ := rels["m.thread"].(map[string]any)
	return th
}

func TestBundledAggregations(t *testing.T) {
	e := newEnv(t)
	alice, bob := e.register("alice"), e.register("bob")
	room := e.createRoom(alice, map[string]any{"preset": "public_chat"})
	e.join(bob, room)
	root := e.sendMessage(alice, room, "root")
	relSend(e, alice, room, "r1", "m.thread", root)
	last := relSend(e, alice, room, "r2", "m.thread", root)
	orig := e.sendMessage(bob, room, "typo")
	edit1 := relSendContent(e, bob, room, "m.room.message", map[string]any{"msgtype": "m.text", "body": "* fix",
		"m.new_content": map[string]any{"msgtype": "m.text", "body": "fix"}, "m.relates_to": map[string]any{"rel_type": "m.replace", "event_id": orig}})
	edit2 := relSendContent(e, bob, room, "m.room.message", map[string]any{"msgtype": "m.text", "body": "* fixed",
		"m.new_content": map[string]any{"msgtype": "m.text", "body": "fixed"}, "m.relates_to": map[string]any{"rel_type": "m.replace", "event_id": orig}})
	// An edit by someone else is not valid and never bundled.
	relSendContent(e, alice, room, "m.room.message", map[string]any{"msgtype": "m.text", "body": "* hijack",
		"m.new_content": map[string]any{"msgtype": "m.text", "body": "hijack"}, "m.relates_to": map[string]any{"rel_type": "m.replace", "event_id": orig}})
	// The latest edit is the one with the largest origin_server_ts, ties
	// (two edits in one millisecond) going to the larger event ID.
	tsOf := func(eventID string) int64 {
		t.Helper()
		var ev struct {
			TS int64 `json:"origin_server_ts"`
		}
		e.do("GET", "/_matrix/client/v3/rooms/"+esc(room)+"/event/"+esc(eventID), bob.Token, nil, 200).Decode(t, &ev)
		return ev.TS
	}
	latest := edit2
	if ts1, ts2 := tsOf(edit1), tsOf(edit2); ts1 > ts2 || ts1 == ts2 && edit1 > edit2 {
		latest = edit1
	}

	check := func(where string, unsigned map[string]any, wantParticipated bool) {
		t.Helper()
		th := relThread(t, unsigned)
		if th == nil {
			t.Fatalf("%s: no m.thread bundle in %v", where, unsigned)
		}
		le, _ := th["latest_event"].(map[string]any)
		if th["count"] != float64(2) || le["event_id"] != last || th["current_user_participated"] != wantParticipated {
			t.Fatalf("%s: m.thread bundle %v, want count 2, latest %s, participated %v", where, th, last, wantParticipated)
		}
	}
	checkEdit := func(where string, unsigned map[string]any) {
		t.Helper()
		rels, _ := unsigned["m.relations"].(map[string]any)
		rep, _ := rels["m.replace"].(map[string]any)
		if rep["event_id"] != latest {
			t.Fatalf("%s: m.replace bundle %v, want the latest edit %s", where, rep, latest)
		}
	}

	unsignedOf := func(eventID, token string) map[string]any {
		t.Helper()
		var ev struct {
			Unsigned map[string]any `json:"unsigned"`
		}
		e.do("GET", "/_matrix/client/v3/rooms/"+esc(room)+"/event/"+esc(eventID), token, nil, 200).Decode(t, &ev)
		return ev.Unsigned
	}
	check("/event as alice", unsignedOf(root, alice.Token), true)
	check("/event as bob", unsignedOf(root, bob.Token), false)
	checkEdit("/event", unsignedOf(orig, alice.Token))

	var msgs struct {
		Chunk []struct {
			EventID  string         `json:"event_id"`
			Unsigned map[string]any `json:"unsigned"`
		} `json:"chunk"`
	}
	e.do("GET", "/_matrix/client/v3/rooms/"+esc(room)+"/messages?dir=b&limit=50", alice.Token, nil, 200).Decode(t, &msgs)
	seen := 0
	for _, c := range msgs.Chunk {
		switch c.EventID {
		case root:
			check("/messages", c.Unsigned, true)
			seen++
		case orig:
			checkEdit("/messages", c.Unsigned)
			seen++
		}
	}
	if seen != 2 {
		t.Fatalf("/messages did not return the root and the edited event")
	}

	s := e.ephDoSync(alice, "", 0)
	seen = 0
	for _, raw := range s.Rooms.Join[room].Timeline.Events {
		var c struct {
			EventID  string         `json:"event_id"`
			Unsigned map[string]any `json:"unsigned"`
		}
		if err := json.Unmarshal(raw, &c); err != nil {
			t.Fatal(err)
		}
		if c.EventID == orig {
			checkEdit("/sync", c.Unsigned)
			seen++
		}
	}
	if seen != 1 {
		t.Fatalf("sync timeline lacks the edited event")
	}

	// Redacting the original drops the edit bundle.
	e.do("PUT", "/_matrix/client/v3/rooms/"+esc(room)+"/redact/"+esc(orig)+"/"+esc(testserver.UniqueName("txn")), bob.Token, map[string]any{}, 200)
	if rels, ok := unsignedOf(orig, alice.Token)["m.relations"].(map[string]any); ok && rels["m.replace"] != nil {
		t.Fatalf("redacted event still bundles its edit: %v", rels)
	}
}

func TestThreadsList(t *testing.T) {
	e := newEnv(t)
	alice, bob, eve := e.register("alice"), e.register("bob"), e.register("eve")
	room := e.createRoom(alice, map[string]any{"preset": "public_chat"})
	e.join(bob, room)
	rootA := e.sendMessage(alice, room, "thread A")
	rootB := e.sendMessage(alice, room, "thread B")
	relSend(e, alice, room, "b1", "m.thread", rootB)
	relSend(e, alice, room, "a1", "m.thread", rootA) // A now has the latest reply
	path := "/_matrix/client/v1/rooms/" + esc(room) + "/threads"

	var p relPage
	p = relGet(e, path, alice.Token)
	if want := []string{rootA, rootB}; !sameIDs(p.ids(), want) {
		t.Fatalf("threads = %v, want %v (latest reply first)", p.ids(), want)
	}
	if th := relThread(t, p.Chunk[0].Unsigned); th == nil || th["count"] != float64(1) {
		t.Fatalf("thread root without its m.thread bundle: %v", p.Chunk[0].Unsigned)
	}
	// Pagination.
	p = relGet(e, path+"?limit=1", alice.Token)
	if want := []string{rootA}; !sameIDs(p.ids(), want) || p.NextBatch == "" {
		t.Fatalf("first page = %v next %q, want %v and a next_batch", p.ids(), p.NextBatch, want)
	}
	p = relGet(e, path+"?limit=1&from="+p.NextBatch, alice.Token)
	if want := []string{rootB}; !sameIDs(p.ids(), want) || p.NextBatch != "" {
		t.Fatalf("second page = %v next %q, want %v and no next_batch", p.ids(), p.NextBatch, want)
	}
	// Participation: bob has taken part in no thread, then in B.
	p = relGet(e, path+"?include=participated", bob.Token)
	if len(p.Chunk) != 0 {
		t.Fatalf("bob participated in %v, want none", p.ids())
	}
	relSend(e, bob, room, "b2", "m.thread", rootB)
	p = relGet(e, path+"?include=participated", bob.Token)
	if want := []string{rootB}; !sameIDs(p.ids(), want) {
		t.Fatalf("bob participated in %v, want %v", p.ids(), want)
	}
	p = relGet(e, path+"?include=all", bob.Token)
	if want := []string{rootB, rootA}; !sameIDs(p.ids(), want) {
		t.Fatalf("include=all for bob = %v, want %v", p.ids(), want)
	}

	e.doErr("GET", path, "", nil, 401, "M_MISSING_TOKEN")
	e.doErr("GET", path, eve.Token, nil, 403, "M_FORBIDDEN")
	e.doErr("GET", path+"?include=some", alice.Token, nil, 400, "M_INVALID_PARAM")
	e.doErr("GET", path+"?limit=0", alice.Token, nil, 400, "M_INVALID_PARAM")
	e.doErr("GET", path+"?from=bogus", alice.Token, nil, 400, "M_INVALID_PARAM")
}
