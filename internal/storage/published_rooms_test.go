package storage_test

import (
	"context"
	"encoding/json"
	"testing"

	"github.com/rempart-hs/rempart/internal/rooms"
	"github.com/rempart-hs/rempart/internal/storage"
)

// TestPublishedRoomsFollowState checks that the published room list, whose
// directory state is kept between calls, shows each change at once: a
// rename, a new topic, a redacted topic, a join, a room published and a
// room unpublished.
func TestPublishedRoomsFollowState(t *testing.T) {
	f := newPushFixture(t, 3)
	ctx := context.Background()
	db, eng := f.db, f.srv.Srv.Rooms
	empty := ""
	setVisibility := func(room, v string) {
		t.Helper()
		mustTx(t, db, func(tx *storage.Tx) error { return tx.SetRoomVisibility(ctx, room, v) })
	}
	setState := func(room, typ, content string) string {
		t.Helper()
		ev, err := eng.Send(ctx, rooms.SendRequest{RoomID: room, Sender: f.alice, Type: typ, StateKey: &empty, Content: []byte(content)})
		if err != nil {
			t.Fatal(err)
		}
		return ev.EventID
	}
	list := func() map[string]storage.PublishedRoom {
		t.Helper()
		rs, err := db.PublishedRooms(ctx)
		if err != nil {
			t.Fatal(err)
		}
		out := map[string]storage.PublishedRoom{}
		for _, r := range rs {
			out[r.RoomID] = r
		}
		return out
	}
	field := func(r storage.PublishedRoom, typ, key string) string {
		var c map[string]any
		if raw, ok := r.State[typ]; ok {
			if err := json.Unmarshal(raw, &c); err != nil {
				t.Fatal(err)
			}
		}
		s, _ := c[key].(string)
		return s
	}
	a, b, c := f.rooms[0], f.rooms[1], f.rooms[2]
	setVisibility(a, "public")
	setVisibility(b, "public")
	setState(a, "m.room.name", `{"name":"first"}`)
	got := list()
	if len(got) != 2 || field(got[a], "m.room.name", "name") != "first" || got[a].State["m.room.create"] == nil || got[a].JoinedMembers != 2 {
		t.Fatalf("first list: %+v", got)
	}
	list() // from the kept state

	setState(a, "m.room.name", `{"name":"second"}`)
	topic := setState(b, "m.room.topic", `{"topic":"news"}`)
	if got = list(); field(got[a], "m.room.name", "name") != "second" || field(got[b], "m.room.topic", "topic") != "news" {
		t.Fatalf("after a rename and a topic: %+v", got)
	}
	if _, err := eng.Send(ctx, rooms.SendRequest{RoomID: b, Sender: f.alice, Type: "m.room.redaction", Redacts: topic, Content: []byte(`{}`)}); err != nil {
		t.Fatal(err)
	}
	if got = list(); field(got[b], "m.room.topic", "topic") != "" {
		t.Fatalf("after the topic's redaction: %+v", got[b].State)
	}
	carol := f.srv.RegisterUser("carol").UserID.String()
	if _, err := eng.ChangeMembership(ctx, rooms.MembershipRequest{RoomID: a, Sender: carol, Target: carol, Membership: "join"}); err != nil {
		t.Fatal(err)
	}
	setVisibility(b, "private")
	setVisibility(c, "public")
	if got = list(); len(got) != 2 || got[a].JoinedMembers != 3 || got[c].State["m.room.create"] == nil {
		t.Fatalf("after a join, unpublishing and publishing: %+v", got)
	}
}
