package integration

import (
	"context"
	"testing"

	"maunium.net/go/mautrix"
	"maunium.net/go/mautrix/event"
	"maunium.net/go/mautrix/id"

	"github.com/rempart-hs/rempart/internal/testserver"
)

// A room's life with real clients: creation, invitation, conversation,
// redaction, moderation, an upgrade and following the tombstone.
func TestRoomLifecycle(t *testing.T) {
	srv := testserver.Start(t)
	ctx := context.Background()
	alice := srv.RegisterUser("lcalice")
	bob := srv.RegisterUser("lcbob")

	room, err := alice.CreateRoom(ctx, &mautrix.ReqCreateRoom{Preset: "private_chat", Name: "lifecycle", Topic: "all of it",
		Invite: []id.UserID{bob.UserID}, IsDirect: true, RoomVersion: "11"})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := bob.JoinRoomByID(ctx, room.RoomID); err != nil {
		t.Fatal(err)
	}
	var topic event.TopicEventContent
	if err := bob.StateEvent(ctx, room.RoomID, event.StateTopic, "", &topic); err != nil || topic.Topic != "all of it" {
		t.Fatalf("topic = %+v, %v", topic, err)
	}
	hello, err := bob.SendText(ctx, room.RoomID, "hello")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := alice.SendText(ctx, room.RoomID, "hi bob"); err != nil {
		t.Fatal(err)
	}
	// Bob takes his message back; alice sees it redacted.
	if _, err := bob.RedactEvent(ctx, room.RoomID, hello.EventID, mautrix.ReqRedact{Reason: "shy"}); err != nil {
		t.Fatal(err)
	}
	ev, err := alice.GetEvent(ctx, room.RoomID, hello.EventID)
	if err != nil {
		t.Fatal(err)
	}
	if len(ev.Content.Raw) != 0 || ev.Unsigned.RedactedBecause == nil {
		t.Fatalf("redacted event = %+v", ev)
	}
	// Bob (power 0) may not redact alice's messages or kick her.
	msgs, err := bob.Messages(ctx, room.RoomID, "", "", mautrix.DirectionBackward, nil, 10)
	if err != nil {
		t.Fatal(err)
	}
	var alicesMsg id.EventID
	for _, e := range msgs.Chunk {
		if e.Sender == alice.UserID && e.Type == event.EventMessage {
			alicesMsg = e.ID
		}
	}
	if _, err := bob.RedactEvent(ctx, room.RoomID, alicesMsg); err == nil {
		t.Fatal("bob redacted alice's message")
	}
	if _, err := bob.KickUser(ctx, room.RoomID, &mautrix.ReqKickUser{UserID: alice.UserID}); err == nil {
		t.Fatal("bob kicked alice")
	}
	members, err := alice.JoinedMembers(ctx, room.RoomID)
	if err != nil || len(members.Joined) != 2 {
		t.Fatalf("joined members = %+v, %v", members, err)
	}

	// Upgrade to v12: bob follows the tombstone.
	var up struct {
		ReplacementRoom id.RoomID `json:"replacement_room"`
	}
	if _, err := alice.MakeRequest(ctx, "POST", alice.BuildClientURL("v3", "rooms", room.RoomID, "upgrade"), map[string]any{"new_version": "12"}, &up); err != nil {
		t.Fatalf("upgrade: %v", err)
	}
	var tomb event.TombstoneEventContent
	if err := bob.StateEvent(ctx, room.RoomID, event.StateTombstone, "", &tomb); err != nil || tomb.ReplacementRoom != up.ReplacementRoom {
		t.Fatalf("tombstone = %+v, %v", tomb, err)
	}
	if _, err := bob.SendText(ctx, room.RoomID, "old room"); err == nil {
		t.Fatal("bob can still talk in the replaced room")
	}
	// The new room is invite-only like the old one: alice invites bob.
	if _, err := alice.InviteUser(ctx, up.ReplacementRoom, &mautrix.ReqInviteUser{UserID: bob.UserID}); err != nil {
		t.Fatal(err)
	}
	if _, err := bob.JoinRoomByID(ctx, up.ReplacementRoom); err != nil {
		t.Fatal(err)
	}
	if _, err := bob.SendText(ctx, up.ReplacementRoom, "new room"); err != nil {
		t.Fatal(err)
	}
	var create event.CreateEventContent
	if err := bob.StateEvent(ctx, up.ReplacementRoom, event.StateCreate, "", &create); err != nil || create.Predecessor == nil || create.Predecessor.RoomID != room.RoomID {
		t.Fatalf("new room create = %+v, %v", create, err)
	}
}
