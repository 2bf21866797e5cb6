package storage

import (
	"context"
)

// Reads for /sync whose cost follows what changed between two sync
// positions, or the user's own rooms, rather than the size of the server.

// windowScanMax is the widest event stream window (to - from) that the
// window reads below scan directly. Stream positions are allocated one per
// event, so such a window holds at most this many events; a wider one is
// read through the user's rooms instead.
var windowScanMax int64 = 4096

// scanWindow reports whether an event window (from, to] is narrow enough
// to be scanned by stream position.
func scanWindow(from, to int64) bool { return to-from <= windowScanMax }

// eventsByPos names the events table for a scan of a stream position range
// by its primary key. SQLite, lacking statistics, would otherwise pick an
// index on a column with an equality test (events_state on type) and read
// that type's events across the whole history.
func (db *DB) eventsByPos() string {
	if db.dialect == SQLite {
		return `events NOT INDEXED`
	}
	return `events`
}

// JoinedRoomMemberEvents returns the m.room.member events with
// from < stream_pos <= to of the rooms userID is joined to now, oldest
// first.
func (db *DB) JoinedRoomMemberEvents(ctx context.Context, userID string, from, to int64) ([]Event, error) {
	if to <= from {
		return nil, nil
	}
	var q string
	if scanWindow(from, to) {
		q = `SELECT ` + eventColumns + ` FROM ` + db.eventsByPos() + ` WHERE stream_pos > ? AND stream_pos <= ? AND type = 'm.room.member'
			AND EXISTS (SELECT 1 FROM memberships m WHERE m.room_id = events.room_id AND m.user_id = ? AND m.membership = 'join')
			ORDER BY stream_pos`
	} else {
		q = `SELECT ` + eventColumnsE + ` FROM memberships m CROSS JOIN events e
			WHERE m.user_id = ? AND m.membership = 'join' AND e.room_id = m.room_id AND e.stream_pos > ? AND e.stream_pos <= ? AND e.type = 'm.room.member'
			ORDER BY e.stream_pos`
	}
	var rows, err = db.query(ctx, q, windowArgs(scanWindow(from, to), userID, from, to)...)
	if err != nil {
		return nil, err
	}
	return scanEvents(rows)
}

// windowArgs orders the arguments of the two forms of a window query: the
// window scan takes (from, to, userID), the per-room form (userID, from, to).
func windowArgs(scan bool, userID string, from, to int64) []any {
	if scan {
		return []any{from, to, userID}
	}
	return []any{userID, from, to}
}

// DeviceListChangesSharing returns the users whose device lists changed
// with from < stream_pos <= to (device_lists stream) and who are userID or
// are joined to or invited to a room userID is joined to.
func (db *DB) DeviceListChangesSharing(ctx context.Context, userID string, from, to int64) ([]string, error) {
	if to <= from {
		return nil, nil
	}
	// CROSS JOIN fixes the join order on SQLite: from the changed user's
	// memberships to the syncer's membership in the same room.
	return db.strings(ctx, `SELECT DISTINCT c.user_id FROM e2e_device_list_changes c
		WHERE c.stream_pos > ? AND c.stream_pos <= ? AND (c.user_id = ? OR EXISTS (
			SELECT 1 FROM memberships a CROSS JOIN memberships b
			WHERE a.user_id = c.user_id AND a.membership IN ('join', 'invite')
			AND b.room_id = a.room_id AND b.user_id = ? AND b.membership = 'join'))
		ORDER BY c.user_id`, from, to, userID, userID)
}

// SharingAmong returns which of candidates are joined to or invited to a
// room userID is joined to (userID itself counts when joined anywhere).
// The cost follows the candidates' memberships, not userID's rooms.
func (db *DB) SharingAmong(ctx context.Context, userID string, candidates []string) (map[string]bool, error) {
	out := map[string]bool{}
	for start := 0; start < len(candidates); start += 500 {
		end := min(start+500, len(candidates))
		args := make([]any, 0, end-start+1)
		for _, u := range candidates[start:end] {
			args = append(args, u)
		}
		args = append(args, userID)
		users, err := db.strings(ctx, `SELECT DISTINCT a.user_id FROM memberships a CROSS JOIN memberships b
			WHERE a.user_id IN (`+placeholders(end-start)+`) AND a.membership IN ('join', 'invite')
			AND b.room_id = a.room_id AND b.user_id = ? AND b.membership = 'join'`, args...)
		if err != nil {
			return nil, err
		}
		for _, u := range users {
			out[u] = true
		}
	}
	return out, nil
}

// RoomStateGroup returns the room's current state group, which changes
// with every state event (memberships included) appended to the room.
func (db *DB) RoomStateGroup(ctx context.Context, roomID string) (int64, error) {
	var g int64
	err := db.queryRow(ctx, `SELECT state_group FROM rooms WHERE room_id = ?`, roomID).Scan(&g)
	return g, notFound(err)
}
