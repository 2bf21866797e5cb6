package storage

import (
	"context"
	"time"
)

// SetWindowScanMax changes the widest window read by scanning, for tests
// of both forms of the window reads; the returned function restores it.
func SetWindowScanMax(n int64) (restore func()) {
	old := windowScanMax
	windowScanMax = n
	return func() { windowScanMax = old }
}

// StateGroupIDsSQL is stateGroupIDsSQL, for the PostgreSQL plan test.
func StateGroupIDsSQL(d Dialect) string { return stateGroupIDsSQL(d) }

// StateGroupLazyIDsSQL is stateGroupLazyIDsSQL, for the same test.
func StateGroupLazyIDsSQL(d Dialect, n int) string { return stateGroupLazyIDsSQL(d, n) }

// StagedPushActions counts the rows of event_push_staged.
func StagedPushActions(db *DB) (int64, error) {
	var n int64
	err := db.queryRow(context.Background(), `SELECT COUNT(*) FROM event_push_staged`).Scan(&n)
	return n, err
}

// MoveStagedAt is how many staged push actions make the committer move
// some, MoveChunk the fewest it moves.
const (
	MoveStagedAt = moveStagedAt
	MoveChunk    = moveChunk
)

// MoveStagedChunk moves the next chunk of up to limit staged push actions.
func MoveStagedChunk(db *DB, limit int64) (int64, error) {
	return db.moveStagedChunk(context.Background(), limit)
}

// NotificationRetention is how long read push actions are kept.
const NotificationRetention = notificationRetention

// SetPushPrunePage changes the receipts per page of the push-action
// pruner's walk and the pause between pages; the returned function
// restores them.
func SetPushPrunePage(receipts int, pause time.Duration) (restore func()) {
	oldN, oldPause := pushPrunePairs, pushPrunePause
	pushPrunePairs, pushPrunePause = receipts, pause
	return func() { pushPrunePairs, pushPrunePause = oldN, oldPause }
}

// PlanCacheMode is the plan_cache_mode of a connection of db's pool
// (PostgreSQL).
func PlanCacheMode(db *DB) (string, error) {
	var mode string
	err := db.queryRow(context.Background(), `SHOW plan_cache_mode`).Scan(&mode)
	return mode, err
}

// UnreadKept reports whether a member's unread counts in a room are kept
// (unread_cache.go), and up to which stream position they were counted.
func UnreadKept(db *DB, userID, roomID string) (int64, bool) {
	e, ok := db.unread.get(userID, roomID)
	return e.upTo, ok
}

// ForgetUnread drops every kept unread count.
func ForgetUnread(db *DB) {
	db.unread.mu.Lock()
	defer db.unread.mu.Unlock()
	db.unread.entries = nil
}

// InsertMemberships stores joined memberships of users in a room without
// their events, for benchmarks of reads over big rooms.
func InsertMemberships(db *DB, roomID string, userIDs []string) error {
	return db.WithTx(context.Background(), func(tx *Tx) error {
		for _, u := range userIDs {
			if _, err := tx.exec(context.Background(), `INSERT INTO memberships (room_id, user_id, membership, event_id, stream_pos, forgotten) VALUES (?, ?, 'join', ?, 0, 0)`,
				roomID, u, "$m-"+u); err != nil {
				return err
			}
		}
		return nil
	})
}

// CountMemberships counts a room's memberships by value from the
// memberships rows themselves.
func CountMemberships(db *DB, roomID string) (map[string]int, error) {
	rows, err := db.query(context.Background(), `SELECT membership, COUNT(*) FROM memberships WHERE room_id = ? GROUP BY membership`, roomID)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	out := map[string]int{}
	for rows.Next() {
		var m string
		var n int
		if err := rows.Scan(&m, &n); err != nil {
			return nil, err
		}
		out[m] = n
	}
	return out, rows.Err()
}

// SetAnalyzeEvery changes how often the analyser runs, for databases
// opened afterwards; the returned function restores it.
func SetAnalyzeEvery(d time.Duration) (restore func()) {
	old := analyzeEvery
	analyzeEvery = d
	return func() { analyzeEvery = old }
}

// AnalyserRunning reports whether db runs the analyser (analyze.go).
func AnalyserRunning(db *DB) bool { return db.analyse != nil }

// SetBeforePositionsRead sets the hook run before each read of the stream
// positions; the returned function restores it.
func SetBeforePositionsRead(f func()) (restore func()) {
	old := beforePositionsRead
	beforePositionsRead = f
	return func() { beforePositionsRead = old }
}
