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

// ephemeralResult is what waitEphemeral saw.
type ephemeralResult struct {
	since   string
	elapsed time.Duration
	seen    []*event.Event // every ephemeral event of the room on the way
	err     error
}

// waitEphemeral long-polls /sync from since until an ephemeral event of
// roomID satisfies match, recording every ephemeral event seen before.
func waitEphemeral(cli *mautrix.Client, since string, roomID id.RoomID, match func(*event.Event) bool) ephemeralResult {
	ctx, cancel := context.WithTimeout(context.Background(), 25*time.Second)
	defer cancel()
	start := time.Now()
	var res ephemeralResult
	for {
		resp, err := cli.SyncRequest(ctx, 20000, since, "", false, "")
		if err != nil {
			res.err = err
			return res
		}
		since = resp.NextBatch
		if jr, ok := resp.Rooms.Join[roomID]; ok {
			for _, ev := range jr.Ephemeral.Events {
				ev.Type.Class = event.EphemeralEventType
				_ = ev.Content.ParseRaw(ev.Type)
				res.seen = append(res.seen, ev)
				if match(ev) {
					res.since, res.elapsed = since, time.Since(start)
					return res
				}
			}
		}
	}
}

// typingIs matches an m.typing event listing exactly users.
func typingIs(users ...id.UserID) func(*event.Event) bool {
	return func(ev *event.Event) bool {
		if ev.Type.Type != event.EphemeralEventTyping.Type {
			return false
		}
		got := ev.Content.AsTyping().UserIDs
		if len(got) != len(users) {
			return false
		}
		for i := range got {
			if got[i] != users[i] {
				return false
			}
		}
		return true
	}
}

// receiptFor matches an m.receipt event carrying user's receipt of type
// typ on eventID (with the given thread ID, "" for unthreaded).
func receiptFor(eventID id.EventID, typ event.ReceiptType, user id.UserID, threadID string) func(*event.Event) bool {
	return func(ev *event.Event) bool {
		if ev.Type.Type != event.EphemeralEventReceipt.Type {
			return false
		}
		r, ok := (*ev.Content.AsReceipt())[eventID][typ][user]
		return ok && string(r.ThreadID) == threadID
	}
}

// inBackground runs f in a goroutine and returns its result channel, after
// giving the long-poll time to start waiting.
func inBackground(f func() ephemeralResult) <-chan ephemeralResult {
	ch := make(chan ephemeralResult, 1)
	go func() { ch <- f() }()
	time.Sleep(300 * time.Millisecond)
	return ch
}

func awaitResult(t *testing.T, what string, ch <-chan ephemeralResult, within time.Duration) ephemeralResult {
	t.Helper()
	select {
	case res := <-ch:
		if res.err != nil {
			t.Fatalf("%s: sync: %v", what, res.err)
		}
		if res.elapsed > within {
			t.Fatalf("%s: delivered after %v, want a long-poll wake-up within %v", what, res.elapsed, within)
		}
		t.Logf("%s: delivered in %v", what, res.elapsed)
		return res
	case <-time.After(30 * time.Second):
		t.Fatalf("%s: never delivered", what)
	}
	return ephemeralResult{}
}

func meet(t *testing.T, srv *testserver.Server) (alice, bob *mautrix.Client, room id.RoomID, bobSince string) {
	t.Helper()
	ctx := context.Background()
	alice, bob = srv.RegisterUser("alice"), srv.RegisterUser("bob")
	resp, err := alice.CreateRoom(ctx, &mautrix.ReqCreateRoom{Preset: "public_chat", Name: "ephemeral"})
	if err != nil {
		t.Fatalf("create room: %v", err)
	}
	if _, err := bob.JoinRoomByID(ctx, resp.RoomID); err != nil {
		t.Fatalf("join: %v", err)
	}
	init, err := bob.SyncRequest(ctx, 0, "", "", false, "")
	if err != nil {
		t.Fatalf("initial sync: %v", err)
	}
	return alice, bob, resp.RoomID, init.NextBatch
}

func TestTypingWakesLongPollAndExpires(t *testing.T) {
	srv := testserver.Start(t)
	ctx := context.Background()
	alice, bob, room, since := meet(t, srv)

	ch := inBackground(func() ephemeralResult { return waitEphemeral(bob, since, room, typingIs(alice.UserID)) })
	if _, err := alice.UserTyping(ctx, room, true, 30*time.Second); err != nil {
		t.Fatalf("typing: %v", err)
	}
	since = awaitResult(t, "typing start", ch, 5*time.Second).since

	ch = inBackground(func() ephemeralResult { return waitEphemeral(bob, since, room, typingIs()) })
	if _, err := alice.UserTyping(ctx, room, false, 0); err != nil {
		t.Fatalf("typing stop: %v", err)
	}
	since = awaitResult(t, "typing stop", ch, 5*time.Second).since

	// A short timeout ends on its own, and the end wakes the long-poll.
	ch = inBackground(func() ephemeralResult { return waitEphemeral(bob, since, room, typingIs(alice.UserID)) })
	if _, err := alice.UserTyping(ctx, room, true, 1500*time.Millisecond); err != nil {
		t.Fatalf("typing: %v", err)
	}
	since = awaitResult(t, "typing with timeout", ch, 5*time.Second).since
	start := time.Now()
	res := waitEphemeral(bob, since, room, typingIs())
	if res.err != nil {
		t.Fatalf("sync: %v", res.err)
	}
	if d := time.Since(start); d < time.Second || d > 10*time.Second {
		t.Fatalf("typing expired after %v, want about 1.5s", d)
	}

	// Nobody may type for someone else.
	if _, err := bob.MakeRequest(ctx, "PUT", bob.BuildClientURL("v3", "rooms", room, "typing", alice.UserID), map[string]any{"typing": true, "timeout": 1000}, nil); err == nil {
		t.Fatal("bob set alice's typing state")
	}
}

func TestReceiptsOverLongPoll(t *testing.T) {
	srv := testserver.Start(t)
	ctx := context.Background()
	alice, bob, room, since := meet(t, srv)
	send := func(body string) id.EventID {
		t.Helper()
		resp, err := alice.SendText(ctx, room, body)
		if err != nil {
			t.Fatalf("send: %v", err)
		}
		return resp.EventID
	}
	m1, m2, m3 := send("one"), send("two"), send("three")

	// A public receipt wakes the other member.
	ch := inBackground(func() ephemeralResult {
		return waitEphemeral(bob, since, room, receiptFor(m1, event.ReceiptTypeRead, alice.UserID, ""))
	})
	if err := alice.MarkRead(ctx, room, m1); err != nil {
		t.Fatalf("mark read: %v", err)
	}
	since = awaitResult(t, "public receipt", ch, 5*time.Second).since

	// A private receipt never reaches bob; the public one after it does.
	if err := alice.SendReceipt(ctx, room, m2, event.ReceiptTypeReadPrivate, nil); err != nil {
		t.Fatalf("private receipt: %v", err)
	}
	ch = inBackground(func() ephemeralResult {
		return waitEphemeral(bob, since, room, receiptFor(m3, event.ReceiptTypeRead, alice.UserID, ""))
	})
	if err := alice.MarkRead(ctx, room, m3); err != nil {
		t.Fatalf("mark read: %v", err)
	}
	res := awaitResult(t, "public receipt after a private one", ch, 5*time.Second)
	since = res.since
	for _, ev := range res.seen {
		if ev.Type.Type == event.EphemeralEventReceipt.Type {
			for evID, byType := range *ev.Content.AsReceipt() {
				if _, leak := byType[event.ReceiptTypeReadPrivate]; leak {
					t.Fatalf("bob received a private receipt on %s", evID)
				}
			}
		}
	}
	own, err := alice.SyncRequest(ctx, 0, "", "", false, "")
	if err != nil {
		t.Fatalf("alice sync: %v", err)
	}
	found := false
	for _, ev := range own.Rooms.Join[room].Ephemeral.Events {
		ev.Type.Class = event.EphemeralEventType
		_ = ev.Content.ParseRaw(ev.Type)
		if ev.Type.Type == event.EphemeralEventReceipt.Type {
			_, found = (*ev.Content.AsReceipt())[m2][event.ReceiptTypeReadPrivate][alice.UserID]
			if found {
				break
			}
		}
	}
	if !found {
		t.Fatal("alice does not see her own private receipt")
	}

	// A threaded receipt carries its thread.
	root := send("root")
	reply, err := alice.SendMessageEvent(ctx, room, event.EventMessage, map[string]any{
		"msgtype": "m.text", "body": "in thread", "m.relates_to": map[string]any{"rel_type": "m.thread", "event_id": root},
	})
	if err != nil {
		t.Fatalf("thread reply: %v", err)
	}
	ch = inBackground(func() ephemeralResult {
		return waitEphemeral(bob, since, room, receiptFor(reply.EventID, event.ReceiptTypeRead, alice.UserID, root.String()))
	})
	if err := alice.SendReceipt(ctx, room, reply.EventID, event.ReceiptTypeRead, map[string]any{"thread_id": root}); err != nil {
		t.Fatalf("threaded receipt: %v", err)
	}
	awaitResult(t, "threaded receipt", ch, 5*time.Second)
}
