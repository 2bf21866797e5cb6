package storage

import (
	"context"
	"database/sql"
)

// EventReport is a user's report of an event.
type EventReport struct {
	RoomID    string
	EventID   string
	UserID    string
	Reason    *string
	Score     *int
	CreatedTS int64
}

// InsertEventReport stores an event report and returns its ID.
func (tx *Tx) InsertEventReport(ctx context.Context, r EventReport) (int64, error) {
	var reason sql.NullString
	if r.Reason != nil {
		reason = sql.NullString{String: *r.Reason, Valid: true}
	}
	var score sql.NullInt64
	if r.Score != nil {
		score = sql.NullInt64{Int64: int64(*r.Score), Valid: true}
	}
	return tx.insertReturningID(ctx, "report_id", `INSERT INTO event_reports (room_id, event_id, user_id, reason, score, created_ts) VALUES (?, ?, ?, ?, ?, ?)`,
		r.RoomID, r.EventID, r.UserID, reason, score, r.CreatedTS)
}

// InsertRoomReport stores a report of a whole room and returns its ID.
func (tx *Tx) InsertRoomReport(ctx context.Context, roomID, userID, reason string, ts int64) (int64, error) {
	return tx.insertReturningID(ctx, "report_id", `INSERT INTO room_reports (room_id, user_id, reason, created_ts) VALUES (?, ?, ?, ?)`,
		roomID, userID, reason, ts)
}

// InsertUserReport stores a report of a user and returns its ID.
func (tx *Tx) InsertUserReport(ctx context.Context, target, userID, reason string, ts int64) (int64, error) {
	return tx.insertReturningID(ctx, "report_id", `INSERT INTO user_reports (target_user_id, user_id, reason, created_ts) VALUES (?, ?, ?, ?)`,
		target, userID, reason, ts)
}

// CountReports returns the number of event, room and user reports made by
// userID (all users when userID is "").
func (db *DB) CountReports(ctx context.Context, userID string) (events, rooms, users int, err error) {
	for _, q := range []struct {
		table string
		n     *int
	}{{"event_reports", &events}, {"room_reports", &rooms}, {"user_reports", &users}} {
		if err = db.queryRow(ctx, `SELECT COUNT(*) FROM `+q.table+` WHERE ? = '' OR user_id = ?`, userID, userID).Scan(q.n); err != nil {
			return
		}
	}
	return
}
