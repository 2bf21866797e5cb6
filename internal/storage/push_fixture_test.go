package storage_test

import (
	"context"
	"testing"

	"github.com/rempart-hs/rempart/internal/rooms"
	"github.com/rempart-hs/rempart/internal/storage"
	"github.com/rempart-hs/rempart/internal/testserver"
)

// pushFixture is a server with two users, alice and bob, and rooms alice
// created and bob joined: bob's messages notify alice.
type pushFixture struct {
	t          testing.TB
	srv        *testserver.Server
	db         *storage.DB
	alice, bob string
	rooms      []string
}

func newPushFixture(t testing.TB, nRooms int) *pushFixture {
	t.Helper()
	srv := testserver.Start(t)
	f := &pushFixture{t: t, srv: srv, db: srv.Srv.DB,
		alice: srv.RegisterUser("alice").UserID.String(), bob: srv.RegisterUser("bob").UserID.String()}
	ctx := context.Background()
	for range nRooms {
		roomID, err := srv.Srv.Rooms.Create(ctx, rooms.CreateRequest{Creator: f.alice, Preset: "public_chat"})
		if err != nil {
			t.Fatal(err)
		}
		if _, err := srv.Srv.Rooms.ChangeMembership(ctx, rooms.MembershipRequest{RoomID: roomID, Sender: f.bob, Target: f.bob, Membership: "join"}); err != nil {
			t.Fatal(err)
		}
		f.rooms = append(f.rooms, roomID)
	}
	return f
}

// send has bob send a message and returns its event ID.
func (f *pushFixture) send(roomID, content string) string {
	f.t.Helper()
	ev, err := f.srv.Srv.Rooms.Send(context.Background(), rooms.SendRequest{RoomID: roomID, Sender: f.bob, Type: "m.room.message", Content: []byte(content)})
	if err != nil {
		f.t.Fatal(err)
	}
	return ev.EventID
}

// receipt stores a receipt of alice's.
func (f *pushFixture) receipt(roomID, typ, threadID, eventID string) {
	f.t.Helper()
	ctx := context.Background()
	mustTx(f.t, f.db, func(tx *storage.Tx) error {
		_, err := tx.PutReceipt(ctx, storage.Receipt{RoomID: roomID, Type: typ, UserID: f.alice, ThreadID: threadID, EventID: eventID, TS: 1})
		return err
	})
}
