package storage_test

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/rempart-hs/rempart/internal/storage"
)

// The group-commit batch's shortcuts on PostgreSQL (transaction IDs claimed
// for the whole batch, buffered message rows, push actions and room heads,
// reserved stream positions, push recipients read ahead) must give the same
// results as running the units one after the other, as SQLite does.

// batchRooms creates rooms for batch tests.
func batchRooms(t *testing.T, db *storage.DB, ids ...string) {
	t.Helper()
	ctx := context.Background()
	if err := db.WithTx(ctx, func(tx *storage.Tx) error {
		for _, id := range ids {
			if err := tx.CreateRoom(ctx, storage.Room{RoomID: id, RoomVersion: "11", Creator: "@x:batch", CreatedTS: 1, Visibility: "private"}); err != nil {
				return err
			}
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
}

// inOneBatch queues units so that they run in one batch: a first unit
// holds the committer until all are queued. It returns each unit's error.
func inOneBatch(t *testing.T, db *storage.DB, queue func() []func() error) []error {
	t.Helper()
	ctx := context.Background()
	hold := make(chan struct{})
	started := make(chan struct{})
	blocker := db.BatchAsync(ctx, "", func(ctx context.Context, tx *storage.Tx) error {
		select {
		case <-started:
		default:
			close(started)
		}
		<-hold
		return nil
	})
	<-started
	waits := queue()
	close(hold)
	if err := blocker(); err != nil {
		t.Fatal(err)
	}
	errs := make([]error, len(waits))
	for i, w := range waits {
		errs[i] = w()
	}
	return errs
}

type msgUnit struct {
	roomID, eventID, sender, txnID string
	stateKey                       *string
	membership                     string
	fail                           bool // fail after appending
	extraActs                      int  // notify that many more users

	// results, set by the unit
	dup        string
	pos        int64
	recipients []string
}

func (u *msgUnit) queue(db *storage.DB) func() error {
	ctx := context.Background()
	fn := func(ctx context.Context, tx *storage.Tx) error {
		u.dup, u.pos, u.recipients = "", 0, nil
		room, err := tx.LockRoom(ctx, u.roomID)
		if err != nil {
			return err
		}
		if u.txnID != "" {
			prev, err := tx.ClaimTxn(ctx, u.sender, "DEV", "send", u.txnID, u.eventID, 1)
			if err != nil {
				return err
			}
			if prev != "" {
				u.dup = prev
				return nil
			}
		}
		typ := "m.room.message"
		if u.stateKey != nil {
			typ = "m.room.member"
		}
		pos, err := tx.AppendEvent(ctx, &room, storage.NewEvent{Event: storage.Event{EventID: u.eventID, RoomID: u.roomID, Type: typ,
			StateKey: u.stateKey, Sender: u.sender, OriginServerTS: time.Now().UnixMilli(), Depth: room.Depth + 1, JSON: []byte(`{}`),
			TxnDevice: "DEV", TxnID: u.txnID}, Membership: u.membership})
		if err != nil {
			return err
		}
		members, err := tx.PushRecipients(ctx, u.roomID)
		if err != nil {
			return err
		}
		var acts []storage.PushAction
		for _, m := range members {
			u.recipients = append(u.recipients, m.UserID)
			acts = append(acts, storage.PushAction{UserID: m.UserID, RoomID: u.roomID, EventID: u.eventID, StreamPos: pos,
				ThreadID: "main", Actions: []byte(`["notify"]`)})
		}
		for i := range u.extraActs {
			acts = append(acts, storage.PushAction{UserID: fmt.Sprintf("@p%d:batch", i), RoomID: u.roomID, EventID: u.eventID,
				StreamPos: pos, ThreadID: "main", Actions: []byte(`["notify"]`)})
		}
		if err := tx.InsertPushActions(ctx, acts); err != nil {
			return err
		}
		if u.fail {
			return errors.New("unit fails on purpose")
		}
		u.pos = pos
		return nil
	}
	if u.txnID != "" {
		return db.BatchAsyncClaim(ctx, u.roomID, storage.TxnClaim{UserID: u.sender, DeviceID: "DEV", Scope: "send", TxnID: u.txnID,
			Result: u.eventID, TS: 1}, fn)
	}
	return db.BatchAsync(ctx, u.roomID, fn)
}

func queueAll(db *storage.DB, units []*msgUnit) func() []func() error {
	return func() []func() error {
		var waits []func() error
		for _, u := range units {
			waits = append(waits, u.queue(db))
		}
		return waits
	}
}

func eventExists(t *testing.T, db *storage.DB, id string) bool {
	t.Helper()
	_, err := db.GetEvent(context.Background(), id)
	if errors.Is(err, storage.ErrNotFound) {
		return false
	}
	if err != nil {
		t.Fatal(err)
	}
	return true
}

// TestBatchTxnIDsStayIdempotent: a transaction ID repeated within one batch
// or across batches stores one event, and every repeat answers with that
// event's ID.
func TestBatchTxnIDsStayIdempotent(t *testing.T) {
	db, _ := openTestDB(t)
	batchRooms(t, db, "!a:batch", "!b:batch")
	first := []*msgUnit{
		{roomID: "!a:batch", eventID: "$1", sender: "@u:batch", txnID: "t1"},
		{roomID: "!b:batch", eventID: "$2", sender: "@u:batch", txnID: "t2"},
		{roomID: "!a:batch", eventID: "$3", sender: "@u:batch", txnID: "t1"},  // repeat in the batch
		{roomID: "!b:batch", eventID: "$4", sender: "@v:batch", txnID: "t1"},  // another user's ID
		{roomID: "!a:batch", eventID: "$5", sender: "@u:batch", txnID: "t1"},  // again
		{roomID: "!a:batch", eventID: "$6", sender: "@u:batch", txnID: ""},    // none
		{roomID: "!b:batch", eventID: "$7", sender: "@u:batch", txnID: "t2"},  // repeat in another room
		{roomID: "!b:batch", eventID: "$8", sender: "@w:batch", txnID: "t8"},  // fails: its claim must go
		{roomID: "!a:batch", eventID: "$9", sender: "@w:batch", txnID: "t8"},  // so this one takes it
		{roomID: "!a:batch", eventID: "$10", sender: "@w:batch", txnID: "t8"}, // and this one sees $9
	}
	// check compares a batch's answers with wantDup (unit → the earlier
	// event ID it must answer with); failing units must fail alone.
	check := func(batch string, units []*msgUnit, errs []error, wantDup map[int]string) {
		t.Helper()
		for i, u := range units {
			if u.fail {
				if errs[i] == nil {
					t.Errorf("%s, unit %d: failed on purpose, got no error", batch, i)
				}
				if eventExists(t, db, u.eventID) {
					t.Errorf("%s, unit %d: failed, yet its event is stored", batch, i)
				}
				continue
			}
			if errs[i] != nil {
				t.Fatalf("%s, unit %d: %v", batch, i, errs[i])
			}
			if u.dup != wantDup[i] {
				t.Errorf("%s, unit %d: answered with %q, want %q", batch, i, u.dup, wantDup[i])
			}
			if got := eventExists(t, db, u.eventID); got != (wantDup[i] == "") {
				t.Errorf("%s, unit %d: event stored %v", batch, i, got)
			}
		}
	}
	first[7].fail = true
	check("first batch", first, inOneBatch(t, db, queueAll(db, first)), map[int]string{2: "$1", 4: "$1", 6: "$2", 9: "$9"})
	// Across batches: every repeat answers with the first result.
	again := []*msgUnit{
		{roomID: "!b:batch", eventID: "$11", sender: "@u:batch", txnID: "t1"},
		{roomID: "!a:batch", eventID: "$12", sender: "@u:batch", txnID: "t2"},
		{roomID: "!a:batch", eventID: "$13", sender: "@w:batch", txnID: "t8"},
		{roomID: "!a:batch", eventID: "$14", sender: "@w:batch", txnID: "t14"},
		{roomID: "!b:batch", eventID: "$15", sender: "@w:batch", txnID: "t14"},
	}
	check("second batch", again, inOneBatch(t, db, queueAll(db, again)), map[int]string{0: "$1", 1: "$2", 2: "$9", 4: "$14"})
	for _, k := range []struct{ user, txn, want string }{{"@u:batch", "t1", "$1"}, {"@u:batch", "t2", "$2"}, {"@v:batch", "t1", "$4"}, {"@w:batch", "t8", "$9"}, {"@w:batch", "t14", "$14"}} {
		if got, err := db.TxnResult(context.Background(), k.user, "DEV", "send", k.txn); err != nil || got != k.want {
			t.Errorf("recorded result of %s %s: %q, %v; want %q", k.user, k.txn, got, err, k.want)
		}
	}
}

// TestBatchFailingWriteFailsItsUnitAlone: a unit whose row cannot be
// written (here: an event ID taken by an earlier unit of the same batch)
// fails alone, even when the row was buffered and its failure only shows
// when the batch's rows are sent together.
func TestBatchFailingWriteFailsItsUnitAlone(t *testing.T) {
	db, _ := openTestDB(t)
	batchRooms(t, db, "!a:batch", "!b:batch")
	units := []*msgUnit{
		{roomID: "!a:batch", eventID: "$one", sender: "@u:batch", txnID: "t1"},
		{roomID: "!b:batch", eventID: "$two", sender: "@u:batch", txnID: "t2"},
		{roomID: "!b:batch", eventID: "$one", sender: "@u:batch", txnID: "t3"}, // taken
		{roomID: "!a:batch", eventID: "$four", sender: "@u:batch"},
	}
	errs := inOneBatch(t, db, queueAll(db, units))
	for i, err := range errs {
		if (err != nil) != (i == 2) {
			t.Errorf("unit %d: error %v", i, err)
		}
	}
	for _, id := range []string{"$one", "$two", "$four"} {
		if !eventExists(t, db, id) {
			t.Errorf("%s not stored", id)
		}
	}
	if _, err := db.TxnResult(context.Background(), "@u:batch", "DEV", "send", "t3"); !errors.Is(err, storage.ErrNotFound) {
		t.Errorf("the failed unit's transaction ID is recorded (%v)", err)
	}
	ev, err := db.GetEvent(context.Background(), "$one")
	if err != nil || ev.RoomID != "!a:batch" {
		t.Errorf("$one: %+v, %v", ev, err)
	}
}

// TestBatchPositionsFollowUnitOrder: the events of a batch, messages and
// state events mixed, get ascending stream positions in the order of their
// units, rooms end on their last event, and a unit reading a room's push
// recipients sees a join made by an earlier unit of its batch.
func TestBatchPositionsFollowUnitOrder(t *testing.T) {
	db, _ := openTestDB(t)
	ctx := context.Background()
	batchRooms(t, db, "!a:batch", "!b:batch")
	alice, bob := "@alice:batch", "@bob:batch"
	setup := []*msgUnit{{roomID: "!a:batch", eventID: "$join-alice", sender: alice, stateKey: &alice, membership: "join"}}
	if errs := inOneBatch(t, db, queueAll(db, setup)); errs[0] != nil {
		t.Fatal(errs[0])
	}
	var units []*msgUnit
	for i := range 12 {
		u := &msgUnit{roomID: []string{"!a:batch", "!b:batch"}[i%2], eventID: fmt.Sprintf("$m%d", i), sender: alice, txnID: fmt.Sprintf("t%d", i)}
		if i == 5 {
			u = &msgUnit{roomID: "!a:batch", eventID: "$join-bob", sender: bob, stateKey: &bob, membership: "join"}
		}
		units = append(units, u)
	}
	errs := inOneBatch(t, db, queueAll(db, units))
	var last int64
	for i, u := range units {
		if errs[i] != nil {
			t.Fatalf("unit %d: %v", i, errs[i])
		}
		if u.pos <= last {
			t.Errorf("unit %d: position %d after %d", i, u.pos, last)
		}
		last = u.pos
		ev, err := db.GetEvent(ctx, u.eventID)
		if err != nil || ev.StreamPos != u.pos {
			t.Errorf("unit %d: stored at %d (%v), answered %d", i, ev.StreamPos, err, u.pos)
		}
		if u.roomID == "!a:batch" {
			want := []string{alice}
			if i >= 5 {
				want = []string{alice, bob}
			}
			slices.Sort(u.recipients)
			if !slices.Equal(u.recipients, want) {
				t.Errorf("unit %d: recipients %v, want %v", i, u.recipients, want)
			}
		} else if len(u.recipients) != 0 {
			t.Errorf("unit %d: recipients %v in a room without members", i, u.recipients)
		}
	}
	if head, err := db.MaxStreamPos(ctx); err != nil || head != last {
		t.Errorf("head %d, want %d (%v)", head, last, err)
	}
	for _, r := range []struct{ room, latest string }{{"!a:batch", "$m10"}, {"!b:batch", "$m11"}} {
		room, err := db.GetRoom(ctx, r.room)
		if err != nil || room.LatestEventID != r.latest {
			t.Errorf("%s: latest event %q (%v), want %s", r.room, room.LatestEventID, err, r.latest)
		}
	}
	evs, err := db.RoomEvents(ctx, "!a:batch", 0, last, 100, false)
	if err != nil {
		t.Fatal(err)
	}
	var ids []string
	for _, e := range evs {
		ids = append(ids, e.EventID)
	}
	if want := []string{"$join-alice", "$m0", "$m2", "$m4", "$join-bob", "$m6", "$m8", "$m10"}; !slices.Equal(ids, want) {
		t.Errorf("room a in stream order: %v, want %v", ids, want)
	}
}

// TestBatchManyPushActions: a batch notifying more users than the batch
// buffers at once (messages to big rooms) stores every notification.
func TestBatchManyPushActions(t *testing.T) {
	db, _ := openTestDB(t)
	ctx := context.Background()
	batchRooms(t, db, "!big:batch", "!small:batch")
	var units []*msgUnit
	for i := range 8 {
		units = append(units, &msgUnit{roomID: []string{"!big:batch", "!small:batch"}[i%2], eventID: fmt.Sprintf("$n%d", i),
			sender: "@u:batch", txnID: fmt.Sprintf("t%d", i), extraActs: 1500})
	}
	units[5].fail = true
	errs := inOneBatch(t, db, queueAll(db, units))
	for i, err := range errs {
		if (err != nil) != (i == 5) {
			t.Fatalf("unit %d: error %v", i, err)
		}
	}
	for _, user := range []string{"@p0:batch", "@p777:batch", "@p1499:batch"} {
		for _, r := range []struct {
			room string
			want int
		}{{"!big:batch", 4}, {"!small:batch", 3}} {
			counts, err := db.UnreadCounts(ctx, r.room, user)
			if err != nil {
				t.Fatal(err)
			}
			if got := counts["main"].Notifications; got != r.want {
				t.Errorf("%s in %s: %d notifications, want %d", user, r.room, got, r.want)
			}
		}
	}
}
