package storage_test

import (
	"context"
	"fmt"
	"sync"
	"testing"

	"github.com/rempart-hs/rempart/internal/rooms"
	"github.com/rempart-hs/rempart/internal/storage"
)

// BenchmarkPublishedRooms measures the published room list that
// GET /publicRooms reads at each request, with 1,000 published rooms.
func BenchmarkPublishedRooms(b *testing.B) {
	const published = 1000
	f := newPushFixture(b, 0)
	ctx := context.Background()
	var wg sync.WaitGroup
	var mu sync.Mutex
	var ids []string
	for g := range 16 {
		wg.Go(func() {
			for i := g; i < published; i += 16 {
				name := fmt.Sprintf("Room %d", i)
				id, err := f.srv.Srv.Rooms.Create(ctx, rooms.CreateRequest{Creator: f.alice, Preset: "public_chat", Name: &name})
				if err != nil {
					b.Error(err)
					return
				}
				mu.Lock()
				ids = append(ids, id)
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	mustTx(b, f.db, func(tx *storage.Tx) error {
		for _, id := range ids {
			if err := tx.SetRoomVisibility(ctx, id, "public"); err != nil {
				return err
			}
		}
		return nil
	})
	for b.Loop() {
		rs, err := f.db.PublishedRooms(ctx)
		if err != nil || len(rs) != published {
			b.Fatal(err, len(rs))
		}
	}
}
