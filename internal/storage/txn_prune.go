package storage

import (
	"context"
	"log/slog"
	"sync"
	"time"
)

// Transaction IDs make a PUT idempotent: a client retrying a send gets the
// first answer back instead of a second event. Clients retry within
// seconds or minutes (and a restarted client within hours), so the record
// is kept for a day, as Synapse does, and then deleted: kept for ever it
// grew by some 300 bytes per send (139 MiB after 485,000 benchmark sends).
const (
	txnRetention = 24 * time.Hour
	// txnPruneEvery is how often the pruner runs; txnPruneChunk how many
	// records one of its transactions deletes, so that the writer (on
	// SQLite the only one) is never held long.
	txnPruneEvery = 10 * time.Minute
	txnPruneChunk = 1000
)

// pruneTxnIDsSQL deletes a chunk of the records older than a time, found
// through their index by age.
const pruneTxnIDsSQL = `DELETE FROM txn_ids WHERE (user_id, device_id, scope, txn_id) IN
	(SELECT user_id, device_id, scope, txn_id FROM txn_ids WHERE created_ts < ? ORDER BY created_ts LIMIT ?)`

// PruneTxnIDs deletes the transaction IDs recorded before
// now - txnRetention, a chunk per transaction, and returns how many it
// deleted.
func (db *DB) PruneTxnIDs(ctx context.Context, now time.Time) (int64, error) {
	cutoff := now.Add(-txnRetention).UnixMilli()
	var total int64
	for {
		var n int64
		err := db.WithTx(ctx, func(tx *Tx) error {
			res, err := tx.exec(ctx, pruneTxnIDsSQL, cutoff, txnPruneChunk)
			if err != nil {
				return err
			}
			n, err = res.RowsAffected()
			return err
		})
		total += n
		if err != nil || n < txnPruneChunk {
			return total, err
		}
	}
}

// startPruner runs PruneTxnIDs every txnPruneEvery, and PrunePushActions
// every pushPruneEvery, from the first tick on, until closed.
func startPruner(db *DB) *background {
	var pushPruned time.Time // the first pass at the first tick
	return startBackground(txnPruneEvery, false, func(ctx context.Context) {
		tctx, tcancel := context.WithTimeout(ctx, time.Minute)
		if _, err := db.PruneTxnIDs(tctx, time.Now()); err != nil && ctx.Err() == nil {
			slog.Warn("storage: prune transaction IDs", "err", err)
		}
		tcancel()
		if time.Since(pushPruned) >= pushPruneEvery {
			pushPruned = time.Now()
			if _, err := db.PrunePushActions(ctx, time.Now()); err != nil && ctx.Err() == nil {
				slog.Warn("storage: prune read push actions", "err", err)
			}
		}
	})
}

// background runs a task on a goroutine of its own every period until
// closed (the pruner, the analyser).
type background struct {
	cancel context.CancelFunc
	wg     sync.WaitGroup
}

// startBackground runs f every period, first at once when now is set,
// otherwise at the first tick; f's context ends when the task is closed.
func startBackground(period time.Duration, now bool, f func(ctx context.Context)) *background {
	ctx, cancel := context.WithCancel(context.Background())
	b := &background{cancel: cancel}
	b.wg.Add(1)
	go func() {
		defer b.wg.Done()
		t := time.NewTicker(period)
		defer t.Stop()
		for {
			if now {
				f(ctx)
			}
			now = true
			select {
			case <-ctx.Done():
				return
			case <-t.C:
			}
		}
	}()
	return b
}

// close stops the task and waits for a run in progress (nil: nothing).
func (b *background) close() {
	if b == nil {
		return
	}
	b.cancel()
	b.wg.Wait()
}
