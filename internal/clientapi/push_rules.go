package clientapi

import (
	"cmp"
	"context"
	"encoding/json"
	"net/http"
	"slices"
	"strings"

	"github.com/rempart-hs/rempart/internal/httpapi"
	"github.com/rempart-hs/rempart/internal/pushrules"
	"github.com/rempart-hs/rempart/internal/storage"
)

func (a *API) routesPushRules(rt *httpapi.Router) {
	rt.Authed(v3("GET", "/pushrules/{$}"), a.getPushRules)
	rt.Authed(v3("GET", "/pushrules/global/{$}"), a.getPushRulesGlobal)
	rt.Authed(v3("GET", "/pushrules/{scope}/{kind}/{ruleId}"), a.getPushRule)
	rt.Authed(v3("PUT", "/pushrules/{scope}/{kind}/{ruleId}"), a.putPushRule)
	rt.Authed(v3("DELETE", "/pushrules/{scope}/{kind}/{ruleId}"), a.deletePushRule)
	rt.Authed(v3("GET", "/pushrules/{scope}/{kind}/{ruleId}/enabled"), a.getPushRuleEnabled)
	rt.Authed(v3("PUT", "/pushrules/{scope}/{kind}/{ruleId}/enabled"), a.putPushRuleEnabled)
	rt.Authed(v3("GET", "/pushrules/{scope}/{kind}/{ruleId}/actions"), a.getPushRuleActions)
	rt.Authed(v3("PUT", "/pushrules/{scope}/{kind}/{ruleId}/actions"), a.putPushRuleActions)
}

// getPushRules serves GET /_matrix/client/v3/pushrules/.
func (a *API) getPushRules(r *http.Request) (any, error) {
	rs, err := pushrules.Load(r.Context(), a.DB, httpapi.RequesterFrom(r.Context()).UserID)
	if err != nil {
		return nil, err
	}
	return map[string]any{"global": rs}, nil
}

// getPushRulesGlobal serves GET /_matrix/client/v3/pushrules/global/.
func (a *API) getPushRulesGlobal(r *http.Request) (any, error) {
	return pushrules.Load(r.Context(), a.DB, httpapi.RequesterFrom(r.Context()).UserID)
}

// pushRulePath validates {scope}/{kind}/{ruleId}.
func pushRulePath(r *http.Request) (kind, ruleID string, err error) {
	if r.PathValue("scope") != "global" {
		return "", "", httpapi.InvalidParam("scope must be global")
	}
	kind, ruleID = r.PathValue("kind"), r.PathValue("ruleId")
	if (&pushrules.Ruleset{}).Kind(kind) == nil {
		return "", "", httpapi.InvalidParam("unknown push rule kind %q", kind)
	}
	if ruleID == "" || len(ruleID) > 255 {
		return "", "", httpapi.InvalidParam("invalid rule ID")
	}
	return kind, ruleID, nil
}

// findRule loads the user's ruleset and one rule of it, or M_NOT_FOUND.
func (a *API) findRule(r *http.Request) (*pushrules.Rule, string, string, error) {
	kind, ruleID, err := pushRulePath(r)
	if err != nil {
		return nil, "", "", err
	}
	rs, err := pushrules.Load(r.Context(), a.DB, httpapi.RequesterFrom(r.Context()).UserID)
	if err != nil {
		return nil, "", "", err
	}
	rule := rs.Find(kind, ruleID)
	if rule == nil {
		return nil, "", "", httpapi.NotFound("unknown push rule")
	}
	return rule, kind, ruleID, nil
}

// getPushRule serves GET /_matrix/client/v3/pushrules/global/{kind}/{ruleId}.
func (a *API) getPushRule(r *http.Request) (any, error) {
	rule, _, _, err := a.findRule(r)
	if err != nil {
		return nil, err
	}
	return rule, nil
}

// getPushRuleEnabled serves GET /_matrix/client/v3/pushrules/global/{kind}/{ruleId}/enabled.
func (a *API) getPushRuleEnabled(r *http.Request) (any, error) {
	rule, _, _, err := a.findRule(r)
	if err != nil {
		return nil, err
	}
	return map[string]bool{"enabled": rule.Enabled}, nil
}

// getPushRuleActions serves GET /_matrix/client/v3/pushrules/global/{kind}/{ruleId}/actions.
func (a *API) getPushRuleActions(r *http.Request) (any, error) {
	rule, _, _, err := a.findRule(r)
	if err != nil {
		return nil, err
	}
	return map[string]any{"actions": rule.Actions}, nil
}

// Bounds on what a user may store as push rules.
const (
	maxUserPushRules   = 500
	maxRuleConditions  = 20
	maxRuleActions     = 20
	maxRuleStringBytes = 1024
)

// cleanActions checks a push rule's actions and strips the historical
// dont_notify and coalesce actions, which the spec says to ignore.
func cleanActions(actions []any) ([]any, error) {
	if len(actions) > maxRuleActions {
		return nil, httpapi.InvalidParam("at most %d actions", maxRuleActions)
	}
	out := make([]any, 0, len(actions))
	for _, act := range actions {
		switch v := act.(type) {
		case string:
			switch v {
			case "notify":
				out = append(out, v)
			case "dont_notify", "coalesce":
			default:
				return nil, httpapi.InvalidParam("unknown action %q", v)
			}
		case map[string]any:
			tweak, ok := v["set_tweak"].(string)
			if !ok || tweak == "" {
				return nil, httpapi.InvalidParam("tweak actions need set_tweak")
			}
			if hv, ok := v["value"]; ok && hv != nil && tweak == "highlight" {
				if _, isBool := hv.(bool); !isBool {
					return nil, httpapi.InvalidParam("the highlight tweak's value must be a boolean")
				}
			}
			if b, _ := json.Marshal(v); len(b) > maxRuleStringBytes {
				return nil, httpapi.InvalidParam("tweak too large")
			}
			out = append(out, v)
		default:
			return nil, httpapi.InvalidParam("invalid action")
		}
	}
	return out, nil
}

// checkConditions validates override and underride conditions. Unknown
// condition kinds are accepted (they never match, as the spec requires).
func checkConditions(conds []pushrules.Condition) error {
	if len(conds) > maxRuleConditions {
		return httpapi.InvalidParam("at most %d conditions", maxRuleConditions)
	}
	for _, c := range conds {
		if c.Kind == "" {
			return httpapi.MissingParam("condition without kind")
		}
		if len(c.Kind) > 255 || len(c.Key) > maxRuleStringBytes || len(c.Is) > 32 || len(c.Value) > maxRuleStringBytes ||
			(c.Pattern != nil && len(*c.Pattern) > maxRuleStringBytes) {
			return httpapi.InvalidParam("condition too large")
		}
		switch c.Kind {
		case "event_match":
			if c.Key == "" || c.Pattern == nil {
				return httpapi.MissingParam("event_match needs key and pattern")
			}
		case "event_property_is", "event_property_contains":
			var v any
			if c.Key == "" || len(c.Value) == 0 {
				return httpapi.MissingParam("%s needs key and value", c.Kind)
			}
			if json.Unmarshal(c.Value, &v) != nil {
				return httpapi.BadJSON("invalid value")
			}
			switch v.(type) {
			case string, float64, bool, nil:
			default:
				return httpapi.InvalidParam("%s's value must be a string, integer, boolean or null", c.Kind)
			}
		case "room_member_count":
			if c.Is == "" {
				return httpapi.MissingParam("room_member_count needs is")
			}
		case "sender_notification_permission":
			if c.Key == "" {
				return httpapi.MissingParam("sender_notification_permission needs key")
			}
		}
	}
	return nil
}

// savePushRules publishes the user's ruleset as m.push_rules account data
// in the same transaction and wakes the user's syncs afterwards.
func (a *API) savePushRules(ctx context.Context, tx *storage.Tx, userID string) error {
	rs, err := pushrules.Load(ctx, tx, userID)
	if err != nil {
		return err
	}
	if _, err := tx.PutAccountData(ctx, userID, "", "m.push_rules", pushrules.AccountData(rs)); err != nil {
		return err
	}
	tx.AfterCommit(func() { a.Notifier.WakeUsers(userID) })
	return nil
}

type putRuleBody struct {
	Actions    []any                  `json:"actions"`
	Conditions *[]pushrules.Condition `json:"conditions"`
	Pattern    *string                `json:"pattern"`
}

// putPushRule serves PUT /_matrix/client/v3/pushrules/global/{kind}/{ruleId}.
func (a *API) putPushRule(r *http.Request) (any, error) {
	ctx := r.Context()
	userID := httpapi.RequesterFrom(ctx).UserID
	kind, ruleID, err := pushRulePath(r)
	if err != nil {
		return nil, err
	}
	if pushrules.IsDefault(ruleID) {
		return nil, httpapi.InvalidParam("rule IDs starting with '.' are reserved for server-default rules")
	}
	if strings.ContainsAny(ruleID, `/\`) {
		return nil, httpapi.InvalidParam("rule IDs may not contain slashes or backslashes")
	}
	var body putRuleBody
	if err := httpapi.DecodeJSON(r, &body); err != nil {
		return nil, err
	}
	if body.Actions == nil {
		return nil, httpapi.MissingParam("missing actions")
	}
	actions, err := cleanActions(body.Actions)
	if err != nil {
		return nil, err
	}
	q := r.URL.Query()
	before, after := q.Get("before"), q.Get("after")
	if pushrules.IsDefault(before) || pushrules.IsDefault(after) {
		return nil, httpapi.InvalidParam("before and after may not name a server-default rule")
	}
	rule := pushrules.Rule{RuleID: ruleID, Enabled: true, Actions: actions}
	switch kind {
	case "content":
		if body.Pattern == nil {
			return nil, httpapi.MissingParam("content rules need a pattern")
		}
		if len(*body.Pattern) > maxRuleStringBytes {
			return nil, httpapi.InvalidParam("pattern too long")
		}
		rule.Pattern = body.Pattern
	case "override", "underride":
		conds := []pushrules.Condition{}
		if body.Conditions != nil {
			conds = *body.Conditions
		}
		if err := checkConditions(conds); err != nil {
			return nil, err
		}
		rule.Conditions = &conds
	}
	err = a.DB.WithTx(ctx, func(tx *storage.Tx) error {
		all, err := tx.PushRules(ctx, userID)
		if err != nil {
			return err
		}
		// The other rules of this kind, in order, and where this one was.
		var list []storage.StoredPushRule
		pos := -1
		for _, s := range all {
			if s.Kind != kind {
				continue
			}
			if s.RuleID != ruleID {
				list = append(list, s)
				continue
			}
			pos = len(list)
			// Replacing a rule keeps its enabled state.
			var old pushrules.Rule
			if json.Unmarshal(s.Rule, &old) == nil {
				rule.Enabled = old.Enabled
			}
		}
		if pos < 0 {
			if len(all) >= maxUserPushRules {
				return httpapi.Unknown("at most %d push rules per user", maxUserPushRules)
			}
			pos = 0 // a new rule is the most important of its kind
		}
		if ref := cmp.Or(before, after); ref != "" {
			// With both, before decides, as the spec says.
			pos = slices.IndexFunc(list, func(s storage.StoredPushRule) bool { return s.RuleID == ref })
			if pos < 0 {
				return httpapi.Unknown("before/after rule not found: %s", ref)
			}
			if before == "" {
				pos++
			}
		}
		ruleJSON, err := json.Marshal(rule)
		if err != nil {
			return err
		}
		list = slices.Insert(list, pos, storage.StoredPushRule{Kind: kind, RuleID: ruleID, Rule: ruleJSON})
		if err := tx.ReplacePushRulesOfKind(ctx, userID, kind, list); err != nil {
			return err
		}
		return a.savePushRules(ctx, tx, userID)
	})
	if err != nil {
		return nil, err
	}
	return struct{}{}, nil
}

// deletePushRule serves DELETE /_matrix/client/v3/pushrules/global/{kind}/{ruleId}.
func (a *API) deletePushRule(r *http.Request) (any, error) {
	ctx := r.Context()
	userID := httpapi.RequesterFrom(ctx).UserID
	kind, ruleID, err := pushRulePath(r)
	if err != nil {
		return nil, err
	}
	if pushrules.IsDefault(ruleID) {
		return nil, httpapi.InvalidParam("server-default rules cannot be deleted")
	}
	err = a.DB.WithTx(ctx, func(tx *storage.Tx) error {
		all, err := tx.PushRules(ctx, userID)
		if err != nil {
			return err
		}
		var list []storage.StoredPushRule
		found := false
		for _, s := range all {
			if s.Kind != kind {
				continue
			}
			if s.RuleID == ruleID {
				found = true
				continue
			}
			list = append(list, s)
		}
		if !found {
			return httpapi.NotFound("unknown push rule")
		}
		if err := tx.ReplacePushRulesOfKind(ctx, userID, kind, list); err != nil {
			return err
		}
		return a.savePushRules(ctx, tx, userID)
	})
	if err != nil {
		return nil, err
	}
	return struct{}{}, nil
}

// updateRule changes one rule's enabled flag or actions, for user rules in
// their stored JSON and for server-default rules as an override.
func (a *API) updateRule(r *http.Request, change func(rule *pushrules.Rule), storeDefault func(ctx context.Context, tx *storage.Tx, userID, ruleID string) error) error {
	ctx := r.Context()
	userID := httpapi.RequesterFrom(ctx).UserID
	_, kind, ruleID, err := a.findRule(r)
	if err != nil {
		return err
	}
	return a.DB.WithTx(ctx, func(tx *storage.Tx) error {
		if pushrules.IsDefault(ruleID) {
			if err := storeDefault(ctx, tx, userID, ruleID); err != nil {
				return err
			}
			return a.savePushRules(ctx, tx, userID)
		}
		all, err := tx.PushRules(ctx, userID)
		if err != nil {
			return err
		}
		var list []storage.StoredPushRule
		for _, s := range all {
			if s.Kind != kind {
				continue
			}
			if s.RuleID == ruleID {
				var rule pushrules.Rule
				if err := json.Unmarshal(s.Rule, &rule); err != nil {
					return err
				}
				change(&rule)
				s.Rule, _ = json.Marshal(rule)
			}
			list = append(list, s)
		}
		if err := tx.ReplacePushRulesOfKind(ctx, userID, kind, list); err != nil {
			return err
		}
		return a.savePushRules(ctx, tx, userID)
	})
}

// putPushRuleEnabled serves PUT /_matrix/client/v3/pushrules/global/{kind}/{ruleId}/enabled.
func (a *API) putPushRuleEnabled(r *http.Request) (any, error) {
	var body struct {
		Enabled *bool `json:"enabled"`
	}
	if err := httpapi.DecodeJSON(r, &body); err != nil {
		return nil, err
	}
	if body.Enabled == nil {
		return nil, httpapi.MissingParam("missing enabled")
	}
	err := a.updateRule(r, func(rule *pushrules.Rule) { rule.Enabled = *body.Enabled },
		func(ctx context.Context, tx *storage.Tx, userID, ruleID string) error {
			return tx.SetPushRuleEnabled(ctx, userID, ruleID, *body.Enabled)
		})
	if err != nil {
		return nil, err
	}
	return struct{}{}, nil
}

// putPushRuleActions serves PUT /_matrix/client/v3/pushrules/global/{kind}/{ruleId}/actions.
func (a *API) putPushRuleActions(r *http.Request) (any, error) {
	var body struct {
		Actions []any `json:"actions"`
	}
	if err := httpapi.DecodeJSON(r, &body); err != nil {
		return nil, err
	}
	if body.Actions == nil {
		return nil, httpapi.MissingParam("missing actions")
	}
	actions, err := cleanActions(body.Actions)
	if err != nil {
		return nil, err
	}
	err = a.updateRule(r, func(rule *pushrules.Rule) { rule.Actions = actions },
		func(ctx context.Context, tx *storage.Tx, userID, ruleID string) error {
			b, _ := json.Marshal(actions)
			return tx.SetPushRuleActions(ctx, userID, ruleID, b)
		})
	if err != nil {
		return nil, err
	}
	return struct{}{}, nil
}
