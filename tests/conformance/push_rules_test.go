package conformance

import (
	"encoding/json"
	"fmt"
	"net/url"
	"slices"
	"testing"
)

const pr = "/_matrix/client/v3/pushrules/"

// ruleIDs lists the rule IDs of one kind from GET /pushrules/.
func (e *env) ruleIDs(u user, kind string) []string {
	e.t.Helper()
	var rs struct {
		Global map[string][]struct {
			RuleID string `json:"rule_id"`
		} `json:"global"`
	}
	e.do("GET", pr, u.Token, nil, 200).Decode(e.t, &rs)
	var ids []string
	for _, r := range rs.Global[kind] {
		ids = append(ids, r.RuleID)
	}
	return ids
}

// The spec's server-default rules, CRUD with before/after, enabled and
// actions, the errors each endpoint defines, and m.push_rules in sync.
func TestPushRules(t *testing.T) {
	e := newEnv(t)
	u := e.register("pusher")

	over := e.ruleIDs(u, "override")
	wantOver := []string{".m.rule.master", ".m.rule.suppress_notices", ".m.rule.invite_for_me", ".m.rule.member_event",
		".m.rule.is_user_mention", ".m.rule.is_room_mention", ".m.rule.tombstone", ".m.rule.reaction", ".m.rule.room.server_acl", ".m.rule.suppress_edits"}
	if len(over) != len(wantOver) {
		t.Fatalf("default override rules %v, want %v", over, wantOver)
	}
	for i := range wantOver {
		if over[i] != wantOver[i] {
			t.Fatalf("default override rules %v, want %v", over, wantOver)
		}
	}
	under := e.ruleIDs(u, "underride")
	if len(under) != 5 || under[0] != ".m.rule.call" || under[4] != ".m.rule.encrypted" {
		t.Fatalf("default underride rules %v", under)
	}
	e.do("GET", pr+"global/", u.Token, nil, 200)
	rule := e.do("GET", pr+"global/override/.m.rule.invite_for_me", u.Token, nil, 200).JSON(t)
	conds := rule["conditions"].([]any)
	if conds[2].(map[string]any)["pattern"] != u.ID {
		t.Fatalf("invite_for_me not bound to the user: %v", conds)
	}

	// The first sync of a new account carries m.push_rules.
	s := e.do("GET", "/_matrix/client/v3/sync", u.Token, nil, 200).JSON(t)
	found := false
	if ad, ok := s["account_data"].(map[string]any); ok {
		for _, ev := range ad["events"].([]any) {
			if ev.(map[string]any)["type"] == "m.push_rules" {
				found = true
			}
		}
	}
	if !found {
		t.Fatal("initial sync has no m.push_rules account data")
	}
	since := s["next_batch"].(string)

	// Create rules; ordering with before/after.
	put := func(kind, id string, body any, q string, status int) response {
		t.Helper()
		return e.do("PUT", pr+"global/"+kind+"/"+url.PathEscape(id)+q, u.Token, body, status)
	}
	actions := []any{"notify"}
	put("override", "a", map[string]any{"actions": actions, "conditions": []any{map[string]any{"kind": "event_match", "key": "content.body", "pattern": "alpha"}}}, "", 200)
	put("override", "b", map[string]any{"actions": actions, "conditions": []any{}}, "", 200)
	put("override", "c", map[string]any{"actions": actions}, "?after=a", 200)
	put("override", "d", map[string]any{"actions": actions}, "?before=b", 200)
	got := e.ruleIDs(u, "override")
	want := []string{".m.rule.master", "d", "b", "a", "c", ".m.rule.suppress_notices"}
	for i := range want {
		if got[i] != want[i] {
			t.Fatalf("override order %v, want prefix %v", got, want)
		}
	}
	put("content", "kw", map[string]any{"actions": actions, "pattern": "cake*"}, "", 200)
	put("room", "!room:localhost", map[string]any{"actions": []any{}}, "", 200)
	put("sender", "@someone:localhost", map[string]any{"actions": []any{}}, "", 200)
	if r := e.do("GET", pr+"global/content/kw", u.Token, nil, 200).JSON(t); r["pattern"] != "cake*" || r["default"] != false {
		t.Fatalf("content rule %v", r)
	}

	// enabled and actions, for user rules and server-default rules.
	e.do("PUT", pr+"global/override/a/enabled", u.Token, map[string]any{"enabled": false}, 200)
	if r := e.do("GET", pr+"global/override/a/enabled", u.Token, nil, 200).JSON(t); r["enabled"] != false {
		t.Fatalf("enabled = %v", r)
	}
	e.do("PUT", pr+"global/override/.m.rule.master/enabled", u.Token, map[string]any{"enabled": true}, 200)
	if r := e.do("GET", pr+"global/override/.m.rule.master", u.Token, nil, 200).JSON(t); r["enabled"] != true {
		t.Fatalf("master not enabled: %v", r)
	}
	e.do("PUT", pr+"global/underride/.m.rule.message/actions", u.Token, map[string]any{"actions": []any{"notify", map[string]any{"set_tweak": "sound", "value": "bing"}}}, 200)
	acts := e.do("GET", pr+"global/underride/.m.rule.message/actions", u.Token, nil, 200).JSON(t)["actions"].([]any)
	if len(acts) != 2 {
		t.Fatalf("actions = %v", acts)
	}
	// Unknown condition kinds and null values are accepted; the historical
	// dont_notify and coalesce actions are stripped.
	put("underride", "future", map[string]any{"actions": []any{"dont_notify", "coalesce"}, "conditions": []any{
		map[string]any{"kind": "org.example.future"},
		map[string]any{"kind": "event_property_is", "key": "content.x", "value": nil},
	}}, "", 200)
	fut := e.do("GET", pr+"global/underride/future", u.Token, nil, 200).JSON(t)
	if a, ok := fut["actions"].([]any); !ok || len(a) != 0 {
		t.Fatalf("historical actions kept: %v", fut)
	}
	if c := fut["conditions"].([]any); len(c) != 2 || c[1].(map[string]any)["value"] != nil {
		t.Fatalf("conditions = %v", c)
	}
	if _, has := c1(fut)["value"]; !has {
		t.Fatalf("null value dropped: %v", fut)
	}
	// Replacing a rule keeps its place.
	put("override", "b", map[string]any{"actions": []any{}}, "", 200)
	if got := e.ruleIDs(u, "override"); got[2] != "b" {
		t.Fatalf("replaced rule moved: %v", got)
	}

	// Deletion.
	e.do("DELETE", pr+"global/override/d", u.Token, nil, 200)
	e.doErr("GET", pr+"global/override/d", u.Token, nil, 404, "M_NOT_FOUND")
	e.doErr("DELETE", pr+"global/override/d", u.Token, nil, 404, "M_NOT_FOUND")

	// Errors.
	e.doErr("PUT", pr+"global/override/.mine", u.Token, map[string]any{"actions": actions}, 400, "M_INVALID_PARAM")
	e.doErr("DELETE", pr+"global/override/.m.rule.master", u.Token, nil, 400, "M_INVALID_PARAM")
	// An unknown before/after rule is a 400 (the spec's example: M_UNKNOWN).
	e.doErr("PUT", pr+"global/override/x?before=nope", u.Token, map[string]any{"actions": actions}, 400, "M_UNKNOWN")
	e.doErr("PUT", pr+"global/override/x?after=nope", u.Token, map[string]any{"actions": actions}, 400, "M_UNKNOWN")
	e.doErr("PUT", pr+"global/override/a%2Fb", u.Token, map[string]any{"actions": actions}, 400, "M_INVALID_PARAM")
	e.doErr("PUT", pr+"global/override/a%5Cb", u.Token, map[string]any{"actions": actions}, 400, "M_INVALID_PARAM")
	e.doErr("PUT", pr+"global/override/x", u.Token, map[string]any{"actions": actions, "conditions": []any{map[string]any{"key": "type"}}}, 400, "M_MISSING_PARAM")
	e.doErr("PUT", pr+"global/override/x", u.Token, map[string]any{"actions": actions, "conditions": []any{map[string]any{"kind": "event_match", "key": "type"}}}, 400, "M_MISSING_PARAM")
	e.doErr("PUT", pr+"global/override/x", u.Token, map[string]any{"actions": actions, "conditions": []any{map[string]any{"kind": "event_property_is", "key": "type", "value": []any{1}}}}, 400, "M_INVALID_PARAM")
	e.doErr("PUT", pr+"global/override/x", u.Token, map[string]any{"actions": []any{map[string]any{"value": "x"}}}, 400, "M_INVALID_PARAM")
	e.doErr("PUT", pr+"global/override/x", u.Token, map[string]any{"actions": []any{map[string]any{"set_tweak": "highlight", "value": "yes"}}}, 400, "M_INVALID_PARAM")
	e.doErr("PUT", pr+"global/override/x", u.Token, map[string]any{"actions": actions, "conditions": make([]any, 21)}, 400, "M_INVALID_PARAM")
	e.doErr("PUT", pr+"global/content/.m.rule.contains_user_name/actions", u.Token, map[string]any{"actions": actions}, 404, "M_NOT_FOUND")
	e.doErr("PUT", pr+"global/override/nope/enabled", u.Token, map[string]any{"enabled": true}, 404, "M_NOT_FOUND")
	e.doErr("PUT", pr+"global/override/x?after=.m.rule.master", u.Token, map[string]any{"actions": actions}, 400, "M_INVALID_PARAM")
	e.doErr("PUT", pr+"global/content/x", u.Token, map[string]any{"actions": actions}, 400, "M_MISSING_PARAM")
	e.doErr("PUT", pr+"global/override/x", u.Token, map[string]any{}, 400, "M_MISSING_PARAM")
	e.doErr("PUT", pr+"global/override/x", u.Token, map[string]any{"actions": []any{"explode"}}, 400, "M_INVALID_PARAM")
	e.doErr("PUT", pr+"global/sideways/x", u.Token, map[string]any{"actions": actions}, 400, "M_INVALID_PARAM")
	e.doErr("GET", pr+"device/override/a", u.Token, nil, 400, "M_INVALID_PARAM")
	e.doErr("GET", pr+"global/override/nope/actions", u.Token, nil, 404, "M_NOT_FOUND")
	e.doErr("PUT", pr+"global/override/a/enabled", u.Token, map[string]any{}, 400, "M_MISSING_PARAM")
	e.doErr("PUT", pr+"global/override/a", u.Token, "{not json", 400, "M_NOT_JSON")
	e.doErr("GET", pr, "", nil, 401, "M_MISSING_TOKEN")

	// The change reaches sync as m.push_rules.
	s = e.do("GET", "/_matrix/client/v3/sync?since="+url.QueryEscape(since), u.Token, nil, 200).JSON(t)
	var pushRules map[string]any
	for _, ev := range s["account_data"].(map[string]any)["events"].([]any) {
		m := ev.(map[string]any)
		if m["type"] == "m.push_rules" {
			pushRules = m["content"].(map[string]any)
		}
	}
	if pushRules == nil {
		t.Fatal("rule change did not reach sync")
	}
	raw, _ := json.Marshal(pushRules["global"].(map[string]any)["content"])
	if string(raw) == "[]" || string(raw) == "null" {
		t.Fatalf("synced rules lack the content rule: %s", raw)
	}
}

// c1 returns the second condition of a rule.
func c1(rule map[string]any) map[string]any {
	return rule["conditions"].([]any)[1].(map[string]any)
}

// GET /notifications: what push rules decided when events were stored,
// newest first, with read state, only=highlight, pagination, redactions
// and the spec's errors.
func TestNotifications(t *testing.T) {
	e := newEnv(t)
	alice := e.register("nalice")
	bob := e.register("nbob")
	carol := e.register("ncarol")
	room := e.createRoom(alice, map[string]any{"preset": "public_chat"})
	e.join(bob, room)
	const notif = "/_matrix/client/v3/notifications"
	type notification struct {
		Actions []any          `json:"actions"`
		Event   map[string]any `json:"event"`
		Read    bool           `json:"read"`
		RoomID  string         `json:"room_id"`
		TS      int64          `json:"ts"`
	}
	list := func(u user, q string) (ns []notification, next string) {
		t.Helper()
		var r struct {
			Notifications []notification `json:"notifications"`
			NextToken     string         `json:"next_token"`
		}
		e.do("GET", notif+q, u.Token, nil, 200).Decode(t, &r)
		return r.Notifications, r.NextToken
	}
	if ns, next := list(bob, ""); len(ns) != 0 || next != "" {
		t.Fatalf("new user has notifications: %v %q", ns, next)
	}
	hello := e.sendMessage(alice, room, "hello")
	mention := e.do("PUT", "/_matrix/client/v3/rooms/"+esc(room)+"/send/m.room.message/m1", alice.Token,
		map[string]any{"msgtype": "m.text", "body": "bob?", "m.mentions": map[string]any{"user_ids": []any{bob.ID}}}, 200).JSON(t)["event_id"].(string)
	e.sendMessage(bob, room, "my own message does not notify me")

	ns, _ := list(bob, "")
	if len(ns) != 2 || ns[0].Event["event_id"] != mention || ns[1].Event["event_id"] != hello {
		t.Fatalf("notifications = %+v", ns)
	}
	if ns[0].RoomID != room || ns[0].Read || ns[0].TS == 0 || len(ns[0].Actions) < 2 {
		t.Fatalf("mention notification = %+v", ns[0])
	}
	if _, hasRoom := ns[0].Event["room_id"]; hasRoom {
		t.Fatal("event carries room_id (client_event_without_room_id)")
	}
	if hs, _ := list(bob, "?only=highlight"); len(hs) != 1 || hs[0].Event["event_id"] != mention {
		t.Fatalf("only=highlight = %+v", hs)
	}
	// Pagination.
	page, next := list(bob, "?limit=1")
	if len(page) != 1 || next == "" || page[0].Event["event_id"] != mention {
		t.Fatalf("page 1 = %+v next=%q", page, next)
	}
	page, _ = list(bob, "?limit=1&from="+url.QueryEscape(next))
	if len(page) != 1 || page[0].Event["event_id"] != hello {
		t.Fatalf("page 2 = %+v", page)
	}
	// A read receipt marks them read.
	e.do("POST", "/_matrix/client/v3/rooms/"+esc(room)+"/receipt/m.read/"+esc(mention), bob.Token, map[string]any{}, 200)
	if ns, _ := list(bob, ""); len(ns) != 2 || !ns[0].Read || !ns[1].Read {
		t.Fatalf("after the receipt: %+v", ns)
	}
	// A redacted event no longer counts.
	e.do("PUT", "/_matrix/client/v3/rooms/"+esc(room)+"/redact/"+esc(hello)+"/r1", alice.Token, map[string]any{}, 200)
	if ns, _ := list(bob, ""); len(ns) != 1 || ns[0].Event["event_id"] != mention {
		t.Fatalf("after the redaction: %+v", ns)
	}
	// An invite notifies the invitee (.m.rule.invite_for_me).
	e.do("POST", "/_matrix/client/v3/rooms/"+esc(room)+"/invite", alice.Token, map[string]any{"user_id": carol.ID}, 200)
	if ns, _ := list(carol, ""); len(ns) != 1 || ns[0].Event["type"] != "m.room.member" || ns[0].Event["state_key"] != carol.ID {
		t.Fatalf("invitee notifications = %+v", ns)
	}

	// @room highlights when the sender has the power level for it
	// (.m.rule.is_room_mention): the creator has, a plain member has not.
	atRoom := map[string]any{"msgtype": "m.text", "body": "@room hi", "m.mentions": map[string]any{"room": true}}
	roomMention := e.do("PUT", "/_matrix/client/v3/rooms/"+esc(room)+"/send/m.room.message/at1", alice.Token, atRoom, 200).JSON(t)["event_id"].(string)
	if hs, _ := list(bob, "?only=highlight&limit=1"); len(hs) != 1 || hs[0].Event["event_id"] != roomMention {
		t.Fatalf("room mention by the creator does not highlight: %+v", hs)
	}
	e.do("PUT", "/_matrix/client/v3/rooms/"+esc(room)+"/send/m.room.message/at2", bob.Token, atRoom, 200)
	if hs, _ := list(alice, "?only=highlight"); len(hs) != 0 {
		t.Fatalf("room mention without power highlights: %+v", hs)
	}
	if ns, _ := list(alice, ""); len(ns) != 2 {
		t.Fatalf("alice's notifications = %+v", ns)
	}

	// Several rooms: one list, newest first across them, paginated
	// across them.
	room2 := e.createRoom(carol, map[string]any{"preset": "public_chat"})
	e.join(bob, room2)
	var want []string
	for i := 0; i < 3; i++ {
		want = append(want, e.sendMessage(carol, room2, fmt.Sprintf("two %d", i)))
		want = append(want, e.sendMessage(alice, room, fmt.Sprintf("one %d", i)))
	}
	slices.Reverse(want)
	var got []string
	for from := ""; len(got) < len(want); {
		page, next := list(bob, "?limit=4"+from)
		if len(page) == 0 {
			break
		}
		for _, n := range page {
			got = append(got, n.Event["event_id"].(string))
		}
		from = "&from=" + url.QueryEscape(next)
	}
	if len(got) < len(want) || !slices.Equal(got[:len(want)], want) {
		t.Fatalf("notifications across rooms = %v, want %v first", got, want)
	}

	e.doErr("GET", notif+"?limit=x", bob.Token, nil, 400, "M_INVALID_PARAM")
	e.doErr("GET", notif+"?limit=0", bob.Token, nil, 400, "M_INVALID_PARAM")
	e.doErr("GET", notif+"?only=everything", bob.Token, nil, 400, "M_INVALID_PARAM")
	e.doErr("GET", notif+"?from=nonsense", bob.Token, nil, 400, "M_INVALID_PARAM")
	e.doErr("GET", notif, "", nil, 401, "M_MISSING_TOKEN")
}
