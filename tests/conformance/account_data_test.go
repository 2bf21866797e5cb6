package conformance

import (
	"io"
	"net/http"
	"reflect"
	"strconv"
	"strings"
	"testing"
	"time"
)

// Client config: GET/PUT /user/{userId}/account_data/{type} and
// /user/{userId}/rooms/{roomId}/account_data/{type}.
func TestAccountData(t *testing.T) {
	e := newEnv(t)
	alice := e.register("adalice")
	bob := e.register("adbob")
	room := e.createRoom(alice, nil)
	global := "/_matrix/client/v3/user/" + esc(alice.ID) + "/account_data/"
	perRoom := "/_matrix/client/v3/user/" + esc(alice.ID) + "/rooms/" + esc(room) + "/account_data/"

	content := map[string]any{"custom_key": "value", "n": float64(3), "nested": map[string]any{"a": []any{true}}}
	e.do("PUT", global+"org.example.config", alice.Token, content, 200)
	if got := e.do("GET", global+"org.example.config", alice.Token, nil, 200).JSON(t); !reflect.DeepEqual(got, content) {
		t.Fatalf("global account data = %v, want %v", got, content)
	}
	// Overwrite.
	e.do("PUT", global+"org.example.config", alice.Token, map[string]any{"v": "2"}, 200)
	if got := e.do("GET", global+"org.example.config", alice.Token, nil, 200).JSON(t); got["v"] != "2" || got["custom_key"] != nil {
		t.Fatalf("overwritten account data = %v", got)
	}
	e.doErr("GET", global+"org.example.absent", alice.Token, nil, 404, "M_NOT_FOUND")

	// Room account data does not fall back to global data, nor the reverse.
	e.do("PUT", perRoom+"org.example.room", alice.Token, map[string]any{"r": 1}, 200)
	if got := e.do("GET", perRoom+"org.example.room", alice.Token, nil, 200).JSON(t); got["r"] != float64(1) {
		t.Fatalf("room account data = %v", got)
	}
	e.doErr("GET", global+"org.example.room", alice.Token, nil, 404, "M_NOT_FOUND")
	e.doErr("GET", perRoom+"org.example.config", alice.Token, nil, 404, "M_NOT_FOUND")

	// Only one's own account data.
	e.doErr("GET", global+"org.example.config", bob.Token, nil, 403, "M_FORBIDDEN")
	e.doErr("PUT", global+"org.example.config", bob.Token, map[string]any{}, 403, "M_FORBIDDEN")
	e.doErr("GET", perRoom+"org.example.room", bob.Token, nil, 403, "M_FORBIDDEN")
	e.doErr("PUT", perRoom+"org.example.room", bob.Token, map[string]any{}, 403, "M_FORBIDDEN")
	e.doErr("GET", global+"org.example.config", "", nil, 401, "M_MISSING_TOKEN")

	// Server-managed types cannot be set, globally or per room.
	for _, typ := range []string{"m.fully_read", "m.push_rules"} {
		e.doErr("PUT", global+typ, alice.Token, map[string]any{}, 405, "M_BAD_JSON")
		e.doErr("PUT", perRoom+typ, alice.Token, map[string]any{"event_id": "$x"}, 405, "M_BAD_JSON")
	}

	// Bodies must be JSON objects.
	e.doErr("PUT", global+"org.example.config", alice.Token, "[1,2]", 400, "M_BAD_JSON")
	e.doErr("PUT", global+"org.example.config", alice.Token, "null", 400, "M_BAD_JSON")
	e.doErr("PUT", global+"org.example.config", alice.Token, "{not json", 400, "M_NOT_JSON")
	e.doErr("PUT", perRoom+"org.example.room", alice.Token, `"text"`, 400, "M_BAD_JSON")

	// Room IDs are validated.
	bad := "/_matrix/client/v3/user/" + esc(alice.ID) + "/rooms/" + esc("@notaroom:example.org") + "/account_data/org.example.room"
	e.doErr("GET", bad, alice.Token, nil, 400, "M_INVALID_PARAM")
	e.doErr("PUT", bad, alice.Token, map[string]any{}, 400, "M_INVALID_PARAM")
	e.doErr("PUT", global+strings.Repeat("x", 256), alice.Token, map[string]any{}, 400, "M_INVALID_PARAM")
}

// Room tagging: GET /user/{userId}/rooms/{roomId}/tags and PUT/DELETE
// /user/{userId}/rooms/{roomId}/tags/{tag}.
func TestRoomTags(t *testing.T) {
	e := newEnv(t)
	alice := e.register("tagalice")
	bob := e.register("tagbob")
	room := e.createRoom(alice, nil)
	base := "/_matrix/client/v3/user/" + esc(alice.ID) + "/rooms/" + esc(room) + "/tags"

	tags := func() map[string]any {
		t.Helper()
		return e.do("GET", base, alice.Token, nil, 200).JSON(t)["tags"].(map[string]any)
	}
	if got := tags(); len(got) != 0 {
		t.Fatalf("new room has tags %v", got)
	}
	e.do("PUT", base+"/u.work", alice.Token, map[string]any{"order": 0.5}, 200)
	e.do("PUT", base+"/m.favourite", alice.Token, map[string]any{}, 200)
	e.do("PUT", base+"/"+esc("u.with space/and slash"), alice.Token, map[string]any{"order": 1}, 200)
	got := tags()
	if len(got) != 3 || got["u.work"].(map[string]any)["order"] != 0.5 || got["m.favourite"] == nil || got["u.with space/and slash"] == nil {
		t.Fatalf("tags = %v", got)
	}
	// The tags are the room's m.tag account data.
	ad := e.do("GET", "/_matrix/client/v3/user/"+esc(alice.ID)+"/rooms/"+esc(room)+"/account_data/m.tag", alice.Token, nil, 200).JSON(t)
	if len(ad["tags"].(map[string]any)) != 3 {
		t.Fatalf("m.tag account data = %v", ad)
	}
	e.do("DELETE", base+"/u.work", alice.Token, nil, 200)
	e.do("DELETE", base+"/u.never-set", alice.Token, nil, 200)
	if got := tags(); len(got) != 2 || got["u.work"] != nil {
		t.Fatalf("tags after delete = %v", got)
	}

	e.doErr("PUT", base+"/u.bad", alice.Token, map[string]any{"order": "first"}, 400, "M_BAD_JSON")
	e.doErr("PUT", base+"/u.bad", alice.Token, "[]", 400, "M_BAD_JSON")
	e.doErr("PUT", base+"/"+strings.Repeat("t", 256), alice.Token, map[string]any{}, 400, "M_INVALID_PARAM")
	e.do("PUT", base+"/"+strings.Repeat("t", 255), alice.Token, map[string]any{}, 200)
	e.doErr("GET", base, bob.Token, nil, 403, "M_FORBIDDEN")
	e.doErr("PUT", base+"/u.x", bob.Token, map[string]any{}, 403, "M_FORBIDDEN")
	e.doErr("DELETE", base+"/m.favourite", bob.Token, nil, 403, "M_FORBIDDEN")
	e.doErr("GET", "/_matrix/client/v3/user/"+esc(alice.ID)+"/rooms/notaroom/tags", alice.Token, nil, 400, "M_INVALID_PARAM")
}

// adLongPoll starts an incremental /sync in the background and returns a
// channel receiving its raw response.
func (e *env) adLongPoll(token, since string, timeout time.Duration) <-chan response {
	ch := make(chan response, 1)
	go func() {
		req, _ := http.NewRequest("GET", e.srv.URL+"/_matrix/client/v3/sync?timeout="+strconv.FormatInt(timeout.Milliseconds(), 10)+"&since="+since, nil)
		req.Header.Set("Authorization", "Bearer "+token)
		res, err := http.DefaultClient.Do(req)
		if err != nil {
			ch <- response{Status: -1, Body: []byte(err.Error())}
			return
		}
		defer res.Body.Close()
		b, _ := io.ReadAll(res.Body)
		ch <- response{Status: res.StatusCode, Body: b, Header: res.Header}
	}()
	return ch
}

// adAwaitSync waits for a long-poll started with adLongPoll, checks that it was
// released early (well before its timeout) and validates it.
func (e *env) adAwaitSync(ch <-chan response, start time.Time) map[string]any {
	e.t.Helper()
	select {
	case r := <-ch:
		if r.Status != 200 {
			e.t.Fatalf("sync: %d %s", r.Status, r.Body)
		}
		if d := time.Since(start); d > 8*time.Second {
			e.t.Fatalf("sync returned after %v: not woken by the change", d)
		}
		e.validate("GET", "/_matrix/client/v3/sync", r)
		return r.JSON(e.t)
	case <-time.After(20 * time.Second):
		e.t.Fatal("sync did not return")
	}
	return nil
}

// A long-polling /sync is woken by, and delivers, global account data,
// room account data and room tags.
func TestAccountDataInSync(t *testing.T) {
	e := newEnv(t)
	alice := e.register("adsync")
	room := e.createRoom(alice, nil)
	since := e.do("GET", "/_matrix/client/v3/sync", alice.Token, nil, 200).JSON(t)["next_batch"].(string)

	roomAD := func(s map[string]any) []any {
		t.Helper()
		jr, _ := s["rooms"].(map[string]any)["join"].(map[string]any)[room].(map[string]any)
		if jr == nil {
			t.Fatalf("room %s missing from sync: %v", room, s)
		}
		return jr["account_data"].(map[string]any)["events"].([]any)
	}

	// Global.
	ch := e.adLongPoll(alice.Token, since, 15*time.Second)
	time.Sleep(300 * time.Millisecond)
	start := time.Now()
	e.do("PUT", "/_matrix/client/v3/user/"+esc(alice.ID)+"/account_data/org.example.sync", alice.Token, map[string]any{"k": "v"}, 200)
	s := e.adAwaitSync(ch, start)
	evs := s["account_data"].(map[string]any)["events"].([]any)
	if len(evs) != 1 || evs[0].(map[string]any)["type"] != "org.example.sync" || evs[0].(map[string]any)["content"].(map[string]any)["k"] != "v" {
		t.Fatalf("global account data in sync = %v", evs)
	}
	since = s["next_batch"].(string)

	// Per room.
	ch = e.adLongPoll(alice.Token, since, 15*time.Second)
	time.Sleep(300 * time.Millisecond)
	start = time.Now()
	e.do("PUT", "/_matrix/client/v3/user/"+esc(alice.ID)+"/rooms/"+esc(room)+"/account_data/org.example.roomsync", alice.Token, map[string]any{"r": true}, 200)
	s = e.adAwaitSync(ch, start)
	if evs := roomAD(s); len(evs) != 1 || evs[0].(map[string]any)["type"] != "org.example.roomsync" {
		t.Fatalf("room account data in sync = %v", evs)
	}
	if s["account_data"] != nil {
		t.Fatalf("room account data leaked into global account data: %v", s["account_data"])
	}
	since = s["next_batch"].(string)

	// Tags.
	ch = e.adLongPoll(alice.Token, since, 15*time.Second)
	time.Sleep(300 * time.Millisecond)
	start = time.Now()
	e.do("PUT", "/_matrix/client/v3/user/"+esc(alice.ID)+"/rooms/"+esc(room)+"/tags/m.lowpriority", alice.Token, map[string]any{"order": 0.25}, 200)
	s = e.adAwaitSync(ch, start)
	evs = roomAD(s)
	if len(evs) != 1 || evs[0].(map[string]any)["type"] != "m.tag" {
		t.Fatalf("tags in sync = %v", evs)
	}
	tag := evs[0].(map[string]any)["content"].(map[string]any)["tags"].(map[string]any)["m.lowpriority"].(map[string]any)
	if tag["order"] != 0.25 {
		t.Fatalf("tag content in sync = %v", evs[0])
	}

	// An initial sync carries everything.
	s = e.do("GET", "/_matrix/client/v3/sync", alice.Token, nil, 200).JSON(t)
	if len(s["account_data"].(map[string]any)["events"].([]any)) < 1 || len(roomAD(s)) != 2 {
		t.Fatalf("initial sync account data: %v / %v", s["account_data"], roomAD(s))
	}
}
