// Package integration drives a real Rempart server over HTTP with the
// mautrix-go client, on the backend selected by REMPART_TEST_DB.
package integration

import (
	"context"
	"testing"
	"time"

	"maunium.net/go/mautrix"
	"maunium.net/go/mautrix/event"
	"maunium.net/go/mautrix/id"

	"github.com/rempart-hs/rempart/internal/testserver"
)

// waitForMessage long-polls /sync from since until a message with body
// arrives in roomID, returning the next batch token.
func waitForMessage(t *testing.T, cli *mautrix.Client, since string, roomID id.RoomID, body string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	for {
		resp, err := cli.SyncRequest(ctx, 10000, since, "", false, "")
		if err != nil {
			t.Fatalf("sync: %v", err)
		}
		since = resp.NextBatch
		if jr, ok := resp.Rooms.Join[roomID]; ok {
			for _, ev := range jr.Timeline.Events {
				_ = ev.Content.ParseRaw(ev.Type)
				if ev.Type == event.EventMessage && ev.Content.AsMessage().Body == body {
					return since
				}
			}
		}
	}
}

func TestTwoUsersMeetInARoom(t *testing.T) {
	srv := testserver.Start(t)
	ctx := context.Background()
	alice := srv.RegisterUser("alice")
	bob := srv.RegisterUser("bob")

	room, err := alice.CreateRoom(ctx, &mautrix.ReqCreateRoom{Preset: "private_chat", Name: "meeting", Invite: []id.UserID{bob.UserID}})
	if err != nil {
		t.Fatalf("create room: %v", err)
	}
	// Bob sees the invite in an initial sync, then joins.
	init, err := bob.SyncRequest(ctx, 0, "", "", false, "")
	if err != nil {
		t.Fatalf("initial sync: %v", err)
	}
	if _, ok := init.Rooms.Invite[room.RoomID]; !ok {
		t.Fatalf("bob's initial sync has no invite for %s", room.RoomID)
	}
	if _, err := bob.JoinRoomByID(ctx, room.RoomID); err != nil {
		t.Fatalf("join: %v", err)
	}
	since := init.NextBatch

	// Bob long-polls; Alice's message must wake him.
	got := make(chan string, 1)
	go func() { got <- waitForMessage(t, bob, since, room.RoomID, "hello bob") }()
	time.Sleep(200 * time.Millisecond)
	start := time.Now()
	if _, err := alice.SendText(ctx, room.RoomID, "hello bob"); err != nil {
		t.Fatalf("send: %v", err)
	}
	select {
	case since = <-got:
		t.Logf("delivered through long-poll in %v", time.Since(start))
	case <-time.After(25 * time.Second):
		t.Fatal("message not delivered")
	}

	// History pages back in both directions.
	for i := 0; i < 25; i++ {
		if _, err := alice.SendText(ctx, room.RoomID, "msg"); err != nil {
			t.Fatalf("send %d: %v", i, err)
		}
	}
	var bodies []string
	from := ""
	for page := 0; page < 10; page++ {
		msgs, err := bob.Messages(ctx, room.RoomID, from, "", mautrix.DirectionBackward, nil, 10)
		if err != nil {
			t.Fatalf("messages: %v", err)
		}
		for _, ev := range msgs.Chunk {
			if ev.Type == event.EventMessage {
				_ = ev.Content.ParseRaw(ev.Type)
				bodies = append(bodies, ev.Content.AsMessage().Body)
			}
		}
		if msgs.End == "" {
			break
		}
		from = msgs.End
	}
	if len(bodies) != 26 || bodies[len(bodies)-1] != "hello bob" {
		t.Fatalf("paged back %d messages, want 26 ending with 'hello bob': %v", len(bodies), bodies)
	}
	fwd, err := bob.Messages(ctx, room.RoomID, from, "", mautrix.DirectionForward, nil, 5)
	if err != nil {
		t.Fatalf("messages forward: %v", err)
	}
	if len(fwd.Chunk) != 5 {
		t.Fatalf("forward page has %d events, want 5", len(fwd.Chunk))
	}

	// A restart keeps everything, and old sync tokens stay valid.
	srv.Restart()
	if _, err := alice.SendText(ctx, room.RoomID, "after restart"); err != nil {
		t.Fatalf("send after restart: %v", err)
	}
	waitForMessage(t, bob, since, room.RoomID, "after restart")
	members, err := bob.JoinedMembers(ctx, room.RoomID)
	if err != nil {
		t.Fatalf("joined members: %v", err)
	}
	if len(members.Joined) != 2 {
		t.Fatalf("joined members = %d, want 2", len(members.Joined))
	}
}
