package syncapi_test

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/url"
	"slices"
	"testing"
	"time"

	"github.com/rempart-hs/rempart/internal/httpapi"
	"github.com/rempart-hs/rempart/internal/rooms"
	"github.com/rempart-hs/rempart/internal/storage"
	"github.com/rempart-hs/rempart/internal/syncapi"
	"github.com/rempart-hs/rempart/internal/testserver"
)

// syncAsync starts a sync of userID and returns where its answer arrives.
func syncAsync(t *testing.T, srv *testserver.Server, userID string, query url.Values) <-chan *syncapi.Response {
	t.Helper()
	out := make(chan *syncapi.Response, 1)
	r := httptest.NewRequest(http.MethodGet, "/_matrix/client/v3/sync?"+query.Encode(), nil)
	r = r.WithContext(httpapi.WithRequester(context.Background(), &httpapi.Requester{UserID: userID, DeviceID: "TEST"}))
	go func() {
		resp, err := srv.Srv.Sync.Handle(r)
		if err != nil {
			t.Errorf("sync: %v", err)
			out <- nil
			return
		}
		out <- resp.(*syncapi.Response)
	}()
	return out
}

func timelineBodies(jr *syncapi.JoinedRoom) []string {
	var out []string
	for _, ev := range jr.Timeline.Events {
		var c struct{ Body string }
		_ = json.Unmarshal(ev.Content, &c)
		out = append(out, c.Body)
	}
	return out
}

// TestLongPollWokenForNothingWaits checks that a long-poll woken by events
// it must not show (in a room its filter leaves out, in a room it left)
// goes on waiting, answers with the first event it may show, and that an
// answer after the timeout, with nothing new, still carries the key
// counts.
func TestLongPollWokenForNothingWaits(t *testing.T) {
	srv := testserver.Start(t)
	ctx := context.Background()
	eng := srv.Srv.Rooms
	alice := srv.RegisterUser("alice").UserID.String()
	bob := fmt.Sprintf("@bob:%s", srv.Config.ServerName)
	newRoom := func() string {
		t.Helper()
		roomID, err := eng.Create(ctx, rooms.CreateRequest{Creator: bob, Preset: "public_chat"})
		if err != nil {
			t.Fatal(err)
		}
		if _, err := eng.ChangeMembership(ctx, rooms.MembershipRequest{RoomID: roomID, Sender: alice, Target: alice, Membership: "join"}); err != nil {
			t.Fatal(err)
		}
		return roomID
	}
	send := func(roomID, body string) {
		t.Helper()
		if _, err := eng.Send(ctx, rooms.SendRequest{RoomID: roomID, Sender: bob, Type: "m.room.message",
			Content: json.RawMessage(fmt.Sprintf(`{"msgtype":"m.text","body":%q}`, body))}); err != nil {
			t.Fatal(err)
		}
	}
	watched, ignored, left := newRoom(), newRoom(), newRoom()
	if _, err := eng.ChangeMembership(ctx, rooms.MembershipRequest{RoomID: left, Sender: alice, Target: alice, Membership: "leave"}); err != nil {
		t.Fatal(err)
	}
	filter := fmt.Sprintf(`{"room":{"rooms":[%q,%q],"timeline":{"limit":10}}}`, watched, left)
	since := syncAs(t, srv, alice, url.Values{"filter": {filter}}).NextBatch

	// Nothing new: the answer comes at the timeout, empty but for the key
	// counts every answer carries.
	start := time.Now()
	resp := syncAs(t, srv, alice, url.Values{"filter": {filter}, "since": {since}, "timeout": {"300"}})
	if d := time.Since(start); d < 250*time.Millisecond {
		t.Fatalf("a long-poll with nothing new answered after %v", d)
	}
	if resp.Rooms != nil || resp.NextBatch != since {
		t.Fatalf("timed-out long-poll: rooms %v, next_batch %s (since %s)", resp.Rooms, resp.NextBatch, since)
	}
	if _, ok := resp.DeviceOneTimeKeysCount["signed_curve25519"]; !ok || resp.DeviceUnusedFallbackKeyTypes == nil {
		t.Fatalf("timed-out long-poll lacks the key counts: %v %v", resp.DeviceOneTimeKeysCount, resp.DeviceUnusedFallbackKeyTypes)
	}

	// Woken by events it may not show: it goes on waiting.
	answer := syncAsync(t, srv, alice, url.Values{"filter": {filter}, "since": {since}, "timeout": {"20000"}})
	time.Sleep(100 * time.Millisecond)
	send(ignored, "filtered out")
	send(left, "after the leave")
	select {
	case r := <-answer:
		t.Fatalf("long-poll answered for events it may not show: %+v", r.Rooms)
	case <-time.After(500 * time.Millisecond):
	}
	send(watched, "for alice")
	select {
	case r := <-answer:
		if r == nil {
			t.FailNow()
		}
		if r.Rooms == nil || len(r.Rooms.Join) != 1 || len(r.Rooms.Leave) != 0 {
			t.Fatalf("woken long-poll answered rooms %+v", r.Rooms)
		}
		if got := timelineBodies(r.Rooms.Join[watched]); !slices.Equal(got, []string{"for alice"}) {
			t.Fatalf("woken long-poll timeline %v", got)
		}
		if _, ok := r.DeviceOneTimeKeysCount["signed_curve25519"]; !ok {
			t.Fatalf("answer lacks the key counts")
		}
	case <-time.After(10 * time.Second):
		t.Fatal("long-poll not woken by an event it may show")
	}
}

// TestIncrementalSyncSummary checks that an incremental sync carries a
// room summary when the member list changed in its window, and not for
// messages alone (the member events lazy loading adds are no change).
func TestIncrementalSyncSummary(t *testing.T) {
	srv := testserver.Start(t)
	ctx := context.Background()
	eng := srv.Srv.Rooms
	alice := srv.RegisterUser("alice").UserID.String()
	user := func(n string) string { return fmt.Sprintf("@%s:%s", n, srv.Config.ServerName) }
	roomID, err := eng.Create(ctx, rooms.CreateRequest{Creator: alice, Preset: "public_chat"})
	if err != nil {
		t.Fatal(err)
	}
	join := func(u string) {
		t.Helper()
		if _, err := eng.ChangeMembership(ctx, rooms.MembershipRequest{RoomID: roomID, Sender: u, Target: u, Membership: "join"}); err != nil {
			t.Fatal(err)
		}
	}
	join(user("bob"))
	for _, lazy := range []bool{true, false} {
		filter := fmt.Sprintf(`{"room":{"timeline":{"limit":10},"state":{"lazy_load_members":%t}}}`, lazy)
		since := syncAs(t, srv, alice, url.Values{"filter": {filter}}).NextBatch
		if _, err := eng.Send(ctx, rooms.SendRequest{RoomID: roomID, Sender: user("bob"), Type: "m.room.message", Content: json.RawMessage(`{"msgtype":"m.text","body":"hi"}`)}); err != nil {
			t.Fatal(err)
		}
		resp := syncAs(t, srv, alice, url.Values{"filter": {filter}, "since": {since}})
		jr := resp.Rooms.Join[roomID]
		if jr == nil || jr.Summary != nil {
			t.Fatalf("lazy=%t: a message alone: room %+v", lazy, jr)
		}
		if lazy && len(jr.State.Events) != 1 || !lazy && len(jr.State.Events) != 0 {
			t.Fatalf("lazy=%t: state %+v", lazy, jr.State.Events)
		}
		join(user(fmt.Sprintf("carol%t", lazy)))
		resp = syncAs(t, srv, alice, url.Values{"filter": {filter}, "since": {resp.NextBatch}})
		jr = resp.Rooms.Join[roomID]
		if jr == nil || jr.Summary == nil || *jr.Summary.JoinedMemberCount != 3+boolInt(!lazy) {
			t.Fatalf("lazy=%t: after a join: room %+v", lazy, jr)
		}
	}
}

func boolInt(b bool) int {
	if b {
		return 1
	}
	return 0
}

// TestDeviceListsIgnoreRoomFilter checks that the device-list changes of
// an incremental sync follow every room the user shares, whatever rooms
// its filter shows.
func TestDeviceListsIgnoreRoomFilter(t *testing.T) {
	srv := testserver.Start(t)
	ctx := context.Background()
	eng := srv.Srv.Rooms
	alice := srv.RegisterUser("alice").UserID.String()
	carol := fmt.Sprintf("@carol:%s", srv.Config.ServerName)
	shown, err := eng.Create(ctx, rooms.CreateRequest{Creator: alice, Preset: "public_chat"})
	if err != nil {
		t.Fatal(err)
	}
	hidden, err := eng.Create(ctx, rooms.CreateRequest{Creator: alice, Preset: "public_chat"})
	if err != nil {
		t.Fatal(err)
	}
	filter := fmt.Sprintf(`{"room":{"rooms":[%q]}}`, shown)
	since := syncAs(t, srv, alice, url.Values{"filter": {filter}}).NextBatch
	if _, err := eng.ChangeMembership(ctx, rooms.MembershipRequest{RoomID: hidden, Sender: carol, Target: carol, Membership: "join"}); err != nil {
		t.Fatal(err)
	}
	resp := syncAs(t, srv, alice, url.Values{"filter": {filter}, "since": {since}})
	if resp.Rooms != nil {
		t.Fatalf("the filter shows rooms %+v", resp.Rooms)
	}
	if resp.DeviceLists == nil || !slices.Contains(resp.DeviceLists.Changed, carol) {
		t.Fatalf("device_lists %+v, want carol changed", resp.DeviceLists)
	}
	if _, err := eng.ChangeMembership(ctx, rooms.MembershipRequest{RoomID: hidden, Sender: carol, Target: carol, Membership: "leave"}); err != nil {
		t.Fatal(err)
	}
	resp = syncAs(t, srv, alice, url.Values{"filter": {filter}, "since": {resp.NextBatch}})
	if resp.DeviceLists == nil || !slices.Contains(resp.DeviceLists.Left, carol) {
		t.Fatalf("device_lists %+v, want carol left", resp.DeviceLists)
	}
}

// TestLoadFilterKept checks the parsed-filter cache: a stored filter is
// found again by its owner only, and an inline one by its text.
func TestLoadFilterKept(t *testing.T) {
	srv := testserver.Start(t)
	ctx := context.Background()
	alice := srv.RegisterUser("alice").UserID.String()
	bob := srv.RegisterUser("bob").UserID.String()
	var id int64
	err := srv.Srv.DB.WithTx(ctx, func(tx *storage.Tx) error {
		var err error
		id, err = tx.CreateFilter(ctx, alice, []byte(`{"room":{"timeline":{"limit":3}}}`))
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	param := fmt.Sprint(id)
	for range 2 {
		f, err := srv.Srv.Sync.LoadFilter(ctx, alice, param)
		if err != nil || f.Room.Timeline.LimitOr(10, 100) != 3 {
			t.Fatalf("alice's stored filter: %+v, %v", f, err)
		}
		if _, err := srv.Srv.Sync.LoadFilter(ctx, bob, param); !httpapi.ErrIs(err, "M_NOT_FOUND") {
			t.Fatalf("bob loads alice's filter: %v", err)
		}
		f, err = srv.Srv.Sync.LoadFilter(ctx, bob, `{"room":{"timeline":{"limit":5}}}`)
		if err != nil || f.Room.Timeline.LimitOr(10, 100) != 5 {
			t.Fatalf("inline filter: %+v, %v", f, err)
		}
		if _, err := srv.Srv.Sync.LoadFilter(ctx, bob, `{"room":{"timeline":{"limit":"x"}}}`); err == nil {
			t.Fatal("a bad inline filter is accepted")
		}
	}
}

// TestToDeviceAcknowledgedDeleted checks that the to-device messages a
// sync delivered are deleted once the client syncs from its next_batch,
// also when no other to-device message came since (nothing to read for the
// answer itself), and are never delivered twice.
func TestToDeviceAcknowledgedDeleted(t *testing.T) {
	srv := testserver.Start(t)
	ctx := context.Background()
	db := srv.Srv.DB
	alice := srv.RegisterUser("alice").UserID.String()
	since := syncAs(t, srv, alice, url.Values{}).NextBatch
	err := db.WithTx(ctx, func(tx *storage.Tx) error {
		_, err := tx.QueueToDevice(ctx, storage.ToDeviceMessage{UserID: alice, DeviceID: "TEST", Sender: alice, Type: "m.test", Content: json.RawMessage(`{"n":1}`)})
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	resp := syncAs(t, srv, alice, url.Values{"since": {since}})
	if resp.ToDevice == nil || len(resp.ToDevice.Events) != 1 {
		t.Fatalf("to_device %+v, want the message", resp.ToDevice)
	}
	for _, timeout := range []string{"0", "200"} {
		resp = syncAs(t, srv, alice, url.Values{"since": {resp.NextBatch}, "timeout": {timeout}})
		if resp.ToDevice != nil {
			t.Fatalf("timeout %s: delivered again: %+v", timeout, resp.ToDevice)
		}
		left, err := db.ToDeviceMessages(ctx, alice, "TEST", 1<<40, 10)
		if err != nil {
			t.Fatal(err)
		}
		if len(left) != 0 {
			t.Fatalf("timeout %s: %d acknowledged messages kept", timeout, len(left))
		}
	}
}
