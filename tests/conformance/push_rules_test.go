package conformance

import (
	"encoding/json"
	"net/url"
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
	e.doErr("PUT", pr+"global/override/x?before=nope", u.Token, map[string]any{"actions": actions}, 404, "M_NOT_FOUND")
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
