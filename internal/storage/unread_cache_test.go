package storage_test

import (
	"context"
	"fmt"
	"testing"

	"github.com/rempart-hs/rempart/internal/rooms"
	"github.com/rempart-hs/rempart/internal/storage"
)

// TestUnreadCountsKept checks that a member's kept count of many unread
// notifications, brought up to date from the rows added since, answers
// what counting every row answers: after new messages in the room and in
// a thread, after a redaction of a counted message, and after receipts
// in a thread and in the room.
func TestUnreadCountsKept(t *testing.T) {
	f := newPushFixture(t, 2)
	ctx := context.Background()
	db, alice, room, other := f.db, f.alice, f.rooms[0], f.rooms[1]
	mention := fmt.Sprintf(`{"msgtype":"m.text","body":"hello","m.mentions":{"user_ids":[%q]}}`, alice)
	root := f.send(room, `{"msgtype":"m.text","body":"root"}`)
	inThread := fmt.Sprintf(`{"msgtype":"m.text","body":"in thread","m.relates_to":{"rel_type":"m.thread","event_id":%q}}`, root)
	var sent []string
	send := func(n int) {
		for i := range n {
			content := `{"msgtype":"m.text","body":"main"}`
			switch i % 10 {
			case 3:
				content = mention
			case 5, 6:
				content = inThread
			}
			sent = append(sent, f.send(room, content))
		}
		f.send(other, `{"msgtype":"m.text","body":"elsewhere"}`)
	}
	// check compares the counts of both rooms with a count of every row.
	check := func(step string) map[string]map[string]storage.NotificationCounts {
		t.Helper()
		got, err := db.UnreadCountsRooms(ctx, []string{room, other}, alice)
		if err != nil {
			t.Fatal(err)
		}
		one, err := db.UnreadCounts(ctx, room, alice)
		if err != nil {
			t.Fatal(err)
		}
		storage.ForgetUnread(db)
		want, err := db.UnreadCountsRooms(ctx, []string{room, other}, alice)
		if err != nil {
			t.Fatal(err)
		}
		if fmt.Sprint(got) != fmt.Sprint(want) || fmt.Sprint(one) != fmt.Sprint(want[room]) {
			t.Fatalf("%s: counts %v (one room: %v), counting every row: %v", step, got, one, want)
		}
		return want
	}

	send(200)
	counts := check("first count")
	if counts[room]["main"].Notifications < 128 || counts[room][root].Notifications == 0 || counts[room]["main"].Highlights == 0 {
		t.Fatalf("counts %v: the room should have many notifications, a thread's and highlights", counts)
	}
	if _, kept := storage.UnreadKept(db, alice, room); !kept {
		t.Fatal("a count of many notifications was not kept")
	}
	if _, kept := storage.UnreadKept(db, alice, other); kept {
		t.Fatal("a count of few notifications was kept")
	}
	upTo, _ := storage.UnreadKept(db, alice, room)

	send(12)
	check("new messages")
	// The count was brought up to date, not made again: check forgot it
	// after the comparison, so count once more and look.
	if _, err := db.UnreadCountsRooms(ctx, []string{room}, alice); err != nil {
		t.Fatal(err)
	}
	send(3)
	if _, err := db.UnreadCountsRooms(ctx, []string{room}, alice); err != nil {
		t.Fatal(err)
	}
	if now, kept := storage.UnreadKept(db, alice, room); !kept || now <= upTo {
		t.Fatalf("kept count at %d (kept %v), first at %d: not brought up to date", now, kept, upTo)
	}

	// A redaction deletes a counted mention's push actions.
	if _, err := db.UnreadCountsRooms(ctx, []string{room}, alice); err != nil {
		t.Fatal(err)
	}
	if _, err := f.srv.Srv.Rooms.Send(ctx, rooms.SendRequest{RoomID: room, Sender: f.bob, Type: "m.room.redaction", Redacts: sent[3], Content: []byte(`{}`)}); err != nil {
		t.Fatal(err)
	}
	after := check("a redaction")
	// The sends since the first count held one mention, as many as the
	// redaction took away.
	if after[room]["main"].Highlights != counts[room]["main"].Highlights {
		t.Fatalf("highlights %d after a redaction, %d at first", after[room]["main"].Highlights, counts[room]["main"].Highlights)
	}

	// Receipts: the thread read further than the room, then the room read
	// half way.
	if _, err := db.UnreadCountsRooms(ctx, []string{room}, alice); err != nil {
		t.Fatal(err)
	}
	f.receipt(room, "m.read", root, sent[len(sent)-5])
	check("a thread receipt")
	if _, err := db.UnreadCountsRooms(ctx, []string{room}, alice); err != nil {
		t.Fatal(err)
	}
	f.receipt(room, "m.read", "", sent[40])
	check("a room receipt")
	send(4)
	check("messages after the receipts")
	f.receipt(room, "m.read", "", sent[len(sent)-1])
	if c := check("all read"); c[room]["main"].Notifications != 0 {
		t.Fatalf("all read: %v", c)
	}
}
