package storage_test

import (
	"context"
	"errors"
	"testing"

	"github.com/rempart-hs/rempart/internal/storage"
)

// TestPendingMediaExpiry: media IDs created for an asynchronous upload stop
// counting against the pending cap once expired and are then deleted,
// while uploaded media and IDs still within their time are kept.
func TestPendingMediaExpiry(t *testing.T) {
	ctx := context.Background()
	db, _ := openTestDB(t)
	const user = "@alice:expiry"
	media := []storage.Media{
		{MediaID: "expired", UserID: user, CreatedTS: 1000, ExpiresTS: 2000},
		{MediaID: "waiting", UserID: user, CreatedTS: 1000, ExpiresTS: 9000},
		{MediaID: "uploaded", UserID: user, CreatedTS: 1000, UploadedTS: 1500, ContentHash: "abc", Size: 3, ContentType: "text/plain"},
	}
	if err := db.WithTx(ctx, func(tx *storage.Tx) error {
		for _, m := range media {
			if err := tx.InsertMedia(ctx, m); err != nil {
				return err
			}
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	var pending int
	var deleted int64
	if err := db.WithTx(ctx, func(tx *storage.Tx) (err error) {
		if pending, err = tx.CountPendingMedia(ctx, user, 5000); err != nil {
			return err
		}
		deleted, err = tx.DeleteExpiredPendingMedia(ctx, 5000)
		return err
	}); err != nil {
		t.Fatal(err)
	}
	if pending != 1 {
		t.Errorf("pending IDs at t=5000: %d, want 1 (the expired one no longer counts)", pending)
	}
	if deleted != 1 {
		t.Errorf("deleted %d expired IDs, want 1", deleted)
	}
	if _, err := db.GetMedia(ctx, "expired"); !errors.Is(err, storage.ErrNotFound) {
		t.Errorf("expired pending ID still there: %v", err)
	}
	for _, id := range []string{"waiting", "uploaded"} {
		if _, err := db.GetMedia(ctx, id); err != nil {
			t.Errorf("%s: %v", id, err)
		}
	}
}
