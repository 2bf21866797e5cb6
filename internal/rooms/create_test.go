package rooms_test

import (
	"context"
	"crypto/ed25519"
	"encoding/json"
	"math"
	"slices"
	"testing"

	gmsl "github.com/matrix-org/gomatrixserverlib"
	"github.com/matrix-org/gomatrixserverlib/spec"

	"github.com/rempart-hs/rempart/internal/rooms"
	"github.com/rempart-hs/rempart/internal/signing"
	"github.com/rempart-hs/rempart/internal/storage"
	"github.com/rempart-hs/rempart/internal/testserver"
)

// TestCreateBuildsAChain checks the events of a created room as stored, for
// each supported room version: they form one chain (depth 1, 2, … and each
// event's only prev_event the one before it), each lists exactly the auth
// events the spec's rules select from the state the events before it made,
// passes the auth rules on that state, and carries the server's valid
// signature; a state event that replaces an earlier one records it in
// unsigned. createRoom builds these events before its transaction, from
// the state they make, so this is what checks that state.
func TestCreateBuildsAChain(t *testing.T) {
	srv := testserver.Start(t)
	ctx := context.Background()
	alice := srv.RegisterUser("alice").UserID.String()
	bob := srv.RegisterUser("bob").UserID.String()
	key, err := signing.LoadOrCreate(srv.Config.KeyPath())
	if err != nil {
		t.Fatal(err)
	}
	name, topic := "The room", "Its topic"
	for _, v := range []string{"10", "11", "12"} {
		t.Run("v"+v, func(t *testing.T) {
			roomID, err := srv.Srv.Rooms.Create(ctx, rooms.CreateRequest{
				Creator: alice, RoomVersion: v, Preset: "private_chat", Name: &name, Topic: &topic,
				RoomAliasName: "chain" + v, Invite: []string{bob},
				InitialState: []rooms.StateEvent{
					{Type: "m.room.history_visibility", Content: []byte(`{"history_visibility":"joined"}`)},
					{Type: "m.room.name", Content: []byte(`{"name":"replaced by the name field"}`)},
				},
			})
			if err != nil {
				t.Fatal(err)
			}
			evs, err := srv.Srv.DB.RoomEvents(ctx, roomID, 0, math.MaxInt64, 100, false)
			if err != nil {
				t.Fatal(err)
			}
			verImpl := gmsl.MustGetRoomVersion(gmsl.RoomVersion(v))
			var types []string
			state := map[storage.StateKeyTuple]gmsl.PDU{}
			prevID := ""
			for i, se := range evs {
				pdu, err := verImpl.NewEventFromTrustedJSON(se.JSON, false)
				if err != nil {
					t.Fatal(err)
				}
				types = append(types, pdu.Type())
				if pdu.EventID() != se.EventID || pdu.Depth() != int64(i+1) {
					t.Fatalf("event %d: ID %s (stored %s), depth %d", i, pdu.EventID(), se.EventID, pdu.Depth())
				}
				wantPrev := []string{}
				if prevID != "" {
					wantPrev = []string{prevID}
				}
				if !slices.Equal(pdu.PrevEventIDs(), wantPrev) {
					t.Fatalf("%s: prev_events %v, want %v", pdu.Type(), pdu.PrevEventIDs(), wantPrev)
				}
				var authPDUs []gmsl.PDU
				for _, p := range state {
					authPDUs = append(authPDUs, p)
				}
				authEvents, err := gmsl.NewAuthEvents(authPDUs)
				if err != nil {
					t.Fatal(err)
				}
				needed, err := gmsl.StateNeededForAuth([]gmsl.PDU{pdu}).AuthEventReferences(authEvents)
				if err != nil {
					t.Fatal(err)
				}
				got := pdu.AuthEventIDs()
				if verImpl.DomainlessRoomIDs() {
					// v12: the create event is implied by the room ID; the
					// parsed event lists it, its JSON must not.
					isCreate := func(id string) bool { return id == "$"+roomID[1:] }
					needed = slices.DeleteFunc(needed, isCreate)
					got = slices.DeleteFunc(slices.Clone(got), isCreate)
					var raw struct {
						AuthEvents []string `json:"auth_events"`
					}
					if err := json.Unmarshal(se.JSON, &raw); err != nil || slices.ContainsFunc(raw.AuthEvents, isCreate) {
						t.Fatalf("%s lists the create event in its auth_events (%v): %s", pdu.Type(), err, se.JSON)
					}
				}
				slices.Sort(got)
				slices.Sort(needed)
				if !slices.Equal(got, needed) {
					t.Fatalf("%s: auth_events %v, want %v", pdu.Type(), got, needed)
				}
				if pdu.Type() == spec.MRoomCreate {
					if err := authEvents.AddEvent(pdu); err != nil {
						t.Fatal(err)
					}
				}
				if err := gmsl.Allowed(pdu, authEvents, func(_ spec.RoomID, s spec.SenderID) (*spec.UserID, error) {
					return spec.NewUserID(string(s), true)
				}); err != nil {
					t.Fatalf("%s: not allowed on the state before it: %v", pdu.Type(), err)
				}
				redacted, err := verImpl.RedactEventJSON(se.JSON)
				if err != nil {
					t.Fatal(err)
				}
				if err := gmsl.VerifyJSON(srv.Config.ServerName, gmsl.KeyID(key.ID), key.Priv.Public().(ed25519.PublicKey), redacted); err != nil {
					t.Fatalf("%s: signature: %v", pdu.Type(), err)
				}
				k := storage.StateKeyTuple{Type: pdu.Type(), StateKey: *pdu.StateKey()}
				if old := state[k]; old != nil {
					want := `{"prev_content":` + string(old.Content()) + `,"prev_sender":"` + string(old.SenderID()) + `","replaces_state":"` + old.EventID() + `"}`
					if string(se.Unsigned) != want {
						t.Fatalf("%s: unsigned %s, want %s", pdu.Type(), se.Unsigned, want)
					}
				}
				state[k] = pdu
				prevID = pdu.EventID()
			}
			want := []string{"m.room.create", "m.room.member", "m.room.power_levels", "m.room.canonical_alias", "m.room.join_rules",
				"m.room.history_visibility", "m.room.guest_access", "m.room.history_visibility", "m.room.name", "m.room.name", "m.room.topic", "m.room.member"}
			if !slices.Equal(types, want) {
				t.Fatalf("events %v, want %v", types, want)
			}
			room, err := srv.Srv.DB.GetRoom(ctx, roomID)
			if err != nil {
				t.Fatal(err)
			}
			if room.LatestEventID != prevID || room.Depth != int64(len(evs)) {
				t.Fatalf("room head %s at depth %d, want %s at %d", room.LatestEventID, room.Depth, prevID, len(evs))
			}
		})
	}
}
