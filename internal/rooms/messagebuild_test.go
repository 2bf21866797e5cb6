package rooms

import (
	"crypto/ed25519"
	"encoding/json"
	"errors"
	"fmt"
	"math/rand/v2"
	"strings"
	"testing"
	"time"

	gmsl "github.com/matrix-org/gomatrixserverlib"
	"github.com/matrix-org/gomatrixserverlib/spec"
)

// messageProto is a message event as sendBuilt would build it.
func messageProto(ver gmsl.RoomVersion, evType, content string) *gmsl.ProtoEvent {
	roomID := "!abcdefghijkl:example.org"
	auth := []string{"$Yp3zbIeyHdtm4RmL2mB-2N6nWx8wiBmvWmhqv0Xk6x4", "$B2Cq-o1J7cNnHxhQ-YGOT4ZNUhQlcXhpX9qyN0Mwd1w"}
	if ver == gmsl.RoomVersionV12 {
		roomID = "!Yp3zbIeyHdtm4RmL2mB-2N6nWx8wiBmvWmhqv0Xk6x4"
		auth = auth[1:]
	}
	return &gmsl.ProtoEvent{
		SenderID:   "@alice:example.org",
		RoomID:     roomID,
		Type:       evType,
		Content:    spec.RawJSON(content),
		AuthEvents: auth,
		PrevEvents: []string{"$prev-Event_1d8R3AVnUh_kQF2cJvV0oY3u8Zz6yWq0e9R4"},
		Depth:      4711,
	}
}

// TestBuildMessageMatchesGMSL builds the same events with buildMessage and
// with gomatrixserverlib's EventBuilder: buildMessage's event must be
// Build's without the signature, with the same event ID, and signedBy must
// turn it into Build's event byte for byte, in every room version
// buildMessage knows.
func TestBuildMessageMatchesGMSL(t *testing.T) {
	_, key, _ := ed25519.GenerateKey(nil)
	now := time.UnixMilli(1764979200123)
	contents := []string{
		`{}`,
		`{"msgtype":"m.text","body":"hello"}`,
		`{ "body" : "spaced\tout\n", "msgtype":"m.text" }`,
		`{"z":1,"a":{"y":[3,2,1],"b":null,"a":true},"m":-12,"é":"\u00e9\u2028<>&"}`,
		`{"body":"quote \" backslash \\ control \u0001 emoji 😀 escaped \ud83d\ude00","msgtype":"m.notice"}`,
		`{"m.relates_to":{"rel_type":"m.thread","event_id":"$root"},"body":"in a thread","msgtype":"m.text"}`,
		`{"algorithm":"m.megolm.v1.aes-sha2","ciphertext":"AwgAEnA","device_id":"DEV","sender_key":"abc","session_id":"s"}`,
		`{"n":9007199254740991,"neg":-9007199254740991,"zero":0}`,
	}
	types := []string{"m.room.message", "m.room.encrypted", "m.reaction", "m.sticker", "org.example.custom_event"}
	rng := rand.New(rand.NewPCG(1, 2))
	for range 20 {
		// Random bodies: unicode, control characters, quotes.
		var sb strings.Builder
		for range 1 + rng.IntN(40) {
			sb.WriteRune([]rune("aZ09 \"\\\n\t\u0000\u001fé€😀<>&/\u2028")[rng.IntN(18)])
		}
		c, _ := json.Marshal(sb.String())
		contents = append(contents, `{"msgtype":"m.text","body":`+string(c)+`}`)
	}
	for _, ver := range []gmsl.RoomVersion{gmsl.RoomVersionV10, gmsl.RoomVersionV11, gmsl.RoomVersionV12} {
		verImpl := gmsl.MustGetRoomVersion(ver)
		for _, evType := range types {
			for i, content := range contents {
				t.Run(fmt.Sprintf("v%s/%s/%d", ver, evType, i), func(t *testing.T) {
					proto := messageProto(ver, evType, content)
					if !canBuildMessage(ver, proto, "example.org") {
						t.Fatal("canBuildMessage refused a message")
					}
					want, err := verImpl.NewEventBuilderFromProtoEvent(messageProto(ver, evType, content)).Build(now, "example.org", "ed25519:a_key", key)
					if err != nil {
						t.Fatalf("gmsl build: %v", err)
					}
					got, err := buildMessage(verImpl, proto, now, "example.org")
					if err != nil {
						t.Fatalf("buildMessage: %v", err)
					}
					if got.EventID() != want.EventID() {
						t.Errorf("event ID %s, gmsl %s", got.EventID(), want.EventID())
					}
					var wantFields map[string]json.RawMessage
					if err := json.Unmarshal(want.JSON(), &wantFields); err != nil {
						t.Fatal(err)
					}
					delete(wantFields, "signatures")
					unsigned, _ := json.Marshal(wantFields)
					if unsigned, err = gmsl.CanonicalJSON(unsigned); err != nil {
						t.Fatal(err)
					}
					if string(got.JSON()) != string(unsigned) {
						t.Errorf("JSON differs from Build's without signatures:\n got %s\nwant %s", got.JSON(), unsigned)
					}
					signed, err := signedBy(got, "example.org", "ed25519:a_key", key)
					if err != nil {
						t.Fatal(err)
					}
					if string(signed.JSON()) != string(want.JSON()) {
						t.Errorf("signed JSON differs:\n got %s\nwant %s", signed.JSON(), want.JSON())
					}
					if n := len(signed.JSON()) - len(got.JSON()); n != signatureSize("example.org", "ed25519:a_key") {
						t.Errorf("the signature added %d bytes, signatureSize says %d", n, signatureSize("example.org", "ed25519:a_key"))
					}
					again, err := signedBy(signed, "example.org", "ed25519:a_key", key)
					if err != nil {
						t.Fatal(err)
					}
					if string(again.JSON()) != string(signed.JSON()) {
						t.Errorf("signing a signed event changed it: %s", again.JSON())
					}
				})
			}
		}
	}
}

// TestBuildMessageErrors checks that buildMessage refuses what Build refuses:
// integers out of the canonical range and events over 64 KiB.
func TestBuildMessageErrors(t *testing.T) {
	verImpl := gmsl.MustGetRoomVersion(gmsl.RoomVersionV11)
	for _, bad := range []string{`{"n":9007199254740992}`, `{"f":1.5}`, `{"e":1e3}`} {
		if _, err := buildMessage(verImpl, messageProto(gmsl.RoomVersionV11, "m.room.message", bad), time.Now(), "example.org"); err == nil {
			t.Errorf("%s accepted", bad)
		}
	}
	huge := `{"body":"` + strings.Repeat("x", 70000) + `"}`
	_, err := buildMessage(verImpl, messageProto(gmsl.RoomVersionV11, "m.room.message", huge), time.Now(), "example.org")
	var tooLarge gmsl.EventValidationError
	if !errors.As(err, &tooLarge) || tooLarge.Code != gmsl.EventValidationTooLarge {
		t.Errorf("oversized event: %v, want EventValidationTooLarge", err)
	}
}

// TestBuildRefusesWhatBuildRefuses checks the size limit at its edge: the
// limit is on the event as it leaves the server, signature included, so
// the engine must refuse a message that Build would refuse even though
// the unsigned event it stores is under the limit, and accept the largest
// one Build accepts.
func TestBuildRefusesWhatBuildRefuses(t *testing.T) {
	_, key, _ := ed25519.GenerateKey(nil)
	now := time.UnixMilli(1764979200123)
	e := &Engine{serverName: "example.org", keyID: "ed25519:a_key", key: key, now: func() time.Time { return now },
		signatureSize: signatureSize("example.org", "ed25519:a_key")}
	verImpl := gmsl.MustGetRoomVersion(gmsl.RoomVersionV11)
	proto := func(n int) *gmsl.ProtoEvent {
		return messageProto(gmsl.RoomVersionV11, "m.room.message", `{"body":"`+strings.Repeat("x", n)+`"}`)
	}
	small, err := verImpl.NewEventBuilderFromProtoEvent(proto(0)).Build(now, "example.org", "ed25519:a_key", key)
	if err != nil {
		t.Fatal(err)
	}
	largest := MaxEventBytes - len(small.JSON()) // the body length of a signed event of MaxEventBytes
	for _, n := range []int{largest, largest + 1} {
		_, gmslErr := verImpl.NewEventBuilderFromProtoEvent(proto(n)).Build(now, "example.org", "ed25519:a_key", key)
		pdu, err := e.build(verImpl, proto(n))
		if (gmslErr == nil) != (err == nil) {
			t.Errorf("body of %d bytes: Build says %v, the engine %v", n, gmslErr, err)
		}
		if n == largest && err == nil && len(pdu.JSON())+e.signatureSize != MaxEventBytes {
			t.Errorf("body of %d bytes: %d bytes signed, want %d", n, len(pdu.JSON())+e.signatureSize, MaxEventBytes)
		}
		if n == largest+1 && err == nil {
			t.Errorf("body of %d bytes: accepted, %d bytes unsigned", n, len(pdu.JSON()))
		}
	}
}

// TestCanBuildMessageRefuses lists what must go through Build: state
// events, types whose content redaction keeps, redactions, strings that are
// not written as themselves (in the event or the server name), room
// versions it does not know.
func TestCanBuildMessageRefuses(t *testing.T) {
	sk := ""
	cases := map[string]func(p *gmsl.ProtoEvent){
		"state event":       func(p *gmsl.ProtoEvent) { p.StateKey = &sk },
		"member type":       func(p *gmsl.ProtoEvent) { p.Type = "m.room.member" },
		"power levels type": func(p *gmsl.ProtoEvent) { p.Type = "m.room.power_levels" },
		"redaction":         func(p *gmsl.ProtoEvent) { p.Type = "m.room.redaction"; p.Redacts = "$x" },
		"non-ASCII type":    func(p *gmsl.ProtoEvent) { p.Type = "org.exämple" },
		"quote in type":     func(p *gmsl.ProtoEvent) { p.Type = `a"b` },
		"unsigned":          func(p *gmsl.ProtoEvent) { p.Unsigned = spec.RawJSON(`{"a":1}`) },
	}
	for name, mod := range cases {
		p := messageProto(gmsl.RoomVersionV11, "m.room.message", `{}`)
		mod(p)
		if canBuildMessage(gmsl.RoomVersionV11, p, "example.org") {
			t.Errorf("%s: accepted", name)
		}
	}
	if canBuildMessage(gmsl.RoomVersionV9, messageProto(gmsl.RoomVersionV11, "m.room.message", `{}`), "example.org") {
		t.Error("room version 9: accepted")
	}
	if canBuildMessage(gmsl.RoomVersionV11, messageProto(gmsl.RoomVersionV11, "m.room.message", `{}`), `exa"mple.org`) {
		t.Error("quote in the server name: accepted")
	}
}

// BenchmarkBuildMessage compares buildMessage with gomatrixserverlib's
// EventBuilder on a typical text message, and buildMessage then signed
// (what an event leaving the server costs in all).
func BenchmarkBuildMessage(b *testing.B) {
	_, key, _ := ed25519.GenerateKey(nil)
	verImpl := gmsl.MustGetRoomVersion(gmsl.RoomVersionV11)
	content := `{"msgtype":"m.text","body":"benchmark message 42 from sender 7"}`
	b.Run("buildMessage", func(b *testing.B) {
		for b.Loop() {
			if _, err := buildMessage(verImpl, messageProto(gmsl.RoomVersionV11, "m.room.message", content), time.Now(), "example.org"); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("buildMessage-signed", func(b *testing.B) {
		for b.Loop() {
			pdu, err := buildMessage(verImpl, messageProto(gmsl.RoomVersionV11, "m.room.message", content), time.Now(), "example.org")
			if err != nil {
				b.Fatal(err)
			}
			if _, err := signedBy(pdu, "example.org", "ed25519:k", key); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("gmsl", func(b *testing.B) {
		for b.Loop() {
			if _, err := verImpl.NewEventBuilderFromProtoEvent(messageProto(gmsl.RoomVersionV11, "m.room.message", content)).Build(time.Now(), "example.org", "ed25519:k", key); err != nil {
				b.Fatal(err)
			}
		}
	})
}
