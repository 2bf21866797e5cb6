package syncapi_test

import (
	"context"
	"encoding/json"
	"fmt"
	"net/url"
	"slices"
	"testing"

	"github.com/rempart-hs/rempart/internal/rooms"
	"github.com/rempart-hs/rempart/internal/syncapi"
	"github.com/rempart-hs/rempart/internal/testserver"
)

// An initial sync of several rooms reads the first page of every
// timeline at once (storage.TimelinePages) and the relation targets of
// all timelines at once. A room's timeline must be exactly what a sync of
// that room alone gives (one room: read by itself): limited or not, with
// filters that reject most of the first page, with history hidden from
// before the user joined, with edits bundled.
func TestBatchedTimelinesMatchOneRoomSyncs(t *testing.T) {
	srv := testserver.Start(t)
	ctx := context.Background()
	eng := srv.Srv.Rooms
	alice := srv.RegisterUser("alice").UserID.String()
	bob := fmt.Sprintf("@bob:%s", srv.Config.ServerName)
	send := func(roomID, sender, typ, content string) string {
		t.Helper()
		sent, err := eng.Send(ctx, rooms.SendRequest{RoomID: roomID, Sender: sender, Type: typ, Content: json.RawMessage(content)})
		if err != nil {
			t.Fatal(err)
		}
		return sent.EventID
	}
	join := func(roomID, user string) {
		t.Helper()
		if _, err := eng.ChangeMembership(ctx, rooms.MembershipRequest{RoomID: roomID, Sender: user, Target: user, Membership: "join"}); err != nil {
			t.Fatal(err)
		}
	}
	var all []string
	// Many messages: limited.
	busy, err := eng.Create(ctx, rooms.CreateRequest{Creator: alice, Preset: "public_chat"})
	if err != nil {
		t.Fatal(err)
	}
	join(busy, bob)
	for i := range 30 {
		send(busy, bob, "m.room.message", fmt.Sprintf(`{"msgtype":"m.text","body":"busy %d"}`, i))
	}
	all = append(all, busy)
	// Mostly reactions (a types filter keeps only the messages, so more
	// than one page is read), and an edited message.
	mixed, err := eng.Create(ctx, rooms.CreateRequest{Creator: alice, Preset: "public_chat"})
	if err != nil {
		t.Fatal(err)
	}
	join(mixed, bob)
	orig := send(mixed, bob, "m.room.message", `{"msgtype":"m.text","body":"original"}`)
	send(mixed, bob, "m.room.message", fmt.Sprintf(`{"msgtype":"m.text","body":"* edited","m.new_content":{"msgtype":"m.text","body":"edited"},"m.relates_to":{"rel_type":"m.replace","event_id":%q}}`, orig))
	for i := range 25 {
		send(mixed, bob, "m.reaction", fmt.Sprintf(`{"m.relates_to":{"rel_type":"m.annotation","event_id":%q,"key":"%d"}}`, orig, i))
	}
	all = append(all, mixed)
	// History shared only from when the user joined: what came before is
	// hidden from Alice, who joins late.
	late, err := eng.Create(ctx, rooms.CreateRequest{Creator: bob, Preset: "private_chat",
		InitialState: []rooms.StateEvent{{Type: "m.room.history_visibility", Content: json.RawMessage(`{"history_visibility":"joined"}`)},
			{Type: "m.room.join_rules", Content: json.RawMessage(`{"join_rule":"public"}`)}}})
	if err != nil {
		t.Fatal(err)
	}
	for i := range 5 {
		send(late, bob, "m.room.message", fmt.Sprintf(`{"msgtype":"m.text","body":"before %d"}`, i))
	}
	join(late, alice)
	send(late, bob, "m.room.message", `{"msgtype":"m.text","body":"after"}`)
	all = append(all, late)
	// A quiet room.
	quiet, err := eng.Create(ctx, rooms.CreateRequest{Creator: alice, Preset: "public_chat"})
	if err != nil {
		t.Fatal(err)
	}
	all = append(all, quiet)

	for _, tl := range []string{`{"limit":10}`, `{"limit":3,"types":["m.room.message"]}`, `{"limit":50}`} {
		filter := func(roomIDs []string) url.Values {
			ids, _ := json.Marshal(roomIDs)
			return url.Values{"filter": {fmt.Sprintf(`{"room":{"rooms":%s,"timeline":%s}}`, ids, tl)}}
		}
		batched := syncAs(t, srv, alice, filter(all))
		for _, roomID := range all {
			alone := syncAs(t, srv, alice, filter([]string{roomID}))
			got, want := batched.Rooms.Join[roomID], alone.Rooms.Join[roomID]
			if got == nil || want == nil {
				t.Fatalf("timeline %s, room %s: missing from a sync", tl, roomID)
			}
			if g, w := timelineSummary(got), timelineSummary(want); !slices.Equal(g, w) || got.Timeline.Limited != want.Timeline.Limited ||
				got.Timeline.PrevBatch != want.Timeline.PrevBatch {
				t.Errorf("timeline %s, room %s:\n batched %q limited %v prev %q\n alone   %q limited %v prev %q", tl, roomID,
					g, got.Timeline.Limited, got.Timeline.PrevBatch, w, want.Timeline.Limited, want.Timeline.PrevBatch)
			}
		}
	}
	// The oracle itself is not blind: the busy room is limited at 10, the
	// late room hides what came before Alice's join, the edit is bundled.
	resp := syncAs(t, srv, alice, url.Values{"filter": {`{"room":{"timeline":{"limit":50}}}`}})
	if !syncAs(t, srv, alice, url.Values{"filter": {`{"room":{"timeline":{"limit":10}}}`}}).Rooms.Join[busy].Timeline.Limited {
		t.Error("the busy room's timeline is not limited at 10")
	}
	if s := timelineSummary(resp.Rooms.Join[late]); slices.ContainsFunc(s, func(x string) bool { return x == "m.room.message before 0" }) {
		t.Errorf("history from before the join shown: %q", s)
	}
	if s := timelineSummary(resp.Rooms.Join[mixed]); !slices.Contains(s, "m.room.message original (edited)") {
		t.Errorf("the edit is not bundled: %q", s)
	}
}

// timelineSummary is a timeline as "type body", with " (edited)" for an
// event carrying a bundled edit.
func timelineSummary(jr *syncapi.JoinedRoom) []string {
	var out []string
	for _, ev := range jr.Timeline.Events {
		var c struct{ Body string }
		_ = json.Unmarshal(ev.Content, &c)
		s := ev.Type + " " + c.Body
		if rel, ok := ev.Unsigned["m.relations"].(map[string]any); ok && rel["m.replace"] != nil {
			s += " (edited)"
		}
		out = append(out, s)
	}
	return out
}
