package storage

import (
	"context"
	"database/sql/driver"
	"errors"
	"fmt"
	"sort"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/stdlib"
)

// A batch on PostgreSQL in two round trips. The write-behind
// (batchwrite.go) already made a batch of messages cost the same ten
// statements whatever its size, but each is a round trip: under a load of
// woken long-polls, whose statements keep PostgreSQL's processes busy,
// each round trip of the writer waited its turn, and a send's latency
// grew with their number (send p99 40–120 ms at 50 sends/s with 5,000
// long-polling clients). The statements that do not need each other's
// answers are therefore sent together, in pgx pipelines on the batch's
// connection:
//
//   - before the units run: BEGIN, the event-order lock, the rooms of the
//     batch (FOR UPDATE), the claim of its transaction IDs and the
//     reservation of a stream position per unit;
//   - after: the buffered message rows, push actions and room heads, and
//     COMMIT.
//
// The units run in between as before (a unit that sends a message makes no
// statement of its own). Any failure rolls back; a failure of the
// buffered writes replays the batch writing through, as before, which pins
// it on its unit.

// attemptPipelined is attempt for a PostgreSQL batch with write-behind.
func (g *groupCommitter) attemptPipelined(jobs []*batchJob) (int, error) {
	db := g.db
	ctx := context.Background()
	conn, err := db.write.Conn(ctx)
	if err != nil {
		return -1, fmt.Errorf("batch connection: %w", err)
	}
	defer conn.Close()
	tx := &Tx{db: db, tx: conn, inBatch: true, writeBehind: true}
	defer tx.ended()
	// rollback ends the transaction after a failure; a connection that
	// cannot even roll back is dropped from the pool.
	rollback := func() {
		if _, err := conn.ExecContext(ctx, "ROLLBACK"); err != nil {
			_ = conn.Raw(func(any) error { return driver.ErrBadConn })
		}
	}
	keys, inserted, err := tx.beginPipelined(ctx, conn.Raw, jobs)
	if err == nil {
		err = tx.claimsRecordedBefore(ctx, keys, inserted)
	}
	if err != nil {
		rollback()
		if isRetryable(err) {
			return -1, err
		}
		return -1, fmt.Errorf("begin batch: %w", err)
	}
	if failed, err := tx.runUnits(jobs, rollback); err != nil {
		return failed, err
	}
	committed, err := tx.commitPipelined(ctx, conn.Raw)
	if !committed {
		rollback()
		if err == nil {
			err = errors.New("commit: transaction rolled back")
		}
		if isRetryable(err) {
			return -1, err
		}
		if !errors.Is(err, errCommit) {
			return -1, errWriteBehind{err}
		}
		return -1, err
	}
	db.committed()
	for _, f := range tx.afterCommit {
		f()
	}
	return -1, nil
}

// errCommit marks a failure of the COMMIT itself (not of the writes before
// it): replaying writing through would not pin it on a unit.
var errCommit = errors.New("commit")

type rawFunc func(func(driverConn any) error) error

// pgxConn returns the pgx connection under a database/sql one.
func pgxConn(driverConn any) (*pgx.Conn, error) {
	c, ok := driverConn.(*stdlib.Conn)
	if !ok {
		return nil, fmt.Errorf("not a pgx connection: %T", driverConn)
	}
	return c.Conn(), nil
}

// beginPipelined opens the batch's transaction, takes the event-order lock,
// locks and reads the batch's rooms, claims its transaction IDs and
// reserves a stream position per unit, in one round trip. It returns the
// claimed keys and those the claim inserted (see claimsRecordedBefore).
func (tx *Tx) beginPipelined(ctx context.Context, raw rawFunc, jobs []*batchJob) ([]txnKey, map[txnKey]bool, error) {
	ids := batchRoomIDs(jobs)
	claim, keys := tx.claimWrite(jobs)
	var inserted map[txnKey]bool
	err := raw(func(dc any) error {
		c, err := pgxConn(dc)
		if err != nil {
			return err
		}
		b := &pgx.Batch{}
		b.Queue("BEGIN")
		b.Queue(`SELECT pg_advisory_xact_lock($1)`, int64(eventOrderLock))
		if len(ids) > 0 {
			b.Queue(lockRoomsSQL, ids)
		}
		if len(keys) > 0 {
			b.Queue(claim.sql, claim.args...)
		}
		b.Queue(`SELECT nextval(pg_get_serial_sequence('events', 'stream_pos')) FROM generate_series(1, $1)`, max(len(jobs), 4))
		br := c.SendBatch(ctx, b)
		defer br.Close()
		if _, err := br.Exec(); err != nil {
			return fmt.Errorf("begin: %w", err)
		}
		if _, err := br.Exec(); err != nil {
			return fmt.Errorf("lock event order: %w", err)
		}
		tx.orderLocked = true
		tx.locked = make(map[string]Room, len(ids))
		if len(ids) > 0 {
			rows, err := br.Query()
			if err != nil {
				return fmt.Errorf("lock rooms: %w", err)
			}
			err = tx.keepLocked(rows, len(ids))
			rows.Close()
			if err != nil {
				return fmt.Errorf("lock rooms: %w", err)
			}
		}
		if len(keys) > 0 {
			rows, err := br.Query()
			if err != nil {
				return fmt.Errorf("claim transaction IDs: %w", err)
			}
			inserted, err = scanClaimed(rows)
			rows.Close()
			if err == nil {
				err = rows.Err()
			}
			if err != nil {
				return fmt.Errorf("claim transaction IDs: %w", err)
			}
		}
		rows, err := br.Query()
		if err != nil {
			return fmt.Errorf("reserve stream positions: %w", err)
		}
		for rows.Next() {
			var p int64
			if err := rows.Scan(&p); err != nil {
				rows.Close()
				return fmt.Errorf("reserve stream positions: %w", err)
			}
			tx.positions = append(tx.positions, p)
		}
		rows.Close()
		if err := rows.Err(); err != nil {
			return fmt.Errorf("reserve stream positions: %w", err)
		}
		return br.Close()
	})
	if err != nil {
		return nil, nil, err
	}
	sort.Slice(tx.positions, func(i, k int) bool { return tx.positions[i] < tx.positions[k] })
	for id := range tx.locked {
		tx.batchRooms = append(tx.batchRooms, id)
	}
	return keys, inserted, nil
}

// commitPipelined sends the buffered writes, the rooms' new heads and
// COMMIT in one round trip. committed is true only once PostgreSQL
// answered the COMMIT as a commit; a failure of COMMIT itself wraps
// errCommit.
func (tx *Tx) commitPipelined(ctx context.Context, raw rawFunc) (committed bool, err error) {
	writes := tx.bufferedWrites()
	if len(tx.dirtyRooms) > 0 {
		writes = append(writes, tx.roomHeadsWrite())
	}
	err = raw(func(dc any) error {
		c, err := pgxConn(dc)
		if err != nil {
			return err
		}
		b := &pgx.Batch{}
		for _, w := range writes {
			b.Queue(w.sql, w.args...)
		}
		b.Queue("COMMIT")
		br := c.SendBatch(ctx, b)
		defer br.Close()
		for _, w := range writes {
			if _, err := br.Exec(); err != nil {
				return fmt.Errorf("%s: %w", w.what, err)
			}
		}
		tag, err := br.Exec()
		if err != nil {
			return fmt.Errorf("%w: %w", errCommit, err)
		}
		// COMMIT of a transaction that failed answers ROLLBACK.
		committed = tag.String() == "COMMIT"
		return br.Close()
	})
	if err == nil {
		tx.pendingEvents, tx.pendingActs, tx.dirtyRooms = nil, nil, nil
	}
	return committed, err
}
