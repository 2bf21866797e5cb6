package integration

import (
	"context"
	"fmt"
	"slices"
	"testing"

	"maunium.net/go/mautrix"
	"maunium.net/go/mautrix/event"
	"maunium.net/go/mautrix/id"

	"github.com/rempart-hs/rempart/internal/testserver"
)

// messageBodies returns the bodies of the m.room.message events.
func messageBodies(evs []*event.Event) []string {
	var out []string
	for _, ev := range evs {
		if ev.Type != event.EventMessage {
			continue
		}
		_ = ev.Content.ParseRaw(ev.Type)
		out = append(out, ev.Content.AsMessage().Body)
	}
	return out
}

// A client that misses a burst of messages gets a limited timeline with a
// state delta, fills the gap with /messages from prev_batch, and ends up
// with every message exactly once and in order, across a server restart.
func TestSyncGapFilledByPagination(t *testing.T) {
	srv := testserver.Start(t)
	ctx := context.Background()
	alice := srv.RegisterUser("gapalice")
	bob := srv.RegisterUser("gapbob")
	room, err := alice.CreateRoom(ctx, &mautrix.ReqCreateRoom{Preset: "public_chat", Name: "gap"})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := bob.JoinRoomByID(ctx, room.RoomID); err != nil {
		t.Fatal(err)
	}
	const filter = `{"room":{"timeline":{"limit":5}}}`
	first, err := bob.SyncRequest(ctx, 0, "", filter, false, "")
	if err != nil {
		t.Fatal(err)
	}
	since := first.NextBatch

	var want []string
	for i := 0; i < 30; i++ {
		want = append(want, fmt.Sprintf("burst %02d", i))
		if _, err := alice.SendText(ctx, room.RoomID, want[i]); err != nil {
			t.Fatal(err)
		}
		if i == 10 {
			if _, err := alice.SendStateEvent(ctx, room.RoomID, event.StateRoomName, "", &event.RoomNameEventContent{Name: "renamed in the gap"}); err != nil {
				t.Fatal(err)
			}
		}
	}
	srv.Restart()

	resp, err := bob.SyncRequest(ctx, 0, since, filter, false, "")
	if err != nil {
		t.Fatal(err)
	}
	jr := resp.Rooms.Join[room.RoomID]
	if jr == nil || !jr.Timeline.Limited || jr.Timeline.PrevBatch == "" {
		t.Fatalf("expected a limited timeline with prev_batch, got %+v", jr)
	}
	var renamed bool
	for _, ev := range jr.State.Events {
		if ev.Type == event.StateRoomName {
			renamed = true
		}
	}
	if !renamed {
		t.Fatal("the rename in the gap is not in the state delta")
	}
	got := messageBodies(jr.Timeline.Events)
	from := jr.Timeline.PrevBatch
	for pages := 0; ; pages++ {
		page, err := bob.Messages(ctx, room.RoomID, from, since, mautrix.DirectionBackward, nil, 7)
		if err != nil {
			t.Fatalf("messages: %v", err)
		}
		older := messageBodies(page.Chunk)
		slices.Reverse(older)
		got = append(older, got...)
		if page.End == "" {
			break
		}
		if pages > 20 {
			t.Fatal("pagination does not end")
		}
		from = page.End
	}
	if !slices.Equal(got, want) {
		t.Fatalf("reassembled timeline:\n%v\nwant\n%v", got, want)
	}
}

// Membership changes reach the affected user's sync: invite, join, kick
// (leave section) and the room's other members see each step.
func TestSyncMembershipJourney(t *testing.T) {
	srv := testserver.Start(t)
	ctx := context.Background()
	alice := srv.RegisterUser("jalice")
	bob := srv.RegisterUser("jbob")
	s0, err := bob.SyncRequest(ctx, 0, "", "", false, "")
	if err != nil {
		t.Fatal(err)
	}
	room, err := alice.CreateRoom(ctx, &mautrix.ReqCreateRoom{Preset: "private_chat", Invite: []id.UserID{bob.UserID}})
	if err != nil {
		t.Fatal(err)
	}
	s1, err := bob.SyncRequest(ctx, 5000, s0.NextBatch, "", false, "")
	if err != nil {
		t.Fatal(err)
	}
	if s1.Rooms.Invite[room.RoomID] == nil {
		t.Fatalf("no invite in sync: %+v", s1.Rooms)
	}
	if _, err := bob.JoinRoomByID(ctx, room.RoomID); err != nil {
		t.Fatal(err)
	}
	s2, err := bob.SyncRequest(ctx, 5000, s1.NextBatch, "", false, "")
	if err != nil {
		t.Fatal(err)
	}
	if s2.Rooms.Join[room.RoomID] == nil {
		t.Fatalf("no join in sync: %+v", s2.Rooms)
	}
	if _, err := alice.KickUser(ctx, room.RoomID, &mautrix.ReqKickUser{UserID: bob.UserID, Reason: "test"}); err != nil {
		t.Fatal(err)
	}
	s3, err := bob.SyncRequest(ctx, 5000, s2.NextBatch, "", false, "")
	if err != nil {
		t.Fatal(err)
	}
	lr := s3.Rooms.Leave[room.RoomID]
	if lr == nil || len(lr.Timeline.Events) == 0 {
		t.Fatalf("no leave in sync after a kick: %+v", s3.Rooms)
	}
	last := lr.Timeline.Events[len(lr.Timeline.Events)-1]
	_ = last.Content.ParseRaw(last.Type)
	if last.Type != event.StateMember || last.Content.AsMember().Membership != event.MembershipLeave || last.Sender != alice.UserID {
		t.Fatalf("leave timeline ends with %+v", last)
	}
	// Bob can no longer send, and his joined rooms are empty.
	if _, err := bob.SendText(ctx, room.RoomID, "still here?"); err == nil {
		t.Fatal("a kicked user could send")
	}
	jr, err := bob.JoinedRooms(ctx)
	if err != nil || len(jr.JoinedRooms) != 0 {
		t.Fatalf("joined rooms after kick = %v, %v", jr, err)
	}
}
