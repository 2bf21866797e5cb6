package storage_test

import (
	"context"
	"encoding/json"
	"fmt"
	"testing"
	"time"

	"github.com/rempart-hs/rempart/internal/rooms"
	"github.com/rempart-hs/rempart/internal/storage"
)

// TestPushActionsReadAcrossMove checks that every read of push actions
// (unread counts of one room and of several, thread counts, the
// notification list, highlights) answers the same whether the rows are
// staged, moved into event_push_actions, or some of each, and that a
// redaction removes its event's rows from either table.
func TestPushActionsReadAcrossMove(t *testing.T) {
	f := newPushFixture(t, 3)
	ctx := context.Background()
	eng, db, alice, roomIDs, send := f.srv.Srv.Rooms, f.db, f.alice, f.rooms, f.send
	if db.Dialect() != storage.SQLite {
		t.Skip("push actions are staged on SQLite only")
	}
	mention := fmt.Sprintf(`{"msgtype":"m.text","body":"hello","m.mentions":{"user_ids":[%q]}}`, alice)
	var roots []string
	for _, roomID := range roomIDs {
		roots = append(roots, send(roomID, `{"msgtype":"m.text","body":"root"}`))
	}
	// round sends into every room: plain messages, a mention, thread
	// replies; in the second room alice reads the thread further than
	// the room.
	round := func() []string {
		var ids []string
		for i, roomID := range roomIDs {
			ids = append(ids, send(roomID, `{"msgtype":"m.text","body":"main"}`), send(roomID, mention))
			inThread := send(roomID, fmt.Sprintf(`{"msgtype":"m.text","body":"in thread","m.relates_to":{"rel_type":"m.thread","event_id":%q}}`, roots[i]))
			ids = append(ids, inThread)
			if i == 1 {
				f.receipt(roomID, "m.read", roots[i], inThread)
			}
		}
		return ids
	}
	// snapshot is everything the reads answer for alice.
	snapshot := func() string {
		t.Helper()
		var out []any
		batched, err := db.UnreadCountsRooms(ctx, roomIDs, alice)
		if err != nil {
			t.Fatal(err)
		}
		for _, roomID := range roomIDs {
			one, err := db.UnreadCounts(ctx, roomID, alice)
			if err != nil {
				t.Fatal(err)
			}
			if fmt.Sprint(one) != fmt.Sprint(batched[roomID]) {
				t.Errorf("room %s: one-room counts %v, batched %v", roomID, one, batched[roomID])
			}
			out = append(out, one)
		}
		for _, onlyHighlight := range []bool{false, true} {
			ns, err := db.Notifications(ctx, alice, 0, onlyHighlight, 100)
			if err != nil {
				t.Fatal(err)
			}
			for _, n := range ns {
				out = append(out, []any{n.EventID, n.StreamPos, n.ThreadID, n.Highlight, string(n.Actions), n.TS})
			}
			// A page boundary inside the list: the rows before it.
			if len(ns) > 4 {
				page, err := db.Notifications(ctx, alice, ns[3].StreamPos, onlyHighlight, 2)
				if err != nil {
					t.Fatal(err)
				}
				if len(page) != 2 || page[0].EventID != ns[4].EventID || page[1].EventID != ns[5].EventID {
					t.Errorf("page before %d: %v", ns[3].StreamPos, page)
				}
			}
		}
		b, err := json.Marshal(out)
		if err != nil {
			t.Fatal(err)
		}
		return string(b)
	}
	move := func() int64 {
		t.Helper()
		n, err := db.MoveStagedPushActions(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if left, err := storage.StagedPushActions(db); err != nil || left != 0 {
			t.Fatalf("after a move: %d rows staged (%v)", left, err)
		}
		return n
	}

	first := round()
	staged := snapshot()
	if n := move(); n == 0 {
		t.Fatal("nothing was staged: the sends wrote their push actions elsewhere")
	}
	if moved := snapshot(); moved != staged {
		t.Fatalf("reads changed with the move:\nstaged %s\nmoved  %s", staged, moved)
	}
	second := round() // staged, beside the moved rows of the first
	mixed := snapshot()
	if mixed == staged {
		t.Fatal("the second round changed nothing: the reads do not see staged rows")
	}
	// Chunk by chunk, round robin: each chunk moves rows not moved yet,
	// and the reads stay the same after each.
	left, err := storage.StagedPushActions(db)
	if err != nil || left < 4 {
		t.Fatalf("%d rows staged (%v)", left, err)
	}
	for left > 0 {
		n, err := storage.MoveStagedChunk(db, 3)
		if err != nil {
			t.Fatal(err)
		}
		now, err := storage.StagedPushActions(db)
		if err != nil {
			t.Fatal(err)
		}
		if n != min(3, left) || now != left-n {
			t.Fatalf("a chunk of 3 with %d rows staged moved %d and left %d", left, n, now)
		}
		left = now
		if moved := snapshot(); moved != mixed {
			t.Fatalf("reads changed with a chunk's move:\nmixed %s\nmoved %s", mixed, moved)
		}
	}

	// Redact a moved mention and, after a third round, a staged one.
	redact := func(eventID string) {
		t.Helper()
		if _, err := eng.Send(ctx, rooms.SendRequest{RoomID: roomIDs[0], Sender: alice, Type: "m.room.redaction", Redacts: eventID, Content: []byte(`{}`)}); err != nil {
			t.Fatal(err)
		}
	}
	third := round()
	redact(first[1])
	redact(third[1])
	for _, id := range []string{first[1], third[1]} {
		ns, err := db.Notifications(ctx, alice, 0, true, 100)
		if err != nil {
			t.Fatal(err)
		}
		for _, n := range ns {
			if n.EventID == id {
				t.Errorf("redacted event %s still notifies", id)
			}
		}
	}
	redacted := snapshot()
	move()
	if moved := snapshot(); moved != redacted {
		t.Fatalf("reads changed with the move:\nbefore %s\nmoved  %s", redacted, moved)
	}
	_ = second
}

// TestCommitterMovesStagedActions: once enough push actions are staged,
// the group committer moves a chunk of them between batches (not all: a
// move holds the queued sends), and the counts stay.
func TestCommitterMovesStagedActions(t *testing.T) {
	db, _ := openTestDB(t)
	if db.Dialect() != storage.SQLite {
		t.Skip("push actions are staged on SQLite only")
	}
	ctx := context.Background()
	batchRooms(t, db, "!big:batch")
	var units []*msgUnit
	per := storage.MoveStagedAt/4 + 1
	for i := range 4 {
		units = append(units, &msgUnit{roomID: "!big:batch", eventID: fmt.Sprintf("$m%d", i),
			sender: "@u:batch", txnID: fmt.Sprintf("t%d", i), extraActs: per})
	}
	for i, err := range inOneBatch(t, db, queueAll(db, units)) {
		if err != nil {
			t.Fatalf("unit %d: %v", i, err)
		}
	}
	deadline := time.Now().Add(10 * time.Second)
	for {
		n, err := storage.StagedPushActions(db)
		if err != nil {
			t.Fatal(err)
		}
		if n < storage.MoveStagedAt {
			if n == 0 || n < 4*int64(per)-storage.MoveChunk-8 {
				t.Fatalf("%d of %d push actions still staged: the committer moved more than a chunk", n, 4*per)
			}
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d push actions still staged: the committer did not move them", n)
		}
		time.Sleep(20 * time.Millisecond)
	}
	for _, user := range []string{"@p0:batch", fmt.Sprintf("@p%d:batch", per-1)} {
		counts, err := db.UnreadCounts(ctx, "!big:batch", user)
		if err != nil {
			t.Fatal(err)
		}
		if got := counts["main"].Notifications; got != 4 {
			t.Errorf("%s: %d notifications after the move, want 4", user, got)
		}
	}
}
