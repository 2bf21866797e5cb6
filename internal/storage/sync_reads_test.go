package storage_test

import (
	"context"
	"fmt"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/rempart-hs/rempart/internal/rooms"
	"github.com/rempart-hs/rempart/internal/storage"
	"github.com/rempart-hs/rempart/internal/testserver"
)

// TestWindowReadsAgree checks that the window reads answer the same
// whether they scan the window or go through the user's rooms.
func TestWindowReadsAgree(t *testing.T) {
	srv := testserver.Start(t)
	ctx := context.Background()
	eng, db := srv.Srv.Rooms, srv.Srv.DB
	alice := srv.RegisterUser("alice").UserID.String()
	user := func(n string) string { return fmt.Sprintf("@%s:%s", n, srv.Config.ServerName) }
	member := func(roomID, u, membership string) {
		t.Helper()
		if _, err := eng.ChangeMembership(ctx, rooms.MembershipRequest{RoomID: roomID, Sender: u, Target: u, Membership: membership}); err != nil {
			t.Fatal(err)
		}
	}
	var roomIDs []string
	for i := 0; i < 3; i++ {
		roomID, err := eng.Create(ctx, rooms.CreateRequest{Creator: alice, Preset: "public_chat"})
		if err != nil {
			t.Fatal(err)
		}
		roomIDs = append(roomIDs, roomID)
	}
	// A room alice is not in.
	other, err := eng.Create(ctx, rooms.CreateRequest{Creator: user("zed"), Preset: "public_chat"})
	if err != nil {
		t.Fatal(err)
	}
	from, err := db.MaxStreamPos(ctx)
	if err != nil {
		t.Fatal(err)
	}
	member(roomIDs[0], user("bob"), "join")
	member(other, user("carol"), "join")
	if _, err := eng.Send(ctx, rooms.SendRequest{RoomID: roomIDs[1], Sender: alice, Type: "m.room.message", Content: []byte(`{"msgtype":"m.text","body":"hi"}`)}); err != nil {
		t.Fatal(err)
	}
	member(roomIDs[2], user("dan"), "join")
	member(roomIDs[2], user("dan"), "leave")
	to, err := db.MaxStreamPos(ctx)
	if err != nil {
		t.Fatal(err)
	}

	type answer struct {
		members []string
		active  []string
	}
	read := func() answer {
		t.Helper()
		evs, err := db.JoinedRoomMemberEvents(ctx, alice, from, to)
		if err != nil {
			t.Fatal(err)
		}
		var a answer
		for _, ev := range evs {
			a.members = append(a.members, ev.EventID)
		}
		active, err := db.RoomsWithEventsBetween(ctx, append(slices.Clone(roomIDs), "!unknown:x"), from, to)
		if err != nil {
			t.Fatal(err)
		}
		for id := range active {
			a.active = append(a.active, id)
		}
		slices.Sort(a.active)
		return a
	}
	scanned := read()
	restore := storage.SetWindowScanMax(0)
	perRoom := read()
	restore()
	if len(scanned.members) != 3 {
		t.Fatalf("member events in alice's rooms: got %d, want 3 (bob's join, dan's join and leave)", len(scanned.members))
	}
	want := slices.Sorted(slices.Values(roomIDs))
	if !slices.Equal(scanned.active, want) {
		t.Fatalf("active rooms %v, want %v", scanned.active, want)
	}
	if !slices.Equal(scanned.members, perRoom.members) || !slices.Equal(scanned.active, perRoom.active) {
		t.Fatalf("window scan %v and per-room reads %v disagree", scanned, perRoom)
	}

	// Sharing: bob shares a room with alice, carol does not.
	sh, err := db.SharingAmong(ctx, alice, []string{user("bob"), user("carol"), user("dan")})
	if err != nil {
		t.Fatal(err)
	}
	if !sh[user("bob")] || sh[user("carol")] || sh[user("dan")] {
		t.Fatalf("SharingAmong = %v", sh)
	}
}

// TestUnreadCountsRoomsAgree checks the batched unread counts against the
// one-room read, with unthreaded, threaded and main-timeline receipts, and
// rooms without any.
func TestUnreadCountsRoomsAgree(t *testing.T) {
	f := newPushFixture(t, 4)
	ctx := context.Background()
	db, alice, roomIDs := f.db, f.alice, f.rooms
	send, receipt := f.send, f.receipt
	for i, roomID := range roomIDs {
		root := send(roomID, `{"msgtype":"m.text","body":"root"}`)
		var last, lastInThread string
		for j := 0; j < 3; j++ {
			last = send(roomID, `{"msgtype":"m.text","body":"main"}`)
			lastInThread = send(roomID, fmt.Sprintf(`{"msgtype":"m.text","body":"in thread","m.relates_to":{"rel_type":"m.thread","event_id":%q}}`, root))
			if j == 1 {
				switch i {
				case 0: // everything read up to here; a thread receipt
					// behind the unthreaded one counts for nothing
					receipt(roomID, "m.read", "", lastInThread)
					receipt(roomID, "m.read", root, root)
				case 1: // the thread read further than the room
					receipt(roomID, "m.read", "", last)
					receipt(roomID, "m.read.private", root, lastInThread)
				case 2: // the main timeline only
					receipt(roomID, "m.read", "main", last)
				}
			}
		}
	}
	got, err := db.UnreadCountsRooms(ctx, append(slices.Clone(roomIDs), "!unknown:x"), alice)
	if err != nil {
		t.Fatal(err)
	}
	nonZero := 0
	for _, roomID := range roomIDs {
		want, err := db.UnreadCounts(ctx, roomID, alice)
		if err != nil {
			t.Fatal(err)
		}
		if fmt.Sprint(got[roomID]) != fmt.Sprint(want) && !(len(got[roomID]) == 0 && len(want) == 0) {
			t.Errorf("room %s: batched %v, one-room %v", roomID, got[roomID], want)
		}
		nonZero += len(want)
	}
	if nonZero == 0 {
		t.Fatal("no unread counts at all: the fixture does not exercise the counts")
	}
}

// TestStateChangesAndMembersAgree checks the combined read against its two
// halves read apart: the window's state changes, and the current member
// events of the pairs that are not among them.
func TestStateChangesAndMembersAgree(t *testing.T) {
	srv := testserver.Start(t)
	ctx := context.Background()
	eng, db := srv.Srv.Rooms, srv.Srv.DB
	alice := srv.RegisterUser("alice").UserID.String()
	user := func(n string) string { return fmt.Sprintf("@%s:%s", n, srv.Config.ServerName) }
	member := func(roomID, u string) {
		t.Helper()
		if _, err := eng.ChangeMembership(ctx, rooms.MembershipRequest{RoomID: roomID, Sender: u, Target: u, Membership: "join"}); err != nil {
			t.Fatal(err)
		}
	}
	var roomIDs []string
	for i := 0; i < 2; i++ {
		roomID, err := eng.Create(ctx, rooms.CreateRequest{Creator: alice, Preset: "public_chat"})
		if err != nil {
			t.Fatal(err)
		}
		member(roomID, user("bob"))
		roomIDs = append(roomIDs, roomID)
	}
	from, err := db.MaxStreamPos(ctx)
	if err != nil {
		t.Fatal(err)
	}
	member(roomIDs[0], user("carol")) // a member event in the window
	if _, err := eng.Send(ctx, rooms.SendRequest{RoomID: roomIDs[1], Sender: user("bob"), Type: "m.room.message", Content: []byte(`{"msgtype":"m.text","body":"hi"}`)}); err != nil {
		t.Fatal(err)
	}
	to, err := db.MaxStreamPos(ctx)
	if err != nil {
		t.Fatal(err)
	}
	pairs := []storage.RoomUser{{RoomID: roomIDs[0], UserID: user("carol")}, {RoomID: roomIDs[0], UserID: alice}, {RoomID: roomIDs[1], UserID: user("bob")}, {RoomID: roomIDs[1], UserID: user("nobody")}}
	ids := func(evs []storage.Event) []string {
		var out []string
		for _, ev := range evs {
			out = append(out, ev.EventID)
		}
		slices.Sort(out)
		return out
	}
	wantChanges, err := db.StateEventsBetweenRooms(ctx, roomIDs, from, to)
	if err != nil {
		t.Fatal(err)
	}
	all, err := db.CurrentMemberEvents(ctx, pairs)
	if err != nil {
		t.Fatal(err)
	}
	var wantMembers []storage.Event
	for _, ev := range all {
		if ev.StreamPos <= from {
			wantMembers = append(wantMembers, ev)
		}
	}
	if len(wantChanges[roomIDs[0]]) != 1 || len(wantMembers) != 2 {
		t.Fatalf("fixture: changes %v, members %v", wantChanges, wantMembers)
	}
	changes, members, err := db.StateChangesAndMembers(ctx, roomIDs, from, to, pairs)
	if err != nil {
		t.Fatal(err)
	}
	for _, roomID := range roomIDs {
		if !slices.Equal(ids(changes[roomID]), ids(wantChanges[roomID])) {
			t.Errorf("room %s: changes %v, want %v", roomID, ids(changes[roomID]), ids(wantChanges[roomID]))
		}
	}
	if !slices.Equal(ids(members), ids(wantMembers)) {
		t.Errorf("members %v, want %v", ids(members), ids(wantMembers))
	}
}

// TestStreamPositionsFollowEveryCommit interleaves commits of every kind
// with reads: positions kept between commits (SQLite) must never hide one.
func TestStreamPositionsFollowEveryCommit(t *testing.T) {
	db, _ := openTestDB(t)
	ctx := context.Background()
	for i := range 50 {
		before, err := db.CurrentStreamPositions(ctx)
		if err != nil {
			t.Fatal(err)
		}
		again, _ := db.CurrentStreamPositions(ctx)
		if again != before {
			t.Fatalf("positions moved without a commit: %+v then %+v", before, again)
		}
		stream := []string{"account_data", "receipts", "to_device", "device_lists"}[i%4]
		var pos int64
		if err := db.WithTx(ctx, func(tx *storage.Tx) error {
			pos, err = tx.NextStreamPos(ctx, stream)
			return err
		}); err != nil {
			t.Fatal(err)
		}
		after, err := db.CurrentStreamPositions(ctx)
		if err != nil {
			t.Fatal(err)
		}
		got := map[string]int64{"account_data": after.AccountData, "receipts": after.Receipts, "to_device": after.ToDevice, "device_lists": after.DeviceLists}[stream]
		if got != pos {
			t.Fatalf("commit %d: %s position %d after its commit, want %d", i, stream, got, pos)
		}
	}
}

// TestStreamPositionsReadOncePerCommit: callers asking for the positions
// together after a commit (the long-polls it wakes) share one read, and
// all get the commit's position.
func TestStreamPositionsReadOncePerCommit(t *testing.T) {
	db, _ := openTestDB(t)
	ctx := context.Background()
	var reads atomic.Int64
	defer storage.SetBeforePositionsRead(func() {
		reads.Add(1)
		time.Sleep(50 * time.Millisecond) // while the others arrive
	})()
	for round := range 3 {
		var pos int64
		if err := db.WithTx(ctx, func(tx *storage.Tx) (err error) {
			pos, err = tx.NextStreamPos(ctx, "receipts")
			return err
		}); err != nil {
			t.Fatal(err)
		}
		reads.Store(0)
		const callers = 20
		got := make([]int64, callers)
		var wg sync.WaitGroup
		for i := range callers {
			wg.Add(1)
			go func() {
				defer wg.Done()
				p, err := db.CurrentStreamPositions(ctx)
				if err != nil {
					t.Error(err)
				}
				got[i] = p.Receipts
			}()
		}
		wg.Wait()
		for i, g := range got {
			if g != pos {
				t.Fatalf("round %d, caller %d: receipts position %d, want %d", round, i, g, pos)
			}
		}
		if n := reads.Load(); n != 1 {
			t.Errorf("round %d: %d reads of the positions for %d callers after one commit, want 1", round, n, callers)
		}
	}
	// A caller whose request ends stops waiting; the read goes on for the
	// others.
	if err := db.WithTx(ctx, func(tx *storage.Tx) error {
		_, err := tx.NextStreamPos(ctx, "receipts")
		return err
	}); err != nil {
		t.Fatal(err)
	}
	reads.Store(0)
	done := make(chan error, 1)
	go func() { _, err := db.CurrentStreamPositions(ctx); done <- err }()
	for reads.Load() == 0 { // the read has begun
		time.Sleep(time.Millisecond)
	}
	cctx, cancel := context.WithCancel(ctx)
	cancel()
	if _, err := db.CurrentStreamPositions(cctx); err == nil {
		t.Error("a cancelled caller waiting for the read got no error")
	}
	if err := <-done; err != nil {
		t.Errorf("the reading caller: %v", err)
	}
}
