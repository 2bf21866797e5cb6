package storage

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"math"
	"sort"
	"strings"
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

// PushRulesOfUsers returns the stored rules of several users, by user, in
// the order PushRules gives.
func (tx *Tx) PushRulesOfUsers(ctx context.Context, userIDs []string) (map[string][]StoredPushRule, error) {
	return pushRulesOfUsers(ctx, tx.query, userIDs)
}

// PushRulesOfUsers is Tx.PushRulesOfUsers outside a transaction.
func (db *DB) PushRulesOfUsers(ctx context.Context, userIDs []string) (map[string][]StoredPushRule, error) {
	return pushRulesOfUsers(ctx, db.query, userIDs)
}

func pushRulesOfUsers(ctx context.Context, query queryFunc, userIDs []string) (map[string][]StoredPushRule, error) {
	out := map[string][]StoredPushRule{}
	for start := 0; start < len(userIDs); start += 500 {
		chunk := userIDs[start:min(start+500, len(userIDs))]
		args := make([]any, len(chunk))
		for i, u := range chunk {
			args[i] = u
		}
		rows, err := query(ctx, `SELECT user_id, kind, rule_id, position, rule FROM push_rules WHERE user_id IN (`+placeholders(len(chunk))+`) ORDER BY user_id, kind, position`, args...)
		if err != nil {
			return nil, err
		}
		for rows.Next() {
			var u, s string
			var r StoredPushRule
			if err := rows.Scan(&u, &r.Kind, &r.RuleID, &r.Position, &s); err != nil {
				rows.Close()
				return nil, err
			}
			r.Rule = json.RawMessage(s)
			out[u] = append(out[u], r)
		}
		rows.Close()
		if err := rows.Err(); err != nil {
			return nil, err
		}
	}
	return out, nil
}

// PushRuleOverridesOfUsers returns several users' changes to
// server-default rules, by user.
func (tx *Tx) PushRuleOverridesOfUsers(ctx context.Context, userIDs []string) (map[string][]PushRuleOverride, error) {
	return pushRuleOverridesOfUsers(ctx, tx.query, userIDs)
}

// PushRuleOverridesOfUsers is Tx.PushRuleOverridesOfUsers outside a
// transaction.
func (db *DB) PushRuleOverridesOfUsers(ctx context.Context, userIDs []string) (map[string][]PushRuleOverride, error) {
	return pushRuleOverridesOfUsers(ctx, db.query, userIDs)
}

func pushRuleOverridesOfUsers(ctx context.Context, query queryFunc, userIDs []string) (map[string][]PushRuleOverride, error) {
	out := map[string][]PushRuleOverride{}
	for start := 0; start < len(userIDs); start += 500 {
		chunk := userIDs[start:min(start+500, len(userIDs))]
		args := make([]any, len(chunk))
		for i, u := range chunk {
			args[i] = u
		}
		rows, err := query(ctx, `SELECT user_id, rule_id, enabled, actions FROM push_rule_overrides WHERE user_id IN (`+placeholders(len(chunk))+`)`, args...)
		if err != nil {
			return nil, err
		}
		for rows.Next() {
			var u string
			var o PushRuleOverride
			var en sql.NullInt64
			var act sql.NullString
			if err := rows.Scan(&u, &o.RuleID, &en, &act); err != nil {
				rows.Close()
				return nil, err
			}
			if en.Valid {
				b := en.Int64 != 0
				o.Enabled = &b
			}
			if act.Valid {
				o.Actions = json.RawMessage(act.String)
			}
			out[u] = append(out[u], o)
		}
		rows.Close()
		if err := rows.Err(); err != nil {
			return nil, err
		}
	}
	return out, nil
}

// PushRecipient is a joined member of a room with the version of their
// push rules: the account data stream position of their m.push_rules,
// which every rule change advances (0 when they have none).
type PushRecipient struct {
	UserID       string
	RulesVersion int64
}

// PushRecipients returns the joined members of a room with their rule
// versions, read inside the transaction that stores an event.
func (tx *Tx) PushRecipients(ctx context.Context, roomID string) ([]PushRecipient, error) {
	if tx.writeBehind {
		return tx.recipientsAhead(ctx, roomID)
	}
	return pushRecipients(ctx, tx.query, roomID)
}

// PushRulesGeneration counts the commits of this process that changed a
// user's push rules (their m.push_rules account data): it moves, after the
// commit, with every change made through this process. A cache of push
// recipients read after it was taken may be kept until it moves. Changes
// committed by another process sharing the database do not move it.
func (db *DB) PushRulesGeneration() uint64 { return db.pushRules.Load() }

// PushRecipients is Tx.PushRecipients outside a transaction.
func (db *DB) PushRecipients(ctx context.Context, roomID string) ([]PushRecipient, error) {
	// Ahead of the message's commit, which stores what they imply.
	return pushRecipients(ctx, db.queryInternal, roomID)
}

func pushRecipients(ctx context.Context, query queryFunc, roomID string) ([]PushRecipient, error) {
	rows, err := query(ctx, `SELECT m.user_id, COALESCE(a.stream_pos, 0) FROM memberships m
		LEFT JOIN account_data a ON a.user_id = m.user_id AND a.room_id = '' AND a.type = 'm.push_rules'
		WHERE m.room_id = ? AND m.membership = 'join'`, roomID)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []PushRecipient
	for rows.Next() {
		var p PushRecipient
		if err := rows.Scan(&p.UserID, &p.RulesVersion); err != nil {
			return nil, err
		}
		out = append(out, p)
	}
	return out, rows.Err()
}

// PushRulesVersion returns one user's rule version (see PushRecipient).
func (tx *Tx) PushRulesVersion(ctx context.Context, userID string) (int64, error) {
	var v int64
	err := tx.queryRow(ctx, `SELECT stream_pos FROM account_data WHERE user_id = ? AND room_id = '' AND type = 'm.push_rules'`, userID).Scan(&v)
	if errors.Is(err, sql.ErrNoRows) {
		return 0, nil
	}
	return v, err
}

// PushAction is one notification decided for a user: a row of
// event_push_actions. EventID and TS are the event's (not stored per row:
// Notifications reads them from the event).
type PushAction struct {
	UserID    string
	RoomID    string
	EventID   string
	StreamPos int64
	ThreadID  string // "main" outside threads
	Highlight bool
	Actions   json.RawMessage
	TS        int64
}

// pushActionChunk is the most rows one statement of InsertPushActions
// inserts.
const pushActionChunk = 100

// InsertPushActions stores notifications, many rows per statement: chunks
// of pushActionChunk rows, then one statement for the rest. Every size is
// prepared once (at most pushActionChunk statements). On SQLite they go to
// event_push_staged (see push_staged.go), on PostgreSQL straight to
// event_push_actions.
func (tx *Tx) InsertPushActions(ctx context.Context, acts []PushAction) error {
	if len(acts) == 0 {
		return nil
	}
	if tx.db.dialect == SQLite {
		n := int64(len(acts))
		tx.AfterCommit(func() {
			tx.db.stagedActs.Add(n)
			tx.db.stagedInflow.Add(n)
		})
	}
	if tx.writeBehind {
		// Sent with the batch's other buffered rows (see settle).
		tx.pendingActs = append(tx.pendingActs, acts...)
		if len(tx.pendingActs) >= maxBufferedActs {
			return tx.flushBuffered(ctx)
		}
		return nil
	}
	args := make([]any, 0, min(len(acts), pushActionChunk)*6)
	for len(acts) > 0 {
		n := min(len(acts), pushActionChunk)
		args = args[:0]
		for _, a := range acts[:n] {
			args = append(args, a.UserID, a.RoomID, a.StreamPos, a.ThreadID, b2i(a.Highlight), string(a.Actions))
		}
		if _, err := tx.execPrepared(ctx, insertPushActionsSQL(tx.db.dialect, n), args...); err != nil {
			return err
		}
		acts = acts[n:]
	}
	return nil
}

// insertPushActionsSQL is the statement inserting n rows. On SQLite it is
// INSERT OR IGNORE into event_push_staged: a statement that cannot abort
// half-way needs no statement journal, which otherwise copies every page
// the statement touches. On PostgreSQL it inserts into event_push_actions.
func insertPushActionsSQL(d Dialect, n int) string {
	var q strings.Builder
	if d == SQLite {
		q.WriteString(`INSERT OR IGNORE INTO event_push_staged`)
	} else {
		q.WriteString(`INSERT INTO event_push_actions`)
	}
	q.WriteString(` (user_id, room_id, stream_pos, thread_id, highlight, actions) VALUES `)
	for i := 0; i < n; i++ {
		if i > 0 {
			q.WriteString(", ")
		}
		q.WriteString("(?, ?, ?, ?, ?, ?)")
	}
	if d != SQLite {
		q.WriteString(` ON CONFLICT (user_id, room_id, stream_pos) DO NOTHING`)
	}
	return q.String()
}

// DeletePushActionsForEvent removes the notifications of an event (when
// it is redacted). Only users with a membership in the room can have been
// notified (members and invitees, whose rows in memberships stay), so the
// rows are found through the primary key.
func (tx *Tx) DeletePushActionsForEvent(ctx context.Context, eventID string) error {
	var roomID string
	var pos int64
	err := tx.queryRow(ctx, `SELECT room_id, stream_pos FROM events WHERE event_id = ?`, eventID).Scan(&roomID, &pos)
	if errors.Is(err, sql.ErrNoRows) {
		return nil
	}
	if err != nil {
		return err
	}
	if _, err = tx.exec(ctx, deletePushActionsSQL, roomID, roomID, pos); err != nil {
		return err
	}
	_, err = tx.exec(ctx, deleteStagedPushActionsSQL, roomID, pos)
	return err
}

const deletePushActionsSQL = `DELETE FROM event_push_actions WHERE user_id IN (SELECT user_id FROM memberships WHERE room_id = ?)
		AND room_id = ? AND stream_pos = ?`

// deleteStagedPushActionsSQL deletes a redacted event's staged rows,
// among the room's staged rows (the table stays small, see
// push_staged.go).
const deleteStagedPushActionsSQL = `DELETE FROM event_push_staged WHERE room_id = ? AND stream_pos = ?`

// ReadPositions are the stream positions up to which a user has read a
// room, from their m.read and m.read.private receipts.
type ReadPositions struct {
	Unthreaded int64
	Threads    map[string]int64 // thread ID ("main" included) → position
}

// Of returns the read position that applies to a thread.
func (r ReadPositions) Of(threadID string) int64 { return max(r.Unthreaded, r.Threads[threadID]) }

// UserReadPositions returns a user's read positions in a room.
func (db *DB) UserReadPositions(ctx context.Context, roomID, userID string) (ReadPositions, error) {
	rp := ReadPositions{Threads: map[string]int64{}}
	rows, err := db.query(ctx, `SELECT r.thread_id, MAX(e.stream_pos) FROM receipts r JOIN events e ON e.event_id = r.event_id
		WHERE r.room_id = ? AND r.user_id = ? AND r.receipt_type IN ('m.read', 'm.read.private') GROUP BY r.thread_id`, roomID, userID)
	if err != nil {
		return rp, err
	}
	defer rows.Close()
	for rows.Next() {
		var t string
		var pos int64
		if err := rows.Scan(&t, &pos); err != nil {
			return rp, err
		}
		if t == "" {
			rp.Unthreaded = pos
		} else {
			rp.Threads[t] = pos
		}
	}
	return rp, rows.Err()
}

// NotificationCounts are unread notification and highlight counts.
type NotificationCounts struct {
	Notifications int
	Highlights    int
}

// UnreadCounts returns a user's unread notification counts in a room by
// thread ("main" for the main timeline): the notifications after the read
// position that applies to each thread (see UnreadCountsRooms).
func (db *DB) UnreadCounts(ctx context.Context, roomID, userID string) (map[string]NotificationCounts, error) {
	counts, err := db.UnreadCountsRooms(ctx, []string{roomID}, userID)
	if err != nil {
		return nil, err
	}
	if counts[roomID] == nil {
		return map[string]NotificationCounts{}, nil
	}
	return counts[roomID], nil
}

// recountThread sets out[thread] to a user's notifications in a room's
// thread in (pos, upTo] (deleting it when there are none).
func (db *DB) recountThread(ctx context.Context, out map[string]NotificationCounts, userID, roomID, thread string, pos, upTo int64) error {
	delete(out, thread)
	var t string
	var c NotificationCounts
	err := db.queryRow(ctx, threadCountSQL, userID, roomID, pos, upTo, thread, roomID, userID, pos, upTo, thread).Scan(&t, &c.Notifications, &c.Highlights)
	if errors.Is(err, sql.ErrNoRows) {
		return nil
	}
	if err != nil {
		return err
	}
	if c.Notifications > 0 {
		out[thread] = c
	}
	return nil
}

// threadCountSQL counts a user's push actions in a room's thread in a
// window of positions, in both tables (see push_staged.go). Arguments:
// user, room, from, to, thread for event_push_actions, then room, user,
// from, to, thread for event_push_staged.
const threadCountSQL = `SELECT thread_id, COUNT(*), COALESCE(SUM(highlight), 0) FROM (
		SELECT thread_id, highlight FROM event_push_actions WHERE user_id = ? AND room_id = ? AND stream_pos > ? AND stream_pos <= ? AND thread_id = ?
		UNION ALL
		SELECT thread_id, highlight FROM event_push_staged WHERE room_id = ? AND user_id = ? AND stream_pos > ? AND stream_pos <= ? AND thread_id = ?
	) p GROUP BY thread_id`

// Notification is a row of a user's notification list with its event.
type Notification struct {
	PushAction
	Event Event
}

// Notifications lists a user's notifications, newest first, with
// stream_pos < before (all when before is 0), up to limit.
//
// event_push_actions has no index by user and position alone (one B-tree
// less to write per notified member of every message): the newest rows of
// each room the user has a membership in (the only rooms that can have
// notified them) are read through the primary key and merged.
func (db *DB) Notifications(ctx context.Context, userID string, before int64, onlyHighlight bool, limit int) ([]Notification, error) {
	if limit <= 0 {
		return nil, nil
	}
	roomIDs, err := db.strings(ctx, `SELECT room_id FROM memberships WHERE user_id = ?`, userID)
	if err != nil {
		return nil, err
	}
	if before <= 0 {
		before = math.MaxInt64
	}
	var out []Notification
	for _, roomID := range roomIDs {
		for _, staged := range []bool{false, true} {
			if err := db.appendNotifications(ctx, &out, notificationsSQL(staged, onlyHighlight), userID, roomID, before, limit); err != nil {
				return nil, err
			}
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].StreamPos > out[j].StreamPos })
	if len(out) > limit {
		out = out[:limit]
	}
	ids := make([]string, len(out))
	for i := range out {
		ids[i] = out[i].EventID
	}
	evs, err := db.GetEvents(ctx, ids)
	if err != nil {
		return nil, err
	}
	byID := make(map[string]Event, len(evs))
	for _, ev := range evs {
		byID[ev.EventID] = ev
	}
	kept := out[:0]
	for _, n := range out {
		if ev, ok := byID[n.EventID]; ok {
			n.Event = ev
			kept = append(kept, n)
		}
	}
	return kept, nil
}

// appendNotifications appends to out a user's newest notifications in a
// room read by q (a notificationsSQL).
func (db *DB) appendNotifications(ctx context.Context, out *[]Notification, q, userID, roomID string, before int64, limit int) error {
	rows, err := db.query(ctx, q, userID, roomID, before, limit)
	if err != nil {
		return err
	}
	defer rows.Close()
	for rows.Next() {
		n := Notification{PushAction: PushAction{UserID: userID, RoomID: roomID}}
		var hl int
		var acts string
		if err := rows.Scan(&n.EventID, &n.StreamPos, &n.ThreadID, &hl, &acts, &n.TS); err != nil {
			return err
		}
		n.Highlight, n.Actions = hl != 0, json.RawMessage(acts)
		*out = append(*out, n)
	}
	return rows.Err()
}

// notificationsSQL is Notifications' query for one room, in
// event_push_actions or in event_push_staged (arguments: user, room,
// position, limit).
func notificationsSQL(staged, onlyHighlight bool) string {
	from := `event_push_actions p JOIN events e ON e.stream_pos = p.stream_pos WHERE p.user_id = ? AND p.room_id = ?`
	if staged {
		from = `event_push_staged p JOIN events e ON e.stream_pos = p.stream_pos WHERE p.user_id = ? AND p.room_id = ?`
	}
	q := `SELECT e.event_id, p.stream_pos, p.thread_id, p.highlight, p.actions, e.origin_server_ts FROM ` + from + ` AND p.stream_pos < ?`
	if onlyHighlight {
		q += ` AND p.highlight = 1`
	}
	return q + ` ORDER BY p.stream_pos DESC LIMIT ?`
}

// MemberDisplayNames returns the display name of each member of the room
// that has one, from the room's current m.room.member events.
func (tx *Tx) MemberDisplayNames(ctx context.Context, roomID string) (map[string]string, error) {
	return memberDisplayNames(ctx, tx.query, roomID)
}

// MemberDisplayNames is Tx.MemberDisplayNames outside a transaction.
func (db *DB) MemberDisplayNames(ctx context.Context, roomID string) (map[string]string, error) {
	return memberDisplayNames(ctx, db.query, roomID)
}

func memberDisplayNames(ctx context.Context, query queryFunc, roomID string) (map[string]string, error) {
	rows, err := query(ctx, `SELECT c.state_key, e.json FROM current_state c JOIN events e ON e.event_id = c.event_id
		WHERE c.room_id = ? AND c.type = 'm.room.member'`, roomID)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	out := map[string]string{}
	for rows.Next() {
		var userID string
		var js []byte
		if err := rows.Scan(&userID, &js); err != nil {
			return nil, err
		}
		var ev struct {
			Content struct {
				Displayname string `json:"displayname"`
			} `json:"content"`
		}
		if json.Unmarshal(js, &ev) == nil && ev.Content.Displayname != "" {
			out[userID] = ev.Content.Displayname
		}
	}
	return out, rows.Err()
}
