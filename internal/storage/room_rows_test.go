package storage_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/rempart-hs/rempart/internal/storage"
)

// The group committer keeps the room rows it read and wrote (SQLite,
// room_rows.go). A batch must always see the room as committed: after its
// own earlier batches, after writes made outside the batches (a
// transaction of WithTx appending an event, a change of visibility), and
// never what a rolled-back batch wrote.
func TestBatchesSeeEveryRoomWrite(t *testing.T) {
	db, _ := openTestDB(t)
	ctx := context.Background()
	batchRooms(t, db, "!r:batch")
	n := 0
	// send appends a message in a batch and returns the room row its unit
	// locked first.
	send := func(fail bool) (storage.Room, error) {
		t.Helper()
		n++
		id := "$e" + string(rune('a'+n))
		var seen storage.Room
		err := db.Batch(ctx, "!r:batch", func(ctx context.Context, tx *storage.Tx) error {
			room, err := tx.LockRoom(ctx, "!r:batch")
			if err != nil {
				return err
			}
			seen = room
			if _, err := tx.AppendEvent(ctx, &room, storage.NewEvent{Event: storage.Event{EventID: id, RoomID: "!r:batch",
				Type: "m.room.message", Sender: "@x:batch", OriginServerTS: time.Now().UnixMilli(), Depth: room.Depth + 1, JSON: []byte(`{}`)}}); err != nil {
				return err
			}
			if fail {
				return errors.New("fails on purpose")
			}
			return nil
		})
		return seen, err
	}
	want := func(what string, got storage.Room, latest string, depth int64, visibility string) {
		t.Helper()
		if got.LatestEventID != latest || got.Depth != depth || got.Visibility != visibility {
			t.Errorf("%s: batch saw head %q depth %d visibility %q; want %q, %d, %q", what, got.LatestEventID, got.Depth, got.Visibility, latest, depth, visibility)
		}
	}

	if _, err := send(false); err != nil {
		t.Fatal(err)
	}
	got, err := send(false)
	if err != nil {
		t.Fatal(err)
	}
	want("after a batch", got, "$eb", 1, "private")

	// Appended outside the batches.
	if err := db.WithTx(ctx, func(tx *storage.Tx) error {
		room, err := tx.LockRoom(ctx, "!r:batch")
		if err != nil {
			return err
		}
		_, err = tx.AppendEvent(ctx, &room, storage.NewEvent{Event: storage.Event{EventID: "$outside", RoomID: "!r:batch",
			Type: "m.room.message", Sender: "@x:batch", OriginServerTS: 1, Depth: room.Depth + 1, JSON: []byte(`{}`)}})
		return err
	}); err != nil {
		t.Fatal(err)
	}
	got, err = send(false)
	if err != nil {
		t.Fatal(err)
	}
	want("after an append outside the batches", got, "$outside", 3, "private")

	// A rolled-back batch leaves nothing behind.
	if _, err := send(true); err == nil {
		t.Fatal("the failing unit succeeded")
	}
	got, err = send(false)
	if err != nil {
		t.Fatal(err)
	}
	want("after a rolled-back batch", got, "$ed", 4, "private")

	// Published in the directory outside the batches.
	if err := db.WithTx(ctx, func(tx *storage.Tx) error { return tx.SetRoomVisibility(ctx, "!r:batch", "public") }); err != nil {
		t.Fatal(err)
	}
	got, err = send(false)
	if err != nil {
		t.Fatal(err)
	}
	want("after a change of visibility", got, "$ef", 5, "public")

	r, err := db.GetRoom(ctx, "!r:batch")
	if err != nil {
		t.Fatal(err)
	}
	if r.LatestEventID != "$eg" || r.Depth != 6 {
		t.Errorf("stored head %q depth %d; want $eg, 6", r.LatestEventID, r.Depth)
	}
}
