package storage

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"strings"
	"sync"
)

// Group commit. Batch queues a unit of work; committer goroutines take the
// queue in FIFO order and run as many queued units as are waiting in one
// write transaction, so that one commit (one fsync) acknowledges a whole
// batch. A unit that fails is rolled back alone: the transaction is rolled
// back and the batch replayed without it, so its error never reaches the
// other units of the batch. Batch returns only once its unit's transaction
// has committed (or failed).

// maxBatch bounds how many units one transaction holds.
const maxBatch = 256

// maxBatchRetries bounds how often a batch whose transaction failed as a
// whole (a PostgreSQL deadlock or serialisation failure) is replayed.
const maxBatchRetries = 5

// ErrClosed is returned for work queued on a closed database.
var ErrClosed = errors.New("database closed")

// BatchFunc is a unit of work run by Batch inside a shared write
// transaction. It may run more than once (when another unit of its batch
// fails, the batch is replayed without that unit), so it must set its
// results afresh on each run. It must not call WithTx or Batch.
type BatchFunc func(ctx context.Context, tx *Tx) error

type batchJob struct {
	ctx    context.Context
	roomID string
	fn     BatchFunc
	done   chan error
}

func newGroupCommitter(db *DB) *groupCommitter {
	return &groupCommitter{db: db, jobs: make(chan *batchJob, 4*maxBatch), quit: make(chan struct{})}
}

type groupCommitter struct {
	db   *DB
	jobs chan *batchJob
	quit chan struct{}
	wg   sync.WaitGroup
	once sync.Once
	// closeMu orders Batch's enqueue against close.
	closeMu sync.RWMutex
	closed  bool
}

func (db *DB) committer() *groupCommitter {
	g := db.gc
	g.once.Do(func() {
		// SQLite has one writer connection: one committer. On PostgreSQL a
		// few committers keep several transactions in flight, so that the
		// round trips of one batch overlap the commit of another.
		n := 1
		if db.dialect == Postgres {
			n = 4
		}
		for range n {
			g.wg.Add(1)
			go g.loop()
		}
	})
	return g
}

// Batch runs fn in a write transaction shared with other concurrent Batch
// calls and returns fn's error, or the commit's, once that transaction has
// ended: a nil return means fn's writes are committed and durable. roomID,
// when not empty, names the room fn will lock with LockRoom: on PostgreSQL
// the rooms of a batch are locked up front in a fixed order, so that
// batches of several processes sharing a database cannot deadlock on each
// other. The caller must not have two Batch calls on one room in flight at
// once if it relies on their order (they may land in concurrent
// transactions on PostgreSQL).
func (db *DB) Batch(ctx context.Context, roomID string, fn BatchFunc) error {
	g := db.gc
	j := &batchJob{ctx: ctx, roomID: roomID, fn: fn, done: make(chan error, 1)}
	g.closeMu.RLock()
	if g.closed {
		g.closeMu.RUnlock()
		return ErrClosed
	}
	db.committer()
	g.jobs <- j
	g.closeMu.RUnlock()
	return <-j.done
}

func (g *groupCommitter) close() {
	g.closeMu.Lock()
	already := g.closed
	g.closed = true
	g.closeMu.Unlock()
	if already {
		return
	}
	close(g.quit)
	g.wg.Wait()
	// Fail what is still queued.
	for {
		select {
		case j := <-g.jobs:
			j.done <- ErrClosed
		default:
			return
		}
	}
}

func (g *groupCommitter) loop() {
	defer g.wg.Done()
	batch := make([]*batchJob, 0, maxBatch)
	for {
		select {
		case <-g.quit:
			return
		case j := <-g.jobs:
			batch = append(batch[:0], j)
		}
	drain:
		for len(batch) < maxBatch {
			select {
			case j := <-g.jobs:
				batch = append(batch, j)
			default:
				break drain
			}
		}
		g.run(batch)
		clear(batch)
	}
}

// run commits a batch, replaying it without each unit that fails.
func (g *groupCommitter) run(batch []*batchJob) {
	pending := make([]*batchJob, 0, len(batch))
	for _, j := range batch {
		if err := j.ctx.Err(); err != nil {
			j.done <- err
			continue
		}
		pending = append(pending, j)
	}
	retries := 0
	for len(pending) > 0 {
		failed, err := g.attempt(pending)
		switch {
		case failed >= 0:
			pending[failed].done <- err
			pending = append(pending[:failed], pending[failed+1:]...)
		case err != nil && isRetryable(err) && retries < maxBatchRetries:
			retries++
		case err != nil:
			for _, j := range pending {
				j.done <- err
			}
			return
		default:
			for _, j := range pending {
				j.done <- nil
			}
			return
		}
	}
}

// attempt runs jobs in one transaction. It returns the index of the job
// that failed (and its error), or -1 and the error of the transaction
// itself (nil once committed).
func (g *groupCommitter) attempt(jobs []*batchJob) (int, error) {
	db := g.db
	sqlTx, err := db.write.BeginTx(context.Background(), nil)
	if err != nil {
		return -1, fmt.Errorf("begin transaction: %w", err)
	}
	tx := &Tx{db: db, tx: sqlTx}
	defer tx.ended()
	if db.dialect == Postgres {
		if err := tx.lockRooms(jobs); err != nil {
			_ = sqlTx.Rollback()
			return -1, fmt.Errorf("lock rooms: %w", err)
		}
	}
	for i, j := range jobs {
		if err := j.fn(context.WithoutCancel(j.ctx), tx); err != nil {
			_ = sqlTx.Rollback()
			if isRetryable(err) {
				// Not this unit's fault: replay the whole batch.
				return -1, err
			}
			return i, err
		}
	}
	if err := sqlTx.Commit(); err != nil {
		return -1, fmt.Errorf("commit: %w", err)
	}
	for _, f := range tx.afterCommit {
		f()
	}
	return -1, nil
}

// lockRooms locks the rooms of a batch in room ID order (PostgreSQL) and
// keeps their rows for LockRoom, which then needs no round trip.
func (tx *Tx) lockRooms(jobs []*batchJob) error {
	seen := make(map[string]bool, len(jobs))
	ids := make([]any, 0, len(jobs))
	for _, j := range jobs {
		if j.roomID != "" && !seen[j.roomID] {
			seen[j.roomID] = true
			ids = append(ids, j.roomID)
		}
	}
	if len(ids) == 0 {
		return nil
	}
	sort.Slice(ids, func(a, b int) bool { return ids[a].(string) < ids[b].(string) })
	rows, err := tx.query(context.Background(), `SELECT `+roomColumns+` FROM rooms WHERE room_id IN (`+placeholders(len(ids))+`) ORDER BY room_id FOR UPDATE`, ids...)
	if err != nil {
		return err
	}
	defer rows.Close()
	tx.locked = make(map[string]Room, len(ids))
	for rows.Next() {
		r, err := scanRoom(rows)
		if err != nil {
			return err
		}
		tx.locked[r.RoomID] = r
	}
	return rows.Err()
}

// isRetryable reports a PostgreSQL deadlock or serialisation failure,
// after which the transaction can be replayed as it was.
func isRetryable(err error) bool {
	s := err.Error()
	return strings.Contains(s, "SQLSTATE 40P01") || strings.Contains(s, "SQLSTATE 40001")
}
