package storage

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"sync"
	"time"
)

// Push actions in two steps (migration 016), on SQLite. A send's push
// actions go to
// event_push_staged, keyed by room, user and position, where a message's
// rows share a page with each other and with the room's next messages'.
// event_push_actions, keyed by user, room and position, is what the reads
// are shaped for, but there each notified member's rows are on a page of
// their own: writing them per message dirtied one page per recipient,
// about half of the pages an ordinary send committed on SQLite (measured
// with rempart-walpages: 176 of 370 pages per commit of ~47 messages into
// rooms of 2–6 members).
//
// Once moveStagedAt rows wait, the committer moves a chunk of them into
// event_push_actions between two batches, in that table's key order and in
// one transaction: a member who got many messages in a room since the rows
// were staged has them written on their page once. Chunks follow the
// staged key round robin, so every room's rows get their turn, and are
// small enough (moveChunk rows, about 15 ms on SQLite; never more than
// moveChunkMax) not to hold the queued sends for long; moving 8,000 rows
// at once took 50–100 ms.
//
// A row is always in exactly one of the two tables (a chunk is inserted
// and deleted in one transaction), and every read takes both, each
// through its primary key: unread counts, GET /notifications and the
// deletion of a redacted event's rows. The staged table stays small, so
// reading it costs a seek into a few hundred pages. Nothing is lost when
// the server stops with rows staged: they are read from there until moved.
//
// PostgreSQL writes push actions straight to event_push_actions: it logs
// rows, not pages, and the staged table's churn (every row inserted and
// deleted again) cost more than it saved there. Measured alternating on
// one data set, staging gave 1,869 and 1,919 events/s against 2,377 and
// 2,560 writing straight, and 32–38 against 44–52 into 1,000-member rooms
// (autovacuum off, as on the benchmark machine). Its reads take the empty
// staged table too, one index probe.

const (
	// moveStagedAt is how many staged rows make the committer move some.
	// At ~110 bytes a row the staged table stays near a megabyte; a room
	// of a few members gets tens of messages before its rows move.
	moveStagedAt = 8192
	// moveChunk is the fewest rows one move takes; a move takes more when
	// the staged rows passed moveStagedAt by more (a batch of messages to
	// big rooms), so that the table does not grow under a sustained load.
	moveChunk = 2048
	// moveChunkMax bounds what a move takes beyond the rows staged since
	// the previous move: a backlog (the rows staged when the server last
	// stopped) moves a bounded chunk after each batch rather than in one
	// transaction that holds every queued send. In the benchmark, 87,588
	// rows left staged by the previous run moved in one transaction at
	// start-up: 1.05 s during which no send was acknowledged. A row costs
	// about as much in a chunk of 2,048 as in one of 87,588 (15–19 and 12 µs),
	// so chunks lose little. The rows staged since the previous move always
	// move: bounding them too let the table grow without end under
	// messages to 1,000-member rooms (278,000 rows after a 15 s send, the
	// work only put off).
	moveChunkMax = 4 * moveChunk
)

// stagedKey is a key of event_push_staged: where the next chunk starts.
type stagedKey struct {
	room, user string
	pos        int64
}

// stagedMover is the move's round-robin position, and when a move last
// failed.
type stagedMover struct {
	mu       sync.Mutex
	cursor   *stagedKey // nil: from the start of the table
	failedAt time.Time
	failures int
}

// moveRetryAfter is how long the committer waits after a failed move
// before the next try, rather than trying again after every batch.
const moveRetryAfter = time.Second

// countStagedActs sets stagedActs from the table, at start-up.
func (db *DB) countStagedActs(ctx context.Context) error {
	var n int64
	if err := db.queryRow(ctx, `SELECT COUNT(*) FROM event_push_staged`).Scan(&n); err != nil {
		return fmt.Errorf("count staged push actions: %w", err)
	}
	db.stagedActs.Store(n)
	return nil
}

// moveStagedActsIfDue moves a chunk of staged push actions when enough
// wait. The group committer calls it between batches, where it has the
// writer to itself on SQLite. A failure leaves the rows staged, where they
// are read as well, for a try moveRetryAfter later.
func (db *DB) moveStagedActsIfDue() {
	n := db.stagedActs.Load()
	if n < moveStagedAt {
		return
	}
	db.mover.mu.Lock()
	wait := !db.mover.failedAt.IsZero() && time.Since(db.mover.failedAt) < moveRetryAfter
	db.mover.mu.Unlock()
	if wait {
		return
	}
	inflow := db.stagedInflow.Swap(0)
	_, err := db.moveStagedChunk(context.Background(), moveChunkFor(n, inflow))
	db.mover.mu.Lock()
	defer db.mover.mu.Unlock()
	if err != nil {
		db.stagedInflow.Add(inflow) // still to move
		if db.mover.failedAt.IsZero() {
			// Once per run of failures: the rows stay staged and read, but
			// the table grows until a move succeeds.
			slog.Error("moving staged push actions failed; retrying every second", "staged", n, "err", err)
		}
		db.mover.failedAt = time.Now()
		db.mover.failures++
	} else {
		if !db.mover.failedAt.IsZero() {
			slog.Info("moving staged push actions works again", "staged", n)
		}
		db.mover.failedAt = time.Time{}
	}
}

// moveChunkFor is how many rows a move takes when n are staged, inflow of
// them since the previous move: what exceeds moveStagedAt and a chunk
// more, but no more than the inflow or moveChunkMax, whichever is larger,
// and at least moveChunk.
func moveChunkFor(n, inflow int64) int64 {
	return max(moveChunk, min(n-moveStagedAt+moveChunk, max(moveChunkMax, inflow)))
}

// MoveStagedPushActions moves every staged push action into
// event_push_actions and returns how many rows it moved.
func (db *DB) MoveStagedPushActions(ctx context.Context) (int64, error) {
	db.mover.mu.Lock()
	db.mover.cursor = nil
	db.mover.mu.Unlock()
	return db.moveStagedChunk(ctx, math.MaxInt64)
}

// moveStagedChunk moves up to limit staged rows, the next ones in key
// order after the last chunk's (from the start once the end is reached).
func (db *DB) moveStagedChunk(ctx context.Context, limit int64) (int64, error) {
	db.mover.mu.Lock()
	defer db.mover.mu.Unlock()
	from := db.mover.cursor
	var moved int64
	var last *stagedKey
	if db.dialect != SQLite {
		return 0, nil // nothing is staged on PostgreSQL
	}
	// The committer calls this between two batches: it does not wait for
	// the log sync (which the next batch's commit joins), during which no
	// batch would run. A move lost in a crash leaves its rows staged.
	err := db.withTx(ctx, func(tx *Tx) error {
		var err error
		moved, last, err = tx.moveStagedSQLite(ctx, from, limit)
		return err
	}, false)
	if err != nil {
		return 0, fmt.Errorf("move staged push actions: %w", err)
	}
	if moved < limit {
		last = nil // the end of the table: start again from its beginning
	}
	db.mover.cursor = last
	if db.stagedActs.Add(-moved) < 0 {
		db.stagedActs.Store(0)
	}
	return moved, nil
}

// moveStagedSQLite is a chunk's move, on SQLite's one writer: nothing
// commits between its statements, so the rows deleted are those copied.
func (tx *Tx) moveStagedSQLite(ctx context.Context, from *stagedKey, limit int64) (int64, *stagedKey, error) {
	after, args := ``, []any{}
	if from != nil {
		after, args = ` AND (room_id, user_id, stream_pos) > (?, ?, ?)`, []any{from.room, from.user, from.pos}
	}
	// The chunk's last key, unless fewer rows than limit remain.
	var last *stagedKey
	if limit < math.MaxInt64 {
		var k stagedKey
		err := tx.queryRow(ctx, `SELECT room_id, user_id, stream_pos FROM event_push_staged WHERE 1 = 1`+after+`
			ORDER BY room_id, user_id, stream_pos LIMIT 1 OFFSET ?`, append(args, limit-1)...).Scan(&k.room, &k.user, &k.pos)
		switch {
		case err == nil:
			last = &k
		case !errors.Is(err, sql.ErrNoRows):
			return 0, nil, err
		}
	}
	cond := `1 = 1` + after
	if last != nil {
		cond += ` AND (room_id, user_id, stream_pos) <= (?, ?, ?)`
		args = append(args, last.room, last.user, last.pos)
	}
	if _, err := tx.exec(ctx, moveStagedSQLiteInsert+cond+` ORDER BY user_id, room_id, stream_pos`, args...); err != nil {
		return 0, nil, err
	}
	res, err := tx.exec(ctx, `DELETE FROM event_push_staged WHERE `+cond, args...)
	if err != nil {
		return 0, nil, err
	}
	n, err := res.RowsAffected()
	return n, last, err
}

// moveStagedSQLiteInsert copies staged rows into event_push_actions; the
// caller adds the condition and the order (SQLite).
const moveStagedSQLiteInsert = `INSERT OR IGNORE INTO event_push_actions (user_id, room_id, stream_pos, thread_id, highlight, actions)
	SELECT user_id, room_id, stream_pos, thread_id, highlight, actions FROM event_push_staged WHERE `
