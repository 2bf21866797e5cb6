// Package pushrules holds the push rules of the Matrix spec: the
// server-default rule set, the ordering of a user's rules with the defaults,
// and evaluation of rules against events (for unread notification counts).
package pushrules

import (
	"encoding/json"
	"strings"
)

// Kinds lists the rule kinds in evaluation order.
var Kinds = []string{"override", "content", "room", "sender", "underride"}

// Condition is one push condition.
type Condition struct {
	Kind    string          `json:"kind"`
	Key     string          `json:"key,omitempty"`
	Pattern *string         `json:"pattern,omitempty"`
	Is      string          `json:"is,omitempty"`
	Value   json.RawMessage `json:"value,omitempty"`
}

// Rule is a push rule as the API returns it.
type Rule struct {
	RuleID     string       `json:"rule_id"`
	Default    bool         `json:"default"`
	Enabled    bool         `json:"enabled"`
	Conditions *[]Condition `json:"conditions,omitempty"`
	Pattern    *string      `json:"pattern,omitempty"`
	Actions    []any        `json:"actions"`
}

// Ruleset is a user's rules by kind, in priority order.
type Ruleset struct {
	Override  []Rule `json:"override"`
	Content   []Rule `json:"content"`
	Room      []Rule `json:"room"`
	Sender    []Rule `json:"sender"`
	Underride []Rule `json:"underride"`
}

// Kind returns the slice of rules of a kind.
func (rs *Ruleset) Kind(kind string) *[]Rule {
	switch kind {
	case "override":
		return &rs.Override
	case "content":
		return &rs.Content
	case "room":
		return &rs.Room
	case "sender":
		return &rs.Sender
	case "underride":
		return &rs.Underride
	}
	return nil
}

func match(key, pattern string) Condition {
	p := pattern
	return Condition{Kind: "event_match", Key: key, Pattern: &p}
}

func def(id string, enabled bool, conds []Condition, actions ...any) Rule {
	if conds == nil {
		conds = []Condition{}
	}
	if actions == nil {
		actions = []any{}
	}
	return Rule{RuleID: id, Default: true, Enabled: enabled, Conditions: &conds, Actions: actions}
}

var (
	soundDefault = map[string]any{"set_tweak": "sound", "value": "default"}
	highlight    = map[string]any{"set_tweak": "highlight"}
)

func raw(v any) json.RawMessage {
	b, _ := json.Marshal(v)
	return b
}

// Defaults returns the spec's server-default rules (v1.19) for userID.
func Defaults(userID string) Ruleset {
	return Ruleset{
		Override: []Rule{
			def(".m.rule.master", false, nil),
			def(".m.rule.suppress_notices", true, []Condition{match("content.msgtype", "m.notice")}),
			def(".m.rule.invite_for_me", true, []Condition{match("type", "m.room.member"), match("content.membership", "invite"), match("state_key", userID)}, "notify", soundDefault),
			def(".m.rule.member_event", true, []Condition{match("type", "m.room.member")}),
			def(".m.rule.is_user_mention", true, []Condition{{Kind: "event_property_contains", Key: `content.m\.mentions.user_ids`, Value: raw(userID)}}, "notify", soundDefault, highlight),
			def(".m.rule.is_room_mention", true, []Condition{{Kind: "event_property_is", Key: `content.m\.mentions.room`, Value: raw(true)}, {Kind: "sender_notification_permission", Key: "room"}}, "notify", highlight),
			def(".m.rule.tombstone", true, []Condition{match("type", "m.room.tombstone"), match("state_key", "")}, "notify", highlight),
			def(".m.rule.reaction", true, []Condition{match("type", "m.reaction")}),
			def(".m.rule.room.server_acl", true, []Condition{match("type", "m.room.server_acl"), match("state_key", "")}),
			def(".m.rule.suppress_edits", true, []Condition{{Kind: "event_property_is", Key: `content.m\.relates_to.rel_type`, Value: raw("m.replace")}}),
		},
		Content: []Rule{},
		Room:    []Rule{},
		Sender:  []Rule{},
		Underride: []Rule{
			def(".m.rule.call", true, []Condition{match("type", "m.call.invite")}, "notify", map[string]any{"set_tweak": "sound", "value": "ring"}),
			def(".m.rule.encrypted_room_one_to_one", true, []Condition{{Kind: "room_member_count", Is: "2"}, match("type", "m.room.encrypted")}, "notify", soundDefault),
			def(".m.rule.room_one_to_one", true, []Condition{{Kind: "room_member_count", Is: "2"}, match("type", "m.room.message")}, "notify", soundDefault),
			def(".m.rule.message", true, []Condition{match("type", "m.room.message")}, "notify"),
			def(".m.rule.encrypted", true, []Condition{match("type", "m.room.encrypted")}, "notify"),
		},
	}
}

// IsDefault reports whether a rule ID names a server-default rule.
func IsDefault(ruleID string) bool { return strings.HasPrefix(ruleID, ".") }

// Override changes a server-default rule's enabled flag or actions.
type Override struct {
	RuleID  string
	Enabled *bool
	Actions []any
}

// UserRule is a stored user-defined rule.
type UserRule struct {
	Kind string
	Rule Rule
}

// Merge builds a user's full ruleset: .m.rule.master first, then per kind
// the user's rules (in their stored order) before the server defaults.
func Merge(userID string, user []UserRule, overrides []Override) Ruleset {
	rs := Defaults(userID)
	ov := map[string]Override{}
	for _, o := range overrides {
		ov[o.RuleID] = o
	}
	for _, kind := range Kinds {
		defs := rs.Kind(kind)
		for i := range *defs {
			r := &(*defs)[i]
			if o, ok := ov[r.RuleID]; ok {
				if o.Enabled != nil {
					r.Enabled = *o.Enabled
				}
				if o.Actions != nil {
					r.Actions = o.Actions
				}
			}
		}
		mine := []Rule{}
		for _, u := range user {
			if u.Kind == kind {
				mine = append(mine, u.Rule)
			}
		}
		if kind == "override" {
			merged := append([]Rule{(*defs)[0]}, mine...)
			*defs = append(merged, (*defs)[1:]...)
		} else {
			*defs = append(mine, *defs...)
		}
	}
	return rs
}

// Find returns a rule of a kind by ID.
func (rs *Ruleset) Find(kind, ruleID string) *Rule {
	rules := rs.Kind(kind)
	if rules == nil {
		return nil
	}
	for i := range *rules {
		if (*rules)[i].RuleID == ruleID {
			return &(*rules)[i]
		}
	}
	return nil
}
