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
