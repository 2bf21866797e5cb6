package integration

import (
	"context"
	"errors"
	"testing"
	"time"

	"maunium.net/go/mautrix"
	"maunium.net/go/mautrix/event"
	"maunium.net/go/mautrix/id"

	"github.com/rempart-hs/rempart/internal/testserver"
)

// waitForMember long-polls /sync from since until roomID's timeline carries
// an m.room.member event for userID with the given display name, and
// returns that event's content.
func waitForMember(t *testing.T, cli *mautrix.Client, since string, roomID id.RoomID, userID id.UserID, name string) *event.MemberEventContent {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	for {
		resp, err := cli.SyncRequest(ctx, 10000, since, "", false, "")
		if err != nil {
			t.Errorf("sync: %v", err)
			return nil
		}
		since = resp.NextBatch
		if jr, ok := resp.Rooms.Join[roomID]; ok {
			for _, ev := range jr.Timeline.Events {
				if ev.Type != event.StateMember || ev.GetStateKey() != userID.String() {
					continue
				}
				_ = ev.Content.ParseRaw(ev.Type)
				if m := ev.Content.AsMember(); m.Displayname == name {
					return m
				}
			}
		}
	}
}

// A display name and avatar change reaches a room-mate's sync as a new
// m.room.member event, and profile look-ups follow shared rooms.
func TestProfileChangeReachesRoomMates(t *testing.T) {
	srv := testserver.Start(t)
	ctx := context.Background()
	alice := srv.RegisterUser("alice")
	bob := srv.RegisterUser("bob")
	carol := srv.RegisterUser("carol")

	room, err := alice.CreateRoom(ctx, &mautrix.ReqCreateRoom{Preset: "private_chat", Invite: []id.UserID{bob.UserID}})
	if err != nil {
		t.Fatalf("create room: %v", err)
	}
	if _, err := bob.JoinRoomByID(ctx, room.RoomID); err != nil {
		t.Fatalf("join: %v", err)
	}
	init, err := bob.SyncRequest(ctx, 0, "", "", false, "")
	if err != nil {
		t.Fatalf("initial sync: %v", err)
	}

	got := make(chan *event.MemberEventContent, 1)
	go func() { got <- waitForMember(t, bob, init.NextBatch, room.RoomID, alice.UserID, "Alice in Wonderland") }()
	time.Sleep(200 * time.Millisecond)
	if err := alice.SetAvatarURL(ctx, id.ContentURI{Homeserver: "example.org", FileID: "rabbit"}); err != nil {
		t.Fatalf("set avatar: %v", err)
	}
	if err := alice.SetDisplayName(ctx, "Alice in Wonderland"); err != nil {
		t.Fatalf("set display name: %v", err)
	}
	select {
	case m := <-got:
		if m == nil {
			t.FailNow()
		}
		if m.Membership != event.MembershipJoin || m.AvatarURL != "mxc://example.org/rabbit" {
			t.Fatalf("member event seen by bob: %+v", m)
		}
	case <-time.After(25 * time.Second):
		t.Fatal("profile change not delivered to bob")
	}

	// Bob shares a room with Alice: he may look her up.
	p, err := bob.GetProfile(ctx, alice.UserID)
	if err != nil {
		t.Fatalf("bob looks up alice: %v", err)
	}
	if p.DisplayName != "Alice in Wonderland" || p.AvatarURL.String() != "mxc://example.org/rabbit" {
		t.Fatalf("alice's profile as seen by bob: %+v", p)
	}
	// Carol shares no room with Alice: refused, like an unknown user.
	if _, err := carol.GetProfile(ctx, alice.UserID); !errors.Is(err, mautrix.MForbidden) {
		t.Fatalf("carol looks up alice: %v, want M_FORBIDDEN", err)
	}
	if _, err := carol.GetProfile(ctx, id.UserID("@nobody:"+srv.Config.ServerName)); !errors.Is(err, mautrix.MForbidden) {
		t.Fatalf("carol looks up an unknown user: %v, want M_FORBIDDEN", err)
	}
	// Alice's member state reflects the new profile for everyone in the room.
	var member event.MemberEventContent
	if err := bob.StateEvent(ctx, room.RoomID, event.StateMember, alice.UserID.String(), &member); err != nil {
		t.Fatalf("state: %v", err)
	}
	if member.Displayname != "Alice in Wonderland" {
		t.Fatalf("member state: %+v", member)
	}
}

// Room tags and account data set with mautrix come back through its API.
func TestTagsAndAccountDataWithMautrix(t *testing.T) {
	srv := testserver.Start(t)
	ctx := context.Background()
	alice := srv.RegisterUser("alice")
	room, err := alice.CreateRoom(ctx, &mautrix.ReqCreateRoom{Preset: "private_chat"})
	if err != nil {
		t.Fatalf("create room: %v", err)
	}
	if err := alice.AddTag(ctx, room.RoomID, event.RoomTagFavourite, 0.3); err != nil {
		t.Fatalf("add tag: %v", err)
	}
	tags, err := alice.GetTags(ctx, room.RoomID)
	if err != nil {
		t.Fatalf("get tags: %v", err)
	}
	if order, err := tags.Tags[event.RoomTagFavourite].Order.Float64(); err != nil || order != 0.3 {
		t.Fatalf("tags: %+v %v", tags, err)
	}
	if err := alice.SetAccountData(ctx, "org.example.settings", map[string]any{"theme": "dark"}); err != nil {
		t.Fatalf("set account data: %v", err)
	}
	var settings map[string]any
	if err := alice.GetAccountData(ctx, "org.example.settings", &settings); err != nil || settings["theme"] != "dark" {
		t.Fatalf("account data: %v %v", settings, err)
	}
	if err := alice.GetAccountData(ctx, "org.example.absent", &settings); !errors.Is(err, mautrix.MNotFound) {
		t.Fatalf("absent account data: %v", err)
	}
}
