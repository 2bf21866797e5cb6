package integration

import (
	"context"
	"testing"

	"maunium.net/go/mautrix"
	"maunium.net/go/mautrix/event"
	"maunium.net/go/mautrix/id"
	"maunium.net/go/mautrix/pushrules"

	"github.com/rempart-hs/rempart/internal/testserver"
)

// unreadCounts syncs from since and returns the room's counts.
func unreadCounts(t *testing.T, cli *mautrix.Client, since string, roomID id.RoomID) (notif, highlight int, next string) {
	t.Helper()
	resp, err := cli.SyncRequest(context.Background(), 0, since, "", false, "")
	if err != nil {
		t.Fatalf("sync: %v", err)
	}
	jr, ok := resp.Rooms.Join[roomID]
	if !ok {
		return -1, -1, resp.NextBatch
	}
	return jr.UnreadNotifications.NotificationCount, jr.UnreadNotifications.HighlightCount, resp.NextBatch
}

// TestUnreadCountsFollowPushRules: messages notify, a mention highlights,
// notices and edits don't count, and a read receipt resets the counts.
func TestUnreadCountsFollowPushRules(t *testing.T) {
	srv := testserver.Start(t)
	ctx := context.Background()
	alice := srv.RegisterUser("alice")
	bob := srv.RegisterUser("bob")
	carol := srv.RegisterUser("carol")
	room, err := alice.CreateRoom(ctx, &mautrix.ReqCreateRoom{Preset: "public_chat"})
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range []*mautrix.Client{bob, carol} {
		if _, err := c.JoinRoomByID(ctx, room.RoomID); err != nil {
			t.Fatal(err)
		}
	}
	_, _, since := unreadCounts(t, bob, "", room.RoomID)

	alice.SendText(ctx, room.RoomID, "one")
	alice.SendText(ctx, room.RoomID, "two")
	alice.SendNotice(ctx, room.RoomID, "a notice does not count")
	if n, h, _ := unreadCounts(t, bob, since, room.RoomID); n != 2 || h != 0 {
		t.Fatalf("after two messages and a notice: notification_count=%d highlight_count=%d, want 2, 0", n, h)
	}
	mention := &event.MessageEventContent{MsgType: event.MsgText, Body: "bob, look", Mentions: &event.Mentions{UserIDs: []id.UserID{bob.UserID}}}
	last, err := alice.SendMessageEvent(ctx, room.RoomID, event.EventMessage, mention)
	if err != nil {
		t.Fatal(err)
	}
	if n, h, _ := unreadCounts(t, bob, since, room.RoomID); n != 3 || h != 1 {
		t.Fatalf("after a mention: %d, %d, want 3, 1", n, h)
	}
	// Carol's counts are her own: the mention does not highlight for her.
	if n, h, _ := unreadCounts(t, carol, "", room.RoomID); n != 3 || h != 0 {
		t.Fatalf("carol: %d, %d, want 3, 0", n, h)
	}
	// A read receipt resets the counts.
	if err := bob.SendReceipt(ctx, room.RoomID, last.EventID, event.ReceiptTypeRead, nil); err != nil {
		t.Fatal(err)
	}
	if n, h, _ := unreadCounts(t, bob, since, room.RoomID); n != 0 || h != 0 {
		t.Fatalf("after the read receipt: %d, %d, want 0, 0", n, h)
	}
	// Muting the room with a room rule stops new notifications.
	if err := bob.PutPushRule(ctx, "global", "room", string(room.RoomID), &mautrix.ReqPutPushRule{Actions: []*pushrules.PushAction{}}); err != nil {
		t.Fatal(err)
	}
	alice.SendText(ctx, room.RoomID, "muted")
	if n, _, _ := unreadCounts(t, bob, since, room.RoomID); n != 0 {
		t.Fatalf("muted room still counts %d", n)
	}
}
