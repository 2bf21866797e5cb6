package storage

import (
	"context"
	"maps"
	"sync"
)

// Unread counts without recounting a room's history. A member's unread
// notification count in a room is the number of their push actions after
// their read position, and counting them reads every such row: a member
// who never reads a busy room (a thousand-member announcement room, say)
// has a row per message there, and each /sync that carries a new message
// of that room counted them all again (1 µs a row: 10 ms at 10,000 unread
// rows, 140 ms at 100,000, for each syncing member at each message).
//
// So a count of many rows is kept with what it was computed from: the
// member's read positions in the room and the event stream position it
// counted up to. The next count of that room adds the rows after that
// position to it, provided that
//   - the member's read positions are unchanged (a receipt starts over);
//   - no redaction was stored in the room since: a redaction deletes its
//     event's push actions (pushrules' EventStored), which may have been
//     counted already.
//
// Nothing else deletes rows after a read position (the pruner deletes read
// rows only, push_prune.go), and rows are added only with their event, at
// a stream position above every earlier one, so the rows at or below a
// counted position never change otherwise. Each check reads the database
// in the same statement as the rows it adds, so the counts hold for
// several processes sharing a database as for one.
type unreadCache struct {
	mu      sync.Mutex
	entries map[unreadKey]unreadEntry
}

type unreadKey struct{ user, room string }

// unreadEntry is a room's counts for a member, by thread, counted up to
// the event stream position upTo from the read positions read.
type unreadEntry struct {
	read   ReadPositions
	upTo   int64
	counts map[string]NotificationCounts
}

const (
	// unreadCacheMin is the fewest notifications worth keeping a count
	// of: below it, counting the rows again costs about what the checks
	// do.
	unreadCacheMin = 128
	// unreadCacheMax bounds the counts kept (a few hundred bytes each);
	// past it, the cache starts over.
	unreadCacheMax = 20_000
)

func (c *unreadCache) get(user, room string) (unreadEntry, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	e, ok := c.entries[unreadKey{user, room}]
	return e, ok
}

// put keeps a room's counts for a member if they are many, and forgets
// them otherwise. The entry's maps are the cache's own from then on.
func (c *unreadCache) put(user, room string, e unreadEntry) {
	total := 0
	for _, n := range e.counts {
		total += n.Notifications
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	k := unreadKey{user, room}
	if total < unreadCacheMin {
		delete(c.entries, k)
		return
	}
	if c.entries == nil || len(c.entries) >= unreadCacheMax {
		c.entries = make(map[unreadKey]unreadEntry)
	}
	c.entries[k] = e
}

// keepUnread keeps the counts of rooms counted in full up to upTo, with
// the read positions they were counted from.
func (db *DB) keepUnread(userID string, upTo int64, rps map[string]*ReadPositions, counted []string, out map[string]map[string]NotificationCounts) {
	for _, room := range counted {
		rp := ReadPositions{Threads: map[string]int64{}}
		if p := rps[room]; p != nil {
			rp.Unthreaded = p.Unthreaded
			maps.Copy(rp.Threads, p.Threads)
		}
		// A receipt for an event above upTo (stored between the two
		// reads) would make rows below it look unread to the next count.
		if rp.Unthreaded > upTo || maxPos(rp.Threads) > upTo {
			continue
		}
		db.unread.put(userID, room, unreadEntry{read: rp, upTo: upTo, counts: maps.Clone(out[room])})
	}
}

func maxPos(m map[string]int64) int64 {
	var p int64
	for _, v := range m {
		p = max(p, v)
	}
	return p
}

// unreadIncrements adds to out the counts of the rooms with a kept count
// that still holds, brought up to upTo, and returns the other rooms, to be
// counted in full.
func (db *DB) unreadIncrements(ctx context.Context, userID string, roomIDs []string, upTo int64, out map[string]map[string]NotificationCounts) ([]string, error) {
	var full []string
	for _, room := range roomIDs {
		e, ok := db.unread.get(userID, room)
		if !ok {
			full = append(full, room)
			continue
		}
		counts, ok, err := db.unreadIncrement(ctx, userID, room, e, upTo)
		if err != nil {
			return nil, err
		}
		if !ok {
			full = append(full, room)
			continue
		}
		if len(counts) > 0 {
			out[room] = counts
		}
	}
	return full, nil
}

// unreadIncrement returns a member's counts in a room from a kept entry and
// the rows after it up to upTo, or false if the entry no longer holds.
func (db *DB) unreadIncrement(ctx context.Context, userID, room string, e unreadEntry, upTo int64) (map[string]NotificationCounts, bool, error) {
	from := e.upTo
	if upTo < from {
		// Counted further by a more recent read: count from the entry
		// all the same, which includes rows up to its own position.
		upTo = from
	}
	rows, err := db.query(ctx, unreadIncrementSQL, room, userID, room, from, upTo, userID, room, from, upTo, room, userID, from, upTo)
	if err != nil {
		return nil, false, err
	}
	defer rows.Close()
	read := ReadPositions{Threads: map[string]int64{}}
	counts := maps.Clone(e.counts)
	if counts == nil {
		counts = map[string]NotificationCounts{}
	}
	redacted := false
	for rows.Next() {
		var kind, t string
		var n, highlights int64
		if err := rows.Scan(&kind, &t, &n, &highlights); err != nil {
			return nil, false, err
		}
		switch kind {
		case "read":
			if t == "" {
				read.Unthreaded = n
			} else {
				read.Threads[t] = n
			}
		case "redacted":
			redacted = n > 0
		default: // every row after from is after every read position
			if n > 0 {
				c := counts[t]
				c.Notifications += int(n)
				c.Highlights += int(highlights)
				counts[t] = c
			}
		}
	}
	if err := rows.Err(); err != nil {
		return nil, false, err
	}
	if redacted || read.Unthreaded != e.read.Unthreaded || !maps.Equal(read.Threads, e.read.Threads) {
		return nil, false, nil
	}
	if upTo > from {
		db.unread.put(userID, room, unreadEntry{read: e.read, upTo: upTo, counts: maps.Clone(counts)})
	}
	return counts, true, nil
}

// unreadIncrementSQL reads, in one snapshot, a member's read positions in
// a room (kind "read", thread "" for the unthreaded receipt), whether a
// redaction was stored in the room in (from, to] ("redacted"), and the
// member's push actions in (from, to] by thread in both tables ("count").
// Arguments: room, user; room, from, to; user, room, from, to; room, user,
// from, to.
const unreadIncrementSQL = `SELECT 'read', r.thread_id, MAX(e.stream_pos), 0 FROM receipts r JOIN events e ON e.event_id = r.event_id
		WHERE r.room_id = ? AND r.user_id = ? AND r.receipt_type IN ('m.read', 'm.read.private') GROUP BY r.thread_id
	UNION ALL
	SELECT 'redacted', '', COUNT(*), 0 FROM events WHERE room_id = ? AND stream_pos > ? AND stream_pos <= ? AND type = 'm.room.redaction'
	UNION ALL
	SELECT 'count', thread_id, COUNT(*), COALESCE(SUM(highlight), 0) FROM event_push_actions
		WHERE user_id = ? AND room_id = ? AND stream_pos > ? AND stream_pos <= ? GROUP BY thread_id
	UNION ALL
	SELECT 'count', thread_id, COUNT(*), COALESCE(SUM(highlight), 0) FROM event_push_staged
		WHERE room_id = ? AND user_id = ? AND stream_pos > ? AND stream_pos <= ? GROUP BY thread_id`
