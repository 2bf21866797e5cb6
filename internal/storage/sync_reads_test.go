package storage_test

import (
	"context"
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/rempart-hs/rempart/internal/rooms"
	"github.com/rempart-hs/rempart/internal/storage"
	"github.com/rempart-hs/rempart/internal/testserver"
)

// TestWindowReadsAgree checks that the window reads answer the same
// whether they scan the window or go through the user's rooms.
func TestWindowReadsAgree(t *testing.T) {
	srv := testserver.Start(t)
	ctx := context.Background()
	eng, db := srv.Srv.Rooms, srv.Srv.DB
	alice := srv.RegisterUser("alice").UserID.String()
	user := func(n string) string { return fmt.Sprintf("@%s:%s", n, srv.Config.ServerName) }
	member := func(roomID, u, membership string) {
		t.Helper()
		if _, err := eng.ChangeMembership(ctx, rooms.MembershipRequest{RoomID: roomID, Sender: u, Target: u, Membership: membership}); err != nil {
			t.Fatal(err)
		}
	}
	var roomIDs []string
	for i := 0; i < 3; i++ {
		roomID, err := eng.Create(ctx, rooms.CreateRequest{Creator: alice, Preset: "public_chat"})
		if err != nil {
			t.Fatal(err)
		}
		roomIDs = append(roomIDs, roomID)
	}
	// A room alice is not in.
	other, err := eng.Create(ctx, rooms.CreateRequest{Creator: user("zed"), Preset: "public_chat"})
	if err != nil {
		t.Fatal(err)
	}
	from, err := db.MaxStreamPos(ctx)
	if err != nil {
		t.Fatal(err)
	}
	member(roomIDs[0], user("bob"), "join")
	member(other, user("carol"), "join")
	if _, err := eng.Send(ctx, rooms.SendRequest{RoomID: roomIDs[1], Sender: alice, Type: "m.room.message", Content: []byte(`{"msgtype":"m.text","body":"hi"}`)}); err != nil {
		t.Fatal(err)
	}
	member(roomIDs[2], user("dan"), "join")
	member(roomIDs[2], user("dan"), "leave")
	to, err := db.MaxStreamPos(ctx)
	if err != nil {
		t.Fatal(err)
	}

	type answer struct {
		members []string
		active  []string
	}
	read := func() answer {
		t.Helper()
		evs, err := db.JoinedRoomMemberEvents(ctx, alice, from, to)
		if err != nil {
			t.Fatal(err)
		}
		var a answer
		for _, ev := range evs {
			a.members = append(a.members, ev.EventID)
		}
		active, err := db.RoomsWithEventsBetween(ctx, append(slices.Clone(roomIDs), "!unknown:x"), from, to)
		if err != nil {
			t.Fatal(err)
		}
		for id := range active {
			a.active = append(a.active, id)
		}
		slices.Sort(a.active)
		return a
	}
	scanned := read()
	restore := storage.SetWindowScanMax(0)
	perRoom := read()
	restore()
	if len(scanned.members) != 3 {
		t.Fatalf("member events in alice's rooms: got %d, want 3 (bob's join, dan's join and leave)", len(scanned.members))
	}
	want := slices.Sorted(slices.Values(roomIDs))
	if !slices.Equal(scanned.active, want) {
		t.Fatalf("active rooms %v, want %v", scanned.active, want)
	}
	if !slices.Equal(scanned.members, perRoom.members) || !slices.Equal(scanned.active, perRoom.active) {
		t.Fatalf("window scan %v and per-room reads %v disagree", scanned, perRoom)
	}

	// Sharing: bob shares a room with alice, carol does not.
	sh, err := db.SharingAmong(ctx, alice, []string{user("bob"), user("carol"), user("dan")})
	if err != nil {
		t.Fatal(err)
	}
	if !sh[user("bob")] || sh[user("carol")] || sh[user("dan")] {
		t.Fatalf("SharingAmong = %v", sh)
	}
}

// TestSafeStreamPosHoldsBelowUncommittedPosition checks, on PostgreSQL,
// that while a transaction holds an inserted but uncommitted event, the
// safe position stays below it even though a higher position committed,
// and moves up once it commits.
func TestSafeStreamPosHoldsBelowUncommittedPosition(t *testing.T) {
	if testserver.Backend() != "postgres" {
		t.Skip("SQLite commits positions in order")
	}
	srv := testserver.Start(t)
	ctx := context.Background()
	eng, db := srv.Srv.Rooms, srv.Srv.DB
	alice := srv.RegisterUser("alice").UserID.String()
	slow, err := eng.Create(ctx, rooms.CreateRequest{Creator: alice, Preset: "public_chat"})
	if err != nil {
		t.Fatal(err)
	}
	fast, err := eng.Create(ctx, rooms.CreateRequest{Creator: alice, Preset: "public_chat"})
	if err != nil {
		t.Fatal(err)
	}
	inserted := make(chan int64)
	release := make(chan struct{})
	done := make(chan error)
	go func() {
		done <- db.WithTx(ctx, func(tx *storage.Tx) error {
			room, err := tx.LockRoom(ctx, slow)
			if err != nil {
				return err
			}
			pos, err := tx.AppendEvent(ctx, &room, storage.NewEvent{Event: storage.Event{
				EventID: "$uncommitted", RoomID: slow, Type: "m.room.message", Sender: alice,
				OriginServerTS: time.Now().UnixMilli(), Depth: room.Depth + 1, JSON: []byte(`{}`)}})
			if err != nil {
				return err
			}
			inserted <- pos
			<-release
			return nil
		})
	}()
	var pending int64
	select {
	case pending = <-inserted:
	case err := <-done:
		t.Fatal(err)
	}
	if _, err := eng.Send(ctx, rooms.SendRequest{RoomID: fast, Sender: alice, Type: "m.room.message", Content: []byte(`{"msgtype":"m.text","body":"later"}`)}); err != nil {
		t.Fatal(err)
	}
	safe, highest, err := db.SafeStreamPos(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if highest <= pending || safe != pending-1 {
		t.Fatalf("with position %d uncommitted: safe %d, highest %d; want safe %d below a higher highest", pending, safe, highest, pending-1)
	}
	close(release)
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if safe, highest, err = db.SafeStreamPos(ctx); err != nil || safe != highest {
		t.Fatalf("after the commit: safe %d, highest %d, err %v; want them equal", safe, highest, err)
	}
}
