package storage_test

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/rempart-hs/rempart/internal/storage"
)

// Transaction IDs are kept for a day: older ones are pruned (in chunks,
// so more than one chunk's worth here), younger ones still answer a
// retried request.
func TestTxnIDsArePrunedAfterADay(t *testing.T) {
	db, _ := openTestDB(t)
	ctx := context.Background()
	now := time.Now()
	old, young := now.Add(-25*time.Hour).UnixMilli(), now.Add(-23*time.Hour).UnixMilli()
	const nOld = 2500
	if err := db.WithTx(ctx, func(tx *storage.Tx) error {
		for i := range nOld {
			if err := tx.PutTxnResult(ctx, "@a:t", "D", "send", fmt.Sprintf("old%d", i), "$old", old+int64(i)); err != nil {
				return err
			}
		}
		return tx.PutTxnResult(ctx, "@a:t", "D", "send", "young", "$young", young)
	}); err != nil {
		t.Fatal(err)
	}
	n, err := db.PruneTxnIDs(ctx, now)
	if err != nil {
		t.Fatal(err)
	}
	if n != nOld {
		t.Errorf("pruned %d records, want %d", n, nOld)
	}
	if err := db.WithTx(ctx, func(tx *storage.Tx) error {
		if r, err := tx.TxnResult(ctx, "@a:t", "D", "send", "young"); err != nil || r != "$young" {
			t.Errorf("record of 23 hours ago: %q, %v; want $young", r, err)
		}
		if _, err := tx.TxnResult(ctx, "@a:t", "D", "send", "old7"); !errors.Is(err, storage.ErrNotFound) {
			t.Errorf("record of 25 hours ago: %v, want ErrNotFound", err)
		}
		// A claim of a pruned ID is a new claim.
		prev, err := tx.ClaimTxn(ctx, "@a:t", "D", "send", "old7", "$again", now.UnixMilli())
		if err != nil || prev != "" {
			t.Errorf("claim of a pruned ID: %q, %v; want a new claim", prev, err)
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
}
