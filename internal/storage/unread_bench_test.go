package storage_test

import (
	"context"
	"fmt"
	"sync"
	"testing"
)

// BenchmarkUnreadCounts measures what a /sync pays for a member's unread
// counts in a room that has one new message, as the member's unread
// notifications there grow: before counts were kept (unread_cache.go),
// each such count read every unread row.
func BenchmarkUnreadCounts(b *testing.B) {
	for _, unread := range []int{100, 1_000, 10_000, 30_000} {
		b.Run(fmt.Sprintf("unread=%d", unread), func(b *testing.B) {
			f := newPushFixture(b, 1)
			ctx := context.Background()
			room := f.rooms[0]
			// The unread messages, sent by 32 goroutines at once so that
			// their commits are shared.
			var wg sync.WaitGroup
			for g := range 32 {
				wg.Go(func() {
					for i := g; i < unread; i += 32 {
						f.send(room, `{"msgtype":"m.text","body":"unread"}`)
					}
				})
			}
			wg.Wait()
			if _, err := f.db.UnreadCountsRooms(ctx, f.rooms, f.alice); err != nil {
				b.Fatal(err)
			}
			for b.Loop() {
				b.StopTimer()
				f.send(room, `{"msgtype":"m.text","body":"new"}`)
				b.StartTimer()
				c, err := f.db.UnreadCountsRooms(ctx, f.rooms, f.alice)
				if err != nil || c[room]["main"].Notifications < unread {
					b.Fatal(err, c)
				}
			}
		})
	}
}
