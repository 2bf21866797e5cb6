package pushrules

import (
	"encoding/json"
	"testing"
)

func TestEvaluateDefaults(t *testing.T) {
	const me = "@bob:localhost"
	rs := Defaults(me)
	ctx := Context{UserID: me, DisplayName: "Bob", MemberCount: 3, SenderPower: 0,
		NotifPowerLevel: func(string) int64 { return 50 }}
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
		c.SenderPower, c.MemberCount = tc.power, tc.members
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
	if !globWhole("m.room.*", "m.room.message") || globWhole("m.room.*", "xm.room.message") {
		t.Fatal("globWhole")
	}
	if !globWords("cake", "I want CAKE now") || globWords("cake", "pancakes") {
		t.Fatal("globWords")
	}
	for _, tc := range []struct {
		is   string
		n    int
		want bool
	}{{"2", 2, true}, {"==2", 3, false}, {"<3", 2, true}, {">=10", 9, false}, {"x", 1, false}} {
		if compareCount(tc.is, tc.n) != tc.want {
			t.Errorf("compareCount(%q, %d) != %v", tc.is, tc.n, tc.want)
		}
	}
}
