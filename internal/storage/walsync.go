package storage

import (
	"errors"
	"fmt"
	"log/slog"
	"os"
	"sync"
	"sync/atomic"
	"syscall"
)

// Durable commits on SQLite without the writer waiting for the disk.
//
// With synchronous=FULL, SQLite syncs the write-ahead log inside every
// commit, on the one writer connection: under a send load the writer spent
// a quarter of its time waiting for fsync (measured with the runtime
// trace), time in which no batch could run. The writer now commits with
// synchronous=NORMAL, which writes the commit's log frames without syncing
// them, and a syncer goroutine syncs the log on a file handle of its own.
// Nothing that depends on a commit leaves the process before the sync that
// covers it:
//
//   - a write (a group-commit batch, WithTx, exec) reports success only
//     once its commit is durable: durability as with FULL, since syncing
//     the log file through any handle makes every frame written to it
//     before the call durable, and NORMAL keeps the database consistent
//     (SQLite syncs the log before each checkpoint and the database file
//     after it);
//   - a read on the reader pool does not return until every commit it
//     could have seen is durable: a reader's snapshot is taken when its
//     statement first steps, which the driver does inside the query call,
//     and a commit becomes visible only at the end of the commit call; so
//     every commit a read can see had begun before the read returned.
//     The exceptions are the send path's reads that nobody outside sees
//     before a later commit (queryInternal).
//
// The writer meanwhile runs the next batch, and one sync covers every
// commit made during the one before. A failed sync is sticky: the log's
// state on the disk is then unknown, so every later write and read fails
// until the process restarts, as PostgreSQL stops on a failed fsync.
type walSyncer struct {
	path string // the log file: the database's path and "-wal"

	// begun counts commits begun (before the commit call); durable is
	// the count known durable. Both only grow.
	begun   atomic.Uint64
	durable atomic.Uint64

	mu   sync.Mutex
	cond *sync.Cond
	// ended is the count of commits whose commit call has returned: those
	// a sync started now would cover. Commits run one at a time on the
	// writer connection, so they end in the order they begin.
	ended   uint64
	waiting []durableWaiter
	err     error
	file    *os.File
	closed  bool
	kick    chan struct{}
	quit    chan struct{}
	done    chan struct{}
}

// durableWaiter is a callback run once commit seq is durable (or failed).
type durableWaiter struct {
	seq uint64
	f   func(error)
}

// syncWAL syncs the log file; a variable so that tests can hold a sync.
var syncWAL = func(f *os.File) error { return syscall.Fdatasync(int(f.Fd())) }

// errSyncerClosed is returned to what waits on a closed syncer.
var errSyncerClosed = errors.New("database closed before the commit was durable")

func startWALSyncer(dbPath string) *walSyncer {
	s := &walSyncer{path: dbPath + "-wal", kick: make(chan struct{}, 1), quit: make(chan struct{}), done: make(chan struct{})}
	s.cond = sync.NewCond(&s.mu)
	go s.loop()
	return s
}

// begin is called just before a commit call; it returns the commit's
// sequence number, to give to end once the call has returned (whatever its
// outcome).
func (s *walSyncer) begin() uint64 { return s.begun.Add(1) }

// end records that commit seq's call has returned and asks for a sync.
func (s *walSyncer) end(seq uint64) {
	s.mu.Lock()
	if seq > s.ended {
		s.ended = seq
	}
	s.mu.Unlock()
	select {
	case s.kick <- struct{}{}:
	default:
	}
}

// whenDurable runs f (on the syncer's goroutine) once every commit ended so
// far is durable, with nil, or with the sync's error.
func (s *walSyncer) whenDurable(f func(error)) {
	s.mu.Lock()
	if s.err != nil || s.closed {
		err := s.err
		if err == nil {
			err = errSyncerClosed
		}
		s.mu.Unlock()
		f(err)
		return
	}
	seq := s.ended
	if s.durable.Load() >= seq {
		s.mu.Unlock()
		f(nil)
		return
	}
	s.waiting = append(s.waiting, durableWaiter{seq, f})
	s.mu.Unlock()
	select {
	case s.kick <- struct{}{}:
	default:
	}
}

// wait returns once commit seq is durable, or the sync's error.
func (s *walSyncer) wait(seq uint64) error {
	if s.durable.Load() >= seq {
		return nil
	}
	select {
	case s.kick <- struct{}{}:
	default:
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	for s.durable.Load() < seq && s.err == nil && !s.closed {
		s.cond.Wait()
	}
	if s.durable.Load() >= seq {
		return nil
	}
	if s.err != nil {
		return s.err
	}
	return errSyncerClosed
}

// visible is called after a read's query call: it returns once every
// commit the read could have seen is durable. After a failed sync it
// returns at once: reads go on (see walSyncer).
func (s *walSyncer) visible() { _ = s.wait(s.begun.Load()) }

func (s *walSyncer) loop() {
	defer close(s.done)
	for {
		select {
		case <-s.quit:
			return
		case <-s.kick:
		}
		for {
			s.mu.Lock()
			target, closed, failed := s.ended, s.closed, s.err != nil
			s.mu.Unlock()
			// After a failed sync, none again: a later one could succeed
			// with the failed one's pages dropped (Linux may mark them
			// clean), and durable must not cover them.
			if target <= s.durable.Load() || closed || failed {
				break
			}
			err := s.sync()
			s.mu.Lock()
			var ready []durableWaiter
			if err != nil {
				if s.err == nil {
					slog.Error("syncing the SQLite write-ahead log failed; writes fail until restart", "err", err)
					s.err = fmt.Errorf("sync write-ahead log: %w", err)
				}
				ready, s.waiting = s.waiting, nil
			} else {
				s.durable.Store(target)
				n := 0
				for n < len(s.waiting) && s.waiting[n].seq <= target {
					n++
				}
				ready = append(ready, s.waiting[:n]...)
				s.waiting = append(s.waiting[:0], s.waiting[n:]...)
			}
			err = s.err
			s.cond.Broadcast()
			s.mu.Unlock()
			for _, w := range ready {
				w.f(err)
			}
			if err != nil {
				break
			}
		}
	}
}

// sync syncs the log file, opening it again if SQLite replaced it (it
// deletes it when its last connection closes).
func (s *walSyncer) sync() error {
	st, err := os.Stat(s.path)
	if err != nil {
		return err
	}
	if s.file != nil {
		if fst, ferr := s.file.Stat(); ferr != nil || !os.SameFile(st, fst) {
			_ = s.file.Close()
			s.file = nil
		}
	}
	if s.file == nil {
		// SQLite takes no POSIX locks on the log file (WAL locks live in
		// the -shm file), so this handle, closing, releases none of its.
		if s.file, err = os.OpenFile(s.path, os.O_RDWR, 0); err != nil {
			return err
		}
	}
	return syncWAL(s.file)
}

// close syncs what is pending, fails what still waits and stops the
// syncer.
func (s *walSyncer) close() {
	if s == nil {
		return
	}
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return
	}
	target := s.ended
	s.mu.Unlock()
	// What was acknowledged waits on this; a clean close syncs it first.
	_ = s.wait(target)
	s.mu.Lock()
	s.closed = true
	rest := s.waiting
	s.waiting = nil
	s.cond.Broadcast()
	s.mu.Unlock()
	for _, w := range rest {
		w.f(errSyncerClosed)
	}
	close(s.quit)
	<-s.done
	if s.file != nil {
		_ = s.file.Close()
	}
}
