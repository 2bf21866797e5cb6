package e2ee

import (
	"bytes"
	"crypto/ed25519"
	"encoding/base64"
	"encoding/json"
	"errors"
	"sort"

	gmsl "github.com/matrix-org/gomatrixserverlib"
)

// decodeKey decodes an unpadded base64 public key of 32 bytes.
func decodeKey(s string) (ed25519.PublicKey, bool) {
	b, err := base64.RawStdEncoding.DecodeString(s)
	if err != nil {
		if b, err = base64.StdEncoding.DecodeString(s); err != nil {
			return nil, false
		}
	}
	if len(b) != ed25519.PublicKeySize {
		return nil, false
	}
	return ed25519.PublicKey(b), true
}

// verify checks signer's signature with key ID keyID (e.g.
// "ed25519:DEVICE") over the signed JSON object obj, using the public key
// pub (unpadded base64).
func verify(obj []byte, signer, keyID, pub string) error {
	pk, ok := decodeKey(pub)
	if !ok {
		return errors.New("malformed public key")
	}
	return gmsl.VerifyJSON(signer, gmsl.KeyID(keyID), pk, obj)
}

// signedContent returns the canonical JSON of a signed object without its
// signatures and unsigned fields: two objects with the same signed content
// are the same key.
func signedContent(obj []byte) ([]byte, error) {
	var m map[string]json.RawMessage
	if err := json.Unmarshal(obj, &m); err != nil {
		return nil, err
	}
	delete(m, "signatures")
	delete(m, "unsigned")
	b, err := json.Marshal(m)
	if err != nil {
		return nil, err
	}
	return gmsl.CanonicalJSON(b)
}

// sameSignedContent reports whether two signed objects have the same
// content apart from signatures and unsigned data.
func sameSignedContent(a, b []byte) bool {
	ca, err := signedContent(a)
	if err != nil {
		return false
	}
	cb, err := signedContent(b)
	return err == nil && bytes.Equal(ca, cb)
}

// addSignatures merges extra signatures (user → key ID → signature) into a
// stored signed object and, when unsigned is not nil, sets its unsigned
// field. It returns the object unchanged when there is nothing to add.
func addSignatures(obj []byte, extra map[string]map[string]string, unsigned map[string]any) json.RawMessage {
	if len(extra) == 0 && unsigned == nil {
		return obj
	}
	var m map[string]json.RawMessage
	if err := json.Unmarshal(obj, &m); err != nil {
		return obj
	}
	sigs := map[string]map[string]string{}
	if raw, ok := m["signatures"]; ok {
		_ = json.Unmarshal(raw, &sigs)
	}
	users := make([]string, 0, len(extra))
	for u := range extra {
		users = append(users, u)
	}
	sort.Strings(users)
	for _, u := range users {
		if sigs[u] == nil {
			sigs[u] = map[string]string{}
		}
		for k, v := range extra[u] {
			sigs[u][k] = v
		}
	}
	if len(sigs) > 0 {
		m["signatures"], _ = json.Marshal(sigs)
	}
	if unsigned != nil {
		m["unsigned"], _ = json.Marshal(unsigned)
	}
	out, err := json.Marshal(m)
	if err != nil {
		return obj
	}
	return out
}
