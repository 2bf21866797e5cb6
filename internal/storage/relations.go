package storage

import (
	"context"
	"strings"
)

// RelationQuery selects the child events of an event for the relations
// API: events in RoomID relating to EventID (directly, or up to Depth hops
// away when Depth > 1), optionally of one relation type and event type,
// with From < stream_pos <= To. Redacted children are left out: a
// redaction removes the relation.
type RelationQuery struct {
	RoomID    string
	EventID   string
	RelType   string
	EventType string
	From, To  int64
	Limit     int
	Backwards bool
	Depth     int
}

// RelatedEvents returns the child events selected by q, newest first when
// q.Backwards, otherwise oldest first.
func (db *DB) RelatedEvents(ctx context.Context, q RelationQuery) ([]Event, error) {
	var b strings.Builder
	var args []any
	if q.Depth > 1 {
		// UNION (not UNION ALL) drops repeated rows, so relation cycles
		// end; the depth bound stops long chains.
		b.WriteString(`WITH RECURSIVE rel(event_id, depth) AS (
			SELECT event_id, 1 FROM events WHERE relates_to = ? AND room_id = ? AND redacted_by IS NULL
			UNION
			SELECT e.event_id, r.depth + 1 FROM events e JOIN rel r ON e.relates_to = r.event_id
			WHERE r.depth < ? AND e.room_id = ? AND e.redacted_by IS NULL
		) SELECT ` + eventColumns + ` FROM events WHERE event_id IN (SELECT event_id FROM rel)`)
		args = append(args, q.EventID, q.RoomID, q.Depth, q.RoomID)
	} else {
		b.WriteString(`SELECT ` + eventColumns + ` FROM events WHERE relates_to = ? AND room_id = ? AND redacted_by IS NULL`)
		args = append(args, q.EventID, q.RoomID)
	}
	b.WriteString(` AND stream_pos > ? AND stream_pos <= ?`)
	args = append(args, q.From, q.To)
	if q.RelType != "" {
		b.WriteString(` AND rel_type = ?`)
		args = append(args, q.RelType)
	}
	if q.EventType != "" {
		b.WriteString(` AND type = ?`)
		args = append(args, q.EventType)
	}
	if q.Backwards {
		b.WriteString(` ORDER BY stream_pos DESC LIMIT ?`)
	} else {
		b.WriteString(` ORDER BY stream_pos ASC LIMIT ?`)
	}
	args = append(args, q.Limit)
	rows, err := db.query(ctx, b.String(), args...)
	if err != nil {
		return nil, err
	}
	return scanEvents(rows)
}

// ThreadRoot is a thread of a room: its root event and the stream
// position of its latest reply.
type ThreadRoot struct {
	RootID string
	Latest int64
}

// ThreadRoots lists the threads of a room by latest reply, newest first:
// threads whose latest reply (at or before upTo) is before `before`. With
// participant set, only threads that user started or replied to.
func (db *DB) ThreadRoots(ctx context.Context, roomID, participant string, upTo, before int64, limit int) ([]ThreadRoot, error) {
	args := []any{roomID, upTo, before}
	if participant != "" {
		args = append(args, participant, roomID, participant)
	}
	args = append(args, limit)
	rows, err := db.query(ctx, threadRootsSQL(participant != ""), args...)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []ThreadRoot
	for rows.Next() {
		var t ThreadRoot
		if err := rows.Scan(&t.RootID, &t.Latest); err != nil {
			return nil, err
		}
		out = append(out, t)
	}
	return out, rows.Err()
}

// ThreadSummary aggregates the m.thread children of one thread root.
type ThreadSummary struct {
	Count        int
	Latest       int64 // stream position of the latest reply
	Participated bool  // the user replied in the thread
}

// threadSummariesSQL is ThreadSummaries' query for n roots, through
// events_relates_to.
func threadSummariesSQL(n int) string {
	return `SELECT relates_to, COUNT(*), MAX(stream_pos), SUM(CASE WHEN sender = ? THEN 1 ELSE 0 END)
		FROM events WHERE relates_to IN (` + placeholders(n) + `) AND rel_type = 'm.thread' AND redacted_by IS NULL AND stream_pos <= ?
		GROUP BY relates_to`
}

// ThreadSummaries aggregates the thread replies (at or before upTo) of
// the given roots, keyed by root event ID; roots without replies are absent.
func (db *DB) ThreadSummaries(ctx context.Context, rootIDs []string, userID string, upTo int64) (map[string]ThreadSummary, error) {
	out := map[string]ThreadSummary{}
	for start := 0; start < len(rootIDs); start += 500 {
		end := min(start+500, len(rootIDs))
		args := []any{userID}
		for _, id := range rootIDs[start:end] {
			args = append(args, id)
		}
		args = append(args, upTo)
		rows, err := db.query(ctx, threadSummariesSQL(end-start), args...)
		if err != nil {
			return nil, err
		}
		for rows.Next() {
			var id string
			var s ThreadSummary
			var mine int64
			if err := rows.Scan(&id, &s.Count, &s.Latest, &mine); err != nil {
				rows.Close()
				return nil, err
			}
			s.Participated = mine > 0
			out[id] = s
		}
		rows.Close()
		if err := rows.Err(); err != nil {
			return nil, err
		}
	}
	return out, nil
}

// Replacements returns the unredacted m.replace children (at or before
// upTo) of the given events, for bundling the latest edit.
func (db *DB) Replacements(ctx context.Context, eventIDs []string, upTo int64) ([]Event, error) {
	var out []Event
	for start := 0; start < len(eventIDs); start += 500 {
		end := min(start+500, len(eventIDs))
		args := make([]any, 0, end-start+1)
		for _, id := range eventIDs[start:end] {
			args = append(args, id)
		}
		args = append(args, upTo)
		rows, err := db.query(ctx, `SELECT `+eventColumns+` FROM events WHERE relates_to IN (`+placeholders(end-start)+`)
			AND rel_type = 'm.replace' AND redacted_by IS NULL AND stream_pos <= ? ORDER BY stream_pos`, args...)
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

// EventsAtPositions loads events by stream position.
func (db *DB) EventsAtPositions(ctx context.Context, positions []int64) ([]Event, error) {
	var out []Event
	for start := 0; start < len(positions); start += 500 {
		end := min(start+500, len(positions))
		args := make([]any, 0, end-start)
		for _, p := range positions[start:end] {
			args = append(args, p)
		}
		rows, err := db.query(ctx, `SELECT `+eventColumns+` FROM events WHERE stream_pos IN (`+placeholders(end-start)+`)`, args...)
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

// ReceiptPosition returns the stream position of the event a user's
// receipt of one type and thread points at, or 0 when there is none.
// Receipts only move forward; the receipts handler compares against it.
func (db *DB) ReceiptPosition(ctx context.Context, roomID, receiptType, userID, threadID string) (int64, error) {
	var pos int64
	err := db.queryRow(ctx, `SELECT e.stream_pos FROM receipts r JOIN events e ON e.event_id = r.event_id
		WHERE r.room_id = ? AND r.receipt_type = ? AND r.user_id = ? AND r.thread_id = ?`, roomID, receiptType, userID, threadID).Scan(&pos)
	if err := notFound(err); err == ErrNotFound {
		return 0, nil
	}
	return pos, err
}

// RelationTargets returns which of eventIDs have unredacted m.replace or
// m.thread children: a cheap check before bundling aggregations.
func (db *DB) RelationTargets(ctx context.Context, eventIDs []string) (map[string]bool, error) {
	out := map[string]bool{}
	for start := 0; start < len(eventIDs); start += 500 {
		end := min(start+500, len(eventIDs))
		args := make([]any, 0, end-start)
		for _, id := range eventIDs[start:end] {
			args = append(args, id)
		}
		rows, err := db.query(ctx, `SELECT DISTINCT relates_to FROM events WHERE relates_to IN (`+placeholders(end-start)+`)
			AND rel_type IN ('m.replace', 'm.thread') AND redacted_by IS NULL`, args...)
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
		if err := rows.Err(); err != nil {
			return nil, err
		}
	}
	return out, nil
}

// threadRootsSQL is ThreadRoots' query, with the participant condition or
// not. It reads the room's thread replies through events_room_rel, which
// holds only events with a relation (migration 014).
func threadRootsSQL(withParticipant bool) string {
	q := `SELECT relates_to, MAX(stream_pos) FROM events
		WHERE room_id = ? AND rel_type = 'm.thread' AND redacted_by IS NULL AND stream_pos <= ?
		GROUP BY relates_to HAVING MAX(stream_pos) < ?`
	if withParticipant {
		q += ` AND (SUM(CASE WHEN sender = ? THEN 1 ELSE 0 END) > 0
			OR relates_to IN (SELECT event_id FROM events WHERE room_id = ? AND sender = ?))`
	}
	return q + ` ORDER BY MAX(stream_pos) DESC LIMIT ?`
}
