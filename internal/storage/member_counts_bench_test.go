package storage_test

import (
	"context"
	"fmt"
	"testing"

	"github.com/rempart-hs/rempart/internal/storage"
)

// BenchmarkMemberCounts measures a room's member counts (the summary a
// /sync gives each member after a membership change) as the room grows.
func BenchmarkMemberCounts(b *testing.B) {
	for _, members := range []int{100, 1_000, 10_000} {
		b.Run(fmt.Sprintf("members=%d", members), func(b *testing.B) {
			f := newPushFixture(b, 1)
			room := f.rooms[0]
			users := make([]string, members)
			for i := range users {
				users[i] = fmt.Sprintf("@member%06d:localhost", i)
			}
			if err := storage.InsertMemberships(f.db, room, users); err != nil {
				b.Fatal(err)
			}
			ctx := context.Background()
			for b.Loop() {
				c, err := f.db.MemberCounts(ctx, f.rooms)
				if err != nil || c[room]["join"] < members {
					b.Fatal(err, c)
				}
			}
		})
	}
}
