package storage

import (
	"context"
	"fmt"
	"sort"
	"strconv"
	"strings"
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
	scan := scanWindow(from, to)
	rows, err := db.query(ctx, db.joinedRoomMemberEventsSQL(scan), windowArgs(scan, userID, from, to)...)
	if err != nil {
		return nil, err
	}
	return scanEvents(rows)
}

// joinedRoomMemberEventsSQL is JoinedRoomMemberEvents' query, scanning the
// window or going through the user's rooms.
func (db *DB) joinedRoomMemberEventsSQL(scan bool) string {
	if scan {
		return `SELECT ` + eventColumns + ` FROM ` + db.eventsByPos() + ` WHERE stream_pos > ? AND stream_pos <= ? AND type = 'm.room.member'
			AND EXISTS (SELECT 1 FROM memberships m WHERE m.room_id = events.room_id AND m.user_id = ? AND m.membership = 'join')
			ORDER BY stream_pos`
	}
	return `SELECT ` + eventColumnsE + ` FROM memberships m CROSS JOIN events e
		WHERE m.user_id = ? AND m.membership = 'join' AND e.room_id = m.room_id AND e.stream_pos > ? AND e.stream_pos <= ? AND e.type = 'm.room.member'
		ORDER BY e.stream_pos`
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
	return db.strings(ctx, deviceListChangesSharingSQL, from, to, userID, userID)
}

// deviceListChangesSharingSQL is DeviceListChangesSharing's query. CROSS
// JOIN fixes the join order on SQLite: from the changed user's memberships
// to the syncer's membership in the same room.
const deviceListChangesSharingSQL = `SELECT DISTINCT c.user_id FROM e2e_device_list_changes c
	WHERE c.stream_pos > ? AND c.stream_pos <= ? AND (c.user_id = ? OR EXISTS (
		SELECT 1 FROM memberships a CROSS JOIN memberships b
		WHERE a.user_id = c.user_id AND a.membership IN ('join', 'invite')
		AND b.room_id = a.room_id AND b.user_id = ? AND b.membership = 'join'))
	ORDER BY c.user_id`

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

// chunks calls fn with successive slices of at most 500 of ids, the
// bound on the IN lists of batched reads.
func chunks(ids []string, fn func(part []string) error) error {
	for start := 0; start < len(ids); start += 500 {
		if err := fn(ids[start:min(start+500, len(ids))]); err != nil {
			return err
		}
	}
	return nil
}

func stringArgs(ids []string, extra ...any) []any {
	args := make([]any, 0, len(ids)+len(extra))
	for _, id := range ids {
		args = append(args, id)
	}
	return append(args, extra...)
}

// StateHistoryRooms is StateHistory for several rooms and one state key:
// the state events of that type and key in the rooms, oldest first.
func (db *DB) StateHistoryRooms(ctx context.Context, roomIDs []string, evType, stateKey string) ([]Event, error) {
	var out []Event
	// Sorted here: with ORDER BY, SQLite prefers events_state (type,
	// state_key, stream_pos), already in that order, which reads the state
	// of every room on the server.
	defer func() { sort.SliceStable(out, func(i, j int) bool { return out[i].StreamPos < out[j].StreamPos }) }()
	err := chunks(roomIDs, func(part []string) error {
		rows, err := db.query(ctx, stateHistoryRoomsSQL(len(part)), stringArgs(part, evType, stateKey)...)
		if err != nil {
			return err
		}
		evs, err := scanEvents(rows)
		out = append(out, evs...)
		return err
	})
	return out, err
}

// stateHistoryRoomsSQL is StateHistoryRooms' query for n rooms.
func stateHistoryRoomsSQL(n int) string {
	return `SELECT ` + eventColumns + ` FROM events WHERE room_id IN (` + placeholders(n) + `) AND type = ? AND state_key = ?`
}

// RoomsWithState returns which of the rooms have current state for at
// least one of keys.
func (db *DB) RoomsWithState(ctx context.Context, roomIDs []string, keys []StateKeyTuple) (map[string]bool, error) {
	out := map[string]bool{}
	if len(keys) == 0 {
		return out, nil
	}
	err := chunks(roomIDs, func(part []string) error {
		var args []any
		for _, k := range keys {
			args = append(args, stringArgs(part, k.Type, k.StateKey)...)
		}
		ids, err := db.strings(ctx, roomsWithStateSQL(len(part), len(keys)), args...)
		for _, id := range ids {
			out[id] = true
		}
		return err
	})
	return out, err
}

// roomsWithStateSQL is RoomsWithState's query for n rooms and k keys
// (arguments: the rooms, the key's type and state key, for each key): a
// UNION of one look-up per key, each through current_state's primary key.
// Written as one condition with OR, SQLite read every state row of the
// rooms, their members' included: 1 ms a room of 3,000 members, for each
// member's sync after a join.
func roomsWithStateSQL(n, k int) string {
	arms := make([]string, k)
	for i := range arms {
		arms[i] = `SELECT room_id FROM current_state WHERE room_id IN (` + placeholders(n) + `) AND type = ? AND state_key = ?`
	}
	return strings.Join(arms, " UNION ")
}

// RoomHeroes returns up to n users joined to or invited to the room, other
// than self, in user ID order. n is spelled in the statement (callers pass
// a constant), since SQLite prepares a statement again each time its LIMIT
// is bound.
func (db *DB) RoomHeroes(ctx context.Context, roomID, self string, n int) ([]string, error) {
	return db.strings(ctx, `SELECT user_id FROM memberships WHERE room_id = ? AND membership IN ('join', 'invite') AND user_id <> ? ORDER BY user_id LIMIT `+strconv.Itoa(max(n, 0)), roomID, self)
}

// UnreadCountsRooms is UnreadCounts for several rooms at once: one query
// per 500 rooms (plus one per thread read further than the room's
// unthreaded receipt, and with notifications after it).
//
// Counts of many notifications are kept and brought up to date from the
// rows added since (unread_cache.go); the others are counted in full, up
// to the current event stream position.
func (db *DB) UnreadCountsRooms(ctx context.Context, roomIDs []string, userID string) (map[string]map[string]NotificationCounts, error) {
	pos, err := db.CurrentStreamPositions(ctx)
	if err != nil {
		return nil, err
	}
	upTo := pos.Events
	out := map[string]map[string]NotificationCounts{}
	if roomIDs, err = db.unreadIncrements(ctx, userID, roomIDs, upTo, out); err != nil {
		return nil, err
	}
	rps := map[string]*ReadPositions{}
	err = chunks(roomIDs, func(part []string) error {
		rows, err := db.query(ctx, unreadCountsRoomsSQL(len(part)), stringArgs(part, userID, userID, upTo, userID, upTo, userID)...)
		if err != nil {
			return err
		}
		defer rows.Close()
		for rows.Next() {
			var kind, room, t string
			var n, highlights int64
			if err := rows.Scan(&kind, &room, &t, &n, &highlights); err != nil {
				return err
			}
			switch kind {
			case "read": // a thread's read position; n is the position
				rp := rps[room]
				if rp == nil {
					rp = &ReadPositions{Threads: map[string]int64{}}
					rps[room] = rp
				}
				rp.Threads[t] = n
			case "unthreaded":
				rp := rps[room]
				if rp == nil {
					rp = &ReadPositions{Threads: map[string]int64{}}
					rps[room] = rp
				}
				rp.Unthreaded = n
			default: // a thread's count in one of the two tables: added up
				if n > 0 {
					if out[room] == nil {
						out[room] = map[string]NotificationCounts{}
					}
					c := out[room][t]
					c.Notifications += int(n)
					c.Highlights += int(highlights)
					out[room][t] = c
				}
			}
		}
		return rows.Err()
	})
	if err != nil {
		return nil, err
	}
	// Threads read further than the unthreaded receipt are counted again
	// from their own receipt.
	for room, rp := range rps {
		for t, pos := range rp.Threads {
			if _, ok := out[room][t]; !ok || pos <= rp.Unthreaded {
				continue
			}
			if err := db.recountThread(ctx, out[room], userID, room, t, pos, upTo); err != nil {
				return nil, err
			}
		}
	}
	db.keepUnread(userID, upTo, rps, roomIDs, out)
	return out, nil
}

// unreadCountsRoomsSQL is UnreadCountsRooms' query for n rooms (arguments:
// the rooms, then the user, the user and the upper position twice, the
// user). Its rows are (kind, room, thread, n, highlights): kind
// "unthreaded" gives a room's unthreaded read position (in n), "read" a
// thread's read position, "count" the notifications of a thread (n) and
// their highlights after the room's unthreaded read position and up to the
// upper position, in event_push_actions and in event_push_staged
// (a row each, to be added up). The rooms' read positions are computed first
// (CTE rp, one row per room) and drive the count, so that only
// notifications after them are read.
func unreadCountsRoomsSQL(n int) string {
	var b strings.Builder
	b.WriteString(`WITH want (room_id) AS (VALUES `)
	for i := range n {
		if i > 0 {
			b.WriteString(`, `)
		}
		b.WriteString(`(CAST(? AS TEXT))`)
	}
	b.WriteString(`),
	rp (room_id, pos) AS MATERIALIZED (SELECT want.room_id, COALESCE((SELECT MAX(e.stream_pos) FROM receipts r JOIN events e ON e.event_id = r.event_id
		WHERE r.room_id = want.room_id AND r.user_id = CAST(? AS TEXT) AND r.receipt_type IN ('m.read', 'm.read.private') AND r.thread_id = ''), 0) FROM want)
	SELECT 'unthreaded', rp.room_id, '', rp.pos, 0 FROM rp WHERE rp.pos > 0
	UNION ALL
	SELECT 'count', p.room_id, p.thread_id, COUNT(*), COALESCE(SUM(p.highlight), 0) FROM rp CROSS JOIN event_push_actions p
		WHERE p.user_id = ? AND p.room_id = rp.room_id AND p.stream_pos > rp.pos AND p.stream_pos <= ? GROUP BY p.room_id, p.thread_id
	UNION ALL
	SELECT 'count', p.room_id, p.thread_id, COUNT(*), COALESCE(SUM(p.highlight), 0) FROM rp CROSS JOIN event_push_staged p
		WHERE p.room_id = rp.room_id AND p.user_id = ? AND p.stream_pos > rp.pos AND p.stream_pos <= ? GROUP BY p.room_id, p.thread_id
	UNION ALL
	SELECT 'read', r.room_id, r.thread_id, MAX(e.stream_pos), 0 FROM want CROSS JOIN receipts r JOIN events e ON e.event_id = r.event_id
		WHERE r.room_id = want.room_id AND r.user_id = ? AND r.receipt_type IN ('m.read', 'm.read.private') AND r.thread_id <> ''
		GROUP BY r.room_id, r.thread_id`)
	return b.String()
}

// CurrentStateRooms returns the current state events of the rooms, member
// events included only when withMembers is set.
func (db *DB) CurrentStateRooms(ctx context.Context, roomIDs []string, withMembers bool) ([]Event, error) {
	var out []Event
	err := chunks(roomIDs, func(part []string) error {
		rows, err := db.query(ctx, currentStateRoomsSQL(len(part), withMembers), stringArgs(part)...)
		if err != nil {
			return err
		}
		evs, err := scanEvents(rows)
		out = append(out, evs...)
		return err
	})
	return out, err
}

// currentStateRoomsSQL is CurrentStateRooms' query for n rooms. Without
// members, it reads the types before m.room.member and those after it (two
// ranges of current_state's key): "type <> 'm.room.member'" made SQLite
// read every member's key of the rooms and drop them, 3,000 for a
// 3,000-member room at each lazy-loaded initial sync.
func currentStateRoomsSQL(n int, withMembers bool) string {
	q := `SELECT ` + eventColumnsE + ` FROM current_state c JOIN events e ON e.event_id = c.event_id
			WHERE c.room_id IN (` + placeholders(n) + `)`
	if !withMembers {
		q += ` AND (c.type < 'm.room.member' OR c.type > 'm.room.member')`
	}
	return q
}

// RoomUser names a user in a room.
type RoomUser struct {
	RoomID string
	UserID string
}

// CurrentMemberEvents returns the current m.room.member events of the
// given users in the given rooms (none for a user without one).
func (db *DB) CurrentMemberEvents(ctx context.Context, pairs []RoomUser) ([]Event, error) {
	var out []Event
	for start := 0; start < len(pairs); start += 500 {
		part := pairs[start:min(start+500, len(pairs))]
		var b strings.Builder
		args := make([]any, 0, 2*len(part))
		b.WriteString(`WITH need (room_id, user_id) AS (VALUES `)
		for i, p := range part {
			if i > 0 {
				b.WriteString(`, `)
			}
			b.WriteString(`(CAST(? AS TEXT), CAST(? AS TEXT))`)
			args = append(args, p.RoomID, p.UserID)
		}
		b.WriteString(`) SELECT ` + eventColumnsE + ` FROM need CROSS JOIN current_state c JOIN events e ON e.event_id = c.event_id
			WHERE c.room_id = need.room_id AND c.type = 'm.room.member' AND c.state_key = need.user_id`)
		rows, err := db.query(ctx, b.String(), args...)
		if err != nil {
			return nil, err
		}
		evs, err := scanEvents(rows)
		if err != nil {
			return nil, err
		}
		out = append(out, evs...)
	}
	return out, nil
}

const syncMembershipsSQL = `SELECT room_id, membership, stream_pos FROM memberships WHERE user_id = ? AND forgotten = 0`

// syncMemberships reads what SyncMemberships answers.
func (db *DB) syncMemberships(ctx context.Context, userID string) ([]Membership, error) {
	rows, err := db.query(ctx, syncMembershipsSQL, userID)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []Membership
	for rows.Next() {
		m := Membership{UserID: userID}
		if err := rows.Scan(&m.RoomID, &m.Membership, &m.StreamPos); err != nil {
			return nil, err
		}
		out = append(out, m)
	}
	return out, rows.Err()
}

// roomsInWindowSQL is the window scan of RoomsWithEventsBetween.
func (db *DB) roomsInWindowSQL() string {
	return `SELECT DISTINCT room_id FROM ` + db.eventsByPos() + ` WHERE stream_pos > ? AND stream_pos <= ?`
}

// StreamPositions holds the current position of every stream a sync
// token names.
type StreamPositions struct {
	Events, AccountData, Receipts, ToDevice, DeviceLists int64
}

// streamPositionsSQL reads the newest event's position and the named
// streams' positions in one statement.
const streamPositionsSQL = `SELECT 'events', COALESCE(MAX(stream_pos), 0) FROM events
	UNION ALL SELECT name, pos FROM stream_positions WHERE name IN ('account_data', 'receipts', 'to_device', 'device_lists')`

// CurrentStreamPositions returns the position of every stream a sync
// reads, in one query (each sync, and each wake-up of a long-poll, starts
// with it).
//
// Every commit of this process counts itself (DB.committed) before its
// wake-ups run: positions read after the n-th commit stay current until
// the next one, so they are kept and reused until then. Under a delivery
// load (tens of commits a second, hundreds of woken long-polls) most syncs
// skip the query. This holds while one process writes the database, as
// SQLite requires and as Rempart runs on PostgreSQL today; a process
// sharing a PostgreSQL database with others must count their commits too,
// from the same signal that wakes its long-polls for their events.
//
// A commit wakes the long-polls waiting on it, which all ask at once: the
// first to find the kept positions stale reads them, and those asking
// after the same commit wait for its read rather than each running the
// query (on PostgreSQL, with 5,000 long-polls, up to a dozen identical
// reads were seen in flight together).
func (db *DB) CurrentStreamPositions(ctx context.Context) (StreamPositions, error) {
	gen := db.commits.Load()
	if c := db.positions.Load(); c != nil && c.gen == gen {
		return c.pos, nil
	}
	db.positionsMu.Lock()
	if l := db.positionsRead; l != nil && l.gen >= gen {
		// A read begun after this caller's commit count covers every
		// commit the caller must see.
		db.positionsMu.Unlock()
		select {
		case <-l.done:
			return l.pos, l.err
		case <-ctx.Done():
			return StreamPositions{}, ctx.Err()
		}
	}
	l := &positionsRead{gen: gen, done: make(chan struct{})}
	db.positionsRead = l
	db.positionsMu.Unlock()
	// Not cancelled with this caller's request: others wait for it.
	p, err := db.readStreamPositions(context.WithoutCancel(ctx))
	if err == nil {
		// Tagged with the count read before the query: a commit during
		// it makes the entry stale at once, never wrongly current.
		db.positions.Store(&cachedPositions{gen: gen, pos: p})
	}
	l.pos, l.err = p, err
	close(l.done)
	db.positionsMu.Lock()
	if db.positionsRead == l {
		db.positionsRead = nil
	}
	db.positionsMu.Unlock()
	return p, err
}

// cachedPositions are stream positions read after the gen-th commit.
type cachedPositions struct {
	gen uint64
	pos StreamPositions
}

// positionsRead is a read of the stream positions in flight, begun after
// the gen-th commit; done is closed once pos and err are set.
type positionsRead struct {
	gen  uint64
	done chan struct{}
	pos  StreamPositions
	err  error
}

// beforePositionsRead runs before each read of the stream positions (a
// hook for tests).
var beforePositionsRead = func() {}

func (db *DB) readStreamPositions(ctx context.Context) (StreamPositions, error) {
	beforePositionsRead()
	var p StreamPositions
	rows, err := db.query(ctx, streamPositionsSQL)
	if err != nil {
		return p, err
	}
	defer rows.Close()
	for rows.Next() {
		var name string
		var pos int64
		if err := rows.Scan(&name, &pos); err != nil {
			return p, err
		}
		switch name {
		case "events":
			p.Events = pos
		case "account_data":
			p.AccountData = pos
		case "receipts":
			p.Receipts = pos
		case "to_device":
			p.ToDevice = pos
		case "device_lists":
			p.DeviceLists = pos
		}
	}
	return p, rows.Err()
}

// StateEventsBetweenRooms is StateEventsBetween for several rooms at once:
// the state events of each room with from < stream_pos <= to, oldest
// first.
func (db *DB) StateEventsBetweenRooms(ctx context.Context, roomIDs []string, from, to int64) (map[string][]Event, error) {
	out := map[string][]Event{}
	if to <= from {
		return out, nil
	}
	err := chunks(roomIDs, func(part []string) error {
		// Sorted here rather than with ORDER BY, which could lead the
		// planner away from each room's (room_id, stream_pos) range.
		rows, err := db.query(ctx, stateEventsBetweenRoomsSQL(len(part)), stringArgs(part, from, to)...)
		if err != nil {
			return err
		}
		evs, err := scanEvents(rows)
		for _, ev := range evs {
			out[ev.RoomID] = append(out[ev.RoomID], ev)
		}
		return err
	})
	for _, evs := range out {
		sort.Slice(evs, func(i, j int) bool { return evs[i].StreamPos < evs[j].StreamPos })
	}
	return out, err
}

// stateEventsBetweenRoomsSQL is StateEventsBetweenRooms' query for n rooms.
func stateEventsBetweenRoomsSQL(n int) string {
	return `SELECT ` + eventColumns + ` FROM events WHERE room_id IN (` + placeholders(n) + `)
		AND stream_pos > ? AND stream_pos <= ? AND state_key IS NOT NULL`
}

// TimelinePage returns the newest events (at most limit) of a room with
// from < stream_pos <= to, newest first: a page of a sync timeline.
//
// The limit is written into the statement rather than bound: SQLite plans
// a statement again each time a parameter of its LIMIT is bound (it may
// change the plan), which cost a whole parse and plan per page. A sync
// asks for few distinct limits (its filter's, plus one), so the statement
// cache holds a handful of these.
func (db *DB) TimelinePage(ctx context.Context, roomID string, from, to int64, limit int) ([]Event, error) {
	rows, err := db.query(ctx, timelinePageSQL(limit), roomID, from, to)
	if err != nil {
		return nil, err
	}
	return scanEvents(rows)
}

// TimelinePageReq names a room's range for TimelinePages.
type TimelinePageReq struct {
	RoomID   string
	From, To int64
}

// timelinePagesChunk bounds the rooms of one TimelinePages statement.
const timelinePagesChunk = 50

// TimelinePages is TimelinePage for many rooms, one statement per 50
// rooms: an initial sync of 500 rooms read its timelines in 500 round
// trips. The answer holds each room's page, newest first.
func (db *DB) TimelinePages(ctx context.Context, reqs []TimelinePageReq, limit int) (map[string][]Event, error) {
	out := make(map[string][]Event, len(reqs))
	for start := 0; start < len(reqs); start += timelinePagesChunk {
		chunk := reqs[start:min(start+timelinePagesChunk, len(reqs))]
		args := make([]any, 0, 3*len(chunk))
		for _, r := range chunk {
			args = append(args, r.RoomID, r.From, r.To)
			out[r.RoomID] = nil
		}
		rows, err := db.query(ctx, timelinePagesSQL(len(chunk), limit), args...)
		if err != nil {
			return nil, err
		}
		evs, err := scanEvents(rows)
		if err != nil {
			return nil, err
		}
		for _, ev := range evs {
			out[ev.RoomID] = append(out[ev.RoomID], ev)
		}
	}
	for _, evs := range out {
		sort.Slice(evs, func(i, j int) bool { return evs[i].StreamPos > evs[j].StreamPos })
	}
	return out, nil
}

// timelinePagesSQL is TimelinePages' statement for n rooms: timelinePageSQL
// once per room, each through events_room_stream.
func timelinePagesSQL(n, limit int) string {
	var b strings.Builder
	for i := range n {
		if i > 0 {
			b.WriteString(" UNION ALL ")
		}
		fmt.Fprintf(&b, "SELECT * FROM (%s) AS t%d", timelinePageSQL(limit), i)
	}
	return b.String()
}

func timelinePageSQL(limit int) string {
	return `SELECT ` + eventColumns + ` FROM events WHERE room_id = ? AND stream_pos > ? AND stream_pos <= ? ORDER BY stream_pos DESC LIMIT ` + strconv.Itoa(max(limit, 0))
}

// StateChangesAndMembers is StateEventsBetweenRooms(roomIDs, from, to)
// and CurrentMemberEvents(pairs) read together, in one query when both
// are small (the usual incremental sync: a few active rooms, their
// timelines' senders), which every room of pairs must be one of roomIDs.
// It returns the state changes by room, and the current member events of
// pairs that are not in (from, to] (those in it are state changes of the
// window, among the first answer).
//
// The two halves of the query are told apart by stream position: every
// state event of the rooms in the window is a change, and a current
// member event in the window is one of them.
func (db *DB) StateChangesAndMembers(ctx context.Context, roomIDs []string, from, to int64, pairs []RoomUser) (map[string][]Event, []Event, error) {
	if len(pairs) == 0 || len(roomIDs) > 100 || len(pairs) > 100 || to <= from {
		changes, err := db.StateEventsBetweenRooms(ctx, roomIDs, from, to)
		if err != nil || len(pairs) == 0 {
			return changes, nil, err
		}
		members, err := db.CurrentMemberEvents(ctx, pairs)
		return changes, outside(members, from, to), err
	}
	args := make([]any, 0, 2*len(pairs)+len(roomIDs)+2)
	for _, p := range pairs {
		args = append(args, p.RoomID, p.UserID)
	}
	for _, id := range roomIDs {
		args = append(args, id)
	}
	rows, err := db.query(ctx, stateChangesAndMembersSQL(len(roomIDs), len(pairs)), append(args, from, to)...)
	if err != nil {
		return nil, nil, err
	}
	evs, err := scanEvents(rows)
	if err != nil {
		return nil, nil, err
	}
	changes := map[string][]Event{}
	seen := map[string]bool{}
	for _, ev := range evs {
		if ev.StreamPos > from && ev.StreamPos <= to {
			if !seen[ev.EventID] {
				seen[ev.EventID] = true
				changes[ev.RoomID] = append(changes[ev.RoomID], ev)
			}
		}
	}
	for _, list := range changes {
		sort.Slice(list, func(i, j int) bool { return list[i].StreamPos < list[j].StreamPos })
	}
	return changes, outside(evs, from, to), nil
}

// outside returns the events of evs not in (from, to].
func outside(evs []Event, from, to int64) []Event {
	var out []Event
	for _, ev := range evs {
		if ev.StreamPos <= from || ev.StreamPos > to {
			out = append(out, ev)
		}
	}
	return out
}

// stateChangesAndMembersSQL is StateChangesAndMembers' query for n rooms
// and m pairs (arguments: each pair's room and user, then the rooms, from
// and to).
func stateChangesAndMembersSQL(n, m int) string {
	var b strings.Builder
	b.WriteString(`WITH need (room_id, user_id) AS (VALUES `)
	for i := range m {
		if i > 0 {
			b.WriteString(`, `)
		}
		b.WriteString(`(CAST(? AS TEXT), CAST(? AS TEXT))`)
	}
	b.WriteString(`) `)
	b.WriteString(stateEventsBetweenRoomsSQL(n))
	b.WriteString(` UNION ALL SELECT ` + eventColumnsE + ` FROM need CROSS JOIN current_state c JOIN events e ON e.event_id = c.event_id
		WHERE c.room_id = need.room_id AND c.type = 'm.room.member' AND c.state_key = need.user_id`)
	return b.String()
}
