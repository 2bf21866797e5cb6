package storage

import (
	"context"
	"database/sql"
	"sync"
	"sync/atomic"
	"time"
)

// SQLite checkpoints. In WAL mode every commit appends the pages it changed
// to the write-ahead log; a checkpoint copies them back into the database
// file. By default the committing connection does that itself, after a
// commit that takes the log past 1,000 pages: on our single writer, which
// then holds every queued send until the copy (and its fsync) is done. A
// message to a big room changes a page of each member-keyed index per
// member, so this was a fifth of the writer's time.
//
// Here a checkpointer goroutine, on a connection of its own, runs passive
// checkpoints (which never block the writer or the readers) once a second
// when there were commits. Checkpointing once a second rather than every
// 50 ms copies each hot page (an index leaf, a room's row) once per second
// instead of once per batch: under a sustained send load the checkpoint
// share of the server's CPU fell from about 18 % to 3 %.
//
// A log that is entirely copied back starts again from its beginning when
// the next write transaction starts; under continuous writes a passive
// checkpoint never gets there (frames keep coming while it copies), so the
// log would grow without end. The writer used to bound it with its own
// checkpoint past 16,384 pages: at ~80 MB/s of log (a SQLite send load)
// that was about every 0.8 s, each copying what the checkpointer had not
// and syncing the database file while every queued send waited, 45–50 ms
// (measured with the runtime trace). Now, once the log passes catchUpAt
// frames, the checkpointer runs more passes, each copying the frames
// committed during the one before, until few are left; then it asks the
// committer, which between two batches checkpoints that remainder itself
// (no frame can come meanwhile), so that the next batch starts the log
// again. The writer's own threshold stays as a bound (walWriterCheckpoint)
// for when the catch-ups cannot restart the log, such as when readers
// hold old snapshots. Durability is unchanged: a commit is durable once its
// log frames are synced (synchronous=FULL); checkpoints only move them.

// Checkpoint tuning (variables so that tests can shorten them).
var (
	// walWriterCheckpoint is the writer's wal_autocheckpoint, in pages.
	walWriterCheckpoint = 65536
	// checkpointEvery is how often the checkpointer looks for new commits.
	checkpointEvery = time.Second
	// catchUpAt is the log length, in frames, past which the checkpointer
	// works towards restarting it.
	catchUpAt int64 = 4096
	// catchUpLeft is how many frames, at most, the checkpointer leaves
	// for the committer's catch-up; it stops after catchUpPasses passes
	// in any case.
	catchUpLeft   int64 = 512
	catchUpPasses       = 4
)

type checkpointer struct {
	conn    *sql.DB
	commits *atomic.Uint64 // the database's commits (DB.commits)
	// catchUp asks the committer for a catch-up checkpoint.
	catchUp *atomic.Bool
	quit    chan struct{}
	wg      sync.WaitGroup
}

func startCheckpointer(conn *sql.DB, commits *atomic.Uint64, catchUp *atomic.Bool) *checkpointer {
	c := &checkpointer{conn: conn, commits: commits, catchUp: catchUp, quit: make(chan struct{})}
	c.wg.Add(1)
	go c.loop()
	return c
}

func (c *checkpointer) loop() {
	defer c.wg.Done()
	t := time.NewTicker(checkpointEvery)
	defer t.Stop()
	var seen uint64
	for {
		select {
		case <-c.quit:
			return
		case <-t.C:
		}
		n := c.commits.Load()
		if n == seen {
			continue
		}
		seen = n
		c.round()
	}
}

// round is one round of the checkpointer: a passive checkpoint, and when
// the log is long, more until the frames committed during the last pass
// are few, which the committer's catch-up then copies. A pass copies the
// log as it was when the pass began; the log's length it reports is that
// one, so the frames committed during a pass are the next pass's length
// less its own. Errors (SQLITE_BUSY while another checkpoint runs) leave
// the work to the next round or to the writer's own checkpoint.
func (c *checkpointer) round() {
	prev := int64(-1)
	for pass := 0; pass < catchUpPasses; pass++ {
		log, _, err := passiveCheckpoint(c.conn)
		if err != nil || log < catchUpAt {
			return // a log short enough to leave as it is
		}
		if (prev >= 0 && log-prev <= catchUpLeft) || pass == catchUpPasses-1 {
			c.catchUp.Store(true)
			return
		}
		prev = log
	}
}

// passiveCheckpoint runs a passive checkpoint and returns the log's length
// and how much of it is now in the database file, in frames.
func passiveCheckpoint(conn *sql.DB) (log, done int64, err error) {
	var busy int64
	err = conn.QueryRowContext(context.Background(), `PRAGMA wal_checkpoint(PASSIVE)`).Scan(&busy, &log, &done)
	return log, done, err
}

// catchUpCheckpoint runs, on the writer between two batches, the
// checkpoint the checkpointer asked for: it copies back the frames
// committed since the checkpointer's last pass, so that the whole log is
// in the database file and the next write transaction starts it again.
func (db *DB) catchUpCheckpoint() {
	if db.ckpt == nil || !db.ckpt.catchUp.Swap(false) {
		return
	}
	if _, _, err := passiveCheckpoint(db.write); err == nil {
		db.catchUps.Add(1)
	}
}

func (c *checkpointer) close() {
	if c == nil {
		return
	}
	close(c.quit)
	c.wg.Wait()
	_ = c.conn.Close()
}
