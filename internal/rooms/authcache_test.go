package rooms_test

import (
	"context"
	"encoding/json"
	"testing"

	"github.com/rempart-hs/rempart/internal/rooms"
	"github.com/rempart-hs/rempart/internal/testserver"
)

// TestAllowedSendsFollowState checks that the auth answers kept for
// message sends (per room, sender and type) end with the state they were
// given on: a sender allowed a moment ago is refused once banned, and a
// type once its power level is raised, and allowed again when the state
// allows it again.
func TestAllowedSendsFollowState(t *testing.T) {
	srv := testserver.Start(t)
	ctx := context.Background()
	alice := srv.RegisterUser("alice").UserID.String()
	bob := srv.RegisterUser("bob").UserID.String()
	roomID, err := srv.Srv.Rooms.Create(ctx, rooms.CreateRequest{Creator: alice, Preset: "public_chat"})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := srv.Srv.Rooms.ChangeMembership(ctx, rooms.MembershipRequest{RoomID: roomID, Sender: bob, Target: bob, Membership: "join"}); err != nil {
		t.Fatal(err)
	}
	send := func(sender, evType string) error {
		_, err := srv.Srv.Rooms.Send(ctx, rooms.SendRequest{RoomID: roomID, Sender: sender, Type: evType,
			Content: json.RawMessage(`{"msgtype":"m.text","body":"hi"}`)})
		return err
	}
	mustSend := func(sender, evType string) {
		t.Helper()
		for range 3 { // the second and third use the kept answer
			if err := send(sender, evType); err != nil {
				t.Fatalf("%s sending %s: %v", sender, evType, err)
			}
		}
	}
	mustFail := func(sender, evType, why string) {
		t.Helper()
		if err := send(sender, evType); err == nil {
			t.Fatalf("%s sent %s %s", sender, evType, why)
		}
	}
	setPowerLevels := func(content string) {
		t.Helper()
		empty := ""
		if _, err := srv.Srv.Rooms.Send(ctx, rooms.SendRequest{RoomID: roomID, Sender: alice, Type: "m.room.power_levels", StateKey: &empty, Content: json.RawMessage(content)}); err != nil {
			t.Fatal(err)
		}
	}

	mustSend(bob, "m.room.message")
	mustSend(bob, "org.example.custom")
	setPowerLevels(`{"users":{"` + alice + `":100},"events":{"org.example.custom":50},"events_default":0}`)
	mustSend(bob, "m.room.message")
	mustFail(bob, "org.example.custom", "after its power level was raised")
	setPowerLevels(`{"users":{"` + alice + `":100},"events_default":0}`)
	mustSend(bob, "org.example.custom")

	if _, err := srv.Srv.Rooms.ChangeMembership(ctx, rooms.MembershipRequest{RoomID: roomID, Sender: alice, Target: bob, Membership: "ban"}); err != nil {
		t.Fatal(err)
	}
	mustFail(bob, "m.room.message", "after being banned")
	mustSend(alice, "m.room.message")
}
