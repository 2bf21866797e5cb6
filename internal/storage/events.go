package storage

import (
	"context"
	"database/sql"
	"fmt"
	"slices"
	"strings"

	"github.com/tidwall/gjson"
)

// Room is a row of the rooms table.
type Room struct {
	RoomID        string
	RoomVersion   string
	Creator       string
	CreatedTS     int64
	Visibility    string
	LatestEventID string
	Depth         int64
	StateGroup    int64
}

// Event is a stored room event. JSON is the full federation-format event
// (signed, hashed); Unsigned holds server-added unsigned fields such as
// prev_content.
type Event struct {
	StreamPos        int64
	EventID          string
	RoomID           string
	Type             string
	StateKey         *string
	Sender           string
	OriginServerTS   int64
	Depth            int64
	JSON             []byte
	Unsigned         []byte
	StateGroupBefore int64
	StateGroupAfter  int64
	RedactedBy       string
	RelType          string
	RelatesTo        string
	TxnDevice        string
	TxnID            string
}

// StateKeyTuple identifies one piece of room state.
type StateKeyTuple struct {
	Type     string
	StateKey string
}

// ErrRoomExists is returned by CreateRoom when the ID is taken.
var ErrRoomExists = fmt.Errorf("room already exists")

// CreateRoom inserts the room row; its events are appended afterwards.
func (tx *Tx) CreateRoom(ctx context.Context, r Room) error {
	tx.roomWritten(r.RoomID)
	_, err := tx.exec(ctx, `INSERT INTO rooms (room_id, room_version, creator, created_ts, visibility) VALUES (?, ?, ?, ?, ?)`,
		r.RoomID, r.RoomVersion, r.Creator, r.CreatedTS, r.Visibility)
	if isUniqueViolation(err) {
		return ErrRoomExists
	}
	return err
}

const roomColumns = `room_id, room_version, creator, created_ts, visibility, latest_event_id, depth, state_group`

func scanRoom(row interface{ Scan(...any) error }) (Room, error) {
	var r Room
	err := row.Scan(&r.RoomID, &r.RoomVersion, &r.Creator, &r.CreatedTS, &r.Visibility, &r.LatestEventID, &r.Depth, &r.StateGroup)
	return r, notFound(err)
}

// LockRoom loads a room for update: on PostgreSQL the row stays locked until
// the transaction ends, so appends to one room are serialised across
// processes (SQLite has a single writer anyway).
func (tx *Tx) LockRoom(ctx context.Context, roomID string) (Room, error) {
	if r, ok := tx.locked[roomID]; ok {
		return r, nil // locked by the batch (see DB.Batch)
	}
	if tx.db.dialect != Postgres {
		return tx.lockRoomSQLite(ctx, roomID)
	}
	return scanRoom(tx.queryRow(ctx, `SELECT `+roomColumns+` FROM rooms WHERE room_id = ? FOR UPDATE`, roomID))
}

// GetRoom loads a room row.
func (db *DB) GetRoom(ctx context.Context, roomID string) (Room, error) {
	return scanRoom(db.queryRow(ctx, `SELECT `+roomColumns+` FROM rooms WHERE room_id = ?`, roomID))
}

// SetRoomVisibility sets the room's published visibility in the directory.
func (tx *Tx) SetRoomVisibility(ctx context.Context, roomID, visibility string) error {
	tx.roomWritten(roomID)
	_, err := tx.exec(ctx, `UPDATE rooms SET visibility = ? WHERE room_id = ?`, visibility, roomID)
	return err
}

// PublicRooms lists room IDs published in the directory, in creation order.
func (db *DB) PublicRooms(ctx context.Context) ([]string, error) {
	return db.strings(ctx, `SELECT room_id FROM rooms WHERE visibility = 'public' ORDER BY created_ts, room_id`)
}

func (db *DB) strings(ctx context.Context, q string, args ...any) ([]string, error) {
	rows, err := db.query(ctx, q, args...)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []string
	for rows.Next() {
		var s string
		if err := rows.Scan(&s); err != nil {
			return nil, err
		}
		out = append(out, s)
	}
	return out, rows.Err()
}

// CurrentStateEventsTx returns the current state events of a room for the
// given keys (all state when keys is nil), read inside the transaction.
func (tx *Tx) CurrentStateEvents(ctx context.Context, roomID string, keys []StateKeyTuple) ([]Event, error) {
	return currentState(ctx, tx.query, roomID, keys)
}

// CurrentState returns the current state events of a room for the given
// keys, or all of it when keys is nil.
func (db *DB) CurrentState(ctx context.Context, roomID string, keys []StateKeyTuple) ([]Event, error) {
	return currentState(ctx, db.query, roomID, keys)
}

// CurrentStateOfType returns the current state events of one type.
func (db *DB) CurrentStateOfType(ctx context.Context, roomID, evType string) ([]Event, error) {
	rows, err := db.query(ctx, `SELECT `+eventColumnsE+` FROM current_state c JOIN events e ON e.event_id = c.event_id WHERE c.room_id = ? AND c.type = ?`, roomID, evType)
	if err != nil {
		return nil, err
	}
	return scanEvents(rows)
}

type queryFunc func(ctx context.Context, q string, args ...any) (*sql.Rows, error)

func currentState(ctx context.Context, query queryFunc, roomID string, keys []StateKeyTuple) ([]Event, error) {
	q := `SELECT ` + eventColumnsE + ` FROM current_state c JOIN events e ON e.event_id = c.event_id WHERE c.room_id = ?`
	args := []any{roomID}
	if keys != nil {
		if len(keys) == 0 {
			return nil, nil
		}
		var conds []string
		for _, k := range keys {
			conds = append(conds, `(c.type = ? AND c.state_key = ?)`)
			args = append(args, k.Type, k.StateKey)
		}
		q += ` AND (` + strings.Join(conds, " OR ") + `)`
	}
	rows, err := query(ctx, q, args...)
	if err != nil {
		return nil, err
	}
	return scanEvents(rows)
}

const eventColumns = `stream_pos, event_id, room_id, type, state_key, sender, origin_server_ts, depth, json, unsigned, state_group_before, state_group_after, redacted_by, rel_type, relates_to, txn_device, txn_id`

var eventColumnsE = "e." + strings.ReplaceAll(eventColumns, ", ", ", e.")

func scanEvent(row interface{ Scan(...any) error }) (Event, error) {
	var e Event
	var sk, red, rt, rel, td, ti sql.NullString
	var js, uns string
	err := row.Scan(&e.StreamPos, &e.EventID, &e.RoomID, &e.Type, &sk, &e.Sender, &e.OriginServerTS, &e.Depth, &js, &uns,
		&e.StateGroupBefore, &e.StateGroupAfter, &red, &rt, &rel, &td, &ti)
	if err != nil {
		return e, notFound(err)
	}
	if sk.Valid {
		s := sk.String
		e.StateKey = &s
	}
	e.JSON, e.Unsigned = []byte(js), []byte(uns)
	e.RedactedBy, e.RelType, e.RelatesTo, e.TxnDevice, e.TxnID = red.String, rt.String, rel.String, td.String, ti.String
	return e, nil
}

func scanEvents(rows *sql.Rows) ([]Event, error) {
	defer rows.Close()
	var out []Event
	for rows.Next() {
		e, err := scanEvent(rows)
		if err != nil {
			return nil, err
		}
		out = append(out, e)
	}
	return out, rows.Err()
}

// GetEvent loads one event by ID.
func (db *DB) GetEvent(ctx context.Context, eventID string) (Event, error) {
	return scanEvent(db.queryRow(ctx, `SELECT `+eventColumns+` FROM events WHERE event_id = ?`, eventID))
}

// GetEventTx loads one event by ID inside a transaction.
func (tx *Tx) GetEvent(ctx context.Context, eventID string) (Event, error) {
	return scanEvent(tx.queryRow(ctx, `SELECT `+eventColumns+` FROM events WHERE event_id = ?`, eventID))
}

// GetEvents loads events by ID, in stream order; missing IDs are skipped.
func (db *DB) GetEvents(ctx context.Context, eventIDs []string) ([]Event, error) {
	if len(eventIDs) == 0 {
		return nil, nil
	}
	var out []Event
	for start := 0; start < len(eventIDs); start += 500 {
		end := min(start+500, len(eventIDs))
		args := make([]any, 0, end-start)
		for _, id := range eventIDs[start:end] {
			args = append(args, id)
		}
		rows, err := db.query(ctx, `SELECT `+eventColumns+` FROM events WHERE event_id IN (`+placeholders(len(args))+`) ORDER BY stream_pos`, args...)
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

// RoomEvents returns up to limit events of a room with from < stream_pos <= to.
// backwards selects the newest first (for /messages dir=b and sync
// timelines); otherwise oldest first.
func (db *DB) RoomEvents(ctx context.Context, roomID string, from, to int64, limit int, backwards bool) ([]Event, error) {
	order := "ASC"
	if backwards {
		order = "DESC"
	}
	rows, err := db.query(ctx, `SELECT `+eventColumns+` FROM events WHERE room_id = ? AND stream_pos > ? AND stream_pos <= ? ORDER BY stream_pos `+order+` LIMIT ?`,
		roomID, from, to, limit)
	if err != nil {
		return nil, err
	}
	return scanEvents(rows)
}

// StateEventsBetween returns the state events of a room with
// from < stream_pos <= to, oldest first.
func (db *DB) StateEventsBetween(ctx context.Context, roomID string, from, to int64) ([]Event, error) {
	rows, err := db.query(ctx, `SELECT `+eventColumns+` FROM events WHERE room_id = ? AND stream_pos > ? AND stream_pos <= ? AND state_key IS NOT NULL ORDER BY stream_pos`,
		roomID, from, to)
	if err != nil {
		return nil, err
	}
	return scanEvents(rows)
}

// LastEventBefore returns the last event of a room with stream_pos <= pos.
func (db *DB) LastEventBefore(ctx context.Context, roomID string, pos int64) (Event, error) {
	return scanEvent(db.queryRow(ctx, `SELECT `+eventColumns+` FROM events WHERE room_id = ? AND stream_pos <= ? ORDER BY stream_pos DESC LIMIT 1`, roomID, pos))
}

// MaxStreamPos returns the highest event stream position (0 if none).
func (db *DB) MaxStreamPos(ctx context.Context) (int64, error) {
	var p sql.NullInt64
	err := db.queryRow(ctx, `SELECT MAX(stream_pos) FROM events`).Scan(&p)
	return p.Int64, err
}

// relationsSQL is the start of Relations' query, through events_relates_to.
// Without statistics, SQLite weighs relates_to = ? against the room's
// window of events_room_stream as a tie; TestSyncQueryPlans pins the choice.
const relationsSQL = `SELECT ` + eventColumns + ` FROM events WHERE relates_to = ? AND room_id = ? AND stream_pos > ? AND stream_pos <= ?`

// Relations returns events relating to eventID, newest first, with stream
// positions below before (0 for no bound).
func (db *DB) Relations(ctx context.Context, roomID, eventID, relType, evType string, from, to int64, limit int, backwards bool) ([]Event, error) {
	q := relationsSQL
	args := []any{eventID, roomID, from, to}
	if relType != "" {
		q += ` AND rel_type = ?`
		args = append(args, relType)
	}
	if evType != "" {
		q += ` AND type = ?`
		args = append(args, evType)
	}
	if backwards {
		q += ` ORDER BY stream_pos DESC LIMIT ?`
	} else {
		q += ` ORDER BY stream_pos ASC LIMIT ?`
	}
	args = append(args, limit)
	rows, err := db.query(ctx, q, args...)
	if err != nil {
		return nil, err
	}
	return scanEvents(rows)
}

// NewEvent is an event to append to a room by AppendEvent.
type NewEvent struct {
	Event
	// PrevStateEventID is the state event this one replaces ("" if none).
	PrevStateEventID string
	// Membership is the content.membership of an m.room.member event.
	Membership string
}

// AppendEvent stores ev as the room's newest event, advancing its state
// group, current state and memberships when ev is a state event. The room
// must have been locked with LockRoom in this transaction. It returns the
// event's stream position. On PostgreSQL it first takes the event-order
// lock (see lockEventOrder), held until the transaction ends.
func (tx *Tx) AppendEvent(ctx context.Context, room *Room, ev NewEvent) (int64, error) {
	if err := tx.lockEventOrder(ctx); err != nil {
		return 0, fmt.Errorf("lock event order: %w", err)
	}
	ev.StateGroupBefore = room.StateGroup
	ev.StateGroupAfter = room.StateGroup
	if isDirectoryState(ev.Type, ev.StateKey) {
		roomID := ev.RoomID
		tx.AfterCommit(func() { tx.db.directoryState.invalidate(roomID) })
	}
	if ev.StateKey != nil && tx.db.dialect == Postgres {
		return tx.appendStatePostgres(ctx, room, &ev)
	}
	if ev.StateKey != nil {
		g, err := tx.newStateGroup(ctx, room, StateKeyTuple{ev.Type, *ev.StateKey}, ev.EventID)
		if err != nil {
			return 0, fmt.Errorf("state group: %w", err)
		}
		ev.StateGroupAfter = g
	}
	var sk sql.NullString
	if ev.StateKey != nil {
		sk = sql.NullString{String: *ev.StateKey, Valid: true}
	}
	unsigned := ev.Unsigned
	if len(unsigned) == 0 {
		unsigned = []byte("{}")
	}
	var pos int64
	var err error
	switch {
	case tx.writeBehind && ev.StateKey == nil:
		// A message: nothing in the batch reads its row before the
		// next statement of another kind, which sends it first.
		if pos, err = tx.nextEventPos(ctx); err != nil {
			return 0, err
		}
		e := ev
		tx.pendingEvents = append(tx.pendingEvents, pendingEvent{pos: pos, ev: &e, unsigned: string(unsigned),
			stateBefore: ev.StateGroupBefore, stateAfter: ev.StateGroupAfter})
	case tx.writeBehind:
		// A state event in a batch takes the next reserved position
		// too, or it would land after the batch's later messages.
		if pos, err = tx.nextEventPos(ctx); err != nil {
			return 0, err
		}
		_, err = tx.exec(ctx, `INSERT INTO events (stream_pos, event_id, room_id, type, state_key, sender, origin_server_ts, depth, json, unsigned, state_group_before, state_group_after, rel_type, relates_to, txn_device, txn_id)
			OVERRIDING SYSTEM VALUE VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`,
			pos, ev.EventID, ev.RoomID, ev.Type, sk, ev.Sender, ev.OriginServerTS, ev.Depth, string(ev.JSON), string(unsigned),
			ev.StateGroupBefore, ev.StateGroupAfter, nullString(ev.RelType), nullString(ev.RelatesTo), nullString(ev.TxnDevice), nullString(ev.TxnID))
	default:
		pos, err = tx.insertReturningID(ctx, "stream_pos", `INSERT INTO events (event_id, room_id, type, state_key, sender, origin_server_ts, depth, json, unsigned, state_group_before, state_group_after, rel_type, relates_to, txn_device, txn_id)
		VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`,
			ev.EventID, ev.RoomID, ev.Type, sk, ev.Sender, ev.OriginServerTS, ev.Depth, string(ev.JSON), string(unsigned),
			ev.StateGroupBefore, ev.StateGroupAfter, nullString(ev.RelType), nullString(ev.RelatesTo), nullString(ev.TxnDevice), nullString(ev.TxnID))
	}
	if err != nil {
		return 0, fmt.Errorf("insert event: %w", err)
	}
	if ev.StateKey != nil {
		if _, err := tx.exec(ctx, `INSERT INTO current_state (room_id, type, state_key, event_id, stream_pos) VALUES (?, ?, ?, ?, ?)
			ON CONFLICT (room_id, type, state_key) DO UPDATE SET event_id = excluded.event_id, stream_pos = excluded.stream_pos`,
			ev.RoomID, ev.Type, *ev.StateKey, ev.EventID, pos); err != nil {
			return 0, fmt.Errorf("update current state: %w", err)
		}
		if ev.Type == "m.room.member" {
			tx.membershipChanged(*ev.StateKey)
			if _, err := tx.exec(ctx, `INSERT INTO memberships (room_id, user_id, membership, event_id, stream_pos, forgotten) VALUES (?, ?, ?, ?, ?, 0)
				ON CONFLICT (room_id, user_id) DO UPDATE SET membership = excluded.membership, event_id = excluded.event_id, stream_pos = excluded.stream_pos, forgotten = 0`,
				ev.RoomID, *ev.StateKey, ev.Membership, ev.EventID, pos); err != nil {
				return 0, fmt.Errorf("update membership: %w", err)
			}
		}
	}
	room.LatestEventID, room.Depth, room.StateGroup = ev.EventID, ev.Depth, ev.StateGroupAfter
	if _, ok := tx.locked[room.RoomID]; ok {
		// A batch's room (PostgreSQL): LockRoom answers from tx.locked,
		// and the row is written once per batch, before the commit.
		tx.locked[room.RoomID] = *room
		tx.dirtyRooms = append(tx.dirtyRooms, room.RoomID)
		return pos, nil
	}
	if err := tx.updateRoomHead(ctx, room); err != nil {
		return 0, err
	}
	return pos, nil
}

// appendStatePostgres is AppendEvent for a state event on PostgreSQL: one
// statement (appendStateSQL) makes its state group, stores the event,
// updates the room's current state and membership and, unless a batch
// writes the room's head before its commit, the head. Written statement by
// statement, as on SQLite, that was seven round trips, all made while the
// transaction holds the event-order lock that every transaction appending
// events waits for: a created room's dozen state events took a hundred.
func (tx *Tx) appendStatePostgres(ctx context.Context, room *Room, ev *NewEvent) (int64, error) {
	_, batchHead := tx.locked[room.RoomID]
	shape := appendStateShape{member: ev.Type == "m.room.member", head: !batchHead}
	unsigned := ev.Unsigned
	if len(unsigned) == 0 {
		unsigned = []byte("{}")
	}
	args := []any{room.StateGroup, ev.RoomID, ev.Type, *ev.StateKey, ev.EventID, ev.Sender, ev.OriginServerTS, ev.Depth,
		string(ev.JSON), string(unsigned), nullString(ev.RelType), nullString(ev.RelatesTo), nullString(ev.TxnDevice), nullString(ev.TxnID),
		ev.Membership}
	if tx.writeBehind {
		// A state event in a batch takes the next reserved position, or
		// it would land after the batch's later messages.
		pos, err := tx.nextEventPos(ctx)
		if err != nil {
			return 0, err
		}
		shape.reserved = true
		args = append(args, pos)
	}
	var group, pos int64
	if err := tx.queryRow(ctx, appendStateSQL(shape), args...).Scan(&group, &pos); err != nil {
		return 0, fmt.Errorf("append state event: %w", err)
	}
	if shape.member {
		tx.membershipChanged(*ev.StateKey)
	}
	room.LatestEventID, room.Depth, room.StateGroup = ev.EventID, ev.Depth, group
	if batchHead {
		tx.locked[room.RoomID] = *room
		tx.dirtyRooms = append(tx.dirtyRooms, room.RoomID)
	} else {
		tx.roomWritten(room.RoomID)
	}
	return pos, nil
}

// appendStateShape selects appendStateSQL's variant.
type appendStateShape struct {
	member   bool // an m.room.member event: update memberships
	head     bool // write the room's head
	reserved bool // the stream position is given ($16), not the identity's next
}

// appendStateSQL is appendStatePostgres's statement. Its parameters: $1 the
// room's state group before the event (0 for none), $2 room, $3 type, $4
// state key, $5 event ID, $6 sender, $7 origin_server_ts, $8 depth, $9
// JSON, $10 unsigned, $11 rel_type, $12 relates_to, $13 txn_device, $14
// txn_id, $15 membership, $16 the reserved stream position. The state group
// is a delta on the room's group while that group's chain of deltas is
// shorter than maxStateChain, otherwise a full snapshot: the current state
// without the event's key, read before the statement's own update of it
// (all parts of a statement see the same snapshot), plus the event.
func appendStateSQL(s appendStateShape) string {
	var b strings.Builder
	fmt.Fprintf(&b, `WITH prev AS (SELECT chain_len FROM state_groups WHERE group_id = $1),
g AS (INSERT INTO state_groups (room_id, prev_group, chain_len)
	SELECT $2, CASE WHEN p.c < %[1]d THEN $1::bigint END, CASE WHEN p.c < %[1]d THEN p.c + 1 ELSE 0 END
	FROM (SELECT (SELECT chain_len FROM prev) AS c) p
	RETURNING group_id, prev_group),
snap AS (INSERT INTO state_group_entries (group_id, type, state_key, event_id)
	SELECT g.group_id, c.type, c.state_key, c.event_id FROM g JOIN current_state c ON c.room_id = $2
	WHERE g.prev_group IS NULL AND NOT (c.type = $3 AND c.state_key = $4)),
ent AS (INSERT INTO state_group_entries (group_id, type, state_key, event_id) SELECT group_id, $3, $4, $5 FROM g),
`, maxStateChain)
	cols := `event_id, room_id, type, state_key, sender, origin_server_ts, depth, json, unsigned, state_group_before, state_group_after, rel_type, relates_to, txn_device, txn_id`
	vals := `$5, $2, $3, $4, $6, $7, $8, $9, $10, $1, g.group_id, $11, $12, $13, $14`
	if s.reserved {
		b.WriteString(`ev AS (INSERT INTO events (stream_pos, ` + cols + `) OVERRIDING SYSTEM VALUE SELECT $16, ` + vals + ` FROM g RETURNING stream_pos),
`)
	} else {
		b.WriteString(`ev AS (INSERT INTO events (` + cols + `) SELECT ` + vals + ` FROM g RETURNING stream_pos),
`)
	}
	b.WriteString(`cs AS (INSERT INTO current_state (room_id, type, state_key, event_id, stream_pos) SELECT $2, $3, $4, $5, stream_pos FROM ev
	ON CONFLICT (room_id, type, state_key) DO UPDATE SET event_id = excluded.event_id, stream_pos = excluded.stream_pos)`)
	if s.member {
		b.WriteString(`,
m AS (INSERT INTO memberships (room_id, user_id, membership, event_id, stream_pos, forgotten) SELECT $2, $4, $15, $5, stream_pos, 0 FROM ev
	ON CONFLICT (room_id, user_id) DO UPDATE SET membership = excluded.membership, event_id = excluded.event_id, stream_pos = excluded.stream_pos, forgotten = 0)`)
	} else {
		// Every variant binds all its parameters.
		b.WriteString(`,
m AS (SELECT $15::text)`)
	}
	if s.head {
		b.WriteString(`,
r AS (UPDATE rooms SET latest_event_id = $5, depth = $8, state_group = (SELECT group_id FROM g) WHERE room_id = $2)`)
	}
	b.WriteString(`
SELECT g.group_id, ev.stream_pos FROM g, ev`)
	return b.String()
}

func (tx *Tx) updateRoomHead(ctx context.Context, room *Room) error {
	if tx.cachesRooms() {
		tx.keepRoom(*room)
	} else {
		tx.roomWritten(room.RoomID)
	}
	_, err := tx.exec(ctx, `UPDATE rooms SET latest_event_id = ?, depth = ?, state_group = ? WHERE room_id = ?`,
		room.LatestEventID, room.Depth, room.StateGroup, room.RoomID)
	return err
}

// flushRoomHeads writes the heads of the batch's rooms that AppendEvent
// advanced, in one statement on PostgreSQL.
func (tx *Tx) flushRoomHeads(ctx context.Context) error {
	if tx.db.dialect == Postgres && len(tx.dirtyRooms) > 0 {
		w := tx.roomHeadsWrite()
		if err := tx.settle(ctx); err != nil {
			return err
		}
		_, err := tx.tx.ExecContext(ctx, w.sql, w.args...)
		tx.dirtyRooms = nil
		return err
	}
	for i, id := range tx.dirtyRooms {
		if slices.Contains(tx.dirtyRooms[:i], id) {
			continue
		}
		r := tx.locked[id]
		if err := tx.updateRoomHead(ctx, &r); err != nil {
			return err
		}
	}
	tx.dirtyRooms = nil
	return nil
}

// roomHeadsWrite is the statement writing the heads of the batch's rooms
// that AppendEvent advanced (PostgreSQL, tx.dirtyRooms not empty).
func (tx *Tx) roomHeadsWrite() write {
	var ids, latest []string
	var depth, group []int64
	for i, id := range tx.dirtyRooms {
		if slices.Contains(tx.dirtyRooms[:i], id) {
			continue
		}
		r := tx.locked[id]
		ids, latest, depth, group = append(ids, id), append(latest, r.LatestEventID), append(depth, r.Depth), append(group, r.StateGroup)
	}
	return write{"update rooms", `UPDATE rooms SET latest_event_id = v.latest, depth = v.depth, state_group = v.grp
		FROM unnest($1::text[], $2::text[], $3::bigint[], $4::bigint[]) AS v(room_id, latest, depth, grp) WHERE rooms.room_id = v.room_id`,
		[]any{ids, latest, depth, group}}
}

// maxStateChain bounds how many deltas are chained before a full snapshot.
const maxStateChain = 64

func (tx *Tx) newStateGroup(ctx context.Context, room *Room, key StateKeyTuple, eventID string) (int64, error) {
	var chain int
	if room.StateGroup != 0 {
		if err := tx.queryRow(ctx, `SELECT chain_len FROM state_groups WHERE group_id = ?`, room.StateGroup).Scan(&chain); err != nil {
			return 0, err
		}
	}
	if room.StateGroup != 0 && chain < maxStateChain {
		g, err := tx.insertReturningID(ctx, "group_id", `INSERT INTO state_groups (room_id, prev_group, chain_len) VALUES (?, ?, ?)`, room.RoomID, room.StateGroup, chain+1)
		if err != nil {
			return 0, err
		}
		_, err = tx.exec(ctx, `INSERT INTO state_group_entries (group_id, type, state_key, event_id) VALUES (?, ?, ?, ?)`, g, key.Type, key.StateKey, eventID)
		return g, err
	}
	// Full snapshot: the current state with this event applied.
	g, err := tx.insertReturningID(ctx, "group_id", `INSERT INTO state_groups (room_id, prev_group, chain_len) VALUES (?, NULL, 0)`, room.RoomID)
	if err != nil {
		return 0, err
	}
	if _, err := tx.exec(ctx, `INSERT INTO state_group_entries (group_id, type, state_key, event_id)
		SELECT ?, type, state_key, event_id FROM current_state WHERE room_id = ? AND NOT (type = ? AND state_key = ?)`,
		g, room.RoomID, key.Type, key.StateKey); err != nil {
		return 0, err
	}
	_, err = tx.exec(ctx, `INSERT INTO state_group_entries (group_id, type, state_key, event_id) VALUES (?, ?, ?, ?)`, g, key.Type, key.StateKey, eventID)
	return g, err
}

// stateGroupIDsSQL is StateGroupIDs' query: the chain of deltas from the
// group back to its full snapshot (at most maxStateChain+1 groups), then
// their entries, read through the primary key. On PostgreSQL the entries
// are selected with group_id = ANY(ARRAY(…)) rather than by joining the
// chain alone: in the generic plan of the prepared statement (which pgx
// reuses after five executions), the chain's size is unknown and the
// planner hashed the chain against a sequential scan of all of
// state_group_entries, whose size grows with the server: 60 ms per call
// at 3,000 users, against 0.6 ms through the index.
func stateGroupIDsSQL(d Dialect) string {
	q := `WITH RECURSIVE chain(gid, n) AS (
			SELECT group_id, 0 FROM state_groups WHERE group_id = ?
			UNION ALL
			SELECT s.prev_group, c.n + 1 FROM state_groups s JOIN chain c ON s.group_id = c.gid WHERE s.prev_group IS NOT NULL
		)
		SELECT e.type, e.state_key, e.event_id, c.n FROM chain c JOIN state_group_entries e ON e.group_id = c.gid`
	if d == Postgres {
		q += ` WHERE e.group_id = ANY(ARRAY(SELECT gid FROM chain))`
	}
	return q + ` ORDER BY c.n DESC`
}

// stateGroupLazyIDsSQL is StateGroupIDsLazy's query for n members: the
// chain of stateGroupIDsSQL, then, in each of its groups, the entries of
// every type before m.room.member and after it (two ranges of the primary
// key) and the member entries of the n users (n look-ups), never the
// other members' entries.
func stateGroupLazyIDsSQL(d Dialect, n int) string {
	// CROSS JOIN keeps SQLite's join order (the chain, then each group's
	// entries): left to itself, it scanned every group's member entries.
	entries := `SELECT e.type, e.state_key, e.event_id, c.n FROM chain c CROSS JOIN state_group_entries e WHERE e.group_id = c.gid AND `
	inChain := ``
	if d == Postgres {
		inChain = ` AND e.group_id = ANY(ARRAY(SELECT gid FROM chain))` // see stateGroupIDsSQL
	}
	return `WITH RECURSIVE chain(gid, n) AS (
			SELECT group_id, 0 FROM state_groups WHERE group_id = ?
			UNION ALL
			SELECT s.prev_group, c.n + 1 FROM state_groups s JOIN chain c ON s.group_id = c.gid WHERE s.prev_group IS NOT NULL
		)
		` + entries + `e.type < 'm.room.member'` + inChain + `
		UNION ALL ` + entries + `e.type > 'm.room.member'` + inChain + `
		UNION ALL ` + entries + `e.type = 'm.room.member' AND e.state_key IN (` + placeholders(n) + `)` + inChain + `
		ORDER BY 4 DESC`
}

// StateGroupIDsLazy is StateGroupIDs for lazy-loaded members: the state
// but the m.room.member entries of users other than members. Its cost
// follows the room's other state and members, not the room's size.
func (db *DB) StateGroupIDsLazy(ctx context.Context, group int64, members []string) (map[StateKeyTuple]string, error) {
	if group == 0 {
		return map[StateKeyTuple]string{}, nil
	}
	if len(members) == 0 {
		members = []string{""} // no user ID is empty
	}
	return db.stateGroupIDs(ctx, stateGroupLazyIDsSQL(db.dialect, len(members)), append([]any{group}, stringArgs(members)...)...)
}

// StateGroupIDs resolves a state group to its full state: a map from state
// key to event ID.
func (db *DB) StateGroupIDs(ctx context.Context, group int64) (map[StateKeyTuple]string, error) {
	if group == 0 {
		return map[StateKeyTuple]string{}, nil
	}
	return db.stateGroupIDs(ctx, stateGroupIDsSQL(db.dialect), group)
}

// stateGroupIDs runs a state group query returning (type, state key,
// event ID, depth in the chain), deepest first.
func (db *DB) stateGroupIDs(ctx context.Context, q string, args ...any) (map[StateKeyTuple]string, error) {
	out := map[StateKeyTuple]string{}
	rows, err := db.query(ctx, q, args...)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	for rows.Next() {
		var k StateKeyTuple
		var id string
		var n int
		if err := rows.Scan(&k.Type, &k.StateKey, &id, &n); err != nil {
			return nil, err
		}
		out[k] = id // later (smaller n) rows override earlier ones
	}
	return out, rows.Err()
}

// RedactEvent replaces an event's JSON with its redacted form and records
// the redaction that caused it.
func (tx *Tx) RedactEvent(ctx context.Context, eventID string, redactedJSON []byte, redactedBy string) error {
	// The event may be a published room's directory state.
	if sk := gjson.GetBytes(redactedJSON, "state_key"); sk.Type == gjson.String {
		key := sk.Str
		if isDirectoryState(gjson.GetBytes(redactedJSON, "type").Str, &key) {
			roomID := gjson.GetBytes(redactedJSON, "room_id").Str
			tx.AfterCommit(func() { tx.db.directoryState.invalidate(roomID) })
		}
	}
	_, err := tx.exec(ctx, `UPDATE events SET json = ?, redacted_by = ? WHERE event_id = ?`, string(redactedJSON), redactedBy, eventID)
	return err
}

// Membership is a user's current membership in a room.
type Membership struct {
	RoomID     string
	UserID     string
	Membership string
	EventID    string
	StreamPos  int64
	Forgotten  bool
}

func scanMemberships(rows *sql.Rows) ([]Membership, error) {
	defer rows.Close()
	var out []Membership
	for rows.Next() {
		var m Membership
		var f int
		if err := rows.Scan(&m.RoomID, &m.UserID, &m.Membership, &m.EventID, &m.StreamPos, &f); err != nil {
			return nil, err
		}
		m.Forgotten = f != 0
		out = append(out, m)
	}
	return out, rows.Err()
}

const membershipColumns = `room_id, user_id, membership, event_id, stream_pos, forgotten`

// UserMemberships returns the user's current memberships (all rooms, any
// membership, forgotten ones excluded).
func (db *DB) UserMemberships(ctx context.Context, userID string) ([]Membership, error) {
	rows, err := db.query(ctx, `SELECT `+membershipColumns+` FROM memberships WHERE user_id = ? AND forgotten = 0`, userID)
	if err != nil {
		return nil, err
	}
	return scanMemberships(rows)
}

// GetMembership returns a user's current membership in a room.
func (db *DB) GetMembership(ctx context.Context, roomID, userID string) (Membership, error) {
	rows, err := db.query(ctx, `SELECT `+membershipColumns+` FROM memberships WHERE room_id = ? AND user_id = ?`, roomID, userID)
	if err != nil {
		return Membership{}, err
	}
	ms, err := scanMemberships(rows)
	if err != nil {
		return Membership{}, err
	}
	if len(ms) == 0 {
		return Membership{}, ErrNotFound
	}
	return ms[0], nil
}

// RoomMembers returns the current memberships of a room, optionally
// restricted to one membership value.
func (db *DB) RoomMembers(ctx context.Context, roomID, membership string) ([]Membership, error) {
	q := `SELECT ` + membershipColumns + ` FROM memberships WHERE room_id = ?`
	args := []any{roomID}
	if membership != "" {
		q += ` AND membership = ?`
		args = append(args, membership)
	}
	rows, err := db.query(ctx, q+` ORDER BY user_id`, args...)
	if err != nil {
		return nil, err
	}
	return scanMemberships(rows)
}

// SharesRoom reports whether two users are both joined to some room.
func (db *DB) SharesRoom(ctx context.Context, a, b string) (bool, error) {
	var n int
	err := db.queryRow(ctx, `SELECT COUNT(*) FROM memberships m1 JOIN memberships m2 ON m1.room_id = m2.room_id
		WHERE m1.user_id = ? AND m2.user_id = ? AND m1.membership = 'join' AND m2.membership = 'join'`, a, b).Scan(&n)
	return n > 0, err
}

// ForgetRoom marks a left room as forgotten by the user.
func (tx *Tx) ForgetRoom(ctx context.Context, roomID, userID string) error {
	tx.membershipChanged(userID)
	_, err := tx.exec(ctx, `UPDATE memberships SET forgotten = 1 WHERE room_id = ? AND user_id = ?`, roomID, userID)
	return err
}

// membershipChangesSQL is MembershipChanges' query, through events_state.
const membershipChangesSQL = `SELECT ` + eventColumns + ` FROM events WHERE type = 'm.room.member' AND state_key = ? AND stream_pos > ? AND stream_pos <= ? ORDER BY stream_pos`

// MembershipChanges returns the user's own membership events with
// from < stream_pos <= to, oldest first.
func (db *DB) MembershipChanges(ctx context.Context, userID string, from, to int64) ([]Event, error) {
	if to <= from {
		return nil, nil
	}
	rows, err := db.query(ctx, membershipChangesSQL, userID, from, to)
	if err != nil {
		return nil, err
	}
	return scanEvents(rows)
}

// RoomsWithEventsBetween returns which of roomIDs have events with
// from < stream_pos <= to.
//
// A narrow window (no wider than a few stream positions per room asked
// about) is read by scanning it; a wider one by looking into each room.
func (db *DB) RoomsWithEventsBetween(ctx context.Context, roomIDs []string, from, to int64) (map[string]bool, error) {
	out := map[string]bool{}
	if to <= from || len(roomIDs) == 0 {
		return out, nil
	}
	if scanWindow(from, to) && to-from <= 8*int64(len(roomIDs)) {
		want := make(map[string]bool, len(roomIDs))
		for _, id := range roomIDs {
			want[id] = true
		}
		ids, err := db.strings(ctx, db.roomsInWindowSQL(), from, to)
		if err != nil {
			return nil, err
		}
		for _, id := range ids {
			if want[id] {
				out[id] = true
			}
		}
		return out, nil
	}
	for start := 0; start < len(roomIDs); start += 500 {
		end := min(start+500, len(roomIDs))
		args := []any{from, to}
		for _, id := range roomIDs[start:end] {
			args = append(args, id)
		}
		rows, err := db.query(ctx, `SELECT DISTINCT room_id FROM events WHERE stream_pos > ? AND stream_pos <= ? AND room_id IN (`+placeholders(end-start)+`)`, args...)
		if err != nil {
			return nil, err
		}
		for rows.Next() {
			var id string
			if err := rows.Scan(&id); err != nil {
				rows.Close()
				return nil, err
			}
			out[id] = true
		}
		rows.Close()
	}
	return out, nil
}

// AddAlias maps an alias to a room.
func (tx *Tx) AddAlias(ctx context.Context, alias, roomID, creator string, ts int64) error {
	_, err := tx.exec(ctx, `INSERT INTO room_aliases (alias, room_id, creator, created_ts) VALUES (?, ?, ?, ?)`, alias, roomID, creator, ts)
	if isUniqueViolation(err) {
		return ErrRoomExists
	}
	return err
}

// ResolveAlias returns the room and creator of an alias.
func (db *DB) ResolveAlias(ctx context.Context, alias string) (roomID, creator string, err error) {
	err = db.queryRow(ctx, `SELECT room_id, creator FROM room_aliases WHERE alias = ?`, alias).Scan(&roomID, &creator)
	return roomID, creator, notFound(err)
}

// RoomAliases lists the local aliases of a room.
func (db *DB) RoomAliases(ctx context.Context, roomID string) ([]string, error) {
	return db.strings(ctx, `SELECT alias FROM room_aliases WHERE room_id = ? ORDER BY alias`, roomID)
}

// DeleteAlias removes an alias.
func (tx *Tx) DeleteAlias(ctx context.Context, alias string) error {
	_, err := tx.exec(ctx, `DELETE FROM room_aliases WHERE alias = ?`, alias)
	return err
}

// TxnResult returns the stored result of an earlier request with the same
// transaction ID, or ErrNotFound.
func (db *DB) TxnResult(ctx context.Context, userID, deviceID, scope, txnID string) (string, error) {
	var r string
	err := db.queryRow(ctx, `SELECT result FROM txn_ids WHERE user_id = ? AND device_id = ? AND scope = ? AND txn_id = ?`, userID, deviceID, scope, txnID).Scan(&r)
	return r, notFound(err)
}

// TxnResultTx is TxnResult inside a write transaction.
func (tx *Tx) TxnResult(ctx context.Context, userID, deviceID, scope, txnID string) (string, error) {
	var r string
	err := tx.queryRow(ctx, `SELECT result FROM txn_ids WHERE user_id = ? AND device_id = ? AND scope = ? AND txn_id = ?`, userID, deviceID, scope, txnID).Scan(&r)
	return r, notFound(err)
}

// PutTxnResult records the result of a request for its transaction ID.
func (tx *Tx) PutTxnResult(ctx context.Context, userID, deviceID, scope, txnID, result string, ts int64) error {
	_, err := tx.exec(ctx, `INSERT INTO txn_ids (user_id, device_id, scope, txn_id, result, created_ts) VALUES (?, ?, ?, ?, ?, ?)`,
		userID, deviceID, scope, txnID, result, ts)
	return err
}

// ClaimTxn records result for a request's transaction ID unless one is
// recorded already, in which case it returns that earlier result (and
// records nothing): one statement where TxnResult then PutTxnResult take
// two.
func (tx *Tx) ClaimTxn(ctx context.Context, userID, deviceID, scope, txnID, result string, ts int64) (prev string, err error) {
	if prev, ok, err := tx.claimedTxn(tx.unit, txnKey{userID, deviceID, scope, txnID}, result); ok {
		return prev, err // claimed with the batch (see BatchAsyncClaim)
	}
	res, err := tx.exec(ctx, `INSERT INTO txn_ids (user_id, device_id, scope, txn_id, result, created_ts) VALUES (?, ?, ?, ?, ?, ?)
		ON CONFLICT (user_id, device_id, scope, txn_id) DO NOTHING`, userID, deviceID, scope, txnID, result, ts)
	if err != nil {
		return "", err
	}
	if n, err := res.RowsAffected(); err != nil || n == 1 {
		return "", err
	}
	return tx.TxnResult(ctx, userID, deviceID, scope, txnID)
}

// NextStreamPos advances a named non-event stream and returns its new position.
func (tx *Tx) NextStreamPos(ctx context.Context, name string) (int64, error) {
	var p int64
	err := tx.queryRow(ctx, `UPDATE stream_positions SET pos = pos + 1 WHERE name = ? RETURNING pos`, name).Scan(&p)
	return p, err
}

// StreamPos returns a named stream's current position.
func (db *DB) StreamPos(ctx context.Context, name string) (int64, error) {
	var p int64
	err := db.queryRow(ctx, `SELECT pos FROM stream_positions WHERE name = ?`, name).Scan(&p)
	return p, err
}

// StateHistory returns the state events of one type (and state key, unless
// stateKey is nil) in a room, oldest first.
func (db *DB) StateHistory(ctx context.Context, roomID, evType string, stateKey *string) ([]Event, error) {
	args := []any{roomID, evType}
	if stateKey != nil {
		args = append(args, *stateKey)
	}
	rows, err := db.query(ctx, stateHistorySQL(stateKey != nil), args...)
	if err != nil {
		return nil, err
	}
	return scanEvents(rows)
}

// stateHistorySQL is StateHistory's query, for one state key or all.
func stateHistorySQL(withKey bool) string {
	q := `SELECT ` + eventColumns + ` FROM events WHERE room_id = ? AND type = ? AND state_key IS NOT NULL`
	if withKey {
		q += ` AND state_key = ?`
	}
	return q + ` ORDER BY stream_pos`
}
