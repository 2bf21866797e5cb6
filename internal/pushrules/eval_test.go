package pushrules

import (
	"encoding/json"
	"reflect"
	"testing"

	"github.com/rempart-hs/rempart/internal/storage"
)

func TestEvaluateDefaults(t *testing.T) {
	const me = "@bob:localhost"
	rs := Defaults(me)
	ctx := Context{UserID: me, DisplayName: func() string { return "Bob" }, MemberCount: 3}
	cases := []struct {
		name      string
		event     map[string]any
		power     int64
		members   int
		notify    bool
		highlight bool
	}{
		{"message", map[string]any{"type": "m.room.message", "content": map[string]any{"msgtype": "m.text", "body": "hi"}}, 0, 3, true, false},
		{"notice", map[string]any{"type": "m.room.message", "content": map[string]any{"msgtype": "m.notice", "body": "bot"}}, 0, 3, false, false},
		{"user mention", map[string]any{"type": "m.room.message", "content": map[string]any{"body": "hey", "m.mentions": map[string]any{"user_ids": []any{me}}}}, 0, 3, true, true},
		{"other mention", map[string]any{"type": "m.room.message", "content": map[string]any{"body": "hey", "m.mentions": map[string]any{"user_ids": []any{"@carol:localhost"}}}}, 0, 3, true, false},
		{"room mention without power", map[string]any{"type": "m.room.message", "content": map[string]any{"body": "@room", "m.mentions": map[string]any{"room": true}}}, 0, 3, true, false},
		{"room mention with power", map[string]any{"type": "m.room.message", "content": map[string]any{"body": "@room", "m.mentions": map[string]any{"room": true}}}, 100, 3, true, true},
		{"edit", map[string]any{"type": "m.room.message", "content": map[string]any{"body": "* x", "m.relates_to": map[string]any{"rel_type": "m.replace", "event_id": "$x"}}}, 0, 3, false, false},
		{"reaction", map[string]any{"type": "m.reaction", "content": map[string]any{}}, 0, 3, false, false},
		{"invite for me", map[string]any{"type": "m.room.member", "state_key": me, "content": map[string]any{"membership": "invite"}}, 0, 3, true, false},
		{"other member event", map[string]any{"type": "m.room.member", "state_key": "@x:localhost", "content": map[string]any{"membership": "join"}}, 0, 3, false, false},
		{"encrypted", map[string]any{"type": "m.room.encrypted", "content": map[string]any{}}, 0, 3, true, false},
		{"tombstone", map[string]any{"type": "m.room.tombstone", "state_key": "", "content": map[string]any{}}, 0, 3, true, true},
		{"typing is nothing", map[string]any{"type": "m.custom", "content": map[string]any{}}, 0, 3, false, false},
	}
	for _, tc := range cases {
		b, _ := json.Marshal(tc.event)
		c := ctx
		power := tc.power
		c.SenderMayNotify = func(string) bool { return power >= 50 }
		c.MemberCount = tc.members
		got := rs.Evaluate(b, c)
		if got.Notify != tc.notify || got.Highlight != tc.highlight {
			t.Errorf("%s: got %+v, want notify=%v highlight=%v", tc.name, got, tc.notify, tc.highlight)
		}
	}
}

func TestUserRulesAndMaster(t *testing.T) {
	const me = "@bob:localhost"
	msg, _ := json.Marshal(map[string]any{"type": "m.room.message", "room_id": "!quiet:localhost", "sender": "@a:localhost", "content": map[string]any{"body": "I like cakes"}})
	ctx := Context{UserID: me, MemberCount: 5}
	// A room rule with no actions silences a room.
	rs := Merge(me, []UserRule{{Kind: "room", Rule: Rule{RuleID: "!quiet:localhost", Enabled: true, Actions: []any{}}}}, nil)
	if got := rs.Evaluate(msg, ctx); got.Notify {
		t.Fatal("room rule did not silence the room")
	}
	// A content keyword highlights.
	p := "cake*"
	rs = Merge(me, []UserRule{{Kind: "content", Rule: Rule{RuleID: "kw", Enabled: true, Pattern: &p, Actions: []any{"notify", map[string]any{"set_tweak": "highlight"}}}}}, nil)
	if got := rs.Evaluate(msg, ctx); !got.Highlight {
		t.Fatal("keyword rule did not highlight")
	}
	// Enabling the master rule silences everything.
	on := true
	rs = Merge(me, nil, []Override{{RuleID: ".m.rule.master", Enabled: &on}})
	if got := rs.Evaluate(msg, ctx); got.Notify {
		t.Fatal("master rule enabled but still notifying")
	}
}

func TestGlobAndCount(t *testing.T) {
	whole := func(p, s string) bool { return compileGlob(p, false).MatchString(s) }
	words := func(p, s string) bool { return compileGlob(p, true).MatchString(s) }
	// The spec's own examples (event_match and content.body).
	if !whole("lunc?*", "Lunch plans") || !whole("lunc?*", "LUNCH") || whole("lunc?*", " lunch") || whole("lunc?*", "lunc") {
		t.Fatal("event_match on a whole value")
	}
	if !words("ex*ple", "An example event.") || !words("ex*ple", "exple") || !words("ex*ple", "An exciting triple-whammy") {
		t.Fatal("content.body word matching")
	}
	if !words("cake", "I want CAKE now") || words("cake", "pancakes") || words("cake", "cake_shop") {
		t.Fatal("word boundaries")
	}
	if !whole("m.room.*", "m.room.message") || whole("m.room.*", "xm.room.message") || whole("a.b", "axb") {
		t.Fatal("glob metacharacters")
	}
	for _, tc := range []struct {
		is   string
		n    int
		want bool
	}{{"2", 2, true}, {"==2", 3, false}, {"<3", 2, true}, {">=10", 9, false}, {"x", 1, false}} {
		op, v, ok := parseIs(tc.is)
		if (ok && compareCount(op, v, tc.n)) != tc.want {
			t.Errorf("compareCount(%q, %d) != %v", tc.is, tc.n, tc.want)
		}
	}
}

func TestConditions(t *testing.T) {
	const me = "@bob:localhost"
	str := func(s string) *string { return &s }
	rule := func(conds ...Condition) *Compiled {
		rs := Merge(me, []UserRule{{Kind: "override", Rule: Rule{RuleID: "r", Enabled: true, Conditions: &conds,
			Actions: []any{"notify", map[string]any{"set_tweak": "highlight", "value": true}}}}}, nil)
		return Compile(&rs)
	}
	ev := func(m map[string]any) *Event {
		m["sender"] = "@alice:localhost"
		b, _ := json.Marshal(m)
		e, err := NewEvent(b)
		if err != nil {
			t.Fatal(err)
		}
		return e
	}
	ctx := Context{UserID: me, MemberCount: 2, DisplayName: func() string { return "Bob B." }}
	msg := ev(map[string]any{"type": "m.custom", "content": map[string]any{"body": "hello Bob B. !", "n": 3, "z": nil,
		"m.federate": true, "list": []any{"x", 2, true}, "a\\b": "esc", "nested": map[string]any{"k": "v"}}})
	cases := []struct {
		name string
		cond Condition
		want bool
	}{
		{"is bool", Condition{Kind: "event_property_is", Key: `content.m\.federate`, Value: raw(true)}, true},
		{"is bool vs string", Condition{Kind: "event_property_is", Key: `content.m\.federate`, Value: raw("true")}, false},
		{"is int", Condition{Kind: "event_property_is", Key: "content.n", Value: raw(3)}, true},
		{"is null", Condition{Kind: "event_property_is", Key: "content.z", Value: raw(nil)}, true},
		{"is absent", Condition{Kind: "event_property_is", Key: "content.nope", Value: raw(nil)}, false},
		{"is object", Condition{Kind: "event_property_is", Key: "content.nested", Value: raw(map[string]any{"k": "v"})}, false},
		{"escaped backslash", Condition{Kind: "event_property_is", Key: `content.a\\b`, Value: raw("esc")}, true},
		{"nested path", Condition{Kind: "event_match", Key: "content.nested.k", Pattern: str("V")}, true},
		{"contains", Condition{Kind: "event_property_contains", Key: "content.list", Value: raw(2)}, true},
		{"contains partial", Condition{Kind: "event_property_contains", Key: "content.list", Value: raw("xx")}, false},
		{"match non-string", Condition{Kind: "event_match", Key: "content.n", Pattern: str("*")}, false},
		{"display name", Condition{Kind: "contains_display_name"}, true},
		{"member count", Condition{Kind: "room_member_count", Is: "<=2"}, true},
		{"member count no", Condition{Kind: "room_member_count", Is: ">2"}, false},
		{"no permission callback", Condition{Kind: "sender_notification_permission", Key: "room"}, false},
		{"unknown kind", Condition{Kind: "org.example.future"}, false},
		{"event_match without pattern", Condition{Kind: "event_match", Key: "type"}, false},
	}
	for _, tc := range cases {
		got := rule(tc.cond).Evaluate(msg, ctx)
		if got.Notify != tc.want || got.Highlight != tc.want {
			t.Errorf("%s: got %+v, want match=%v", tc.name, got, tc.want)
		}
	}
	// Own events never notify; a highlight without notify is no highlight;
	// historical actions are ignored.
	own := ev(map[string]any{"type": "m.room.message", "content": map[string]any{"body": "x"}})
	if got := rule().Evaluate(own, Context{UserID: "@alice:localhost"}); got.Notify {
		t.Error("own event notified")
	}
	rs := Merge(me, []UserRule{{Kind: "override", Rule: Rule{RuleID: "q", Enabled: true, Conditions: &[]Condition{},
		Actions: []any{"dont_notify", map[string]any{"set_tweak": "highlight"}}}}}, nil)
	if got := Compile(&rs).Evaluate(msg, ctx); got.Notify || got.Highlight {
		t.Errorf("dont_notify rule: %+v", got)
	}
	// A sender rule and a disabled rule.
	rs = Merge(me, []UserRule{
		{Kind: "override", Rule: Rule{RuleID: "off", Enabled: false, Conditions: &[]Condition{}, Actions: []any{}}},
		{Kind: "sender", Rule: Rule{RuleID: "@alice:localhost", Enabled: true, Actions: []any{"notify", map[string]any{"set_tweak": "highlight"}}}},
	}, nil)
	if got := Compile(&rs).Evaluate(own, ctx); !got.Highlight {
		t.Errorf("sender rule: %+v", got)
	}
}

func TestSenderLevel(t *testing.T) {
	pl := &storage.Event{JSON: []byte(`{"content":{"users":{"@a:x":100,"@s:x":"60"},"users_default":10,"notifications":{"room":70}}}`)}
	create := &storage.Event{JSON: []byte(`{"sender":"@c:x","content":{"room_version":"12","additional_creators":["@d:x"]}}`)}
	if l, n := SenderLevel(pl, nil, "@a:x"); l != 100 || n["room"] != 70 {
		t.Errorf("a: %d %v", l, n)
	}
	if l, _ := SenderLevel(pl, nil, "@s:x"); l != 60 {
		t.Errorf("string level: %d", l)
	}
	if l, _ := SenderLevel(pl, nil, "@z:x"); l != 10 {
		t.Errorf("default: %d", l)
	}
	if l, _ := SenderLevel(pl, create, "@d:x"); l < 1<<50 {
		t.Errorf("v12 creator: %d", l)
	}
}

// BenchmarkEvaluateDefaults is the per-member cost of evaluating a plain
// message against the default rules on the send path.
func BenchmarkEvaluateDefaults(b *testing.B) {
	rs := Defaults("@bob:localhost")
	c := Compile(&rs)
	ev, _ := NewEvent([]byte(`{"type":"m.room.message","sender":"@a:localhost","room_id":"!r:localhost","content":{"msgtype":"m.text","body":"hello there"}}`))
	ctx := Context{UserID: "@bob:localhost", MemberCount: 10}
	for b.Loop() {
		c.Evaluate(ev, ctx)
	}
}

// TestGlobFastPathsAgreeWithRegexp checks the direct comparisons used for
// patterns without wildcards against the regular expressions they stand
// for, on ASCII and non-ASCII values (case folding, word boundaries).
func TestGlobFastPathsAgreeWithRegexp(t *testing.T) {
	patterns := []string{"m.room.message", "M.ROOM.MESSAGE", "cake", "@room", "Bob B.", "bob", "k", "straße", "ſ", "a_b", "x-y", "é", "lunc?*", ""}
	values := []string{"", "m.room.message", "m.room.messages", "M.Room.Message", "I want CAKE now", "pancakes", "cake_shop", "cake!",
		"hi @room!", "a@room", "@rooms", "hello Bob B. !", "hello Bob B.x", "BOB", "bob_", "(bob)", "K", "\u212a", "ſ", "S", "straße",
		"STRASSE", "Straße!", "a_b a_bc", "x-y-z", "É", "é!", "e\u0301", "cake \u00e9", "\u00e9 bob \u00e9"}
	for _, p := range patterns {
		for _, words := range []bool{false, true} {
			g := compileGlob(p, words)
			for _, v := range values {
				if got, want := g.MatchString(v), g.regex().MatchString(v); got != want {
					t.Errorf("pattern %q words=%v on %q: %v, regexp says %v", p, words, v, got, want)
				}
			}
		}
		if p == "" {
			continue
		}
		for _, v := range values {
			if got, want := containsWords(v, p), literalWords(p).MatchString(v); got != want {
				t.Errorf("display name %q in %q: %v, regexp says %v", p, v, got, want)
			}
		}
	}
}

// TestNewEventFlattensAsDecoded checks the in-place flattening of NewEvent
// against decoding the whole event with encoding/json and flattening the
// maps: the same paths (dots and backslashes in names escaped), and leaves
// of the same Go types and values (numbers as float64, arrays with objects
// inside as []any of maps, unicode escapes and surrogate pairs decoded).
func TestNewEventFlattensAsDecoded(t *testing.T) {
	docs := []string{
		`{"type":"m.room.message","sender":"@a:localhost","room_id":"!r:localhost","content":{"msgtype":"m.text","body":"hello there"}}`,
		`{"content":{"m.mentions":{"room":true,"user_ids":["@b:x","@c:x"]},"m.relates_to":{"rel_type":"m.thread","event_id":"$e"},"a\\b.c":{"d.e":null}},"depth":12,"origin_server_ts":1733500000000}`,
		`{"content":{"body":"caf\u00e9 \ud83c\udf70 \"quoted\" \\ back\nslash","n":-1.5e3,"z":0,"big":12345678901234567890,"list":[1,"two",{"three":[3,{"x":false}]},null,true],"empty":{},"arr":[]}}`,
		`{"":{"":"empty names"},"unsigned":{"age":5},"hashes":{"sha256":"abc"},"signatures":{"x":{"ed25519:k":"sig"}},"prev_events":["$p"],"auth_events":["$a","$b"]}`,
		` { "spaced" : { "k" : [ 1 , 2 ] } , "t" : "v" } `,
	}
	for _, doc := range docs {
		ev, err := NewEvent([]byte(doc))
		if err != nil {
			t.Fatalf("%s: %v", doc, err)
		}
		var m map[string]any
		if err := json.Unmarshal([]byte(doc), &m); err != nil {
			t.Fatal(err)
		}
		want := map[string]any{}
		decodedFlatten("", m, want)
		if !reflect.DeepEqual(ev.flat, want) {
			t.Errorf("%s:\n got %#v\nwant %#v", doc, ev.flat, want)
		}
	}
	for _, bad := range []string{``, `[]`, `"s"`, `{"a":`, `{"a":1}}`, `{a:1}`} {
		if _, err := NewEvent([]byte(bad)); err == nil {
			t.Errorf("%q: no error", bad)
		}
	}
}

// decodedFlatten is the reference for TestNewEventFlattensAsDecoded: the
// flattening of maps that encoding/json decoded.
func decodedFlatten(prefix string, v map[string]any, out map[string]any) {
	for k, val := range v {
		key := pathEscaper.Replace(k)
		if prefix != "" {
			key = prefix + "." + key
		}
		if m, ok := val.(map[string]any); ok {
			decodedFlatten(key, m, out)
			continue
		}
		out[key] = val
	}
}

// BenchmarkNewEvent is the once-per-event cost of preparing a sent
// message, as the server stores it, for evaluation.
func BenchmarkNewEvent(b *testing.B) {
	js := []byte(`{"auth_events":["$Q3JQ6nqwKtC8oQm2PX9OJN6Z6qq2U3u5Qp1k9J8Yk1E","$y7nhhx0LQvB0uQ2i3rXb6eDo2b3vJ4h8R0c9W1Xa2Zs","$4n1b8cVd2Wf5Xg7Yh9Zi0Aj1Bk2Cl3Dm4En5Fo6Gp7"],"content":{"body":"message 1234 from a bench sender","msgtype":"m.text"},"depth":4711,"hashes":{"sha256":"K1l2m3n4o5p6q7r8s9t0u1v2w3x4y5z6A7B8C9D0E1F"},"origin":"bench.local","origin_server_ts":1765080000000,"prev_events":["$Hq8Yk1E3JQ6nqwKtC8oQm2PX9OJN6Z6qq2U3u5Qp1k9"],"room_id":"!abcdefghijklmnop:bench.local","sender":"@bsqlite-user-00042:bench.local","signatures":{"bench.local":{"ed25519:a_AbCd":"c2lnbmF0dXJlIG9mIHRoZSBldmVudCBieSB0aGUgc2VydmVyIGtleSwgZmFrZQ"}},"type":"m.room.message"}`)
	for b.Loop() {
		if _, err := NewEvent(js); err != nil {
			b.Fatal(err)
		}
	}
}

// TestQuietOnMembersAgreesWithEvaluate checks QuietOnMembers, which lets
// the bulk evaluation skip a member event's non-targets, against Evaluate
// itself: for each ruleset said to be quiet, no member event about
// another user notifies (mentions, the user's display name in a body and
// notices included); each ruleset said not to be has one that does.
func TestQuietOnMembersAgreesWithEvaluate(t *testing.T) {
	const me = "@bob:localhost"
	on, off := true, false
	notifyHighlight := []any{"notify", map[string]any{"set_tweak": "highlight"}}
	cond := func(key, pattern string) *[]Condition {
		return &[]Condition{{Kind: "event_match", Key: key, Pattern: &pattern}}
	}
	cases := []struct {
		name  string
		rs    Ruleset
		quiet bool
	}{
		{"defaults", Defaults(me), true},
		{"master enabled", Merge(me, nil, []Override{{RuleID: ".m.rule.master", Enabled: &on}}), true},
		{"invite_for_me highlights", Merge(me, nil, []Override{{RuleID: ".m.rule.invite_for_me", Actions: notifyHighlight}}), true},
		{"user override that silences", Merge(me, []UserRule{{Kind: "override", Rule: Rule{RuleID: "hush", Enabled: true,
			Conditions: cond("type", "m.room.member"), Actions: []any{}}}}, nil), true},
		{"member_event disabled", Merge(me, nil, []Override{{RuleID: ".m.rule.member_event", Enabled: &off}}), false},
		{"member_event notifies", Merge(me, nil, []Override{{RuleID: ".m.rule.member_event", Actions: []any{"notify"}}}), false},
		{"suppress_notices notifies", Merge(me, nil, []Override{{RuleID: ".m.rule.suppress_notices", Actions: []any{"notify"}}}), false},
		{"user override that notifies", Merge(me, []UserRule{{Kind: "override", Rule: Rule{RuleID: "joins", Enabled: true,
			Conditions: cond("content.membership", "join"), Actions: []any{"notify"}}}}, nil), false},
	}
	other := "@carol:localhost"
	events := []map[string]any{
		{"content": map[string]any{"membership": "join"}},
		{"content": map[string]any{"membership": "invite"}},
		{"content": map[string]any{"membership": "leave", "reason": "Bob knows"}},
		{"content": map[string]any{"membership": "ban"}},
		{"content": map[string]any{"membership": "join", "m.mentions": map[string]any{"user_ids": []any{me}, "room": true}}},
		{"content": map[string]any{"membership": "join", "displayname": "Bob", "body": "Bob bob @room"}},
		{"content": map[string]any{"membership": "join", "msgtype": "m.notice"}},
	}
	for _, tc := range cases {
		c := Compile(&tc.rs)
		if c.QuietOnMembers() != tc.quiet {
			t.Fatalf("%s: QuietOnMembers = %v, want %v", tc.name, c.QuietOnMembers(), tc.quiet)
		}
		notified := false
		for _, e := range events {
			e["type"], e["state_key"], e["sender"], e["room_id"] = "m.room.member", other, other, "!r:localhost"
			b, _ := json.Marshal(e)
			ev, err := NewEvent(b)
			if err != nil {
				t.Fatal(err)
			}
			res := c.Evaluate(ev, Context{UserID: me, MemberCount: 3, DisplayName: func() string { return "Bob" },
				SenderMayNotify: func(string) bool { return true }})
			if res.Notify && tc.quiet {
				t.Fatalf("%s: said quiet, but %s notifies", tc.name, b)
			}
			notified = notified || res.Notify
		}
		if !tc.quiet && !notified {
			t.Fatalf("%s: said not quiet, but no member event notifies", tc.name)
		}
	}
}
