package storage

import (
	"context"
	"database/sql"
	"encoding/json"
)

// StoredPushRule is a user-defined push rule row; Rule is its JSON.
type StoredPushRule struct {
	Kind     string
	RuleID   string
	Position int
	Rule     json.RawMessage
}

// PushRules returns a user's own rules ordered by kind position.
func (db *DB) PushRules(ctx context.Context, userID string) ([]StoredPushRule, error) {
	return pushRules(ctx, db.query, userID)
}

// PushRules returns a user's own rules inside a transaction.
func (tx *Tx) PushRules(ctx context.Context, userID string) ([]StoredPushRule, error) {
	return pushRules(ctx, tx.query, userID)
}

func pushRules(ctx context.Context, query queryFunc, userID string) ([]StoredPushRule, error) {
	rows, err := query(ctx, `SELECT kind, rule_id, position, rule FROM push_rules WHERE user_id = ? ORDER BY kind, position`, userID)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []StoredPushRule
	for rows.Next() {
		var r StoredPushRule
		var s string
		if err := rows.Scan(&r.Kind, &r.RuleID, &r.Position, &s); err != nil {
			return nil, err
		}
		r.Rule = json.RawMessage(s)
		out = append(out, r)
	}
	return out, rows.Err()
}

// ReplacePushRulesOfKind rewrites the ordered list of a user's rules of one
// kind.
func (tx *Tx) ReplacePushRulesOfKind(ctx context.Context, userID, kind string, rules []StoredPushRule) error {
	if _, err := tx.exec(ctx, `DELETE FROM push_rules WHERE user_id = ? AND kind = ?`, userID, kind); err != nil {
		return err
	}
	for i, r := range rules {
		if _, err := tx.exec(ctx, `INSERT INTO push_rules (user_id, kind, rule_id, position, rule) VALUES (?, ?, ?, ?, ?)`,
			userID, kind, r.RuleID, i, string(r.Rule)); err != nil {
			return err
		}
	}
	return nil
}

// PushRuleOverride is a user's change to a server-default rule.
type PushRuleOverride struct {
	RuleID  string
	Enabled *bool
	Actions json.RawMessage // nil: unchanged
}

// PushRuleOverrides returns a user's changes to server-default rules.
func (db *DB) PushRuleOverrides(ctx context.Context, userID string) ([]PushRuleOverride, error) {
	return pushRuleOverrides(ctx, db.query, userID)
}

// PushRuleOverrides inside a transaction.
func (tx *Tx) PushRuleOverrides(ctx context.Context, userID string) ([]PushRuleOverride, error) {
	return pushRuleOverrides(ctx, tx.query, userID)
}

func pushRuleOverrides(ctx context.Context, query queryFunc, userID string) ([]PushRuleOverride, error) {
	rows, err := query(ctx, `SELECT rule_id, enabled, actions FROM push_rule_overrides WHERE user_id = ?`, userID)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []PushRuleOverride
	for rows.Next() {
		var o PushRuleOverride
		var en sql.NullInt64
		var act sql.NullString
		if err := rows.Scan(&o.RuleID, &en, &act); err != nil {
			return nil, err
		}
		if en.Valid {
			b := en.Int64 != 0
			o.Enabled = &b
		}
		if act.Valid {
			o.Actions = json.RawMessage(act.String)
		}
		out = append(out, o)
	}
	return out, rows.Err()
}

// SetPushRuleEnabled records a user's enabled flag for a default rule.
func (tx *Tx) SetPushRuleEnabled(ctx context.Context, userID, ruleID string, enabled bool) error {
	_, err := tx.exec(ctx, `INSERT INTO push_rule_overrides (user_id, rule_id, enabled) VALUES (?, ?, ?)
		ON CONFLICT (user_id, rule_id) DO UPDATE SET enabled = excluded.enabled`, userID, ruleID, b2i(enabled))
	return err
}

// SetPushRuleActions records a user's actions for a default rule.
func (tx *Tx) SetPushRuleActions(ctx context.Context, userID, ruleID string, actions []byte) error {
	_, err := tx.exec(ctx, `INSERT INTO push_rule_overrides (user_id, rule_id, actions) VALUES (?, ?, ?)
		ON CONFLICT (user_id, rule_id) DO UPDATE SET actions = excluded.actions`, userID, ruleID, string(actions))
	return err
}

// Pusher is a registered push target.
type Pusher struct {
	UserID            string
	AppID             string
	PushKey           string
	Kind              string
	AppDisplayName    string
	DeviceDisplayName string
	ProfileTag        string
	Lang              string
	Data              json.RawMessage
	DeviceID          string
	CreatedTS         int64
}

// Pushers lists a user's pushers.
func (db *DB) Pushers(ctx context.Context, userID string) ([]Pusher, error) {
	rows, err := db.query(ctx, `SELECT user_id, app_id, pushkey, kind, app_display_name, device_display_name, profile_tag, lang, data, device_id, created_ts
		FROM pushers WHERE user_id = ? ORDER BY created_ts, app_id, pushkey`, userID)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []Pusher
	for rows.Next() {
		var p Pusher
		var tag sql.NullString
		var data string
		if err := rows.Scan(&p.UserID, &p.AppID, &p.PushKey, &p.Kind, &p.AppDisplayName, &p.DeviceDisplayName, &tag, &p.Lang, &data, &p.DeviceID, &p.CreatedTS); err != nil {
			return nil, err
		}
		p.ProfileTag, p.Data = tag.String, json.RawMessage(data)
		out = append(out, p)
	}
	return out, rows.Err()
}

// PutPusher creates or replaces a pusher; unless appendOthers, pushers of
// other users with the same app ID and pushkey are removed.
func (tx *Tx) PutPusher(ctx context.Context, p Pusher, appendOthers bool) error {
	if !appendOthers {
		if _, err := tx.exec(ctx, `DELETE FROM pushers WHERE app_id = ? AND pushkey = ? AND user_id <> ?`, p.AppID, p.PushKey, p.UserID); err != nil {
			return err
		}
	}
	_, err := tx.exec(ctx, `INSERT INTO pushers (user_id, app_id, pushkey, kind, app_display_name, device_display_name, profile_tag, lang, data, device_id, created_ts)
		VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
		ON CONFLICT (app_id, pushkey, user_id) DO UPDATE SET kind = excluded.kind, app_display_name = excluded.app_display_name,
		device_display_name = excluded.device_display_name, profile_tag = excluded.profile_tag, lang = excluded.lang, data = excluded.data, device_id = excluded.device_id`,
		p.UserID, p.AppID, p.PushKey, p.Kind, p.AppDisplayName, p.DeviceDisplayName, nullString(p.ProfileTag), p.Lang, string(p.Data), p.DeviceID, p.CreatedTS)
	return err
}

// DeletePusher removes a user's pusher.
func (tx *Tx) DeletePusher(ctx context.Context, userID, appID, pushKey string) error {
	_, err := tx.exec(ctx, `DELETE FROM pushers WHERE user_id = ? AND app_id = ? AND pushkey = ?`, userID, appID, pushKey)
	return err
}

// DeleteDevicePushers removes the pushers registered by one device.
func (tx *Tx) DeleteDevicePushers(ctx context.Context, userID, deviceID string) error {
	_, err := tx.exec(ctx, `DELETE FROM pushers WHERE user_id = ? AND device_id = ?`, userID, deviceID)
	return err
}
