package storage

import (
	"context"
	"fmt"
	"path/filepath"
	"testing"
)

// TestFailedMoveWaits: when moving staged push actions fails, the
// committer does not try again after every batch (each try is a
// transaction on the single writer), and the rows stay staged and read.
func TestFailedMoveWaits(t *testing.T) {
	ctx := context.Background()
	db, err := Open(ctx, filepath.Join(t.TempDir(), "move.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	// Make every move fail: the copy's target is gone.
	if err := db.WithTx(ctx, func(tx *Tx) error {
		_, err := tx.exec(ctx, `ALTER TABLE event_push_actions RENAME TO event_push_actions_away`)
		return err
	}); err != nil {
		t.Fatal(err)
	}
	acts := make([]PushAction, moveStagedAt)
	for i := range acts {
		acts[i] = PushAction{UserID: fmt.Sprintf("@u%d:x", i), RoomID: "!r:x", StreamPos: 1, ThreadID: "main", Actions: []byte(`["notify"]`)}
	}
	if err := db.Batch(ctx, "", func(ctx context.Context, tx *Tx) error { return tx.InsertPushActions(ctx, acts) }); err != nil {
		t.Fatal(err)
	}
	for range 20 {
		if err := db.Batch(ctx, "", func(ctx context.Context, tx *Tx) error { return nil }); err != nil {
			t.Fatal(err)
		}
	}
	db.mover.mu.Lock()
	failures := db.mover.failures
	db.mover.mu.Unlock()
	if failures != 1 {
		t.Fatalf("%d failed moves over 21 batches within a second, want 1", failures)
	}
	var n int64
	if err := db.queryRow(ctx, `SELECT COUNT(*) FROM event_push_staged`).Scan(&n); err != nil || n != moveStagedAt {
		t.Fatalf("%d rows staged (%v), want %d", n, err, moveStagedAt)
	}
}

// TestMoveIsBounded: the rows staged since the previous move always move
// (under messages to big rooms the table must not grow), but a backlog
// beyond them (the rows left staged when the server last stopped) moves at
// most moveChunkMax rows at a time, never in one transaction that would
// hold every queued send; and the rows all move in the end.
func TestMoveIsBounded(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "move.db")
	db, err := Open(ctx, path)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { db.Close() }()
	total := int64(moveStagedAt + 3*moveChunkMax)
	acts := make([]PushAction, total)
	for i := range acts {
		acts[i] = PushAction{UserID: fmt.Sprintf("@u%d:x", i%1000), RoomID: fmt.Sprintf("!r%d:x", i/1000), StreamPos: int64(i), ThreadID: "main", Actions: []byte(`["notify"]`)}
	}
	count := func(table string) int64 {
		var n int64
		if err := db.queryRow(ctx, `SELECT COUNT(*) FROM `+table).Scan(&n); err != nil {
			t.Fatal(err)
		}
		return n
	}
	// Staged outside a batch, so that the committer does not move any:
	// the test makes the moves the committer makes after each batch.
	stage := func(acts []PushAction) {
		t.Helper()
		if err := db.WithTx(ctx, func(tx *Tx) error { return tx.InsertPushActions(ctx, acts) }); err != nil {
			t.Fatal(err)
		}
	}
	// The rows just staged move at once, down to a chunk under the mark.
	stage(acts[:total/2])
	stage(acts[total/2:])
	db.moveStagedActsIfDue()
	if n := count("event_push_staged"); n != moveStagedAt-moveChunk {
		t.Fatalf("%d of %d rows just staged still staged after a move, want %d", n, total, moveStagedAt-moveChunk)
	}
	// A backlog: rows staged by an earlier run of the server.
	for i := range acts {
		acts[i].StreamPos += total
	}
	stage(acts)
	if err := db.Close(); err != nil {
		t.Fatal(err)
	}
	if db, err = Open(ctx, path); err != nil {
		t.Fatal(err)
	}
	prev := count("event_push_staged")
	if want := moveStagedAt - moveChunk + total; prev != want {
		t.Fatalf("%d rows staged after the restart, want %d", prev, want)
	}
	for moves := 0; prev >= moveStagedAt; moves++ {
		if moves > 10 {
			t.Fatalf("%d rows still staged after %d moves", prev, moves)
		}
		db.moveStagedActsIfDue()
		n := count("event_push_staged")
		if moved := prev - n; moved <= 0 || moved > moveChunkMax {
			t.Fatalf("a move took %d rows of a backlog (%d → %d), want 1 to %d", moved, prev, n, moveChunkMax)
		}
		prev = n
	}
	if moved := count("event_push_actions"); moved+prev != 2*total {
		t.Fatalf("%d rows moved and %d staged, want %d in all", moved, prev, 2*total)
	}
}
