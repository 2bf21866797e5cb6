package storage_test

import (
	"context"
	"fmt"
	"maps"
	"math"
	"testing"

	"github.com/rempart-hs/rempart/internal/rooms"
	"github.com/rempart-hs/rempart/internal/storage"
)

// TestStateGroupIDsLazy checks that the lazy-loaded read of a state group
// answers the full state less the member entries of other users, at every
// event of a room whose state changed in many ways: joins, a leave and a
// rejoin, renames, a topic, so that the groups are delta chains of several
// lengths in which later entries replace earlier ones.
func TestStateGroupIDsLazy(t *testing.T) {
	f := newPushFixture(t, 1)
	ctx := context.Background()
	eng, db, room := f.srv.Srv.Rooms, f.db, f.rooms[0]
	empty := ""
	var users []string
	for i := range 12 {
		u := f.srv.RegisterUser(fmt.Sprintf("lazy%d", i)).UserID.String()
		users = append(users, u)
		if _, err := eng.ChangeMembership(ctx, rooms.MembershipRequest{RoomID: room, Sender: u, Target: u, Membership: "join"}); err != nil {
			t.Fatal(err)
		}
		if i%4 == 0 {
			if _, err := eng.Send(ctx, rooms.SendRequest{RoomID: room, Sender: f.alice, Type: "m.room.name", StateKey: &empty, Content: []byte(fmt.Sprintf(`{"name":"room %d"}`, i))}); err != nil {
				t.Fatal(err)
			}
		}
	}
	if _, err := eng.Send(ctx, rooms.SendRequest{RoomID: room, Sender: f.alice, Type: "m.room.topic", StateKey: &empty, Content: []byte(`{"topic":"t"}`)}); err != nil {
		t.Fatal(err)
	}
	for _, m := range []string{"leave", "join"} {
		if _, err := eng.ChangeMembership(ctx, rooms.MembershipRequest{RoomID: room, Sender: users[3], Target: users[3], Membership: m}); err != nil {
			t.Fatal(err)
		}
	}
	f.send(room, `{"msgtype":"m.text","body":"last"}`)

	members := []string{f.alice, users[3], users[7], "@nobody:localhost"}
	want := func(full map[storage.StateKeyTuple]string) map[storage.StateKeyTuple]string {
		out := map[storage.StateKeyTuple]string{}
		for k, id := range full {
			if k.Type != "m.room.member" || k.StateKey == f.alice || k.StateKey == users[3] || k.StateKey == users[7] {
				out[k] = id
			}
		}
		return out
	}
	checked, skipped := 0, 0
	for pos := int64(math.MaxInt64); ; {
		ev, err := db.LastEventBefore(ctx, room, pos)
		if err != nil {
			break // past the room's first event
		}
		pos = ev.StreamPos - 1
		full, err := db.StateGroupIDs(ctx, ev.StateGroupBefore)
		if err != nil {
			t.Fatal(err)
		}
		lazy, err := db.StateGroupIDsLazy(ctx, ev.StateGroupBefore, members)
		if err != nil {
			t.Fatal(err)
		}
		if w := want(full); !maps.Equal(lazy, w) {
			t.Fatalf("state before %s: lazy %v, want %v", ev.EventID, lazy, w)
		}
		if len(full) > len(lazy) {
			checked++
		} else {
			skipped++
		}
	}
	if checked < 10 {
		t.Fatalf("%d states checked with members left out (%d without): the room is too small to tell", checked, skipped)
	}
}

// TestCurrentStateRoomsWithoutMembers checks that the current state read
// without members is the whole current state less its member events, with
// state types on both sides of m.room.member.
func TestCurrentStateRoomsWithoutMembers(t *testing.T) {
	f := newPushFixture(t, 2)
	ctx := context.Background()
	empty := ""
	for _, typ := range []string{"m.room.topic", "m.room.avatar", "a.custom.state", "z.custom.state"} {
		if _, err := f.srv.Srv.Rooms.Send(ctx, rooms.SendRequest{RoomID: f.rooms[0], Sender: f.alice, Type: typ, StateKey: &empty, Content: []byte(`{"x":1}`)}); err != nil {
			t.Fatal(err)
		}
	}
	all, err := f.db.CurrentStateRooms(ctx, f.rooms, true)
	if err != nil {
		t.Fatal(err)
	}
	some, err := f.db.CurrentStateRooms(ctx, f.rooms, false)
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]bool{}
	for _, ev := range all {
		if ev.Type != "m.room.member" {
			want[ev.EventID] = true
		}
	}
	got := map[string]bool{}
	for _, ev := range some {
		got[ev.EventID] = true
	}
	if !maps.Equal(got, want) || len(want) < 2*5+4 {
		t.Fatalf("without members: %d events, want %d of %d", len(got), len(want), len(all))
	}
}
