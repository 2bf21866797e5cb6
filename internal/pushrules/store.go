package pushrules

import (
	"context"
	"encoding/json"

	"github.com/rempart-hs/rempart/internal/storage"
)

// Source reads stored rules (a *storage.DB or *storage.Tx).
type Source interface {
	PushRules(ctx context.Context, userID string) ([]storage.StoredPushRule, error)
	PushRuleOverrides(ctx context.Context, userID string) ([]storage.PushRuleOverride, error)
}

// Load returns a user's full ruleset.
func Load(ctx context.Context, src Source, userID string) (Ruleset, error) {
	stored, err := src.PushRules(ctx, userID)
	if err != nil {
		return Ruleset{}, err
	}
	ovs, err := src.PushRuleOverrides(ctx, userID)
	if err != nil {
		return Ruleset{}, err
	}
	return build(userID, stored, ovs), nil
}

// build merges stored user rules and overrides with the defaults.
func build(userID string, stored []storage.StoredPushRule, ovs []storage.PushRuleOverride) Ruleset {
	user := make([]UserRule, 0, len(stored))
	for _, s := range stored {
		var r Rule
		if json.Unmarshal(s.Rule, &r) != nil {
			continue
		}
		user = append(user, UserRule{Kind: s.Kind, Rule: r})
	}
	overrides := make([]Override, 0, len(ovs))
	for _, o := range ovs {
		ov := Override{RuleID: o.RuleID, Enabled: o.Enabled}
		if o.Actions != nil {
			_ = json.Unmarshal(o.Actions, &ov.Actions)
		}
		overrides = append(overrides, ov)
	}
	return Merge(userID, user, overrides)
}

// AccountData is the content of the m.push_rules account data event.
func AccountData(rs Ruleset) []byte {
	b, _ := json.Marshal(map[string]any{"global": rs})
	return b
}
