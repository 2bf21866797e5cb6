package storage

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// holdSyncs replaces the log sync for the test: while hold is set, each
// sync signals entered and waits for release (or fails with failWith).
type heldSyncs struct {
	hold     atomic.Bool
	entered  chan struct{}
	release  chan struct{}
	failWith error
	syncs    atomic.Int64
	once     sync.Once
}

// unblock lets every held sync through, for good.
func (h *heldSyncs) unblock() {
	h.hold.Store(false)
	h.once.Do(func() { close(h.release) })
}

func holdSyncs(t *testing.T) *heldSyncs {
	h := &heldSyncs{entered: make(chan struct{}, 16), release: make(chan struct{})}
	orig := syncWAL
	syncWAL = func(f *os.File) error {
		h.syncs.Add(1)
		if h.hold.Load() {
			h.entered <- struct{}{}
			<-h.release
			if h.failWith != nil {
				return h.failWith
			}
		}
		return orig(f)
	}
	t.Cleanup(func() { syncWAL = orig })
	return h
}

func openSyncTestDB(t *testing.T, h *heldSyncs) *DB {
	ctx := context.Background()
	db, err := Open(ctx, filepath.Join(t.TempDir(), "sync.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		h.unblock() // a failed test may have left a sync held
		db.Close()
	})
	if db.wal == nil {
		t.Fatal("SQLite database without a log syncer")
	}
	if err := db.WithTx(ctx, func(tx *Tx) error {
		_, err := tx.exec(ctx, `CREATE TABLE sync_probe (n INTEGER NOT NULL)`)
		return err
	}); err != nil {
		t.Fatal(err)
	}
	return db
}

// countInBackground runs a count through the reader pool's gate (which
// waits until what it could see is durable) and yields it, -1 on error.
func countInBackground(ctx context.Context, db *DB, query string) <-chan int {
	read := make(chan int, 1)
	go func() {
		var n int
		if err := db.queryRow(ctx, query).Scan(&n); err != nil {
			n = -1
		}
		read <- n
	}()
	return read
}

// returnsWithin reports whether done yields within d.
func returnsWithin[T any](done <-chan T, d time.Duration) (T, bool) {
	select {
	case v := <-done:
		return v, true
	case <-time.After(d):
		var zero T
		return zero, false
	}
}

// TestCommitWaitsForLogSync: the writer commits without syncing the log;
// a batch is acknowledged, and a read that could see it returns, only once
// the syncer has synced the log after the commit.
func TestCommitWaitsForLogSync(t *testing.T) {
	h := holdSyncs(t)
	db := openSyncTestDB(t, h)
	ctx := context.Background()
	if h.syncs.Load() == 0 {
		t.Fatal("no log sync while opening and migrating")
	}
	h.hold.Store(true)

	acked := make(chan error, 1)
	go func() {
		acked <- db.Batch(ctx, "", func(ctx context.Context, tx *Tx) error {
			_, err := tx.exec(ctx, `INSERT INTO sync_probe (n) VALUES (1)`)
			return err
		})
	}()
	if _, ok := returnsWithin(h.entered, 5*time.Second); !ok {
		t.Fatal("no log sync after the batch's commit")
	}
	if _, ok := returnsWithin(acked, 200*time.Millisecond); ok {
		t.Fatal("batch acknowledged before the log sync covering it ended")
	}
	// The commit is there for a reader that does not wait...
	var raw int
	if err := db.read.QueryRowContext(ctx, `SELECT COUNT(*) FROM sync_probe`).Scan(&raw); err != nil || raw != 1 {
		t.Fatalf("raw reader sees %d rows (%v), want the committed 1", raw, err)
	}
	// ...but a read through the pool's gate waits for the sync.
	read := countInBackground(ctx, db, `SELECT COUNT(*) FROM sync_probe`)
	if _, ok := returnsWithin(read, 200*time.Millisecond); ok {
		t.Fatal("read returned a commit not yet durable")
	}
	// The send path's internal reads (push recipients, token owners) do
	// not wait: what they read reaches no one before a later commit.
	var internal int
	if err := db.queryRowInternal(ctx, `SELECT COUNT(*) FROM sync_probe`).Scan(&internal); err != nil || internal != 1 {
		t.Fatalf("internal read: %d rows (%v), want 1 at once", internal, err)
	}
	h.unblock()
	if err, ok := returnsWithin(acked, 5*time.Second); !ok || err != nil {
		t.Fatalf("batch after the sync: returned %v, %v", ok, err)
	}
	if n, ok := returnsWithin(read, 5*time.Second); !ok || n != 1 {
		t.Fatalf("read after the sync: %d rows (returned %v), want 1", n, ok)
	}
	// With nothing committing, a read does not wait.
	start := time.Now()
	var n int
	if err := db.queryRow(ctx, `SELECT COUNT(*) FROM sync_probe`).Scan(&n); err != nil || n != 1 {
		t.Fatalf("read: %d, %v", n, err)
	}
	if d := time.Since(start); d > time.Second {
		t.Fatalf("idle read took %s", d)
	}
}

// TestFailedLogSyncFailsWrites: a failed sync fails the writes it covered
// and every later one.
func TestFailedLogSyncFailsWrites(t *testing.T) {
	h := holdSyncs(t)
	db := openSyncTestDB(t, h)
	ctx := context.Background()
	h.failWith = errors.New("injected I/O error")
	h.hold.Store(true)
	acked := make(chan error, 1)
	go func() {
		acked <- db.WithTx(ctx, func(tx *Tx) error {
			_, err := tx.exec(ctx, `INSERT INTO sync_probe (n) VALUES (1)`)
			return err
		})
	}()
	if _, ok := returnsWithin(h.entered, 5*time.Second); !ok {
		t.Fatal("no log sync after the commit")
	}
	h.unblock()
	if err, ok := returnsWithin(acked, 5*time.Second); !ok || err == nil {
		t.Fatalf("write covered by a failed sync: returned %v, err %v; want an error", ok, err)
	}
	err := db.Batch(ctx, "", func(ctx context.Context, tx *Tx) error {
		_, err := tx.exec(ctx, `INSERT INTO sync_probe (n) VALUES (2)`)
		return err
	})
	if err == nil {
		t.Fatal("write after a failed sync succeeded")
	}
}

// TestStagedMoveDoesNotWaitForLogSync: the committer moves staged push
// actions between two batches without waiting for the log sync (no batch
// could run meanwhile), yet a read sees the move only once it is durable.
func TestStagedMoveDoesNotWaitForLogSync(t *testing.T) {
	h := holdSyncs(t)
	db := openSyncTestDB(t, h)
	ctx := context.Background()
	if err := db.WithTx(ctx, func(tx *Tx) error {
		for i := range 5 {
			if _, err := tx.exec(ctx, `INSERT INTO event_push_staged (room_id, user_id, stream_pos, thread_id, highlight, actions)
				VALUES ('!r:x', '@u:x', ?, 'main', ?, '["notify"]')`, i+1, false); err != nil {
				return err
			}
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	h.hold.Store(true)
	moved := make(chan error, 1)
	go func() {
		n, err := db.moveStagedChunk(ctx, 10)
		if err == nil && n != 5 {
			err = fmt.Errorf("moved %d rows, want 5", n)
		}
		moved <- err
	}()
	if err, ok := returnsWithin(moved, 5*time.Second); !ok || err != nil {
		t.Fatalf("the move returned %v (within 5 s: %v) while the log sync was held", err, ok)
	}
	read := countInBackground(ctx, db, `SELECT COUNT(*) FROM event_push_actions`)
	if _, ok := returnsWithin(h.entered, 5*time.Second); !ok {
		t.Fatal("no log sync after the move's commit")
	}
	if n, ok := returnsWithin(read, 200*time.Millisecond); ok {
		t.Fatalf("a read saw the move (%d rows) before it was durable", n)
	}
	h.unblock()
	if n, ok := returnsWithin(read, 5*time.Second); !ok || n != 5 {
		t.Fatalf("read after the sync: %d rows (returned %v), want 5", n, ok)
	}
}
