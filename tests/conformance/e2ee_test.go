package conformance

import (
	"crypto/ed25519"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"slices"
	"testing"

	gmsl "github.com/matrix-org/gomatrixserverlib"
)

// End-to-end encryption module: /keys/upload, /keys/query, /keys/claim,
// /keys/changes, cross-signing and signature uploads, device lists in
// /sync. To-device messages and key backups have their own files.

const (
	keysUpload      = "/_matrix/client/v3/keys/upload"
	keysQuery       = "/_matrix/client/v3/keys/query"
	keysClaim       = "/_matrix/client/v3/keys/claim"
	signingUpload   = "/_matrix/client/v3/keys/device_signing/upload"
	signatureUpload = "/_matrix/client/v3/keys/signatures/upload"
)

// b64 is unpadded base64, the encoding of Matrix keys.
func b64(b []byte) string { return base64.RawStdEncoding.EncodeToString(b) }

// edKey is an ed25519 key pair with its public key in Matrix form.
type edKey struct {
	priv ed25519.PrivateKey
	pub  string
}

func newEdKey() edKey {
	pub, priv, _ := ed25519.GenerateKey(rand.Reader)
	return edKey{priv: priv, pub: b64(pub)}
}

// randomKey is a random 32-byte key (a stand-in for a curve25519 key).
func randomKey() string {
	b := make([]byte, 32)
	_, _ = rand.Read(b)
	return b64(b)
}

// sign signs obj as userID with key ID keyID.
func sign(t *testing.T, obj map[string]any, userID, keyID string, k edKey) map[string]any {
	t.Helper()
	js, err := json.Marshal(obj)
	if err != nil {
		t.Fatal(err)
	}
	signed, err := gmsl.SignJSON(userID, gmsl.KeyID(keyID), k.priv, js)
	if err != nil {
		t.Fatalf("sign: %v", err)
	}
	var out map[string]any
	if err := json.Unmarshal(signed, &out); err != nil {
		t.Fatal(err)
	}
	return out
}

// cryptoDevice is a test user's device with its identity keys.
type cryptoDevice struct {
	u     user
	ed    edKey
	curve string
}

func newCryptoDevice(u user) *cryptoDevice {
	return &cryptoDevice{u: u, ed: newEdKey(), curve: randomKey()}
}

// deviceKeys returns the device's signed DeviceKeys object.
func (d *cryptoDevice) deviceKeys(t *testing.T) map[string]any {
	return sign(t, map[string]any{
		"user_id": d.u.ID, "device_id": d.u.DeviceID,
		"algorithms": []string{"m.olm.v1.curve25519-aes-sha2", "m.megolm.v1.aes-sha2"},
		"keys":       map[string]string{"ed25519:" + d.u.DeviceID: d.ed.pub, "curve25519:" + d.u.DeviceID: d.curve},
	}, d.u.ID, "ed25519:"+d.u.DeviceID, d.ed)
}

// signedKey returns a signed curve25519 one-time key object.
func (d *cryptoDevice) signedKey(t *testing.T, fallback bool) map[string]any {
	obj := map[string]any{"key": randomKey()}
	if fallback {
		obj["fallback"] = true
	}
	return sign(t, obj, d.u.ID, "ed25519:"+d.u.DeviceID, d.ed)
}

// oneTimeKeys returns n signed one-time keys with IDs prefix0…
func (d *cryptoDevice) oneTimeKeys(t *testing.T, prefix string, n int) map[string]any {
	out := map[string]any{}
	for i := range n {
		out[fmt.Sprintf("signed_curve25519:%s%d", prefix, i)] = d.signedKey(t, false)
	}
	return out
}

// upload uploads the device's keys and returns the one-time key counts.
func (e *env) uploadKeys(d *cryptoDevice, body map[string]any) map[string]any {
	e.t.Helper()
	r := e.do("POST", keysUpload, d.u.Token, body, 200).JSON(e.t)
	counts, _ := r["one_time_key_counts"].(map[string]any)
	return counts
}

// queryKeys queries the keys of users as u.
func (e *env) queryKeys(u user, users ...string) map[string]any {
	e.t.Helper()
	q := map[string]any{}
	for _, x := range users {
		q[x] = []string{}
	}
	return e.do("POST", keysQuery, u.Token, map[string]any{"device_keys": q}, 200).JSON(e.t)
}

// path walks nested maps.
func path(m map[string]any, keys ...string) any {
	var cur any = m
	for _, k := range keys {
		mm, ok := cur.(map[string]any)
		if !ok {
			return nil
		}
		cur = mm[k]
	}
	return cur
}

func TestKeysUpload(t *testing.T) {
	e := newEnv(t)
	alice := e.register("kup")
	bob := e.register("kupbob")
	d := newCryptoDevice(alice)

	// Bad input changes nothing.
	bad := d.deviceKeys(t)
	bad["user_id"] = bob.ID
	e.doErr("POST", keysUpload, alice.Token, map[string]any{"device_keys": bad}, 400, "M_INVALID_PARAM")
	bad = d.deviceKeys(t)
	bad["device_id"] = "OTHER"
	e.doErr("POST", keysUpload, alice.Token, map[string]any{"device_keys": bad}, 400, "M_INVALID_PARAM")
	bad = d.deviceKeys(t)
	bad["algorithms"] = []string{"m.olm.v1.curve25519-aes-sha2", "m.megolm.v1.aes-sha2", "tampered"} // signature no longer matches
	e.doErr("POST", keysUpload, alice.Token, map[string]any{"device_keys": bad}, 400, "M_INVALID_PARAM")
	other := newCryptoDevice(alice)
	bad = other.deviceKeys(t)
	bad["keys"].(map[string]any)["ed25519:"+alice.DeviceID] = d.ed.pub // signed by another key
	e.doErr("POST", keysUpload, alice.Token, map[string]any{"device_keys": bad}, 400, "M_INVALID_PARAM")
	e.doErr("POST", keysUpload, alice.Token, map[string]any{"device_keys": "nope"}, 400, "M_BAD_JSON")
	e.doErr("POST", keysUpload, alice.Token, `{"device_keys": {}`, 400, "M_NOT_JSON")
	bad = sign(t, map[string]any{"user_id": alice.ID, "device_id": alice.DeviceID, "algorithms": []string{"m.megolm.v1.aes-sha2"},
		"keys": map[string]string{"ed25519:" + alice.DeviceID: d.ed.pub, "curve25519:" + alice.DeviceID: d.curve, "rsa:" + alice.DeviceID: d.curve}},
		alice.ID, "ed25519:"+alice.DeviceID, d.ed)
	e.doErr("POST", keysUpload, alice.Token, map[string]any{"device_keys": bad}, 400, "M_INVALID_PARAM")
	// Signed keys before any device keys.
	e.doErr("POST", keysUpload, alice.Token, map[string]any{"one_time_keys": d.oneTimeKeys(t, "A", 1)}, 400, "M_INVALID_PARAM")
	if q := e.queryKeys(bob, alice.ID); len(path(q, "device_keys", alice.ID).(map[string]any)) != 0 {
		t.Fatalf("rejected uploads stored keys: %v", q)
	}

	// Device keys and one-time keys, then a fallback key.
	counts := e.uploadKeys(d, map[string]any{"device_keys": d.deviceKeys(t), "one_time_keys": d.oneTimeKeys(t, "A", 5)})
	if counts["signed_curve25519"] != float64(5) {
		t.Fatalf("counts = %v", counts)
	}
	otks := d.oneTimeKeys(t, "B", 3)
	counts = e.uploadKeys(d, map[string]any{"one_time_keys": otks, "fallback_keys": map[string]any{"signed_curve25519:F1": d.signedKey(t, true)}})
	if counts["signed_curve25519"] != float64(8) {
		t.Fatalf("counts = %v", counts)
	}
	// Uploading the same keys again is harmless; the same ID with another
	// key is refused.
	if counts = e.uploadKeys(d, map[string]any{"one_time_keys": otks}); counts["signed_curve25519"] != float64(8) {
		t.Fatalf("counts after repeat = %v", counts)
	}
	e.doErr("POST", keysUpload, alice.Token, map[string]any{"one_time_keys": map[string]any{"signed_curve25519:B0": d.signedKey(t, false)}}, 400, "M_INVALID_PARAM")
	// Unknown algorithms, unsigned or badly signed keys, a key of another device.
	e.doErr("POST", keysUpload, alice.Token, map[string]any{"one_time_keys": map[string]any{"rot13:X": "abc"}}, 400, "M_INVALID_PARAM")
	e.doErr("POST", keysUpload, alice.Token, map[string]any{"one_time_keys": map[string]any{"signed_curve25519:X": map[string]any{"key": randomKey()}}}, 400, "M_INVALID_PARAM")
	forged := other.signedKey(t, false)
	e.doErr("POST", keysUpload, alice.Token, map[string]any{"one_time_keys": map[string]any{"signed_curve25519:X": forged}}, 400, "M_INVALID_PARAM")
	e.doErr("POST", keysUpload, alice.Token, map[string]any{"one_time_keys": map[string]any{"signed_curve25519:X": "notanobject"}}, 400, "M_BAD_JSON")
	e.doErr("POST", keysUpload, alice.Token, map[string]any{"one_time_keys": map[string]any{
		"signed_curve25519:OK": d.signedKey(t, false), "signed_curve25519:BAD": forged}}, 400, "M_INVALID_PARAM")
	e.doErr("POST", keysUpload, alice.Token, map[string]any{"fallback_keys": map[string]any{"signed_curve25519:F2": forged}}, 400, "M_INVALID_PARAM")
	e.doErr("POST", keysUpload, alice.Token, map[string]any{"one_time_keys": d.oneTimeKeys(t, "many", 201)}, 400, "M_INVALID_PARAM")
	e.doErr("POST", keysUpload, "", map[string]any{}, 401, "M_MISSING_TOKEN")
	if counts = e.uploadKeys(d, map[string]any{}); counts["signed_curve25519"] != float64(8) {
		t.Fatalf("a refused upload changed the counts: %v", counts)
	}

	// /sync reports the counts and the unused fallback key.
	s := e.do("GET", "/_matrix/client/v3/sync", alice.Token, nil, 200).JSON(t)
	if path(s, "device_one_time_keys_count", "signed_curve25519") != float64(8) {
		t.Fatalf("sync counts = %v", s["device_one_time_keys_count"])
	}
	if fb, _ := s["device_unused_fallback_key_types"].([]any); len(fb) != 1 || fb[0] != "signed_curve25519" {
		t.Fatalf("unused fallback types = %v", s["device_unused_fallback_key_types"])
	}
	s = e.do("GET", "/_matrix/client/v3/sync", bob.Token, nil, 200).JSON(t)
	if fb, ok := s["device_unused_fallback_key_types"].([]any); !ok || len(fb) != 0 {
		t.Fatalf("a device without fallback key: %v", s["device_unused_fallback_key_types"])
	}
}

func TestKeysQuery(t *testing.T) {
	e := newEnv(t)
	alice := e.register("kq")
	bob := e.register("kqbob")
	d := newCryptoDevice(bob)
	e.uploadKeys(d, map[string]any{"device_keys": d.deviceKeys(t)})

	q := e.queryKeys(alice, bob.ID, "@nobody:localhost", "@someone:elsewhere.example")
	dk, _ := path(q, "device_keys", bob.ID, bob.DeviceID).(map[string]any)
	if dk == nil || path(dk, "keys", "ed25519:"+bob.DeviceID) != d.ed.pub || path(dk, "unsigned", "device_display_name") != "test device" {
		t.Fatalf("bob's keys = %v", q)
	}
	if path(q, "device_keys", "@nobody:localhost") == nil {
		t.Fatalf("an unknown local user should map to no devices: %v", q)
	}
	if path(q, "failures", "elsewhere.example") == nil {
		t.Fatalf("a remote server should be listed in failures: %v", q)
	}
	// The served keys still verify.
	js, _ := json.Marshal(dk)
	pk, _ := base64.RawStdEncoding.DecodeString(d.ed.pub)
	if err := gmsl.VerifyJSON(bob.ID, gmsl.KeyID("ed25519:"+bob.DeviceID), pk, js); err != nil {
		t.Fatalf("served device keys do not verify: %v", err)
	}
	// Restricting to device IDs.
	q = e.do("POST", keysQuery, alice.Token, map[string]any{"device_keys": map[string]any{bob.ID: []string{"NOPE"}}}, 200).JSON(t)
	if len(path(q, "device_keys", bob.ID).(map[string]any)) != 0 {
		t.Fatalf("query for an unknown device = %v", q)
	}
	e.doErr("POST", keysQuery, alice.Token, map[string]any{"device_keys": map[string]any{"not-a-user": []string{}}}, 400, "M_INVALID_PARAM")
	e.doErr("POST", keysQuery, alice.Token, map[string]any{}, 400, "M_MISSING_PARAM")
	e.doErr("POST", keysQuery, alice.Token, map[string]any{"device_keys": []string{}}, 400, "M_BAD_JSON")
}

func TestKeysClaim(t *testing.T) {
	e := newEnv(t)
	alice := e.register("kc")
	bob := e.register("kcbob")
	d := newCryptoDevice(bob)
	otks := d.oneTimeKeys(t, "K", 2)
	fb := d.signedKey(t, true)
	e.uploadKeys(d, map[string]any{"device_keys": d.deviceKeys(t), "one_time_keys": otks, "fallback_keys": map[string]any{"signed_curve25519:FB": fb}})

	claim := func() map[string]any {
		r := e.do("POST", keysClaim, alice.Token, map[string]any{"one_time_keys": map[string]any{bob.ID: map[string]any{bob.DeviceID: "signed_curve25519", "NODEVICE": "signed_curve25519"}}}, 200).JSON(t)
		keys, _ := path(r, "one_time_keys", bob.ID, bob.DeviceID).(map[string]any)
		if len(keys) != 1 {
			t.Fatalf("claim = %v", r)
		}
		if path(r, "one_time_keys", bob.ID, "NODEVICE") != nil {
			t.Fatalf("claimed a key for a device without keys: %v", r)
		}
		return keys
	}
	seen := map[string]bool{}
	for range 2 {
		for id, k := range claim() {
			if seen[id] || otks[id] == nil {
				t.Fatalf("claimed %s (%v): not a fresh one-time key", id, k)
			}
			seen[id] = true
		}
	}
	// Out of one-time keys: the fallback key, as often as asked.
	for range 2 {
		keys := claim()
		if keys["signed_curve25519:FB"] == nil {
			t.Fatalf("expected the fallback key, got %v", keys)
		}
	}
	s := e.do("GET", "/_matrix/client/v3/sync", bob.Token, nil, 200).JSON(t)
	if path(s, "device_one_time_keys_count", "signed_curve25519") != float64(0) {
		t.Fatalf("counts = %v", s["device_one_time_keys_count"])
	}
	if fbt, _ := s["device_unused_fallback_key_types"].([]any); len(fbt) != 0 {
		t.Fatalf("a used fallback key is still reported unused: %v", fbt)
	}
	e.doErr("POST", keysClaim, alice.Token, map[string]any{"one_time_keys": map[string]any{bob.ID: map[string]any{bob.DeviceID: "rot13"}}}, 400, "M_INVALID_PARAM")
	e.doErr("POST", keysClaim, alice.Token, map[string]any{"one_time_keys": map[string]any{"bob": map[string]any{"D": "signed_curve25519"}}}, 400, "M_INVALID_PARAM")
	e.doErr("POST", keysClaim, alice.Token, map[string]any{}, 400, "M_MISSING_PARAM")
	r := e.do("POST", keysClaim, alice.Token, map[string]any{"one_time_keys": map[string]any{"@x:elsewhere.example": map[string]any{"D": "signed_curve25519"}}}, 200).JSON(t)
	if path(r, "failures", "elsewhere.example") == nil {
		t.Fatalf("remote claim = %v", r)
	}
}

// syncSince runs an incremental sync (no long-poll).
func (e *env) syncSince(u user, since string) map[string]any {
	e.t.Helper()
	p := "/_matrix/client/v3/sync?timeout=0"
	if since != "" {
		p += "&since=" + esc(since)
	}
	return e.do("GET", p, u.Token, nil, 200).JSON(e.t)
}

func stringsOf(v any) []string {
	var out []string
	list, _ := v.([]any)
	for _, x := range list {
		s, _ := x.(string)
		out = append(out, s)
	}
	return out
}

func TestDeviceListsAndKeyChanges(t *testing.T) {
	e := newEnv(t)
	alice := e.register("dl")
	bob := e.register("dlbob")
	carol := e.register("dlcarol")
	stranger := e.register("dlstranger")
	room := e.createRoom(alice, map[string]any{"preset": "public_chat"})
	e.join(bob, room)
	since := e.syncSince(alice, "")["next_batch"].(string)

	// Bob's new device publishes keys: Alice must re-fetch Bob's list; a
	// stranger's keys are none of her business.
	bob2 := e.passwordLogin(bob.ID, nil, 200)
	b2 := newCryptoDevice(user{ID: bob.ID, Token: bob2["access_token"].(string), DeviceID: bob2["device_id"].(string)})
	e.uploadKeys(b2, map[string]any{"device_keys": b2.deviceKeys(t)})
	sd := newCryptoDevice(stranger)
	e.uploadKeys(sd, map[string]any{"device_keys": sd.deviceKeys(t)})
	s := e.syncSince(alice, since)
	if ch := stringsOf(path(s, "device_lists", "changed")); !slices.Contains(ch, bob.ID) || slices.Contains(ch, stranger.ID) {
		t.Fatalf("device_lists = %v", s["device_lists"])
	}
	from, to := since, s["next_batch"].(string)
	kc := e.do("GET", "/_matrix/client/v3/keys/changes?from="+esc(from)+"&to="+esc(to), alice.Token, nil, 200).JSON(t)
	if ch := stringsOf(kc["changed"]); !slices.Contains(ch, bob.ID) || slices.Contains(ch, stranger.ID) {
		t.Fatalf("keys/changes = %v", kc)
	}
	since = to

	// Carol joins: she is now tracked; then she leaves: she is left.
	e.join(carol, room)
	s = e.syncSince(alice, since)
	if ch := stringsOf(path(s, "device_lists", "changed")); !slices.Contains(ch, carol.ID) {
		t.Fatalf("device_lists after a join = %v", s["device_lists"])
	}
	since = s["next_batch"].(string)
	e.do("POST", "/_matrix/client/v3/rooms/"+esc(room)+"/leave", carol.Token, map[string]any{}, 200)
	s = e.syncSince(alice, since)
	if l := stringsOf(path(s, "device_lists", "left")); !slices.Contains(l, carol.ID) {
		t.Fatalf("device_lists after a leave = %v", s["device_lists"])
	}
	since = s["next_batch"].(string)

	// Bob leaves: Alice stops tracking him; Bob, rejoining, learns of Alice.
	bobSince := e.syncSince(bob, "")["next_batch"].(string)
	e.do("POST", "/_matrix/client/v3/rooms/"+esc(room)+"/leave", bob.Token, map[string]any{}, 200)
	bs := e.syncSince(bob, bobSince)
	if l := stringsOf(path(bs, "device_lists", "left")); !slices.Contains(l, alice.ID) {
		t.Fatalf("bob's device_lists after leaving = %v", bs["device_lists"])
	}
	bobSince = bs["next_batch"].(string)
	e.join(bob, room)
	bs = e.syncSince(bob, bobSince)
	if ch := stringsOf(path(bs, "device_lists", "changed")); !slices.Contains(ch, alice.ID) {
		t.Fatalf("bob's device_lists after rejoining = %v", bs["device_lists"])
	}

	e.doErr("GET", "/_matrix/client/v3/keys/changes?from="+esc(since), alice.Token, nil, 400, "M_MISSING_PARAM")
	e.doErr("GET", "/_matrix/client/v3/keys/changes?from=garbage&to="+esc(since), alice.Token, nil, 400, "M_INVALID_PARAM")
}

func TestDeviceDeletionRemovesKeys(t *testing.T) {
	e := newEnv(t)
	alice := e.register("dd")
	bob := e.register("ddbob")
	room := e.createRoom(alice, map[string]any{"preset": "public_chat"})
	e.join(bob, room)
	login := e.passwordLogin(bob.ID, map[string]any{"device_id": "DOOMED"}, 200)
	doomed := newCryptoDevice(user{ID: bob.ID, Token: login["access_token"].(string), DeviceID: "DOOMED"})
	e.uploadKeys(doomed, map[string]any{"device_keys": doomed.deviceKeys(t), "one_time_keys": doomed.oneTimeKeys(t, "A", 3)})
	if path(e.queryKeys(alice, bob.ID), "device_keys", bob.ID, "DOOMED") == nil {
		t.Fatal("keys not uploaded")
	}
	since := e.syncSince(alice, "")["next_batch"].(string)

	del := "/_matrix/client/v3/devices/DOOMED"
	sess := e.uiaSession("DELETE", del, bob, map[string]any{})
	e.do("DELETE", del, bob.Token, map[string]any{"auth": passwordAuth(bob, sess, "correct horse battery staple")}, 200)

	if path(e.queryKeys(alice, bob.ID), "device_keys", bob.ID, "DOOMED") != nil {
		t.Fatal("a deleted device's keys are still served")
	}
	r := e.do("POST", keysClaim, alice.Token, map[string]any{"one_time_keys": map[string]any{bob.ID: map[string]any{"DOOMED": "signed_curve25519"}}}, 200).JSON(t)
	if path(r, "one_time_keys", bob.ID, "DOOMED") != nil {
		t.Fatalf("a deleted device's one-time keys can be claimed: %v", r)
	}
	s := e.syncSince(alice, since)
	if ch := stringsOf(path(s, "device_lists", "changed")); !slices.Contains(ch, bob.ID) {
		t.Fatalf("device_lists after a deletion = %v", s["device_lists"])
	}
}

// crossSigningKeys builds a signed set of cross-signing keys for u.
type crossSigning struct {
	master, self, userSigning edKey
}

func newCrossSigning() crossSigning {
	return crossSigning{newEdKey(), newEdKey(), newEdKey()}
}

func (c crossSigning) body(t *testing.T, u user) map[string]any {
	mk := map[string]any{"user_id": u.ID, "usage": []string{"master"}, "keys": map[string]string{"ed25519:" + c.master.pub: c.master.pub}}
	ssk := sign(t, map[string]any{"user_id": u.ID, "usage": []string{"self_signing"}, "keys": map[string]string{"ed25519:" + c.self.pub: c.self.pub}},
		u.ID, "ed25519:"+c.master.pub, c.master)
	usk := sign(t, map[string]any{"user_id": u.ID, "usage": []string{"user_signing"}, "keys": map[string]string{"ed25519:" + c.userSigning.pub: c.userSigning.pub}},
		u.ID, "ed25519:"+c.master.pub, c.master)
	return map[string]any{"master_key": mk, "self_signing_key": ssk, "user_signing_key": usk}
}

func TestCrossSigningUpload(t *testing.T) {
	e := newEnv(t)
	alice := e.register("xs")
	bob := e.register("xsbob")
	cs := newCrossSigning()

	// Bad uploads first (they change nothing).
	b := cs.body(t, alice)
	b["self_signing_key"] = newCrossSigning().body(t, alice)["self_signing_key"] // signed by another master
	e.doErr("POST", signingUpload, alice.Token, b, 400, "M_INVALID_SIGNATURE")
	e.doErr("POST", signingUpload, alice.Token, map[string]any{"self_signing_key": cs.body(t, alice)["self_signing_key"]}, 400, "M_MISSING_PARAM")
	e.doErr("POST", signingUpload, alice.Token, cs.body(t, bob), 400, "M_INVALID_PARAM")
	b = cs.body(t, alice)
	b["master_key"].(map[string]any)["usage"] = []string{"self_signing"}
	e.doErr("POST", signingUpload, alice.Token, b, 400, "M_INVALID_PARAM")
	b = cs.body(t, alice)
	b["master_key"].(map[string]any)["keys"] = map[string]string{"ed25519:" + cs.master.pub: "short"}
	e.doErr("POST", signingUpload, alice.Token, b, 400, "M_INVALID_PARAM")
	e.doErr("POST", signingUpload, alice.Token, map[string]any{"master_key": "x"}, 400, "M_BAD_JSON")
	// A key whose public key is a device ID.
	devKey := newEdKey()
	e.passwordLogin(alice.ID, map[string]any{"device_id": devKey.pub}, 200)
	e.doErr("POST", signingUpload, alice.Token, map[string]any{"master_key": map[string]any{"user_id": alice.ID, "usage": []string{"master"},
		"keys": map[string]string{"ed25519:" + devKey.pub: devKey.pub}}}, 403, "M_FORBIDDEN")
	if q := e.queryKeys(alice, alice.ID); len(q["master_keys"].(map[string]any)) != 0 {
		t.Fatalf("refused uploads stored keys: %v", q)
	}

	// First upload: no UIA. Repeating it: no UIA either.
	e.do("POST", signingUpload, alice.Token, cs.body(t, alice), 200)
	e.do("POST", signingUpload, alice.Token, cs.body(t, alice), 200)
	q := e.queryKeys(alice, alice.ID)
	if path(q, "master_keys", alice.ID, "keys", "ed25519:"+cs.master.pub) != cs.master.pub ||
		path(q, "self_signing_keys", alice.ID, "keys", "ed25519:"+cs.self.pub) != cs.self.pub ||
		path(q, "user_signing_keys", alice.ID, "keys", "ed25519:"+cs.userSigning.pub) != cs.userSigning.pub {
		t.Fatalf("own cross-signing keys = %v", q)
	}
	// Another user sees the master and self-signing keys only.
	q = e.queryKeys(bob, alice.ID)
	if path(q, "master_keys", alice.ID) == nil || path(q, "self_signing_keys", alice.ID) == nil || path(q, "user_signing_keys", alice.ID) != nil {
		t.Fatalf("alice's keys seen by bob = %v", q)
	}

	// Replacing keys needs the password.
	cs2 := newCrossSigning()
	// (The spec's OpenAPI gives this endpoint no 401 schema: the UIA
	// challenges are checked by hand.)
	sess := e.uiaChallenge(signingUpload, alice, cs2.body(t, alice), "")
	b = cs2.body(t, alice)
	b["auth"] = passwordAuth(alice, sess, "wrong password")
	e.uiaChallenge(signingUpload, alice, b, "M_FORBIDDEN")
	if path(e.queryKeys(alice, alice.ID), "master_keys", alice.ID, "keys", "ed25519:"+cs.master.pub) == nil {
		t.Fatal("keys replaced without authentication")
	}
	b["auth"] = passwordAuth(alice, sess, "correct horse battery staple")
	e.do("POST", signingUpload, alice.Token, b, 200)
	if path(e.queryKeys(alice, alice.ID), "master_keys", alice.ID, "keys", "ed25519:"+cs2.master.pub) == nil {
		t.Fatal("keys not replaced")
	}
}

func TestSignaturesUpload(t *testing.T) {
	e := newEnv(t)
	alice := e.register("sig")
	bob := e.register("sigbob")
	ad := newCryptoDevice(alice)
	e.uploadKeys(ad, map[string]any{"device_keys": ad.deviceKeys(t)})
	acs, bcs := newCrossSigning(), newCrossSigning()
	e.do("POST", signingUpload, alice.Token, acs.body(t, alice), 200)
	e.do("POST", signingUpload, bob.Token, bcs.body(t, bob), 200)
	q := e.queryKeys(alice, alice.ID, bob.ID)
	ownDev := path(q, "device_keys", alice.ID, alice.DeviceID).(map[string]any)
	delete(ownDev, "unsigned")
	ownMaster := path(q, "master_keys", alice.ID).(map[string]any)
	bobMaster := path(q, "master_keys", bob.ID).(map[string]any)

	devSig := sign(t, ownDev, alice.ID, "ed25519:"+acs.self.pub, acs.self)                  // self-signing key over own device
	masterSig := sign(t, ownMaster, alice.ID, "ed25519:"+alice.DeviceID, ad.ed)             // own device over own master key
	bobSig := sign(t, bobMaster, alice.ID, "ed25519:"+acs.userSigning.pub, acs.userSigning) // user-signing key over bob's master
	forged := sign(t, ownDev, alice.ID, "ed25519:"+acs.self.pub, newEdKey())
	tampered := sign(t, ownDev, alice.ID, "ed25519:"+acs.self.pub, acs.self)
	tampered["algorithms"] = []string{"x"}
	r := e.do("POST", signatureUpload, alice.Token, map[string]any{
		alice.ID: map[string]any{alice.DeviceID: devSig, acs.master.pub: masterSig, "UNKNOWN": devSig},
		bob.ID:   map[string]any{bcs.master.pub: bobSig, bcs.self.pub: sign(t, bobMaster, alice.ID, "ed25519:"+acs.userSigning.pub, acs.userSigning)},
	}, 200).JSON(t)
	if path(r, "failures", alice.ID, alice.DeviceID) != nil || path(r, "failures", alice.ID, acs.master.pub) != nil || path(r, "failures", bob.ID, bcs.master.pub) != nil {
		t.Fatalf("valid signatures refused: %v", r)
	}
	if path(r, "failures", alice.ID, "UNKNOWN") == nil || path(r, "failures", bob.ID, bcs.self.pub) == nil {
		t.Fatalf("signatures over unknown or foreign keys accepted: %v", r)
	}
	r = e.do("POST", signatureUpload, alice.Token, map[string]any{alice.ID: map[string]any{alice.DeviceID: forged}}, 200).JSON(t)
	if path(r, "failures", alice.ID, alice.DeviceID, "errcode") != "M_INVALID_SIGNATURE" {
		t.Fatalf("forged signature: %v", r)
	}
	r = e.do("POST", signatureUpload, alice.Token, map[string]any{alice.ID: map[string]any{alice.DeviceID: tampered}}, 200).JSON(t)
	if path(r, "failures", alice.ID, alice.DeviceID) == nil {
		t.Fatalf("signature over a different object accepted: %v", r)
	}
	// Bob cannot sign Alice's device.
	r = e.do("POST", signatureUpload, bob.Token, map[string]any{alice.ID: map[string]any{alice.DeviceID: sign(t, ownDev, bob.ID, "ed25519:"+bcs.self.pub, bcs.self)}}, 200).JSON(t)
	if path(r, "failures", alice.ID, alice.DeviceID) == nil {
		t.Fatalf("bob signed alice's device: %v", r)
	}
	e.doErr("POST", signatureUpload, alice.Token, `[]`, 400, "M_BAD_JSON")

	// The signatures are served: to everyone for Alice's own, to Alice
	// only for hers over Bob's master key.
	q = e.queryKeys(bob, alice.ID, bob.ID)
	if path(q, "device_keys", alice.ID, alice.DeviceID, "signatures", alice.ID, "ed25519:"+acs.self.pub) == nil {
		t.Fatalf("device signature not served: %v", path(q, "device_keys", alice.ID))
	}
	if path(q, "master_keys", alice.ID, "signatures", alice.ID, "ed25519:"+alice.DeviceID) == nil {
		t.Fatalf("master key signature not served: %v", path(q, "master_keys", alice.ID))
	}
	if path(q, "master_keys", bob.ID, "signatures", alice.ID) != nil {
		t.Fatalf("bob sees alice's signature on his master key: %v", path(q, "master_keys", bob.ID))
	}
	q = e.queryKeys(alice, bob.ID)
	if path(q, "master_keys", bob.ID, "signatures", alice.ID, "ed25519:"+acs.userSigning.pub) == nil {
		t.Fatalf("alice does not see her signature on bob's master key: %v", path(q, "master_keys", bob.ID))
	}
}

func TestEncryptionCannotBeDisabled(t *testing.T) {
	e := newEnv(t)
	alice := e.register("enc")
	room := e.createRoom(alice, map[string]any{"initial_state": []any{map[string]any{"type": "m.room.encryption", "state_key": "",
		"content": map[string]any{"algorithm": "m.megolm.v1.aes-sha2"}}}})
	state := "/_matrix/client/v3/rooms/" + esc(room) + "/state/m.room.encryption/"
	e.doErr("PUT", state, alice.Token, map[string]any{}, 403, "M_FORBIDDEN")
	e.doErr("PUT", state, alice.Token, map[string]any{"algorithm": "m.none"}, 403, "M_FORBIDDEN")
	r := e.do("PUT", state, alice.Token, map[string]any{"algorithm": "m.megolm.v1.aes-sha2", "rotation_period_ms": 604800000}, 200).JSON(t)
	e.doErr("PUT", "/_matrix/client/v3/rooms/"+esc(room)+"/redact/"+esc(r["event_id"].(string))+"/txn1", alice.Token, map[string]any{}, 403, "M_FORBIDDEN")
	if c := e.do("GET", state, alice.Token, nil, 200).JSON(t); c["algorithm"] != "m.megolm.v1.aes-sha2" {
		t.Fatalf("encryption state = %v", c)
	}
	// An unencrypted room may still turn encryption on.
	plain := e.createRoom(alice, nil)
	e.do("PUT", "/_matrix/client/v3/rooms/"+esc(plain)+"/state/m.room.encryption/", alice.Token, map[string]any{"algorithm": "m.megolm.v1.aes-sha2"}, 200)
}

// uiaChallenge posts body and checks for a 401 UIA challenge offering the
// password stage (with errcode wantCode, "" for none); it returns the session.
func (e *env) uiaChallenge(p string, u user, body map[string]any, wantCode string) any {
	e.t.Helper()
	r := e.raw("POST", p, u.Token, body)
	var ch map[string]any
	r.Decode(e.t, &ch)
	flows, _ := ch["flows"].([]any)
	code, _ := ch["errcode"].(string)
	if r.Status != 401 || len(flows) == 0 || ch["session"] == nil || code != wantCode {
		e.t.Fatalf("POST %s: %d %s, want a UIA challenge with errcode %q", p, r.Status, r.Body, wantCode)
	}
	return ch["session"]
}
