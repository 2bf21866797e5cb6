package conformance

import (
	"net/url"
	"slices"
	"strings"
	"testing"
	"time"
)

// syncResp is the part of a /sync response these tests read.
type syncResp struct {
	NextBatch string `json:"next_batch"`
	Rooms     struct {
		Join map[string]struct {
			State struct {
				Events []map[string]any `json:"events"`
			} `json:"state"`
			Timeline struct {
				Events    []map[string]any `json:"events"`
				Limited   bool             `json:"limited"`
				PrevBatch string           `json:"prev_batch"`
			} `json:"timeline"`
			Summary map[string]any `json:"summary"`
		} `json:"join"`
		Invite map[string]struct {
			InviteState struct {
				Events []map[string]any `json:"events"`
			} `json:"invite_state"`
		} `json:"invite"`
		Leave map[string]struct {
			State struct {
				Events []map[string]any `json:"events"`
			} `json:"state"`
			Timeline struct {
				Events  []map[string]any `json:"events"`
				Limited bool             `json:"limited"`
			} `json:"timeline"`
		} `json:"leave"`
	} `json:"rooms"`
}

// sync calls GET /sync with the query parameters and validates the
// response.
func (e *env) sync(u user, q url.Values) syncResp {
	e.t.Helper()
	var s syncResp
	e.do("GET", "/_matrix/client/v3/sync?"+q.Encode(), u.Token, nil, 200).Decode(e.t, &s)
	if s.NextBatch == "" {
		e.t.Fatal("sync without next_batch")
	}
	return s
}

// stateKeys lists "type|state_key" of state events.
func stateKeys(evs []map[string]any) []string {
	var out []string
	for _, ev := range evs {
		sk, _ := ev["state_key"].(string)
		out = append(out, ev["type"].(string)+"|"+sk)
	}
	slices.Sort(out)
	return out
}

// Initial and incremental sync, the timeline limit with limited and a
// prev_batch usable with /messages, and state deltas when a timeline is
// limited.
func TestSyncTimeline(t *testing.T) {
	e := newEnv(t)
	alice := e.register("sya")
	bob := e.register("syb")
	room := e.createRoom(alice, map[string]any{"preset": "public_chat", "name": "sync room"})
	e.join(bob, room)
	for i := 0; i < 8; i++ {
		e.sendMessage(alice, room, "early")
	}

	lim := url.Values{"filter": {`{"room":{"timeline":{"limit":3}}}`}}
	s := e.sync(bob, lim)
	jr, ok := s.Rooms.Join[room]
	if !ok {
		t.Fatalf("initial sync lacks the room: %+v", s.Rooms)
	}
	if len(jr.Timeline.Events) != 3 || !jr.Timeline.Limited || jr.Timeline.PrevBatch == "" {
		t.Fatalf("initial timeline: %d events, limited %v, prev_batch %q", len(jr.Timeline.Events), jr.Timeline.Limited, jr.Timeline.PrevBatch)
	}
	// The state is the state before the timeline, never repeating it.
	keys := stateKeys(jr.State.Events)
	for _, k := range []string{"m.room.create|", "m.room.name|", "m.room.member|" + alice.ID, "m.room.member|" + bob.ID, "m.room.power_levels|"} {
		if !slices.Contains(keys, k) {
			t.Fatalf("initial state lacks %s: %v", k, keys)
		}
	}
	if jr.Summary["m.joined_member_count"] != float64(2) {
		t.Fatalf("summary = %v", jr.Summary)
	}
	// prev_batch continues right before the timeline.
	tlIDs := eventIDs(jr.Timeline.Events)
	p := e.messages(bob, room, url.Values{"dir": {"b"}, "from": {jr.Timeline.PrevBatch}, "limit": {"2"}})
	if len(p.Chunk) != 2 || slices.Contains(tlIDs, p.Chunk[0]["event_id"].(string)) {
		t.Fatalf("/messages from prev_batch overlaps the timeline: %v vs %v", eventIDs(p.Chunk), tlIDs)
	}
	full := e.messages(bob, room, url.Values{"dir": {"b"}, "limit": {"4"}})
	if got := eventIDs(full.Chunk); got[3] != p.Chunk[0]["event_id"] {
		t.Fatalf("/messages from prev_batch leaves a gap: newest 4 %v, then %v", got, eventIDs(p.Chunk))
	}

	// Nothing new: the room is absent from an incremental sync.
	since := s.NextBatch
	q := url.Values{"since": {since}, "filter": lim["filter"]}
	if s2 := e.sync(bob, q); len(s2.Rooms.Join) != 0 {
		t.Fatalf("quiet incremental sync has rooms: %+v", s2.Rooms.Join)
	}
	// New messages, not limited.
	e.sendMessage(alice, room, "new1")
	e.sendMessage(alice, room, "new2")
	s2 := e.sync(bob, q)
	jr = s2.Rooms.Join[room]
	if got := strings.Join(bodies(jr.Timeline.Events), ","); got != "new1,new2" || jr.Timeline.Limited {
		t.Fatalf("incremental timeline %q limited %v", got, jr.Timeline.Limited)
	}
	if len(jr.State.Events) != 0 {
		t.Fatalf("unlimited incremental sync has state %v", stateKeys(jr.State.Events))
	}
	// A gap: a name change then more messages than the limit; the name
	// change comes as a state delta.
	q.Set("since", s2.NextBatch)
	e.do("PUT", roomPath(room, "/state/m.room.name/"), alice.Token, map[string]any{"name": "renamed"}, 200)
	e.do("PUT", roomPath(room, "/state/m.room.topic/"), alice.Token, map[string]any{"topic": "t1"}, 200)
	e.do("PUT", roomPath(room, "/state/m.room.topic/"), alice.Token, map[string]any{"topic": "t2"}, 200)
	for i := 0; i < 5; i++ {
		e.sendMessage(alice, room, "gap")
	}
	s3 := e.sync(bob, q)
	jr = s3.Rooms.Join[room]
	if !jr.Timeline.Limited || len(jr.Timeline.Events) != 3 {
		t.Fatalf("gap timeline: %d events limited %v", len(jr.Timeline.Events), jr.Timeline.Limited)
	}
	if got := stateKeys(jr.State.Events); !slices.Equal(got, []string{"m.room.name|", "m.room.topic|"}) {
		t.Fatalf("state delta = %v", got)
	}
	for _, ev := range jr.State.Events {
		if ev["type"] == "m.room.topic" && ev["content"].(map[string]any)["topic"] != "t2" {
			t.Fatalf("state delta has a stale topic: %v", ev)
		}
	}
	// Paginating back from prev_batch reaches the rest of the gap.
	p = e.messages(bob, room, url.Values{"dir": {"b"}, "from": {jr.Timeline.PrevBatch}, "to": {s2.NextBatch}, "limit": {"50"}})
	if got := len(p.Chunk); got != 5 { // 2 gap messages and 3 state events
		t.Fatalf("gap pagination returned %d events: %v", got, bodies(p.Chunk))
	}

	// A timeline filter hiding state events: the hidden state comes in
	// the state section instead of being lost.
	q = url.Values{"since": {s3.NextBatch}, "filter": {`{"room":{"timeline":{"types":["m.room.message"]}}}`}}
	e.do("PUT", roomPath(room, "/state/m.room.name/"), alice.Token, map[string]any{"name": "hidden rename"}, 200)
	e.sendMessage(alice, room, "after hidden rename")
	jr = e.sync(bob, q).Rooms.Join[room]
	if got := bodies(jr.Timeline.Events); !slices.Equal(got, []string{"after hidden rename"}) {
		t.Fatalf("filtered timeline = %v", got)
	}
	if got := stateKeys(jr.State.Events); !slices.Equal(got, []string{"m.room.name|"}) {
		t.Fatalf("state of a filtered timeline = %v", got)
	}

	// Errors.
	sp := "/_matrix/client/v3/sync"
	e.doErr("GET", sp+"?since=garbage", bob.Token, nil, 400, "M_INVALID_PARAM")
	e.doErr("GET", sp+"?since=s1_x", bob.Token, nil, 400, "M_INVALID_PARAM")
	e.doErr("GET", sp+"?timeout=soon", bob.Token, nil, 400, "M_INVALID_PARAM")
	e.doErr("GET", sp+"?set_presence=busy", bob.Token, nil, 400, "M_INVALID_PARAM")
	e.doErr("GET", sp+"?filter=12345", bob.Token, nil, 404, "M_NOT_FOUND")
	e.doErr("GET", sp+"?filter=not-a-filter", bob.Token, nil, 400, "M_INVALID_PARAM")
	e.doErr("GET", sp, "", nil, 401, "M_MISSING_TOKEN")
}

// Long polling: a sync with a timeout waits, returns empty after it, and
// returns early when an event arrives.
func TestSyncLongPoll(t *testing.T) {
	e := newEnv(t)
	alice := e.register("lpa")
	room := e.createRoom(alice, nil)
	since := e.sync(alice, nil).NextBatch

	start := time.Now()
	s := e.sync(alice, url.Values{"since": {since}, "timeout": {"600"}})
	if d := time.Since(start); d < 500*time.Millisecond || d > 5*time.Second {
		t.Fatalf("sync with timeout=600 returned after %v", d)
	}
	if len(s.Rooms.Join) != 0 {
		t.Fatalf("empty long poll returned rooms: %+v", s.Rooms)
	}
	if s.NextBatch == "" {
		t.Fatal("no next_batch after a timeout")
	}

	done := make(chan syncResp, 1)
	go func() {
		var r syncResp
		resp := e.raw("GET", "/_matrix/client/v3/sync?"+url.Values{"since": {s.NextBatch}, "timeout": {"20000"}}.Encode(), alice.Token, nil)
		if resp.Status == 200 {
			resp.Decode(t, &r)
		}
		done <- r
	}()
	time.Sleep(300 * time.Millisecond)
	start = time.Now()
	e.sendMessage(alice, room, "wake up")
	select {
	case r := <-done:
		if got := bodies(r.Rooms.Join[room].Timeline.Events); !slices.Equal(got, []string{"wake up"}) {
			t.Fatalf("woken sync = %v", got)
		}
		if d := time.Since(start); d > 5*time.Second {
			t.Fatalf("woken after %v", d)
		}
	case <-time.After(15 * time.Second):
		t.Fatal("long poll was not woken by a message")
	}
}

// Sync filters: inline JSON and stored filter IDs, rooms/not_rooms,
// types/senders and lazy-loaded members.
func TestSyncFilters(t *testing.T) {
	e := newEnv(t)
	alice := e.register("sfa")
	bob := e.register("sfb")
	carol := e.register("sfc")
	r1 := e.createRoom(alice, map[string]any{"preset": "public_chat"})
	r2 := e.createRoom(alice, map[string]any{"preset": "public_chat"})
	for _, u := range []user{bob, carol} {
		e.join(u, r1)
		e.join(u, r2)
	}
	e.sendMessage(bob, r1, "from bob")
	e.sendMessage(carol, r1, "from carol")
	e.do("PUT", roomPath(r1, "/send/org.example.ping/p1"), bob.Token, map[string]any{}, 200)

	// A stored filter.
	fr := e.do("POST", "/_matrix/client/v3/user/"+esc(alice.ID)+"/filter", alice.Token,
		map[string]any{"room": map[string]any{"rooms": []string{r1}, "timeline": map[string]any{"types": []string{"m.room.message"}, "senders": []string{bob.ID}}}}, 200).JSON(t)
	s := e.sync(alice, url.Values{"filter": {fr["filter_id"].(string)}})
	if _, ok := s.Rooms.Join[r2]; ok || len(s.Rooms.Join) != 1 {
		t.Fatalf("rooms filter let through %v", s.Rooms.Join)
	}
	if got := bodies(s.Rooms.Join[r1].Timeline.Events); !slices.Equal(got, []string{"from bob"}) || len(s.Rooms.Join[r1].Timeline.Events) != 1 {
		t.Fatalf("types+senders timeline = %v", got)
	}
	// not_rooms, inline.
	s = e.sync(alice, url.Values{"filter": {`{"room":{"not_rooms":["` + r1 + `"]}}`}})
	if _, ok := s.Rooms.Join[r1]; ok {
		t.Fatal("not_rooms let the room through")
	}
	if _, ok := s.Rooms.Join[r2]; !ok {
		t.Fatal("not_rooms dropped another room")
	}
	// not_types.
	s = e.sync(alice, url.Values{"filter": {`{"room":{"timeline":{"not_types":["m.room.message","m.room.member"],"limit":50}}}`}})
	for _, ev := range s.Rooms.Join[r1].Timeline.Events {
		if ev["type"] == "m.room.message" || ev["type"] == "m.room.member" {
			t.Fatalf("not_types let through %v", ev["type"])
		}
	}

	// Lazy-loaded members: only the senders of the timeline (and oneself).
	lazy := url.Values{"filter": {`{"room":{"state":{"lazy_load_members":true},"timeline":{"limit":2}}}`}}
	s = e.sync(alice, lazy)
	members := map[string]bool{}
	for _, ev := range s.Rooms.Join[r1].State.Events {
		if ev["type"] == "m.room.member" {
			members[ev["state_key"].(string)] = true
		}
	}
	for _, ev := range s.Rooms.Join[r1].Timeline.Events {
		if ev["type"] == "m.room.member" {
			members[ev["state_key"].(string)] = true
		}
	}
	// The timeline is carol's message and bob's ping.
	if !members[bob.ID] || !members[carol.ID] {
		t.Fatalf("lazy members lack a timeline sender: %v", members)
	}
	// Incremental: a new sender's member event comes along.
	dave := e.register("sfd")
	e.join(dave, r1)
	since := e.sync(alice, lazy).NextBatch
	for i := 0; i < 3; i++ {
		e.sendMessage(bob, r1, "filler")
	}
	e.sendMessage(dave, r1, "dave speaks")
	lazy.Set("since", since)
	s = e.sync(alice, lazy)
	found := false
	for _, ev := range s.Rooms.Join[r1].State.Events {
		if ev["type"] == "m.room.member" && ev["state_key"] == dave.ID {
			found = true
		}
	}
	if !found {
		t.Fatalf("lazy incremental sync lacks the new sender's member event: %v", stateKeys(s.Rooms.Join[r1].State.Events))
	}

	// Invalid filters.
	sp := "/_matrix/client/v3/sync?filter="
	e.doErr("GET", sp+url.QueryEscape(`{"room":{"timeline":{"limit":"ten"}}}`), alice.Token, nil, 400, "M_BAD_JSON")
	e.doErr("GET", sp+url.QueryEscape(`{"room":`), alice.Token, nil, 400, "M_NOT_JSON")
	other := e.register("sfo")
	ofr := e.do("POST", "/_matrix/client/v3/user/"+esc(other.ID)+"/filter", other.Token, map[string]any{}, 200).JSON(t)
	e.doErr("GET", sp+ofr["filter_id"].(string), alice.Token, nil, 404, "M_NOT_FOUND") // someone else's filter
}

// Membership sections: invite, join, leave (incl. after a kick and a ban),
// include_leave, and full_state.
func TestSyncMembership(t *testing.T) {
	e := newEnv(t)
	alice := e.register("sma")
	bob := e.register("smb")
	since := e.sync(bob, nil).NextBatch
	q := func() url.Values { return url.Values{"since": {since}} }

	room := e.createRoom(alice, map[string]any{"preset": "private_chat", "name": "members only", "invite": []string{bob.ID}})
	s := e.sync(bob, q())
	inv, ok := s.Rooms.Invite[room]
	if !ok {
		t.Fatalf("no invite: %+v", s.Rooms)
	}
	keys := stateKeys(inv.InviteState.Events)
	for _, k := range []string{"m.room.name|", "m.room.member|" + bob.ID, "m.room.join_rules|", "m.room.create|"} {
		if !slices.Contains(keys, k) {
			t.Fatalf("invite_state lacks %s: %v", k, keys)
		}
	}
	since = s.NextBatch
	if s = e.sync(bob, q()); len(s.Rooms.Invite) != 0 {
		t.Fatal("invite repeated in the next incremental sync")
	}

	e.sendMessage(alice, room, "before bob")
	e.join(bob, room)
	s = e.sync(bob, q())
	jr, ok := s.Rooms.Join[room]
	if !ok || len(s.Rooms.Invite) != 0 {
		t.Fatalf("join section after joining: %+v", s.Rooms)
	}
	// Newly joined: the timeline goes back before the join (shared
	// history) and the state is complete.
	if got := bodies(jr.Timeline.Events); !slices.Contains(got, "before bob") {
		t.Fatalf("newly joined timeline = %v", got)
	}
	if !slices.Contains(stateKeys(append(jr.State.Events, jr.Timeline.Events...)), "m.room.create|") {
		t.Fatal("newly joined room without its create event")
	}
	since = s.NextBatch

	// Kicked: the room moves to leave, with the kick in the timeline.
	e.sendMessage(alice, room, "last words")
	e.do("POST", roomPath(room, "/kick"), alice.Token, map[string]any{"user_id": bob.ID, "reason": "bye"}, 200)
	e.sendMessage(alice, room, "after the kick")
	s = e.sync(bob, q())
	lr, ok := s.Rooms.Leave[room]
	if !ok || len(s.Rooms.Join) != 0 {
		t.Fatalf("no leave section after a kick: %+v", s.Rooms)
	}
	got := bodies(lr.Timeline.Events)
	if !slices.Contains(got, "last words") || slices.Contains(got, "after the kick") {
		t.Fatalf("leave timeline = %v", got)
	}
	last := lr.Timeline.Events[len(lr.Timeline.Events)-1]
	if last["type"] != "m.room.member" || last["state_key"] != bob.ID || last["sender"] != alice.ID {
		t.Fatalf("leave timeline ends with %v", last)
	}
	since = s.NextBatch
	if s = e.sync(bob, q()); len(s.Rooms.Leave) != 0 {
		t.Fatal("leave repeated in the next incremental sync")
	}
	// include_leave brings it back in an initial sync.
	s = e.sync(bob, url.Values{"filter": {`{"room":{"include_leave":true}}`}})
	if _, ok := s.Rooms.Leave[room]; !ok {
		t.Fatal("include_leave initial sync lacks the left room")
	}
	if s = e.sync(bob, nil); len(s.Rooms.Leave) != 0 {
		t.Fatal("initial sync without include_leave lists left rooms")
	}

	// Ban: also a leave section.
	pub := e.createRoom(alice, map[string]any{"preset": "public_chat"})
	e.join(bob, pub)
	since = e.sync(bob, nil).NextBatch
	e.do("POST", roomPath(pub, "/ban"), alice.Token, map[string]any{"user_id": bob.ID}, 200)
	s = e.sync(bob, q())
	if lr, ok := s.Rooms.Leave[pub]; !ok || lr.Timeline.Events[len(lr.Timeline.Events)-1]["content"].(map[string]any)["membership"] != "ban" {
		t.Fatalf("no ban in the leave section: %+v", s.Rooms.Leave)
	}

	// full_state: all state of every room, with a since-bounded timeline.
	third := e.createRoom(alice, map[string]any{"preset": "public_chat"})
	e.join(bob, third)
	e.sendMessage(alice, third, "old")
	since = e.sync(bob, nil).NextBatch
	e.sendMessage(alice, third, "fresh")
	fq := q()
	fq.Set("full_state", "true")
	s = e.sync(bob, fq)
	jr = s.Rooms.Join[third]
	if got := bodies(jr.Timeline.Events); !slices.Equal(got, []string{"fresh"}) {
		t.Fatalf("full_state timeline = %v (must still start at since)", got)
	}
	keys = stateKeys(jr.State.Events)
	for _, k := range []string{"m.room.create|", "m.room.join_rules|", "m.room.member|" + bob.ID, "m.room.power_levels|"} {
		if !slices.Contains(keys, k) {
			t.Fatalf("full_state lacks %s: %v", k, keys)
		}
	}
}

// since tokens stay valid across a server restart.
func TestSyncAcrossRestart(t *testing.T) {
	e := newEnv(t)
	alice := e.register("sra")
	room := e.createRoom(alice, nil)
	e.sendMessage(alice, room, "before restart")
	since := e.sync(alice, nil).NextBatch
	e.srv.Restart()
	if s := e.sync(alice, url.Values{"since": {since}}); len(s.Rooms.Join) != 0 {
		t.Fatalf("sync after restart replays rooms: %+v", s.Rooms.Join)
	}
	e.sendMessage(alice, room, "after restart")
	s := e.sync(alice, url.Values{"since": {since}})
	if got := bodies(s.Rooms.Join[room].Timeline.Events); !slices.Equal(got, []string{"after restart"}) {
		t.Fatalf("sync after restart = %v", got)
	}
}
