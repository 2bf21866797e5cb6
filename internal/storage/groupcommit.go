package storage

import (
	"context"
	"errors"
	"fmt"
	"hash/fnv"
	"slices"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
)

// Group commit. Batch queues a unit of work; committer goroutines take the
// queue in FIFO order and run as many queued units as are waiting in one
// write transaction, so that one commit (one fsync) acknowledges a whole
// batch. A unit that fails is rolled back alone: the transaction is rolled
// back and the batch replayed without it, so its error never reaches the
// other units of the batch. Batch returns only once its unit's transaction
// has committed durably (or failed).

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
	claim  *TxnClaim
	done   chan error
}

func newGroupCommitter(db *DB) *groupCommitter {
	// One committer on both backends. SQLite has one writer connection
	// anyway; on PostgreSQL, transactions appending events are serialised
	// by lockEventOrder (readers take MAX(stream_pos) as the stream's
	// head, so events must commit in stream order), and concurrent batches
	// would only wait on each other.
	const n = 1
	g := &groupCommitter{db: db, quit: make(chan struct{})}
	for range n {
		g.queues = append(g.queues, make(chan *batchJob, 4*maxBatch))
	}
	return g
}

type groupCommitter struct {
	db *DB
	// queues has one FIFO queue per committer goroutine; a room's units
	// always go to the same one, so they commit in the order queued.
	queues []chan *batchJob
	next   atomic.Uint32 // round robin for units without a room
	quit   chan struct{}
	wg     sync.WaitGroup
	once   sync.Once
	// closeMu orders enqueueing against close.
	closeMu sync.RWMutex
	closed  bool
}

func (g *groupCommitter) start() {
	g.once.Do(func() {
		for _, q := range g.queues {
			g.wg.Add(1)
			go g.loop(q)
		}
	})
}

// Batch runs fn in a write transaction shared with other concurrent Batch
// calls and returns fn's error, or the commit's, once that transaction has
// ended: a nil return means fn's writes are committed and durable. roomID,
// when not empty, names the room fn will lock with LockRoom: on PostgreSQL
// the rooms of a batch are locked up front in a fixed order, so that
// batches of several processes sharing a database cannot deadlock on each
// other. Units of one room commit in the order they were queued.
func (db *DB) Batch(ctx context.Context, roomID string, fn BatchFunc) error {
	return db.BatchAsync(ctx, roomID, fn)()
}

// BatchAsync queues fn as Batch does and returns at once; the returned
// function waits for fn's transaction and returns what Batch would. Units
// of one room queued one after the other commit in that order, each in the
// same transaction as the one before or a later one.
func (db *DB) BatchAsync(ctx context.Context, roomID string, fn BatchFunc) (wait func() error) {
	return db.queue(&batchJob{ctx: ctx, roomID: roomID, fn: fn, done: make(chan error, 1)})
}

// BatchAsyncClaim is BatchAsync for a unit that claims a transaction ID:
// fn must call ClaimTxn with claim's values (or fail). On PostgreSQL that
// call then answers from a claim made for the whole batch before its units
// run.
func (db *DB) BatchAsyncClaim(ctx context.Context, roomID string, claim TxnClaim, fn BatchFunc) (wait func() error) {
	return db.queue(&batchJob{ctx: ctx, roomID: roomID, fn: fn, claim: &claim, done: make(chan error, 1)})
}

func (db *DB) queue(j *batchJob) (wait func() error) {
	g := db.gc
	g.closeMu.RLock()
	if g.closed {
		g.closeMu.RUnlock()
		return func() error { return ErrClosed }
	}
	g.start()
	var q chan *batchJob
	if len(g.queues) == 1 {
		q = g.queues[0]
	} else if j.roomID == "" {
		q = g.queues[int(g.next.Add(1))%len(g.queues)]
	} else {
		h := fnv.New32a()
		_, _ = h.Write([]byte(j.roomID))
		q = g.queues[int(h.Sum32()%uint32(len(g.queues)))]
	}
	q <- j
	g.closeMu.RUnlock()
	return func() error { return <-j.done }
}

func (g *groupCommitter) close() {
	if g == nil {
		return
	}
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
	for _, q := range g.queues {
	drain:
		for {
			select {
			case j := <-q:
				j.done <- ErrClosed
			default:
				break drain
			}
		}
	}
}

func (g *groupCommitter) loop(jobs chan *batchJob) {
	defer g.wg.Done()
	batch := make([]*batchJob, 0, maxBatch)
	for {
		select {
		case <-g.quit:
			return
		case j := <-jobs:
			batch = append(batch[:0], j)
		}
	drain:
		for len(batch) < maxBatch {
			select {
			case j := <-jobs:
				batch = append(batch, j)
			default:
				break drain
			}
		}
		g.run(batch)
		clear(batch)
		g.db.moveStagedActsIfDue()
		g.db.catchUpCheckpoint()
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
	writeBehind := g.db.dialect == Postgres
	for len(pending) > 0 {
		failed, err := g.attempt(pending, writeBehind)
		var wb errWriteBehind
		switch {
		case errors.As(err, &wb) && writeBehind:
			// A buffered write failed: replay writing through, which
			// pins the failure on its unit.
			writeBehind = false
		case failed >= 0:
			// Its error may come from what earlier commits wrote: it
			// too waits until they are durable.
			j := pending[failed]
			g.db.whenDurable(func(error) { j.done <- err })
			pending = append(pending[:failed], pending[failed+1:]...)
		case err != nil && isRetryable(err) && retries < maxBatchRetries:
			retries++
		case err != nil:
			for _, j := range pending {
				j.done <- err
			}
			return
		default:
			// Acknowledged once durable: on SQLite the syncer does it,
			// while this goroutine goes on with the next batch.
			acks := slices.Clone(pending)
			g.db.whenDurable(func(err error) {
				for _, j := range acks {
					j.done <- err
				}
			})
			return
		}
	}
}

// attempt runs jobs in one transaction. It returns the index of the job
// that failed (and its error), or -1 and the error of the transaction
// itself (nil once committed).
func (g *groupCommitter) attempt(jobs []*batchJob, writeBehind bool) (int, error) {
	if writeBehind {
		return g.attemptPipelined(jobs)
	}
	db := g.db
	sqlTx, err := db.write.BeginTx(context.Background(), nil)
	if err != nil {
		return -1, fmt.Errorf("begin transaction: %w", err)
	}
	tx := &Tx{db: db, tx: sqlTx, sqlTx: sqlTx, inBatch: true}
	defer tx.ended()
	if tx.cachesRooms() {
		tx.beginRooms()
	}
	if db.dialect == Postgres {
		// The event-order lock first, then the rooms, as AppendEvent
		// would take them one by one.
		if err := tx.lockEventOrder(context.Background()); err != nil {
			_ = sqlTx.Rollback()
			return -1, fmt.Errorf("lock event order: %w", err)
		}
		if err := tx.lockRooms(jobs); err != nil {
			_ = sqlTx.Rollback()
			return -1, fmt.Errorf("lock rooms: %w", err)
		}
		if writeBehind {
			tx.writeBehind = true
			for id := range tx.locked {
				tx.batchRooms = append(tx.batchRooms, id)
			}
		}
		// On SQLite, claiming one by one is as cheap: each claim is a
		// function call on a statement prepared once, where the batch's
		// claim is a long statement prepared again for every batch.
		if err := tx.claimTxns(context.Background(), jobs); err != nil {
			_ = sqlTx.Rollback()
			if isRetryable(err) {
				return -1, err
			}
			return -1, fmt.Errorf("claim transaction IDs: %w", err)
		}
	}
	if failed, err := tx.runUnits(jobs, func() { _ = sqlTx.Rollback() }); err != nil {
		return failed, err
	}
	if err := tx.settle(context.Background()); err != nil {
		_ = sqlTx.Rollback()
		return -1, tx.behind(err)
	}
	if err := tx.flushRoomHeads(context.Background()); err != nil {
		_ = sqlTx.Rollback()
		if isRetryable(err) {
			return -1, err
		}
		return -1, fmt.Errorf("update rooms: %w", err)
	}
	seq := db.beginCommit()
	err = sqlTx.Commit()
	db.endCommit(seq)
	if err != nil {
		return -1, fmt.Errorf("commit: %w", err)
	}
	db.committed()
	tx.commitRooms()
	for _, f := range tx.afterCommit {
		f()
	}
	return -1, nil
}

// runUnits runs the units of a batch in tx, then checks that no buffered
// write failed unseen and that every transaction ID claimed for the batch
// was taken by its unit. On a failure it rolls back (rollback) and returns
// the index of the unit to fail alone, or -1 when the whole batch is to be
// replayed or failed, with the error.
func (tx *Tx) runUnits(jobs []*batchJob, rollback func()) (int, error) {
	for i, j := range jobs {
		tx.unit, tx.unitsLeft = i, len(jobs)-i
		if err := j.fn(context.WithoutCancel(j.ctx), tx); err != nil {
			rollback()
			if tx.flushErr != nil {
				return -1, tx.behind(err)
			}
			if isRetryable(err) {
				// Not this unit's fault: replay the whole batch.
				return -1, err
			}
			return i, err
		}
	}
	if tx.flushErr != nil {
		// A unit swallowed the failure of a buffered write.
		rollback()
		return -1, tx.behind(nil)
	}
	if i := tx.untakenClaim(); i >= 0 {
		rollback()
		return i, errors.New("transaction ID claimed for the batch but not taken by its unit")
	}
	return -1, nil
}

// behind turns a failure into errWriteBehind when it comes from a
// buffered write (see run).
func (tx *Tx) behind(err error) error {
	if tx.flushErr != nil && !isRetryable(tx.flushErr) {
		return errWriteBehind{tx.flushErr}
	}
	if tx.flushErr != nil {
		return tx.flushErr
	}
	return err
}

// lockRooms locks the rooms of a batch in room ID order (PostgreSQL) and
// keeps their rows for LockRoom, which then needs no round trip.
func (tx *Tx) lockRooms(jobs []*batchJob) error {
	ids := batchRoomIDs(jobs)
	if len(ids) == 0 {
		return nil
	}
	rows, err := tx.tx.QueryContext(context.Background(), lockRoomsSQL, ids)
	if err != nil {
		return err
	}
	defer rows.Close()
	return tx.keepLocked(rows, len(ids))
}

// batchRoomIDs returns the rooms of a batch's units, sorted: the order in
// which a batch locks them.
func batchRoomIDs(jobs []*batchJob) []string {
	seen := make(map[string]bool, len(jobs))
	ids := make([]string, 0, len(jobs))
	for _, j := range jobs {
		if j.roomID != "" && !seen[j.roomID] {
			seen[j.roomID] = true
			ids = append(ids, j.roomID)
		}
	}
	sort.Strings(ids)
	return ids
}

// lockRoomsSQL locks and reads the rooms of a batch, in room ID order. An
// array rather than a placeholder per room: one statement text whatever
// the batch's size, prepared once per connection.
const lockRoomsSQL = `SELECT ` + roomColumns + ` FROM rooms WHERE room_id = ANY($1::text[]) ORDER BY room_id FOR UPDATE`

// keepLocked keeps the room rows lockRoomsSQL returned in tx.locked (the
// caller closes rows).
func (tx *Tx) keepLocked(rows interface {
	Next() bool
	Scan(...any) error
	Err() error
}, n int) error {
	tx.locked = make(map[string]Room, n)
	for rows.Next() {
		r, err := scanRoom(rows)
		if err != nil {
			return err
		}
		tx.locked[r.RoomID] = r
	}
	return rows.Err()
}

// eventOrderLock is the PostgreSQL advisory lock key serialising the
// transactions that append events ("rempart events").
const eventOrderLock = 0x72656d7061727445

// lockEventOrder makes tx, on PostgreSQL, the only transaction appending
// events until it ends, across all processes sharing the database. Stream
// positions come from an identity column, so two concurrent appenders could
// commit out of order; a reader taking MAX(stream_pos) as the head of the
// stream between the two commits would then skip the lower position for
// ever. SQLite has a single writer and needs nothing.
func (tx *Tx) lockEventOrder(ctx context.Context) error {
	if tx.db.dialect != Postgres || tx.orderLocked {
		return nil
	}
	if _, err := tx.exec(ctx, `SELECT pg_advisory_xact_lock(?)`, int64(eventOrderLock)); err != nil {
		return err
	}
	tx.orderLocked = true
	return nil
}

// isRetryable reports a PostgreSQL deadlock or serialisation failure,
// after which the transaction can be replayed as it was.
func isRetryable(err error) bool {
	s := err.Error()
	return strings.Contains(s, "SQLSTATE 40P01") || strings.Contains(s, "SQLSTATE 40001")
}
