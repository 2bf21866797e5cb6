package storage

import (
	"context"
	"encoding/json"
)

// AccountData is one account data entry; RoomID is "" for global data.
type AccountData struct {
	RoomID    string
	Type      string
	Content   json.RawMessage
	StreamPos int64
}

// PutAccountData stores account data and advances the account_data stream.
func (tx *Tx) PutAccountData(ctx context.Context, userID, roomID, typ string, content []byte) (int64, error) {
	pos, err := tx.NextStreamPos(ctx, "account_data")
	if err != nil {
		return 0, err
	}
	_, err = tx.exec(ctx, `INSERT INTO account_data (user_id, room_id, type, content, stream_pos) VALUES (?, ?, ?, ?, ?)
		ON CONFLICT (user_id, room_id, type) DO UPDATE SET content = excluded.content, stream_pos = excluded.stream_pos`,
		userID, roomID, typ, string(content), pos)
	if err == nil && roomID == "" && typ == "m.push_rules" {
		tx.AfterCommit(func() { tx.db.pushRules.Add(1) })
	}
	return pos, err
}

// GetAccountData returns one entry, or ErrNotFound.
func (db *DB) GetAccountData(ctx context.Context, userID, roomID, typ string) (json.RawMessage, error) {
	var c string
	err := db.queryRow(ctx, `SELECT content FROM account_data WHERE user_id = ? AND room_id = ? AND type = ?`, userID, roomID, typ).Scan(&c)
	return json.RawMessage(c), notFound(err)
}

// AccountDataSince returns the user's account data changed with
// from < stream_pos <= to (all of it when from is 0).
func (db *DB) AccountDataSince(ctx context.Context, userID string, from, to int64) ([]AccountData, error) {
	if to <= from {
		return nil, nil
	}
	rows, err := db.query(ctx, `SELECT room_id, type, content, stream_pos FROM account_data WHERE user_id = ? AND stream_pos > ? AND stream_pos <= ? ORDER BY stream_pos`, userID, from, to)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []AccountData
	for rows.Next() {
		var a AccountData
		var c string
		if err := rows.Scan(&a.RoomID, &a.Type, &c, &a.StreamPos); err != nil {
			return nil, err
		}
		a.Content = json.RawMessage(c)
		out = append(out, a)
	}
	return out, rows.Err()
}

// Receipt is a read receipt.
type Receipt struct {
	RoomID    string
	Type      string
	UserID    string
	ThreadID  string // "" for an unthreaded receipt, "main" for the main timeline
	EventID   string
	TS        int64
	StreamPos int64
}

// PutReceipt stores a receipt (replacing the user's previous one of the
// same type and thread) and advances the receipts stream.
func (tx *Tx) PutReceipt(ctx context.Context, r Receipt) (int64, error) {
	pos, err := tx.NextStreamPos(ctx, "receipts")
	if err != nil {
		return 0, err
	}
	_, err = tx.exec(ctx, `INSERT INTO receipts (room_id, receipt_type, user_id, thread_id, event_id, ts, stream_pos) VALUES (?, ?, ?, ?, ?, ?, ?)
		ON CONFLICT (room_id, receipt_type, user_id, thread_id) DO UPDATE SET event_id = excluded.event_id, ts = excluded.ts, stream_pos = excluded.stream_pos`,
		r.RoomID, r.Type, r.UserID, r.ThreadID, r.EventID, r.TS, pos)
	return pos, err
}

// ReceiptsSince returns receipts of the given rooms changed with
// from < stream_pos <= to.
func (db *DB) ReceiptsSince(ctx context.Context, roomIDs []string, from, to int64) ([]Receipt, error) {
	var out []Receipt
	if to <= from {
		return nil, nil
	}
	for start := 0; start < len(roomIDs); start += 500 {
		end := min(start+500, len(roomIDs))
		args := []any{from, to}
		for _, id := range roomIDs[start:end] {
			args = append(args, id)
		}
		rows, err := db.query(ctx, `SELECT room_id, receipt_type, user_id, thread_id, event_id, ts, stream_pos FROM receipts
			WHERE stream_pos > ? AND stream_pos <= ? AND room_id IN (`+placeholders(end-start)+`) ORDER BY stream_pos`, args...)
		if err != nil {
			return nil, err
		}
		for rows.Next() {
			var r Receipt
			if err := rows.Scan(&r.RoomID, &r.Type, &r.UserID, &r.ThreadID, &r.EventID, &r.TS, &r.StreamPos); err != nil {
				rows.Close()
				return nil, err
			}
			out = append(out, r)
		}
		rows.Close()
	}
	return out, nil
}

// UserReceipt returns the stream position of the event a user's latest
// read receipt (public or private, any thread) points at in a room, or 0.
func (db *DB) UserReceipt(ctx context.Context, roomID, userID string) (int64, error) {
	var pos *int64
	err := db.queryRow(ctx, `SELECT MAX(e.stream_pos) FROM receipts r JOIN events e ON e.event_id = r.event_id
		WHERE r.room_id = ? AND r.user_id = ? AND r.receipt_type IN ('m.read', 'm.read.private')`, roomID, userID).Scan(&pos)
	if err != nil || pos == nil {
		return 0, err
	}
	return *pos, nil
}

// CreateFilter stores a filter definition and returns its ID.
func (tx *Tx) CreateFilter(ctx context.Context, userID string, def []byte) (int64, error) {
	return tx.insertReturningID(ctx, "filter_id", `INSERT INTO filters (user_id, json) VALUES (?, ?)`, userID, string(def))
}

// GetFilter loads a user's filter.
func (db *DB) GetFilter(ctx context.Context, userID string, id int64) ([]byte, error) {
	var s string
	err := db.queryRow(ctx, `SELECT json FROM filters WHERE user_id = ? AND filter_id = ?`, userID, id).Scan(&s)
	return []byte(s), notFound(err)
}
