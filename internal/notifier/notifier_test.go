package notifier_test

import (
	"context"
	"fmt"
	"testing"

	"github.com/rempart-hs/rempart/internal/notifier"
	"github.com/rempart-hs/rempart/internal/rooms"
	"github.com/rempart-hs/rempart/internal/testserver"
)

func woken(ch <-chan struct{}) bool {
	select {
	case <-ch:
		return true
	default:
		return false
	}
}

// TestWakeRoomSeesMembershipChangesOfOtherWriters checks that WakeRoom's
// member cache follows memberships changed by a writer that never told
// this notifier (as another process would): a second notifier on the same
// database, with its cache warm, must wake a user who joined since and
// keep waking one who left.
func TestWakeRoomSeesMembershipChangesOfOtherWriters(t *testing.T) {
	srv := testserver.Start(t)
	ctx := context.Background()
	eng := srv.Srv.Rooms
	alice := srv.RegisterUser("alice").UserID.String()
	roomID, err := eng.Create(ctx, rooms.CreateRequest{Creator: alice, Preset: "public_chat"})
	if err != nil {
		t.Fatal(err)
	}
	join := func(u, membership string) {
		t.Helper()
		if _, err := eng.ChangeMembership(ctx, rooms.MembershipRequest{RoomID: roomID, Sender: u, Target: u, Membership: membership}); err != nil {
			t.Fatal(err)
		}
	}
	// Big enough for the member list to be cached.
	for i := 0; i < 40; i++ {
		join(fmt.Sprintf("@m%d:%s", i, srv.Config.ServerName), "join")
	}
	other := notifier.New(srv.Srv.DB)
	defer other.Shutdown()
	bob := fmt.Sprintf("@bob:%s", srv.Config.ServerName)
	m0 := fmt.Sprintf("@m0:%s", srv.Config.ServerName)

	chBob, cancelBob := other.Listen(bob)
	defer cancelBob()
	chM0, cancelM0 := other.Listen(m0)
	defer cancelM0()
	other.WakeRoom(roomID) // warms the cache
	if woken(chBob) {
		t.Fatal("a non-member was woken")
	}
	if !woken(chM0) {
		t.Fatal("a member was not woken")
	}

	join(bob, "join")
	other.WakeRoom(roomID)
	if !woken(chBob) {
		t.Fatal("a user who joined through another writer was not woken: stale member cache")
	}
	// Messages do not change the member list; the cached list still serves.
	if _, err := eng.Send(ctx, rooms.SendRequest{RoomID: roomID, Sender: alice, Type: "m.room.message", Content: []byte(`{"msgtype":"m.text","body":"hi"}`)}); err != nil {
		t.Fatal(err)
	}
	other.WakeRoom(roomID)
	if !woken(chBob) || !woken(chM0) {
		t.Fatal("members were not woken after a message")
	}
	// A user who left still has a membership (leave) and is woken, so that
	// their sync reports the leave.
	join(m0, "leave")
	other.WakeRoom(roomID)
	if !woken(chM0) {
		t.Fatal("a user who left was not woken")
	}
}

// BenchmarkWakeRoom is waking a 1,000-member room with one sync waiting:
// a primary-key read of the room's state group, the member list coming
// from the cache.
func BenchmarkWakeRoom(b *testing.B) {
	srv := testserver.Start(b)
	ctx := context.Background()
	eng := srv.Srv.Rooms
	alice := srv.RegisterUser("alice").UserID.String()
	roomID, err := eng.Create(ctx, rooms.CreateRequest{Creator: alice, Preset: "public_chat"})
	if err != nil {
		b.Fatal(err)
	}
	for i := 0; i < 1000; i++ {
		u := fmt.Sprintf("@m%d:%s", i, srv.Config.ServerName)
		if _, err := eng.ChangeMembership(ctx, rooms.MembershipRequest{RoomID: roomID, Sender: u, Target: u, Membership: "join"}); err != nil {
			b.Fatal(err)
		}
	}
	n := srv.Srv.Notifier
	_, cancel := n.Listen(alice)
	defer cancel()
	for b.Loop() {
		n.WakeRoom(roomID)
	}
}
