package storage_test

import (
	"context"
	"fmt"
	"slices"
	"testing"

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
