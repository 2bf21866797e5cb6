package storage_test

import (
	"context"
	"testing"
	"time"

	"github.com/rempart-hs/rempart/internal/storage"
)

// TestEventPositionsBecomeVisibleInOrder: while a transaction holds an
// appended but uncommitted event, no higher stream position may become
// visible, even in another room, or a sync handing out that higher position
// as its token would skip the lower one for ever. (SQLite's single writer
// gives this for free; PostgreSQL needs the event-order lock.)
func TestEventPositionsBecomeVisibleInOrder(t *testing.T) {
	ctx := context.Background()
	db, _ := openTestDB(t)
	if err := db.WithTx(ctx, func(tx *storage.Tx) error {
		for _, id := range []string{"!a:order", "!b:order"} {
			if err := tx.CreateRoom(ctx, storage.Room{RoomID: id, RoomVersion: "11", Creator: "@x:order", CreatedTS: 1, Visibility: "private"}); err != nil {
				return err
			}
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	appendIn := func(tx *storage.Tx, roomID, eventID string) (int64, error) {
		room, err := tx.LockRoom(ctx, roomID)
		if err != nil {
			return 0, err
		}
		return tx.AppendEvent(ctx, &room, storage.NewEvent{Event: storage.Event{EventID: eventID, RoomID: roomID,
			Type: "m.room.message", Sender: "@x:order", OriginServerTS: time.Now().UnixMilli(), Depth: 1, JSON: []byte(`{}`)}})
	}

	appended := make(chan int64)
	release := make(chan struct{})
	firstDone := make(chan error, 1)
	go func() {
		firstDone <- db.WithTx(ctx, func(tx *storage.Tx) error {
			pos, err := appendIn(tx, "!a:order", "$first")
			if err != nil {
				close(appended)
				return err
			}
			appended <- pos
			<-release
			return nil
		})
	}()
	first, ok := <-appended
	if !ok {
		t.Fatal(<-firstDone)
	}
	secondDone := make(chan error, 1)
	var second int64
	go func() {
		secondDone <- db.WithTx(ctx, func(tx *storage.Tx) error {
			var err error
			second, err = appendIn(tx, "!b:order", "$second")
			return err
		})
	}()
	// Whatever the second writer does meanwhile, nothing at or above the
	// uncommitted position may be visible.
	deadline := time.Now().Add(400 * time.Millisecond)
	for time.Now().Before(deadline) {
		head, err := db.MaxStreamPos(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if head >= first {
			t.Fatalf("head %d is visible while position %d is not committed", head, first)
		}
		time.Sleep(20 * time.Millisecond)
	}
	close(release)
	if err := <-firstDone; err != nil {
		t.Fatal(err)
	}
	if err := <-secondDone; err != nil {
		t.Fatal(err)
	}
	if head, err := db.MaxStreamPos(ctx); err != nil || second <= first || head != second {
		t.Fatalf("after both commits: head %d, positions %d then %d, %v", head, first, second, err)
	}
}
