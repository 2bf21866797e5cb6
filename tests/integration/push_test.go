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

// threadSync is the part of a raw /sync response the thread test reads.
type threadSync struct {
	NextBatch string `json:"next_batch"`
	Rooms     struct {
		Join map[string]struct {
			Unread  *mautrix.UnreadNotificationCounts            `json:"unread_notifications"`
			Threads map[string]*mautrix.UnreadNotificationCounts `json:"unread_thread_notifications"`
		} `json:"join"`
	} `json:"rooms"`
}

// TestUnreadCountsDisplayNameAndThreads: a display-name rule highlights
// (the spec's defaults since v1.17 only highlight on m.mentions), and with
// unread_thread_notifications the counts are split per thread and a
// threaded receipt clears only its thread.
func TestUnreadCountsDisplayNameAndThreads(t *testing.T) {
	srv := testserver.Start(t)
	ctx := context.Background()
	alice := srv.RegisterUser("alice")
	bob := srv.RegisterUser("bob")
	if err := bob.SetDisplayName(ctx, "Bobby Tables"); err != nil {
		t.Fatal(err)
	}
	room, err := alice.CreateRoom(ctx, &mautrix.ReqCreateRoom{Preset: "public_chat"})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := bob.JoinRoomByID(ctx, room.RoomID); err != nil {
		t.Fatal(err)
	}
	_, _, since := unreadCounts(t, bob, "", room.RoomID)

	// Without m.mentions, the display name alone does not highlight.
	if _, err := alice.SendText(ctx, room.RoomID, "hi bobby tables!"); err != nil {
		t.Fatal(err)
	}
	if n, h, _ := unreadCounts(t, bob, since, room.RoomID); n != 1 || h != 0 {
		t.Fatalf("display name without a rule: %d, %d, want 1, 0", n, h)
	}
	// Bob asks for the legacy behaviour with a rule of his own.
	rule := &mautrix.ReqPutPushRule{
		Actions:    []*pushrules.PushAction{{Action: pushrules.ActionNotify}, {Action: pushrules.ActionSetTweak, Tweak: pushrules.TweakHighlight, Value: true}},
		Conditions: []*pushrules.PushCondition{{Kind: pushrules.KindContainsDisplayName}},
	}
	if err := bob.PutPushRule(ctx, "global", pushrules.OverrideRule, "display-name", rule); err != nil {
		t.Fatal(err)
	}
	if _, err := alice.SendText(ctx, room.RoomID, "Bobby Tables, again"); err != nil {
		t.Fatal(err)
	}
	if _, err := alice.SendText(ctx, room.RoomID, "Bobby Tablespoon is someone else"); err != nil {
		t.Fatal(err)
	}
	if n, h, _ := unreadCounts(t, bob, since, room.RoomID); n != 3 || h != 1 {
		t.Fatalf("with a display-name rule: %d, %d, want 3, 1", n, h)
	}

	// Threads: a root in the main timeline and two replies in its thread.
	root, err := alice.SendText(ctx, room.RoomID, "thread root")
	if err != nil {
		t.Fatal(err)
	}
	var last id.EventID
	for _, body := range []string{"reply 1", "reply 2"} {
		c := &event.MessageEventContent{MsgType: event.MsgText, Body: body, RelatesTo: (&event.RelatesTo{}).SetThread(root.EventID, root.EventID)}
		resp, err := alice.SendMessageEvent(ctx, room.RoomID, event.EventMessage, c)
		if err != nil {
			t.Fatal(err)
		}
		last = resp.EventID
	}
	if n, _, _ := unreadCounts(t, bob, since, room.RoomID); n != 6 {
		t.Fatalf("without the thread option: %d, want 6", n)
	}
	threaded := func() threadSync {
		t.Helper()
		u := bob.BuildURLWithQuery(mautrix.ClientURLPath{"v3", "sync"}, map[string]string{
			"since": since, "timeout": "0", "filter": `{"room":{"timeline":{"unread_thread_notifications":true}}}`})
		var s threadSync
		if _, err := bob.MakeRequest(ctx, "GET", u, nil, &s); err != nil {
			t.Fatal(err)
		}
		return s
	}
	jr := threaded().Rooms.Join[string(room.RoomID)]
	if jr.Unread == nil || jr.Unread.NotificationCount != 4 || jr.Threads[string(root.EventID)] == nil || jr.Threads[string(root.EventID)].NotificationCount != 2 {
		t.Fatalf("split counts: main %+v, threads %+v", jr.Unread, jr.Threads)
	}
	// A receipt in the thread clears the thread only.
	if err := bob.SendReceipt(ctx, room.RoomID, last, event.ReceiptTypeRead, &mautrix.ReqSendReceipt{ThreadID: string(root.EventID)}); err != nil {
		t.Fatal(err)
	}
	jr = threaded().Rooms.Join[string(room.RoomID)]
	if jr.Unread == nil || jr.Unread.NotificationCount != 4 || jr.Unread.HighlightCount != 1 || jr.Threads[string(root.EventID)] != nil {
		t.Fatalf("after the thread receipt: main %+v, threads %+v", jr.Unread, jr.Threads)
	}
	// An unthreaded receipt on the latest event clears everything.
	if err := bob.SendReceipt(ctx, room.RoomID, last, event.ReceiptTypeRead, nil); err != nil {
		t.Fatal(err)
	}
	if n, h, _ := unreadCounts(t, bob, since, room.RoomID); n != 0 || h != 0 {
		t.Fatalf("after the unthreaded receipt: %d, %d", n, h)
	}
}

// TestUnreadCountsFollowMembership interleaves joins, leaves and renames
// with messages: message notifications are decided before the message is
// queued (off the writer), on the members and names of the state it was
// built on, so each message must count for exactly the members it had.
func TestUnreadCountsFollowMembership(t *testing.T) {
	srv := testserver.Start(t)
	ctx := context.Background()
	alice := srv.RegisterUser("alice")
	carol := srv.RegisterUser("carol")
	room, err := alice.CreateRoom(ctx, &mautrix.ReqCreateRoom{Preset: "public_chat"})
	if err != nil {
		t.Fatal(err)
	}
	rule := &mautrix.ReqPutPushRule{
		Actions:    []*pushrules.PushAction{{Action: pushrules.ActionNotify}, {Action: pushrules.ActionSetTweak, Tweak: pushrules.TweakHighlight, Value: true}},
		Conditions: []*pushrules.PushCondition{{Kind: pushrules.KindContainsDisplayName}},
	}
	if err := carol.PutPushRule(ctx, "global", pushrules.OverrideRule, "display-name", rule); err != nil {
		t.Fatal(err)
	}
	send := func(body string) {
		t.Helper()
		if _, err := alice.SendText(ctx, room.RoomID, body); err != nil {
			t.Fatal(err)
		}
	}
	send("before carol joins")
	if _, err := carol.JoinRoomByID(ctx, room.RoomID); err != nil {
		t.Fatal(err)
	}
	_, _, since := unreadCounts(t, carol, "", room.RoomID)
	send("carol is here")
	if n, h, _ := unreadCounts(t, carol, since, room.RoomID); n != 1 || h != 0 {
		t.Fatalf("one message since joining: %d, %d, want 1, 0", n, h)
	}
	// A new display name is matched from the next message on.
	if _, err := carol.SendStateEvent(ctx, room.RoomID, event.StateMember, carol.UserID.String(),
		&event.MemberEventContent{Membership: event.MembershipJoin, Displayname: "Zanzibar"}); err != nil {
		t.Fatal(err)
	}
	send("hello zanzibar")
	if n, h, _ := unreadCounts(t, carol, since, room.RoomID); n != 2 || h != 1 {
		t.Fatalf("after a mention of the new name: %d, %d, want 2, 1", n, h)
	}
	// After leaving and joining again, what was sent meanwhile is not hers.
	if _, err := carol.LeaveRoom(ctx, room.RoomID); err != nil {
		t.Fatal(err)
	}
	for range 3 {
		send("carol is away")
	}
	if _, err := carol.JoinRoomByID(ctx, room.RoomID); err != nil {
		t.Fatal(err)
	}
	_, _, since = unreadCounts(t, carol, "", room.RoomID)
	send("welcome back")
	if n, _, _ := unreadCounts(t, carol, since, room.RoomID); n != 3 {
		t.Fatalf("after rejoining: %d notifications, want 3 (2 before leaving + 1)", n)
	}
}
