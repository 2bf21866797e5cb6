package rooms

import (
	"crypto/ed25519"
	"encoding/json"
	"strings"

	gmsl "github.com/matrix-org/gomatrixserverlib"
	"github.com/matrix-org/gomatrixserverlib/spec"
)

// The server's signature on the events it builds. Messages are stored
// hashed but unsigned (messagebuild.go); every other event is stored as
// gomatrixserverlib's builder signed it. Clients never see signatures, so
// the only reader of one is another server: whatever sends an event this
// server built to another server (federation, when it comes) sends
// Signed(pdu), never the stored JSON as it is.

// Signed returns pdu as it leaves the server: an event this server built
// with this server's signature, which it gets here if it was stored
// without one. Other servers' events are returned as they are.
func (e *Engine) Signed(pdu gmsl.PDU) (gmsl.PDU, error) {
	return signedBy(pdu, e.serverName, e.keyID, e.key)
}

func signedBy(pdu gmsl.PDU, origin spec.ServerName, keyID gmsl.KeyID, key ed25519.PrivateKey) (gmsl.PDU, error) {
	if !strings.HasSuffix(string(pdu.SenderID()), ":"+string(origin)) {
		return pdu, nil
	}
	var ev struct {
		Signatures map[string]map[string]json.RawMessage `json:"signatures"`
	}
	if err := json.Unmarshal(pdu.JSON(), &ev); err == nil && ev.Signatures[string(origin)][string(keyID)] != nil {
		return pdu, nil
	}
	// PDU.Sign signs the redacted event, as Build does, but it also
	// replaces the JSON of the event it is called on: sign a copy, so that
	// the caller's event stays what was stored.
	verImpl, err := gmsl.GetRoomVersion(pdu.Version())
	if err != nil {
		return nil, err
	}
	cp, err := verImpl.NewEventFromTrustedJSONWithEventID(pdu.EventID(), pdu.JSON(), pdu.Redacted())
	if err != nil {
		return nil, err
	}
	return cp.Sign(string(origin), keyID, key), nil
}

// signatureSize is how many bytes Signed adds to an unsigned event:
// ,"signatures":{"<origin>":{"<key ID>":"<86 characters of base64>"}}.
func signatureSize(origin spec.ServerName, keyID gmsl.KeyID) int {
	sigs, err := json.Marshal(map[string]map[string]string{string(origin): {string(keyID): strings.Repeat("A", 86)}})
	if err == nil {
		sigs, err = gmsl.CanonicalJSON(sigs)
	}
	if err != nil {
		panic(err) // two strings always encode
	}
	return len(`,"signatures":`) + len(sigs)
}
