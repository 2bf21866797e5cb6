package pushrules

import (
	"bytes"
	"encoding/json"
	"errors"
	"regexp"
	"strconv"
	"strings"
	"sync"

	"github.com/tidwall/gjson"
)

// Event is an event prepared for evaluation: parsed and flattened once,
// then evaluated against the rules of every member of its room.
type Event struct {
	flat   map[string]any // dot-separated property path → non-object value
	roomID string
	sender string
}

// NewEvent prepares an event (its full JSON) for evaluation.
//
// The JSON is walked in place with gjson rather than decoded into nested
// maps first: only the leaves are materialised, as encoding/json would
// decode them (float64, string, bool, nil, []any). On the send path this
// was a twentieth of the server's CPU (an event's hashes, signatures and
// references were decoded into maps only to be flattened and dropped).
func NewEvent(eventJSON []byte) (*Event, error) {
	if !gjson.ValidBytes(eventJSON) {
		return nil, errors.New("event is not valid JSON")
	}
	root := gjson.ParseBytes(eventJSON)
	if !root.IsObject() {
		return nil, errors.New("event is not a JSON object")
	}
	out := &Event{flat: make(map[string]any, 24)}
	flatten("", root, out.flat)
	out.roomID, _ = out.flat["room_id"].(string)
	out.sender, _ = out.flat["sender"].(string)
	return out, nil
}

// Context is what conditions need to know about the room and the user
// whose rules are evaluated. The functions are called only when a rule
// needs them, so that callers can load what they answer lazily.
type Context struct {
	UserID      string
	MemberCount int
	// DisplayName returns the user's display name in the room.
	DisplayName func() string
	// SenderMayNotify reports whether the sender's power level reaches the
	// level the room's power levels require for a notification key
	// ("room"); sender_notification_permission.
	SenderMayNotify func(key string) bool
}

// Result is the outcome of evaluating an event for one user.
type Result struct {
	Notify    bool
	Highlight bool
	// Actions are the matching rule's actions (nil when none matched).
	Actions []any
	// ActionsJSON is Actions encoded, once per compiled rule.
	ActionsJSON json.RawMessage
}

// compiledRule is a rule ready for evaluation.
type compiledRule struct {
	kind    string
	id      string
	pattern *glob // content rules
	conds   []compiledCond
	result  Result
}

type compiledCond struct {
	kind  string
	key   string
	re    *glob  // event_match
	value any    // event_property_is / _contains
	valid bool   // false: the condition can never match
	op    string // room_member_count
	n     int
}

// Compiled is a user's ruleset prepared for evaluation; it is immutable
// and safe to share between goroutines.
type Compiled struct {
	rules []compiledRule
	// quietOnMembers: see QuietOnMembers.
	quietOnMembers bool
}

// QuietOnMembers reports whether the ruleset notifies its user of no
// m.room.member event except one whose state key is the user. It holds
// when .m.rule.member_event (whose only condition, type m.room.member,
// users cannot change) is enabled without notifying, and no rule before
// it notifies but .m.rule.invite_for_me, which also requires the state
// key to be the user: the server defaults, and most rulesets. In a room
// of ten thousand members a join is then evaluated for its target only,
// not for every member.
func (c *Compiled) QuietOnMembers() bool { return c.quietOnMembers }

// quietOnMembers computes QuietOnMembers from the compiled rules, in the
// order Evaluate tries them.
func quietOnMembers(rules []compiledRule) bool {
	for _, r := range rules {
		switch {
		case r.kind == "override" && r.id == ".m.rule.member_event":
			return !r.result.Notify
		case !r.result.Notify, r.kind == "override" && r.id == ".m.rule.invite_for_me":
			// A rule that does not notify, when it matches, stops the
			// evaluation with no notification, as member_event would.
		default:
			return false
		}
	}
	return false
}

// Compile prepares a ruleset for evaluation. Disabled rules are dropped:
// they never match.
func Compile(rs *Ruleset) *Compiled {
	c := &Compiled{}
	for _, kind := range Kinds {
		for _, r := range *rs.Kind(kind) {
			if !r.Enabled {
				continue
			}
			cr := compiledRule{kind: kind, id: r.RuleID, result: actionsResult(r.Actions)}
			switch kind {
			case "content":
				if r.Pattern == nil {
					continue // a content rule without a pattern never matches
				}
				cr.pattern = compileGlob(*r.Pattern, true)
			case "override", "underride":
				if r.Conditions != nil {
					for _, cond := range *r.Conditions {
						cr.conds = append(cr.conds, compileCond(cond))
					}
				}
			}
			c.rules = append(c.rules, cr)
		}
	}
	c.quietOnMembers = quietOnMembers(c.rules)
	return c
}

func compileCond(c Condition) compiledCond {
	cc := compiledCond{kind: c.Kind, key: c.Key}
	switch c.Kind {
	case "event_match":
		if c.Pattern != nil && c.Key != "" {
			cc.re = compileGlob(*c.Pattern, c.Key == "content.body")
			cc.valid = true
		}
	case "event_property_is", "event_property_contains":
		var v any
		d := json.NewDecoder(bytes.NewReader(c.Value))
		if c.Key != "" && len(c.Value) > 0 && d.Decode(&v) == nil && isScalar(v) {
			cc.value, cc.valid = v, true
		}
	case "contains_display_name":
		cc.valid = true
	case "room_member_count":
		cc.op, cc.n, cc.valid = parseIs(c.Is)
	case "sender_notification_permission":
		cc.valid = c.Key != ""
	}
	return cc
}

// Evaluate runs the rules against an event and returns the actions of the
// first matching rule. Events a user sent themselves never notify them.
func (c *Compiled) Evaluate(ev *Event, ctx Context) Result {
	if ev.sender == ctx.UserID {
		return Result{}
	}
	for i := range c.rules {
		r := &c.rules[i]
		if r.matches(ev, &ctx) {
			return r.result
		}
	}
	return Result{}
}

func (r *compiledRule) matches(ev *Event, ctx *Context) bool {
	switch r.kind {
	case "room":
		return ev.roomID == r.id
	case "sender":
		return ev.sender == r.id
	case "content":
		body, ok := ev.flat["content.body"].(string)
		return ok && r.pattern.MatchString(body)
	}
	for i := range r.conds {
		if !r.conds[i].matches(ev, ctx) {
			return false
		}
	}
	return true
}

func (c *compiledCond) matches(ev *Event, ctx *Context) bool {
	if !c.valid {
		return false // unknown or malformed conditions never match
	}
	switch c.kind {
	case "event_match":
		s, ok := ev.flat[c.key].(string)
		return ok && c.re.MatchString(s)
	case "event_property_is":
		v, ok := ev.flat[c.key]
		return ok && isScalar(v) && v == c.value
	case "event_property_contains":
		arr, ok := ev.flat[c.key].([]any)
		if !ok {
			return false
		}
		for _, x := range arr {
			if isScalar(x) && x == c.value {
				return true
			}
		}
		return false
	case "contains_display_name":
		body, ok := ev.flat["content.body"].(string)
		if !ok || ctx.DisplayName == nil {
			return false
		}
		name := ctx.DisplayName()
		return name != "" && containsWords(body, name)
	case "room_member_count":
		return compareCount(c.op, c.n, ctx.MemberCount)
	case "sender_notification_permission":
		return ctx.SenderMayNotify != nil && ctx.SenderMayNotify(c.key)
	}
	return false
}

// isScalar reports whether v is a value event_property_is and
// event_property_contains compare: a string, number, boolean or null.
func isScalar(v any) bool {
	switch v.(type) {
	case string, float64, bool, nil:
		return true
	}
	return false
}

// actionsResult reads notify and the highlight tweak from actions. The
// historical dont_notify and coalesce actions are ignored, as the spec
// requires.
func actionsResult(actions []any) Result {
	res := Result{Actions: actions}
	if res.Actions == nil {
		res.Actions = []any{}
	}
	res.ActionsJSON, _ = json.Marshal(res.Actions)
	for _, a := range actions {
		switch v := a.(type) {
		case string:
			if v == "notify" {
				res.Notify = true
			}
		case map[string]any:
			if v["set_tweak"] == "highlight" {
				// No value means true; an explicit null, like false, does
				// not highlight (as Synapse reads it).
				hv, ok := v["value"]
				if !ok || hv == true {
					res.Highlight = true
				}
			}
		}
	}
	if !res.Notify {
		res.Highlight = false // a highlight without a notification counts for nothing
	}
	return res
}

// parseIs parses room_member_count's "is": an integer optionally prefixed
// by ==, <, >, >= or <=.
func parseIs(is string) (op string, n int, ok bool) {
	op = "=="
	for _, p := range []string{"<=", ">=", "==", "<", ">"} {
		if strings.HasPrefix(is, p) {
			op, is = p, is[len(p):]
			break
		}
	}
	v, err := strconv.Atoi(is)
	if err != nil || v < 0 {
		return "", 0, false
	}
	return op, v, true
}

func compareCount(op string, v, n int) bool {
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

var pathEscaper = strings.NewReplacer(`\`, `\\`, `.`, `\.`)

// flatten turns nested objects into dot-separated property paths, with
// dots and backslashes in names escaped as the spec requires
// ("content.m\.mentions.room"). Arrays and scalars are leaves.
func flatten(prefix string, obj gjson.Result, out map[string]any) {
	obj.ForEach(func(k, v gjson.Result) bool {
		key := k.String()
		if strings.ContainsAny(key, `.\`) {
			key = pathEscaper.Replace(key)
		}
		if prefix != "" {
			key = prefix + "." + key
		}
		if v.IsObject() {
			flatten(key, v, out)
		} else {
			out[key] = v.Value()
		}
		return true
	})
}

// glob is a compiled glob-style pattern ('*' any run of characters, '?'
// exactly one) matched case-insensitively against a whole value or, when
// words is set, against any substring that starts and ends at a word
// boundary (content.body and content rules). Patterns without wildcards
// (most of them: "m.room.message", a user ID) are compared directly; the
// others, and word searches in non-ASCII text, run a regular expression.
type glob struct {
	literal string // the pattern, when it has no wildcard and is not empty
	words   bool
	ascii   bool // literal is ASCII
	expr    string
	once    sync.Once
	re      *regexp.Regexp // compiled at first use: most globs never need it
}

// globKey identifies a compiled glob in sharedGlobs.
type globKey struct {
	pattern string
	words   bool
}

// sharedGlobs holds every compiled glob, shared by all users' rulesets (a
// glob is immutable once its regular expression is compiled): the default
// rules are the same patterns for everyone, so thousands of cached
// rulesets hold one copy of each. Bounded by maxSharedGlobs.
var sharedGlobs = struct {
	sync.Mutex
	m map[globKey]*glob
}{m: map[globKey]*glob{}}

const maxSharedGlobs = 50000

// compileGlob compiles pattern; see glob.
func compileGlob(pattern string, words bool) *glob {
	k := globKey{pattern, words}
	sharedGlobs.Lock()
	g := sharedGlobs.m[k]
	sharedGlobs.Unlock()
	if g != nil {
		return g
	}
	g = &glob{words: words}
	if pattern != "" && !strings.ContainsAny(pattern, "*?") {
		g.literal, g.ascii = pattern, isASCII(pattern)
	}
	var b strings.Builder
	for _, r := range pattern {
		switch r {
		case '*':
			b.WriteString(".*")
		case '?':
			b.WriteString(".")
		default:
			b.WriteString(regexp.QuoteMeta(string(r)))
		}
	}
	g.expr = b.String()
	sharedGlobs.Lock()
	if len(sharedGlobs.m) >= maxSharedGlobs {
		clear(sharedGlobs.m) // rulesets keep their globs; new ones start over
	}
	sharedGlobs.m[k] = g
	sharedGlobs.Unlock()
	return g
}

// regex returns the glob's regular expression, compiling it once.
func (g *glob) regex() *regexp.Regexp {
	g.once.Do(func() { g.re = wrap(g.expr, g.words) })
	return g.re
}

// MatchString reports whether s matches the pattern.
func (g *glob) MatchString(s string) bool {
	if g.literal != "" {
		if !g.words {
			// What (?i)^literal$ matches: Go's regexp folds case with
			// the same simple Unicode folding as EqualFold.
			return strings.EqualFold(s, g.literal)
		}
		if g.ascii && isASCII(s) {
			return containsWordsASCII(s, g.literal)
		}
	}
	return g.regex().MatchString(s)
}

// containsWords reports whether s contains lit (a display name) at word
// boundaries, case-insensitively.
func containsWords(s, lit string) bool {
	if isASCII(s) && isASCII(lit) {
		return containsWordsASCII(s, lit)
	}
	return literalWords(lit).MatchString(s)
}

// containsWordsASCII is containsWords for ASCII s and lit: an occurrence
// of lit preceded by the start of s or a non-word character, and followed
// by the end of s or a non-word character (the regular expression
// (?i)(?:^|\W)lit(?:\W|$)).
func containsWordsASCII(s, lit string) bool {
	n := len(lit)
	if n == 0 {
		return literalWords(lit).MatchString(s)
	}
	for i := 0; i+n <= len(s); i++ {
		if i > 0 && isWordByte(s[i-1]) {
			continue
		}
		if i+n < len(s) && isWordByte(s[i+n]) {
			continue
		}
		if strings.EqualFold(s[i:i+n], lit) {
			return true
		}
	}
	return false
}

func isWordByte(c byte) bool {
	return c == '_' || '0' <= c && c <= '9' || 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z'
}

func isASCII(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] >= 0x80 {
			return false
		}
	}
	return true
}

// literalWords matches a literal string (a display name) at word
// boundaries, case-insensitively.
func literalWords(s string) *regexp.Regexp { return wrap(regexp.QuoteMeta(s), true) }

func wrap(expr string, words bool) *regexp.Regexp {
	// A word boundary is the start or end of the value or any character
	// outside [A-Za-z0-9_]: RE2's \W, ASCII-only, is exactly that.
	if words {
		expr = `(?is)(?:^|\W)` + expr + `(?:\W|$)`
	} else {
		expr = `(?is)^` + expr + `$`
	}
	re, err := regexp.Compile(expr)
	if err != nil {
		return regexp.MustCompile(`[^\x00-\x{10FFFF}]`) // matches nothing
	}
	return re
}

// Evaluate runs a ruleset against an event's JSON for one user. Use
// Compile and Compiled.Evaluate to evaluate many events or users.
func (rs *Ruleset) Evaluate(eventJSON []byte, ctx Context) Result {
	ev, err := NewEvent(eventJSON)
	if err != nil {
		return Result{}
	}
	return Compile(rs).Evaluate(ev, ctx)
}
