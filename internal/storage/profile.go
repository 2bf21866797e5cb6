package storage

import (
	"context"
	"database/sql"
	"encoding/json"
)

// ProfileFields returns a user's extra profile fields (everything but
// displayname and avatar_url), keyed by field name, with their JSON values.
func (db *DB) ProfileFields(ctx context.Context, userID string) (map[string]json.RawMessage, error) {
	return profileFields(ctx, db.query, userID)
}

// ProfileFields is DB.ProfileFields inside a transaction.
func (tx *Tx) ProfileFields(ctx context.Context, userID string) (map[string]json.RawMessage, error) {
	return profileFields(ctx, tx.query, userID)
}

func profileFields(ctx context.Context, query func(context.Context, string, ...any) (*sql.Rows, error), userID string) (map[string]json.RawMessage, error) {
	rows, err := query(ctx, `SELECT field, value FROM profile_fields WHERE user_id = ?`, userID)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	out := map[string]json.RawMessage{}
	for rows.Next() {
		var k, v string
		if err := rows.Scan(&k, &v); err != nil {
			return nil, err
		}
		out[k] = json.RawMessage(v)
	}
	return out, rows.Err()
}

// SetProfileField stores one extra profile field (value is JSON).
func (tx *Tx) SetProfileField(ctx context.Context, userID, field string, value []byte) error {
	_, err := tx.exec(ctx, `INSERT INTO profile_fields (user_id, field, value) VALUES (?, ?, ?)
		ON CONFLICT (user_id, field) DO UPDATE SET value = excluded.value`, userID, field, string(value))
	return err
}

// DeleteProfileField removes one extra profile field.
func (tx *Tx) DeleteProfileField(ctx context.Context, userID, field string) error {
	_, err := tx.exec(ctx, `DELETE FROM profile_fields WHERE user_id = ? AND field = ?`, userID, field)
	return err
}

// DeleteProfileFields removes every extra profile field of a user (on
// deactivation).
func (tx *Tx) DeleteProfileFields(ctx context.Context, userID string) error {
	_, err := tx.exec(ctx, `DELETE FROM profile_fields WHERE user_id = ?`, userID)
	return err
}

// LockUser locks a user's row until the transaction ends (PostgreSQL; on
// SQLite the single writer serialises anyway), so that read-modify-write
// updates of the user's profile or account data do not interleave.
func (tx *Tx) LockUser(ctx context.Context, userID string) (User, error) {
	q := `SELECT ` + userColumns + ` FROM users WHERE user_id = ?`
	if tx.db.dialect == Postgres {
		q += ` FOR UPDATE`
	}
	return scanUser(tx.queryRow(ctx, q, userID))
}

// GetAccountData is DB.GetAccountData inside a transaction, for
// read-modify-write updates such as room tags (lock the user first).
func (tx *Tx) GetAccountData(ctx context.Context, userID, roomID, typ string) (json.RawMessage, error) {
	var c string
	err := tx.queryRow(ctx, `SELECT content FROM account_data WHERE user_id = ? AND room_id = ? AND type = ?`, userID, roomID, typ).Scan(&c)
	return json.RawMessage(c), notFound(err)
}

// Presence is a user's stored presence.
type Presence struct {
	UserID       string
	State        string // online, unavailable, offline
	StatusMsg    *string
	LastActiveTS int64
	StreamPos    int64
}

// PutPresence stores a user's presence and advances the presence stream.
func (tx *Tx) PutPresence(ctx context.Context, p Presence) (int64, error) {
	pos, err := tx.NextStreamPos(ctx, "presence")
	if err != nil {
		return 0, err
	}
	var msg sql.NullString
	if p.StatusMsg != nil {
		msg = sql.NullString{String: *p.StatusMsg, Valid: true}
	}
	_, err = tx.exec(ctx, `INSERT INTO presence (user_id, state, status_msg, last_active_ts, stream_pos) VALUES (?, ?, ?, ?, ?)
		ON CONFLICT (user_id) DO UPDATE SET state = excluded.state, status_msg = excluded.status_msg,
		last_active_ts = excluded.last_active_ts, stream_pos = excluded.stream_pos`,
		p.UserID, p.State, msg, p.LastActiveTS, pos)
	return pos, err
}

// GetPresence loads a user's presence, or ErrNotFound.
func (db *DB) GetPresence(ctx context.Context, userID string) (Presence, error) {
	p := Presence{UserID: userID}
	var msg sql.NullString
	err := db.queryRow(ctx, `SELECT state, status_msg, last_active_ts, stream_pos FROM presence WHERE user_id = ?`, userID).
		Scan(&p.State, &msg, &p.LastActiveTS, &p.StreamPos)
	if msg.Valid {
		p.StatusMsg = &msg.String
	}
	return p, notFound(err)
}
