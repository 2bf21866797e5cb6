package rooms_test

import (
	"context"
	"encoding/json"
	"fmt"
	"maps"
	"math"
	"testing"

	"github.com/rempart-hs/rempart/internal/rooms"
	"github.com/rempart-hs/rempart/internal/storage"
	"github.com/rempart-hs/rempart/internal/testserver"
)

// TestStateGroupsFollowEvents changes a room's state 200 times (names,
// joins, leaves, custom state) with messages in between, enough for its
// state groups to be deltas on deltas and then new full snapshots several
// times over, then checks every stored event against a replay of the
// room's events: the state group before and after each event resolves
// to the state the events before it (and including it) made, and the
// room's current state and memberships are those of the last one.
func TestStateGroupsFollowEvents(t *testing.T) {
	srv := testserver.Start(t)
	ctx := context.Background()
	alice := srv.RegisterUser("alice").UserID.String()
	roomID, err := srv.Srv.Rooms.Create(ctx, rooms.CreateRequest{Creator: alice, Preset: "public_chat"})
	if err != nil {
		t.Fatal(err)
	}
	for i := range 200 {
		var err error
		switch u := fmt.Sprintf("@m%d:%s", i%7, srv.Config.ServerName); i % 5 {
		case 0:
			_, err = srv.Srv.Rooms.Send(ctx, rooms.SendRequest{RoomID: roomID, Sender: alice, Type: "m.room.name", StateKey: new(string),
				Content: json.RawMessage(fmt.Sprintf(`{"name":"name %d"}`, i))})
		case 1:
			_, err = srv.Srv.Rooms.ChangeMembership(ctx, rooms.MembershipRequest{RoomID: roomID, Sender: u, Target: u, Membership: "join"})
		case 2:
			sk := fmt.Sprintf("k%d", i%3)
			_, err = srv.Srv.Rooms.Send(ctx, rooms.SendRequest{RoomID: roomID, Sender: alice, Type: "org.example.state", StateKey: &sk,
				Content: json.RawMessage(fmt.Sprintf(`{"i":%d}`, i))})
		case 3:
			_, err = srv.Srv.Rooms.Send(ctx, rooms.SendRequest{RoomID: roomID, Sender: alice, Type: "m.room.message",
				Content: json.RawMessage(`{"msgtype":"m.text","body":"between"}`)})
		case 4:
			_, err = srv.Srv.Rooms.ChangeMembership(ctx, rooms.MembershipRequest{RoomID: roomID, Sender: u, Target: u, Membership: "leave"})
			if err != nil {
				err = nil // not joined at the time: nothing to leave
			}
		}
		if err != nil {
			t.Fatalf("step %d: %v", i, err)
		}
	}
	evs, err := srv.Srv.DB.RoomEvents(ctx, roomID, 0, math.MaxInt64, 1000, false)
	if err != nil {
		t.Fatal(err)
	}
	state := map[storage.StateKeyTuple]string{}
	groups := map[int64]map[storage.StateKeyTuple]string{}
	resolve := func(g int64) map[storage.StateKeyTuple]string {
		if s, ok := groups[g]; ok {
			return s
		}
		s, err := srv.Srv.DB.StateGroupIDs(ctx, g)
		if err != nil {
			t.Fatal(err)
		}
		groups[g] = s
		return s
	}
	stateChanges := 0
	for _, ev := range evs {
		if !maps.Equal(resolve(ev.StateGroupBefore), state) {
			t.Fatalf("%s (%s): state group before %d = %v, want %v", ev.EventID, ev.Type, ev.StateGroupBefore, resolve(ev.StateGroupBefore), state)
		}
		if ev.StateKey != nil {
			state[storage.StateKeyTuple{Type: ev.Type, StateKey: *ev.StateKey}] = ev.EventID
			stateChanges++
		} else if ev.StateGroupAfter != ev.StateGroupBefore {
			t.Fatalf("%s (%s) changed the state group", ev.EventID, ev.Type)
		}
		if !maps.Equal(resolve(ev.StateGroupAfter), state) {
			t.Fatalf("%s (%s): state group after %d = %v, want %v", ev.EventID, ev.Type, ev.StateGroupAfter, resolve(ev.StateGroupAfter), state)
		}
	}
	if stateChanges < 150 {
		t.Fatalf("only %d state changes", stateChanges)
	}
	current, err := srv.Srv.DB.CurrentState(ctx, roomID, nil)
	if err != nil {
		t.Fatal(err)
	}
	got := map[storage.StateKeyTuple]string{}
	for _, ev := range current {
		got[storage.StateKeyTuple{Type: ev.Type, StateKey: *ev.StateKey}] = ev.EventID
	}
	if !maps.Equal(got, state) {
		t.Fatalf("current state %v, want %v", got, state)
	}
	for i := range 7 {
		u := fmt.Sprintf("@m%d:%s", i, srv.Config.ServerName)
		m, err := srv.Srv.DB.GetMembership(ctx, roomID, u)
		if err != nil {
			t.Fatal(err)
		}
		if want := state[storage.StateKeyTuple{Type: "m.room.member", StateKey: u}]; m.EventID != want {
			t.Fatalf("membership of %s from %s, want %s", u, m.EventID, want)
		}
	}
	room, err := srv.Srv.DB.GetRoom(ctx, roomID)
	if err != nil {
		t.Fatal(err)
	}
	last := evs[len(evs)-1]
	if room.LatestEventID != last.EventID || room.StateGroup != last.StateGroupAfter || room.Depth != last.Depth {
		t.Fatalf("room head %+v, last event %s at depth %d, group %d", room, last.EventID, last.Depth, last.StateGroupAfter)
	}
}
