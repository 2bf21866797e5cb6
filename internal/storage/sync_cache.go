package storage

import (
	"context"
	"maps"
	"slices"
	"time"
)

// Two reads of every /sync answer are kept in readCaches: the user's
// memberships (which rooms to look at) and the device's one-time and
// fallback key counts. Both change rarely next to how often a user's
// long-poll is woken (once per message in any of their rooms): they were 2
// of the 9 statements of a woken long-poll, round trips on PostgreSQL.
// The writes that change them (a membership event, forgetting a room;
// uploading, claiming or deleting keys) invalidate the user's or the
// device's entry after their commit.
const (
	syncCacheMaxAge = 10 * time.Second
	syncCacheMax    = 50_000
)

type deviceKey struct{ user, device string }

type deviceKeyCounts struct {
	counts   map[string]int
	fallback []string
}

// SyncMemberships is UserMemberships without the event IDs: the user's
// current memberships (forgotten ones excluded) with room, membership and
// stream position, read from index memberships_user_sync alone. The
// caller may modify the slice it gets.
func (db *DB) SyncMemberships(ctx context.Context, userID string) ([]Membership, error) {
	now := time.Now()
	if ms, ok := db.memberships.get(userID, now); ok {
		return slices.Clone(ms), nil
	}
	epoch := db.memberships.begin()
	ms, err := db.syncMemberships(ctx, userID)
	if err == nil {
		db.memberships.put(userID, slices.Clone(ms), epoch, now)
	}
	return ms, err
}

// membershipChanged is called in a transaction that changes a user's
// membership row of some room.
func (tx *Tx) membershipChanged(userID string) {
	tx.AfterCommit(func() { tx.db.memberships.invalidate(userID) })
}

// DeviceKeyCounts returns, in one read, what every sync response tells a
// device of its keys: its unclaimed one-time keys counted per algorithm,
// and the algorithms (sorted) of its fallback keys not yet handed out.
// The caller may modify what it gets.
func (db *DB) DeviceKeyCounts(ctx context.Context, userID, deviceID string) (map[string]int, []string, error) {
	now := time.Now()
	k := deviceKey{userID, deviceID}
	if c, ok := db.keyCounts.get(k, now); ok {
		return maps.Clone(c.counts), slices.Clone(c.fallback), nil
	}
	epoch := db.keyCounts.begin()
	counts, fallback, err := db.deviceKeyCounts(ctx, userID, deviceID)
	if err == nil {
		db.keyCounts.put(k, deviceKeyCounts{maps.Clone(counts), slices.Clone(fallback)}, epoch, now)
	}
	return counts, fallback, err
}

// keysChanged is called in a transaction that changes a device's one-time
// or fallback keys.
func (tx *Tx) keysChanged(userID, deviceID string) {
	tx.AfterCommit(func() { tx.db.keyCounts.invalidate(deviceKey{userID, deviceID}) })
}
