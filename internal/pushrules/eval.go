package pushrules

import (
	"encoding/json"
	"regexp"
	"strconv"
	"strings"
	"sync"
)

// Context is what conditions need to know about the room and the user.
type Context struct {
	UserID          string
	DisplayName     string
	MemberCount     int
	SenderPower     int64
	NotifPowerLevel func(key string) int64
}

// Result is the outcome of evaluating an event.
type Result struct {
	Notify    bool
	Highlight bool
}

// Evaluate runs the ruleset against an event (its full JSON) and returns
// whether it notifies and highlights. The first enabled matching rule wins.
func (rs *Ruleset) Evaluate(event []byte, ctx Context) Result {
	var ev map[string]any
	if json.Unmarshal(event, &ev) != nil {
		return Result{}
	}
	flat := map[string]any{}
	flatten("", ev, flat)
	for _, kind := range Kinds {
		for _, r := range *rs.Kind(kind) {
			if !r.Enabled || !ruleMatches(kind, &r, ev, flat, ctx) {
				continue
			}
			return actionsResult(r.Actions)
		}
	}
	return Result{}
}

func actionsResult(actions []any) Result {
	var res Result
	for _, a := range actions {
		switch v := a.(type) {
		case string:
			if v == "notify" {
				res.Notify = true
			}
		case map[string]any:
			if v["set_tweak"] == "highlight" {
				hv, ok := v["value"]
				if !ok || hv == true {
					res.Highlight = true
				}
			}
		}
	}
	if !res.Notify {
		res.Highlight = false
	}
	return res
}

func ruleMatches(kind string, r *Rule, ev map[string]any, flat map[string]any, ctx Context) bool {
	switch kind {
	case "room":
		return ev["room_id"] == r.RuleID
	case "sender":
		return ev["sender"] == r.RuleID
	case "content":
		if r.Pattern == nil {
			return false
		}
		body, _ := flat["content.body"].(string)
		return globWords(*r.Pattern, body)
	}
	if r.Conditions == nil {
		return true
	}
	for _, c := range *r.Conditions {
		if !condMatches(c, flat, ctx) {
			return false
		}
	}
	return true
}

func condMatches(c Condition, flat map[string]any, ctx Context) bool {
	switch c.Kind {
	case "event_match":
		if c.Pattern == nil {
			return false
		}
		s, ok := flat[c.Key].(string)
		if !ok {
			return false
		}
		return globWhole(*c.Pattern, s)
	case "event_property_is":
		v, ok := flat[c.Key]
		if !ok {
			return false
		}
		var want any
		if json.Unmarshal(c.Value, &want) != nil {
			return false
		}
		return scalarEqual(v, want)
	case "event_property_contains":
		v, ok := flat[c.Key].([]any)
		if !ok {
			return false
		}
		var want any
		if json.Unmarshal(c.Value, &want) != nil {
			return false
		}
		for _, x := range v {
			if scalarEqual(x, want) {
				return true
			}
		}
		return false
	case "contains_display_name":
		body, _ := flat["content.body"].(string)
		return ctx.DisplayName != "" && globWords(ctx.DisplayName, body) // literal name as a word
	case "room_member_count":
		return compareCount(c.Is, ctx.MemberCount)
	case "sender_notification_permission":
		if ctx.NotifPowerLevel == nil {
			return false
		}
		return ctx.SenderPower >= ctx.NotifPowerLevel(c.Key)
	}
	return false // unknown conditions never match
}

func scalarEqual(a, b any) bool {
	switch av := a.(type) {
	case string, bool, nil:
		return a == b
	case float64:
		bv, ok := b.(float64)
		return ok && av == bv
	}
	return false
}

func compareCount(is string, n int) bool {
	op := "=="
	for _, p := range []string{"<=", ">=", "==", "<", ">"} {
		if strings.HasPrefix(is, p) {
			op, is = p, is[len(p):]
			break
		}
	}
	v, err := strconv.Atoi(is)
	if err != nil {
		return false
	}
	switch op {
	case "<":
		return n < v
	case ">":
		return n > v
	case "<=":
		return n <= v
	case ">=":
		return n >= v
	}
	return n == v
}

// flatten turns nested objects into dotted keys, escaping dots and
// backslashes in keys as the spec requires ("m\.mentions").
func flatten(prefix string, v map[string]any, out map[string]any) {
	for k, val := range v {
		key := strings.NewReplacer(`\`, `\\`, `.`, `\.`).Replace(k)
		if prefix != "" {
			key = prefix + "." + key
		}
		if m, ok := val.(map[string]any); ok {
			flatten(key, m, out)
			continue
		}
		out[key] = val
	}
}

var globCache sync.Map // pattern+mode → *regexp.Regexp

func globRegexp(pattern string, words bool) *regexp.Regexp {
	key := pattern
	if words {
		key = "w:" + pattern
	}
	if re, ok := globCache.Load(key); ok {
		return re.(*regexp.Regexp)
	}
	var b strings.Builder
	for _, r := range pattern {
		switch r {
		case '*':
			b.WriteString(".*?")
		case '?':
			b.WriteString(".")
		default:
			b.WriteString(regexp.QuoteMeta(string(r)))
		}
	}
	expr := "(?is)^" + b.String() + "$"
	if words {
		expr = `(?is)(^|\W)` + b.String() + `(\W|$)`
	}
	re, err := regexp.Compile(expr)
	if err != nil {
		re = regexp.MustCompile(`$^`)
	}
	globCache.Store(key, re)
	return re
}

// globWhole matches a glob against a whole value, case-insensitively.
func globWhole(pattern, s string) bool { return globRegexp(pattern, false).MatchString(s) }

// globWords matches a glob against word boundaries within a body.
func globWords(pattern, s string) bool { return globRegexp(pattern, true).MatchString(s) }
