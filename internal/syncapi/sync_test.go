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

	"github.com/rempart-hs/rempart/internal/httpapi"
	"github.com/rempart-hs/rempart/internal/rooms"
	"github.com/rempart-hs/rempart/internal/syncapi"
	"github.com/rempart-hs/rempart/internal/testserver"
)

func syncAs(t *testing.T, srv *testserver.Server, userID string, query url.Values) *syncapi.Response {
	t.Helper()
	r := httptest.NewRequest(http.MethodGet, "/_matrix/client/v3/sync?"+query.Encode(), nil)
	r = r.WithContext(httpapi.WithRequester(r.Context(), &httpapi.Requester{UserID: userID, DeviceID: "TEST"}))
	out, err := srv.Srv.Sync.Handle(r)
	if err != nil {
		t.Fatal(err)
	}
	return out.(*syncapi.Response)
}

// TestInitialSyncSummaries checks the batched room summaries: member
// counts, and heroes (other joined or invited users in user ID order) only
// for rooms with neither a name nor a canonical alias (a room of each
// kind).
func TestInitialSyncSummaries(t *testing.T) {
	srv := testserver.Start(t)
	ctx := context.Background()
	eng := srv.Srv.Rooms
	user := func(n string) string { return fmt.Sprintf("@%s:%s", n, srv.Config.ServerName) }
	alice := srv.RegisterUser("alice").UserID.String()
	amy := srv.RegisterUser("amy").UserID.String()
	name := "Named"
	unnamed, err := eng.Create(ctx, rooms.CreateRequest{Creator: alice, Preset: "public_chat"})
	if err != nil {
		t.Fatal(err)
	}
	named, err := eng.Create(ctx, rooms.CreateRequest{Creator: alice, Preset: "public_chat", Name: &name})
	if err != nil {
		t.Fatal(err)
	}
	aliased, err := eng.Create(ctx, rooms.CreateRequest{Creator: alice, Preset: "public_chat", RoomAliasName: "aliased"})
	if err != nil {
		t.Fatal(err)
	}
	for _, roomID := range []string{unnamed, named, aliased} {
		for _, u := range []string{"zoe", "bob", "carol", "dan", "erin", "frank"} {
			if _, err := eng.ChangeMembership(ctx, rooms.MembershipRequest{RoomID: roomID, Sender: user(u), Target: user(u), Membership: "join"}); err != nil {
				t.Fatal(err)
			}
		}
		if _, err := eng.ChangeMembership(ctx, rooms.MembershipRequest{RoomID: roomID, Sender: alice, Target: amy, Membership: "invite"}); err != nil {
			t.Fatal(err)
		}
	}
	resp := syncAs(t, srv, alice, url.Values{})
	for _, roomID := range []string{unnamed, named, aliased} {
		jr := resp.Rooms.Join[roomID]
		if jr == nil || jr.Summary == nil {
			t.Fatalf("room %s: no summary", roomID)
		}
		if *jr.Summary.JoinedMemberCount != 7 || *jr.Summary.InvitedMemberCount != 1 {
			t.Fatalf("room %s: joined %d invited %d, want 7 and 1", roomID, *jr.Summary.JoinedMemberCount, *jr.Summary.InvitedMemberCount)
		}
	}
	if h := resp.Rooms.Join[named].Summary.Heroes; len(h) != 0 {
		t.Fatalf("named room has heroes %v", h)
	}
	if h := resp.Rooms.Join[aliased].Summary.Heroes; len(h) != 0 {
		t.Fatalf("room with a canonical alias has heroes %v", h)
	}
	want := []string{amy, user("bob"), user("carol"), user("dan"), user("erin")}
	if h := resp.Rooms.Join[unnamed].Summary.Heroes; !slices.Equal(h, want) {
		t.Fatalf("heroes %v, want %v", h, want)
	}
}

// TestInitialSyncStateBeforeTimeline checks that the state section is the
// state before the timeline's first event, also when the state changed
// after it (the current state is then not that state), with and without
// lazy-loaded members.
func TestInitialSyncStateBeforeTimeline(t *testing.T) {
	srv := testserver.Start(t)
	ctx := context.Background()
	eng := srv.Srv.Rooms
	alice := srv.RegisterUser("alice").UserID.String()
	bob := fmt.Sprintf("@bob:%s", srv.Config.ServerName)
	send := func(roomID, sender, evType string, stateKey *string, content string) {
		t.Helper()
		if _, err := eng.Send(ctx, rooms.SendRequest{RoomID: roomID, Sender: sender, Type: evType, StateKey: stateKey, Content: json.RawMessage(content)}); err != nil {
			t.Fatal(err)
		}
	}
	empty := ""
	name := "Before"
	changed, err := eng.Create(ctx, rooms.CreateRequest{Creator: alice, Preset: "public_chat", Name: &name})
	if err != nil {
		t.Fatal(err)
	}
	still, err := eng.Create(ctx, rooms.CreateRequest{Creator: alice, Preset: "public_chat", Name: &name})
	if err != nil {
		t.Fatal(err)
	}
	for _, roomID := range []string{changed, still} {
		if _, err := eng.ChangeMembership(ctx, rooms.MembershipRequest{RoomID: roomID, Sender: bob, Target: bob, Membership: "join"}); err != nil {
			t.Fatal(err)
		}
		for i := 0; i < 12; i++ {
			send(roomID, bob, "m.room.message", nil, `{"msgtype":"m.text","body":"before"}`)
		}
	}
	// Inside the last ten events of one room: a name change.
	send(changed, alice, "m.room.name", &empty, `{"name":"After"}`)
	for i := 0; i < 3; i++ {
		send(changed, alice, "m.room.message", nil, `{"msgtype":"m.text","body":"after"}`)
	}
	for _, lazy := range []bool{false, true} {
		resp := syncAs(t, srv, alice, url.Values{"filter": {fmt.Sprintf(`{"room":{"timeline":{"limit":10},"state":{"lazy_load_members":%t}}}`, lazy)}})
		for _, roomID := range []string{changed, still} {
			jr := resp.Rooms.Join[roomID]
			var names, members []string
			for _, ev := range jr.State.Events {
				switch ev.Type {
				case "m.room.name":
					var c struct{ Name string }
					_ = json.Unmarshal(ev.Content, &c)
					names = append(names, c.Name)
				case "m.room.member":
					members = append(members, *ev.StateKey)
				}
			}
			if !slices.Equal(names, []string{"Before"}) {
				t.Fatalf("lazy=%t room %s: state names %v, want [Before] (the state before the timeline)", lazy, roomID, names)
			}
			slices.Sort(members)
			wantMembers := []string{alice, bob}
			if !slices.Equal(members, wantMembers) {
				t.Fatalf("lazy=%t room %s: state members %v, want %v", lazy, roomID, members, wantMembers)
			}
		}
	}
}
