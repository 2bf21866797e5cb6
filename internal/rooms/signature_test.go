package rooms_test

import (
	"context"
	"crypto/ed25519"
	"encoding/json"
	"testing"
	"time"

	gmsl "github.com/matrix-org/gomatrixserverlib"
	"github.com/matrix-org/gomatrixserverlib/spec"

	"github.com/rempart-hs/rempart/internal/rooms"
	"github.com/rempart-hs/rempart/internal/signing"
	"github.com/rempart-hs/rempart/internal/testserver"
)

// TestSignedOnTheWayOut follows events through the real server: a message
// is stored unsigned and Engine.Signed gives it a signature that verifies
// with the server's key, over an event with the stored event ID; a state
// event is stored signed and comes out unchanged; after the message is
// redacted, its stored (redacted) JSON signs to the same signature, since
// the signature covers the redacted event; another server's event is not
// signed.
func TestSignedOnTheWayOut(t *testing.T) {
	srv := testserver.Start(t)
	ctx := context.Background()
	alice := srv.RegisterUser("alice").UserID.String()
	key, err := signing.LoadOrCreate(srv.Config.KeyPath())
	if err != nil {
		t.Fatal(err)
	}
	pub := key.Priv.Public().(ed25519.PublicKey)
	for _, v := range []string{"10", "11", "12"} {
		t.Run("v"+v, func(t *testing.T) {
			verImpl := gmsl.MustGetRoomVersion(gmsl.RoomVersion(v))
			roomID, err := srv.Srv.Rooms.Create(ctx, rooms.CreateRequest{Creator: alice, RoomVersion: v, Preset: "private_chat"})
			if err != nil {
				t.Fatal(err)
			}
			send := func(req rooms.SendRequest) string {
				t.Helper()
				req.RoomID, req.Sender = roomID, alice
				ev, err := srv.Srv.Rooms.Send(ctx, req)
				if err != nil {
					t.Fatal(err)
				}
				return ev.EventID
			}
			// stored returns the event as stored and parsed, and whether its
			// JSON holds signatures.
			stored := func(eventID string) (gmsl.PDU, bool) {
				t.Helper()
				ev, err := srv.Srv.DB.GetEvent(ctx, eventID)
				if err != nil {
					t.Fatal(err)
				}
				pdu, err := verImpl.NewEventFromTrustedJSONWithEventID(eventID, ev.JSON, ev.RedactedBy != "")
				if err != nil {
					t.Fatal(err)
				}
				var fields map[string]json.RawMessage
				if err := json.Unmarshal(ev.JSON, &fields); err != nil {
					t.Fatal(err)
				}
				return pdu, fields["signatures"] != nil
			}
			// signature signs pdu on its way out, checks the result and
			// returns its signature.
			signature := func(pdu gmsl.PDU) string {
				t.Helper()
				out, err := srv.Srv.Rooms.Signed(pdu)
				if err != nil {
					t.Fatal(err)
				}
				// What another server does with it: compute the event ID
				// from the JSON, check the content hash, verify the
				// signature on the redacted event.
				parsed, err := verImpl.NewEventFromUntrustedJSON(out.JSON())
				if err != nil {
					t.Fatalf("the signed event does not parse: %v", err)
				}
				if parsed.EventID() != pdu.EventID() {
					t.Fatalf("signed event's ID %s, stored %s", parsed.EventID(), pdu.EventID())
				}
				if !pdu.Redacted() && parsed.Redacted() {
					t.Fatal("the content hash does not match: the receiver would redact the event")
				}
				redacted, err := verImpl.RedactEventJSON(out.JSON())
				if err != nil {
					t.Fatal(err)
				}
				if err := gmsl.VerifyJSON(srv.Config.ServerName, gmsl.KeyID(key.ID), pub, redacted); err != nil {
					t.Fatalf("signature: %v", err)
				}
				var fields struct {
					Signatures map[string]map[string]string `json:"signatures"`
				}
				if err := json.Unmarshal(out.JSON(), &fields); err != nil {
					t.Fatal(err)
				}
				return fields.Signatures[srv.Config.ServerName][key.ID]
			}

			msgID := send(rooms.SendRequest{Type: "m.room.message", Content: json.RawMessage(`{"msgtype":"m.text","body":"hello"}`)})
			msg, signed := stored(msgID)
			if signed {
				t.Fatalf("the message was stored signed: %s", msg.JSON())
			}
			before := string(msg.JSON())
			msgSig := signature(msg)
			if string(msg.JSON()) != before {
				t.Fatal("Signed changed the event it was given")
			}

			topicKey := ""
			topicID := send(rooms.SendRequest{Type: "m.room.topic", StateKey: &topicKey, Content: json.RawMessage(`{"topic":"signed at once"}`)})
			topic, signed := stored(topicID)
			if !signed {
				t.Fatalf("the state event was stored unsigned: %s", topic.JSON())
			}
			signature(topic)
			if out, err := srv.Srv.Rooms.Signed(topic); err != nil || string(out.JSON()) != string(topic.JSON()) {
				t.Fatalf("a signed event changed on its way out (%v)", err)
			}

			send(rooms.SendRequest{Type: "m.room.redaction", Redacts: msgID, Content: json.RawMessage(`{}`)})
			redacted, _ := stored(msgID)
			if !redacted.Redacted() {
				t.Fatalf("the message is not redacted: %s", redacted.JSON())
			}
			if sig := signature(redacted); sig != msgSig {
				t.Fatalf("the redacted message signs to %s, the message to %s", sig, msgSig)
			}

			// Another server's event leaves as it came.
			_, otherKey, _ := ed25519.GenerateKey(nil)
			proto := gmsl.ProtoEvent{SenderID: "@bob:other.example", RoomID: roomID, Type: "m.room.message",
				Content: spec.RawJSON(`{"msgtype":"m.text","body":"from elsewhere"}`), AuthEvents: []string{}, PrevEvents: []string{msgID}, Depth: 9}
			other, err := verImpl.NewEventBuilderFromProtoEvent(&proto).Build(time.Now(), "other.example", "ed25519:o", otherKey)
			if err != nil {
				t.Fatal(err)
			}
			if out, err := srv.Srv.Rooms.Signed(other); err != nil || string(out.JSON()) != string(other.JSON()) {
				t.Fatalf("another server's event was changed (%v): %s", err, out.JSON())
			}
		})
	}
}
