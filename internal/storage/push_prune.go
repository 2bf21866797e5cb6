package storage

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"time"
)

// Old notifications. event_push_actions gets a row per notified member of
// every message, and nothing deleted them: the table grew with the
// server's history, not with what its users have left to read. The rows
// serve two reads:
//   - unread counts, which count the rows after the member's read position
//     in the room (per thread, see UnreadCounts);
//   - GET /notifications, which lists a member's rows, read or not.
//
// A row at or before its read position no longer counts, so once it is
// older than notificationRetention it is deleted: the notification list
// keeps a month of history, as Synapse keeps highlights (its other rows go
// after a day, once summarised). Unread rows are kept whatever their age,
// since the counts are made of them. Rows still staged (push_staged.go)
// are left alone: that table stays near moveStagedAt rows.
//
// Once a day the pruner walks the read receipts in key order, a page per
// transaction with a pause between pages, and deletes each (room, user)
// pair's read rows up to the cutoff through the primary key. The cutoff
// is the stream position of the last event older than the retention,
// found by a binary search over the events' positions and timestamps
// (local events' timestamps grow with their positions).
const (
	notificationRetention = 30 * 24 * time.Hour
	// pushPruneEvery is how often the pruner walks the receipts: a month's
	// retention needs no finer grain, and a walk reads every read
	// receipt of the server (some 3 million for 300,000 users in ten
	// rooms each: 15,000 pages, a quarter of an hour with the pauses).
	pushPruneEvery = 24 * time.Hour
)

// The walk's pages (variables so that tests can shorten them).
var (
	// pushPrunePairs is how many read receipts (so at most as many
	// (room, user) pairs) one transaction of the pruner handles.
	pushPrunePairs = 200
	// pushPrunePause is the pause between two pages, so that the walk
	// never holds the writer or the readers for long.
	pushPrunePause = 50 * time.Millisecond
)

// PrunePushActions deletes the push actions older than
// now - notificationRetention that their user has read, and returns how
// many it deleted.
func (db *DB) PrunePushActions(ctx context.Context, now time.Time) (int64, error) {
	cutoff, err := db.lastStreamPosBefore(ctx, now.Add(-notificationRetention).UnixMilli())
	if err != nil || cutoff == 0 {
		return 0, err
	}
	var total int64
	var after receiptKey
	for {
		pairs, next, err := db.readPairsAfter(ctx, after, pushPrunePairs)
		if err != nil {
			return total, err
		}
		var n int64
		if len(pairs) > 0 {
			err = db.WithTx(ctx, func(tx *Tx) error {
				n = 0
				for _, p := range pairs {
					d, err := tx.pruneReadPushActions(ctx, p, cutoff)
					if err != nil {
						return err
					}
					n += d
				}
				return nil
			})
		}
		if err != nil {
			return total, fmt.Errorf("prune push actions: %w", err)
		}
		total += n
		if next == nil {
			return total, nil
		}
		after = *next
		select {
		case <-ctx.Done():
			return total, ctx.Err()
		case <-time.After(pushPrunePause):
		}
	}
}

// readPair is a (room, user) pair with read receipts.
type readPair struct{ room, user string }

// readPairPositions is a pair and its read positions.
type readPairPositions struct {
	readPair
	pos ReadPositions
}

// receiptKey is the primary key of a receipt: where the next page starts.
type receiptKey struct{ room, typ, user, thread string }

// readReceiptsAfterSQL lists the next read receipts after a key, in key
// order.
const readReceiptsAfterSQL = `SELECT room_id, receipt_type, user_id, thread_id FROM receipts
	WHERE (room_id, receipt_type, user_id, thread_id) > (?, ?, ?, ?) AND receipt_type IN ('m.read', 'm.read.private')
	ORDER BY room_id, receipt_type, user_id, thread_id LIMIT ?`

// readPairsAfter returns the pairs of the next limit read receipts after
// after (a pair with several receipts comes once per page, or again on a
// later page, which prunes nothing more), with their read positions, and
// the key the next page starts after (nil at the end).
func (db *DB) readPairsAfter(ctx context.Context, after receiptKey, limit int) ([]readPairPositions, *receiptKey, error) {
	rows, err := db.query(ctx, readReceiptsAfterSQL, after.room, after.typ, after.user, after.thread, limit)
	if err != nil {
		return nil, nil, err
	}
	var keys []receiptKey
	for rows.Next() {
		var k receiptKey
		if err := rows.Scan(&k.room, &k.typ, &k.user, &k.thread); err != nil {
			rows.Close()
			return nil, nil, err
		}
		keys = append(keys, k)
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return nil, nil, err
	}
	var out []readPairPositions
	seen := map[readPair]bool{}
	for _, k := range keys {
		p := readPair{k.room, k.user}
		if seen[p] {
			continue
		}
		seen[p] = true
		rp, err := db.UserReadPositions(ctx, p.room, p.user)
		if err != nil {
			return nil, nil, err
		}
		out = append(out, readPairPositions{readPair: p, pos: rp})
	}
	var next *receiptKey
	if len(keys) == limit {
		next = &keys[len(keys)-1]
	}
	return out, next, nil
}

// pruneReadPushActions deletes a pair's rows up to cutoff that its read
// positions cover: every thread's up to the unthreaded position, and a
// thread's up to its own when that is further.
func (tx *Tx) pruneReadPushActions(ctx context.Context, p readPairPositions, cutoff int64) (int64, error) {
	var n int64
	del := func(q string, args ...any) error {
		res, err := tx.exec(ctx, q, args...)
		if err != nil {
			return err
		}
		d, err := res.RowsAffected()
		n += d
		return err
	}
	if upTo := min(cutoff, p.pos.Unthreaded); upTo > 0 {
		if err := del(pruneReadPushActionsSQL, p.user, p.room, upTo); err != nil {
			return n, err
		}
	}
	for thread, pos := range p.pos.Threads {
		if pos <= p.pos.Unthreaded {
			continue
		}
		if err := del(pruneReadPushActionsSQL+` AND thread_id = ?`, p.user, p.room, min(cutoff, pos), thread); err != nil {
			return n, err
		}
	}
	return n, nil
}

// pruneReadPushActionsSQL deletes a user's rows in a room up to a position
// (the caller may add a thread).
const pruneReadPushActionsSQL = `DELETE FROM event_push_actions WHERE user_id = ? AND room_id = ? AND stream_pos <= ?`

// lastStreamPosBefore returns the stream position of the last event with a
// timestamp before ts (0 when there is none), by binary search over the
// positions: the timestamps of local events grow with their positions.
func (db *DB) lastStreamPosBefore(ctx context.Context, ts int64) (int64, error) {
	var lo, hi sql.NullInt64
	if err := db.queryRow(ctx, `SELECT MIN(stream_pos), MAX(stream_pos) FROM events`).Scan(&lo, &hi); err != nil || !lo.Valid {
		return 0, err
	}
	// Every event before l is older than ts, every event after h is not;
	// found is the last event seen older than ts.
	l, h, found := lo.Int64, hi.Int64, int64(0)
	for l <= h {
		mid := l + (h-l)/2
		var pos, ets int64
		err := db.queryRow(ctx, firstEventFromSQL, mid).Scan(&pos, &ets)
		if errors.Is(err, sql.ErrNoRows) {
			h = mid - 1
			continue
		}
		if err != nil {
			return 0, err
		}
		if ets < ts {
			found, l = pos, pos+1
		} else {
			h = mid - 1
		}
	}
	return found, nil
}

// firstEventFromSQL reads the first event at or after a position.
const firstEventFromSQL = `SELECT stream_pos, origin_server_ts FROM events WHERE stream_pos >= ? ORDER BY stream_pos LIMIT 1`
