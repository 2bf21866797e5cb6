package rooms

import (
	"bytes"
	"crypto/sha256"
	"encoding/base64"
	"strconv"
	"strings"
	"time"

	gmsl "github.com/matrix-org/gomatrixserverlib"
	"github.com/matrix-org/gomatrixserverlib/spec"
)

// Building a message event. gomatrixserverlib's EventBuilder.Build turns
// the event into JSON, then parses and re-serialises it five times (content
// hash, redaction, signing, canonical form, event ID): a quarter of the
// server's CPU under a send load. For the events sent most (non-state
// events whose whole content the redaction algorithm drops: messages,
// encrypted messages, reactions, custom types), buildMessage writes the
// canonical JSON directly, since the top-level keys are known and fixed,
// and hashes the same bytes Build would.
//
// It does not sign them. The server's signature is for other servers, and
// an event gets it when it leaves the server (Engine.Signed): neither the
// content hash nor the event ID (the reference hash) covers signatures,
// and ed25519 signatures are deterministic, so signing later gives the
// bytes Build would have given. Signing was the largest single cost of a
// send: BenchmarkEngineSendParallel/goroutines=100 took 151,600–165,800
// CPU ns per send with it and 119,200–120,300 without, in alternating
// runs. Everything else goes through Build, signed.
// TestBuildMessageMatchesGMSL checks that buildMessage then Signed gives
// Build's event, byte for byte.

// messageBuildVersions are the room versions buildMessage knows: event
// format 2, event IDs the URL-safe base64 of the reference hash, and
// redaction that keeps none of the content of the types it accepts.
var messageBuildVersions = map[gmsl.RoomVersion]bool{
	gmsl.RoomVersionV10: true,
	gmsl.RoomVersionV11: true,
	gmsl.RoomVersionV12: true,
}

// redactionKeepsOrigin reports whether the redaction algorithm of ver keeps
// the top-level "origin" key (room versions before 11).
func redactionKeepsOrigin(ver gmsl.RoomVersion) bool {
	return ver == gmsl.RoomVersionV10
}

// canBuildMessage reports whether buildMessage can build proto in ver.
func canBuildMessage(ver gmsl.RoomVersion, proto *gmsl.ProtoEvent, origin spec.ServerName) bool {
	if !plainJSONString(string(origin)) || !messageBuildVersions[ver] || proto.StateKey != nil || proto.Redacts != "" || len(proto.Unsigned) != 0 {
		return false
	}
	// The redaction algorithm keeps parts of the content of some m.room.*
	// types (whatever their state key); of that namespace only the two
	// message types are built here.
	if strings.HasPrefix(proto.Type, "m.room.") && proto.Type != "m.room.message" && proto.Type != "m.room.encrypted" {
		return false
	}
	for _, s := range []string{proto.Type, proto.RoomID, proto.SenderID} {
		if !plainJSONString(s) {
			return false
		}
	}
	auth, ok := proto.AuthEvents.([]string)
	if !ok {
		return false
	}
	prev, ok := proto.PrevEvents.([]string)
	if !ok {
		return false
	}
	for _, ids := range [][]string{auth, prev} {
		for _, id := range ids {
			if !plainJSONString(id) {
				return false
			}
		}
	}
	return true
}

// plainJSONString reports whether s is written in canonical JSON as itself
// between quotes: printable ASCII without quote or backslash.
func plainJSONString(s string) bool {
	for i := 0; i < len(s); i++ {
		if c := s[i]; c < 0x20 || c > 0x7e || c == '"' || c == '\\' {
			return false
		}
	}
	return true
}

// buildMessage builds and hashes proto (for which canBuildMessage holds;
// AuthEvents and PrevEvents are []string) as Build would, without the
// signature.
func buildMessage(verImpl gmsl.IRoomVersion, proto *gmsl.ProtoEvent, now time.Time, origin spec.ServerName) (gmsl.PDU, error) {
	ver := verImpl.Version()
	content, err := gmsl.EnforcedCanonicalJSON(proto.Content, ver)
	if err != nil {
		return nil, err
	}
	ts := strconv.FormatInt(int64(spec.AsTimestamp(now)), 10)
	auth, prev := proto.AuthEvents.([]string), proto.PrevEvents.([]string)

	// The event in canonical key order: auth_events, content, depth,
	// [hashes], origin, origin_server_ts, prev_events, room_id, sender,
	// type. writeFields writes it with the content and hashes given,
	// origin optional.
	writeFields := func(b *bytes.Buffer, content []byte, hashes string, withOrigin bool) {
		b.WriteString(`{"auth_events":`)
		writeIDList(b, auth)
		b.WriteString(`,"content":`)
		b.Write(content)
		b.WriteString(`,"depth":`)
		b.WriteString(strconv.FormatInt(proto.Depth, 10))
		if hashes != "" {
			b.WriteString(`,"hashes":{"sha256":"`)
			b.WriteString(hashes)
			b.WriteString(`"}`)
		}
		if withOrigin {
			b.WriteString(`,"origin":"`)
			b.WriteString(string(origin))
			b.WriteByte('"')
		}
		b.WriteString(`,"origin_server_ts":`)
		b.WriteString(ts)
		b.WriteString(`,"prev_events":`)
		writeIDList(b, prev)
		b.WriteString(`,"room_id":"`)
		b.WriteString(proto.RoomID)
		b.WriteString(`","sender":"`)
		b.WriteString(proto.SenderID)
		b.WriteByte('"')
		b.WriteString(`,"type":"`)
		b.WriteString(proto.Type)
		b.WriteString(`"}`)
	}

	var b bytes.Buffer
	b.Grow(2*len(content) + 512)
	// Content hash: the whole event but hashes, signatures and unsigned.
	writeFields(&b, content, "", true)
	sum := sha256.Sum256(b.Bytes())
	hashes := base64.RawStdEncoding.EncodeToString(sum[:])

	// The redacted event (empty content; origin only where the room
	// version keeps it) without signatures is what the event ID hashes
	// (and what Signed signs).
	b.Reset()
	writeFields(&b, []byte("{}"), hashes, redactionKeepsOrigin(ver))
	ref := sha256.Sum256(b.Bytes())
	eventID := "$" + base64.RawURLEncoding.EncodeToString(ref[:])

	b.Reset()
	writeFields(&b, content, hashes, true)
	pdu, err := verImpl.NewEventFromTrustedJSONWithEventID(eventID, b.Bytes(), false)
	if err != nil {
		return nil, err
	}
	return pdu, gmsl.CheckFields(pdu)
}

func writeIDList(b *bytes.Buffer, ids []string) {
	b.WriteByte('[')
	for i, id := range ids {
		if i > 0 {
			b.WriteByte(',')
		}
		b.WriteByte('"')
		b.WriteString(id)
		b.WriteByte('"')
	}
	b.WriteByte(']')
}
