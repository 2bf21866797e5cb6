//go:build goolm

package integration

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"testing"

	"maunium.net/go/mautrix"
	"maunium.net/go/mautrix/crypto"
	"maunium.net/go/mautrix/crypto/olm"
	"maunium.net/go/mautrix/id"

	"github.com/rempart-hs/rempart/internal/testserver"
)

// dehydratedDevice is the client side of an MSC3814 dehydrated device,
// built from a goolm account as a client would before dehydrating it.
type dehydratedDevice struct {
	acct     *crypto.OlmAccount
	deviceID id.DeviceID
}

// signed adds u's signature by the device to obj.
func (d *dehydratedDevice) signed(t *testing.T, u id.UserID, obj map[string]any) map[string]any {
	t.Helper()
	sig, err := d.acct.SignJSON(obj)
	if err != nil {
		t.Fatalf("sign: %v", err)
	}
	obj["signatures"] = map[string]any{u.String(): map[string]string{"ed25519:" + d.deviceID.String(): sig}}
	return obj
}

// uploadBody is the PUT /dehydrated_device body: the device ID is the
// curve25519 identity key, as MSC3814 asks.
func (d *dehydratedDevice) uploadBody(t *testing.T, u id.UserID) map[string]any {
	t.Helper()
	ed, curve := d.acct.Keys()
	dev := d.deviceID.String()
	keys := d.signed(t, u, map[string]any{
		"user_id": u, "device_id": dev, "dehydrated": true,
		"algorithms": []id.Algorithm{id.AlgorithmOlmV1, id.AlgorithmMegolmV1},
		"keys":       map[string]string{"ed25519:" + dev: ed.String(), "curve25519:" + dev: curve.String()},
	})
	if err := d.acct.Internal.GenOneTimeKeys(5); err != nil {
		t.Fatalf("one-time keys: %v", err)
	}
	otks, err := d.acct.Internal.OneTimeKeys()
	if err != nil {
		t.Fatalf("one-time keys: %v", err)
	}
	signedOTKs := map[string]any{}
	for kid, k := range otks {
		signedOTKs["signed_curve25519:"+kid] = d.signed(t, u, map[string]any{"key": k.String()})
	}
	d.acct.Internal.MarkKeysAsPublished()
	return map[string]any{
		"device_id":                   dev,
		"device_data":                 map[string]any{"algorithm": "org.matrix.msc3814.v2", "device_pickle": "not a real pickle", "nonce": "AAAA"},
		"initial_device_display_name": "Dehydrated device",
		"device_keys":                 keys,
		"one_time_keys":               signedOTKs,
	}
}

// dehydratedURL builds an MSC3814 endpoint URL.
func dehydratedURL(cli *mautrix.Client, parts ...any) string {
	return cli.BuildClientURL(append([]any{"unstable", "org.matrix.msc3814.v1", "dehydrated_device"}, parts...)...)
}

// toDeviceEvent is a to-device event as /events returns it.
type toDeviceEvent struct {
	Sender  id.UserID       `json:"sender"`
	Type    string          `json:"type"`
	Content json.RawMessage `json:"content"`
}

// A message sent while Bob has only a dehydrated device online is
// readable later: Alice's mautrix client finds the device in /keys/query,
// claims one of its one-time keys and sends it the room key over olm; Bob
// reads that to-device message through the dehydrated device's /events,
// decrypts it with the dehydrated account and decrypts the room message.
func TestDehydratedDeviceReceivesRoomKey(t *testing.T) {
	srv := testserver.Start(t)
	ctx := context.Background()
	alice := newCryptoClient(t, srv.RegisterUser("dhalice"))
	bobCli := srv.RegisterUser("dhbob")
	bob := newCryptoClient(t, bobCli)

	d := &dehydratedDevice{acct: crypto.NewOlmAccount()}
	_, curve := d.acct.Keys()
	d.deviceID = id.DeviceID(curve)
	var put struct {
		DeviceID id.DeviceID `json:"device_id"`
	}
	if _, err := bobCli.MakeRequest(ctx, http.MethodPut, dehydratedURL(bobCli), d.uploadBody(t, bobCli.UserID), &put); err != nil {
		t.Fatalf("PUT dehydrated_device: %v", err)
	}
	if put.DeviceID != d.deviceID {
		t.Fatalf("PUT answered device_id %q, want %q", put.DeviceID, d.deviceID)
	}

	roomID := encryptedRoom(t, alice.cli, bob.cli)
	alice.waitMembers(roomID, alice.cli.UserID, bob.cli.UserID)
	bob.waitMembers(roomID, alice.cli.UserID, bob.cli.UserID)
	secret := "for the dehydrated device " + testserver.UniqueName("s")
	sent, err := alice.cli.SendText(ctx, roomID, secret)
	if err != nil {
		t.Fatalf("alice send: %v", err)
	}
	bob.waitMessage(roomID, secret)
	dev, err := alice.mach.CryptoStore.GetDevice(ctx, bobCli.UserID, d.deviceID)
	if err != nil || dev == nil {
		t.Fatalf("alice's client does not know the dehydrated device: %v", err)
	}

	// Rehydration, as a new client of Bob's would do it.
	var got struct {
		DeviceID   id.DeviceID     `json:"device_id"`
		DeviceData json.RawMessage `json:"device_data"`
	}
	if _, err := bobCli.MakeRequest(ctx, http.MethodGet, dehydratedURL(bobCli), nil, &got); err != nil {
		t.Fatalf("GET dehydrated_device: %v", err)
	}
	if got.DeviceID != d.deviceID {
		t.Fatalf("GET answered device_id %q", got.DeviceID)
	}
	var events []toDeviceEvent
	var next *string
	for page := 0; ; page++ {
		if page > 10 {
			t.Fatal("the events endpoint never ends")
		}
		body := map[string]any{}
		if next != nil {
			body["next_batch"] = *next
		}
		var resp struct {
			Events    []toDeviceEvent `json:"events"`
			NextBatch string          `json:"next_batch"`
		}
		if _, err := bobCli.MakeRequest(ctx, http.MethodPost, dehydratedURL(bobCli, d.deviceID, "events"), body, &resp); err != nil {
			t.Fatalf("POST events: %v", err)
		}
		if resp.NextBatch == "" {
			t.Fatal("no next_batch")
		}
		if len(resp.Events) == 0 {
			break
		}
		events = append(events, resp.Events...)
		next = &resp.NextBatch
	}

	sessionKey := roomKeyFrom(t, d, events, alice.cli.UserID, bobCli.UserID, roomID)
	igs, err := olm.NewInboundGroupSession([]byte(sessionKey))
	if err != nil {
		t.Fatalf("inbound group session: %v", err)
	}
	ev, err := bobCli.GetEvent(ctx, roomID, sent.EventID)
	if err != nil {
		t.Fatalf("get event: %v", err)
	}
	ciphertext, _ := ev.Content.Raw["ciphertext"].(string)
	plain, _, err := igs.Decrypt([]byte(ciphertext))
	if err != nil {
		t.Fatalf("decrypt the room message with the dehydrated device's key: %v", err)
	}
	var msg struct {
		Content struct {
			Body string `json:"body"`
		} `json:"content"`
	}
	if err := json.Unmarshal(plain, &msg); err != nil || msg.Content.Body != secret {
		t.Fatalf("decrypted %s, want body %q", plain, secret)
	}

	// Deleting the dehydrated device takes its messages away.
	if _, err := bobCli.MakeRequest(ctx, http.MethodDelete, dehydratedURL(bobCli), nil, nil); err != nil {
		t.Fatalf("DELETE dehydrated_device: %v", err)
	}
	_, err = bobCli.MakeRequest(ctx, http.MethodPost, dehydratedURL(bobCli, d.deviceID, "events"), map[string]any{}, nil)
	if !errors.Is(err, mautrix.MForbidden) {
		t.Fatalf("events of a deleted dehydrated device: %v", err)
	}
}

// roomKeyFrom finds among the dehydrated device's to-device events the
// olm-encrypted m.room_key from sender for roomID, decrypts it with the
// device's account and returns the megolm session key.
func roomKeyFrom(t *testing.T, d *dehydratedDevice, events []toDeviceEvent, sender, recipient id.UserID, roomID id.RoomID) string {
	t.Helper()
	_, curve := d.acct.Keys()
	var types []string
	for _, ev := range events {
		types = append(types, ev.Type)
		if ev.Type != "m.room.encrypted" || ev.Sender != sender {
			continue
		}
		var c struct {
			Algorithm  id.Algorithm  `json:"algorithm"`
			SenderKey  id.Curve25519 `json:"sender_key"`
			Ciphertext map[id.Curve25519]struct {
				Type id.OlmMsgType `json:"type"`
				Body string        `json:"body"`
			} `json:"ciphertext"`
		}
		if err := json.Unmarshal(ev.Content, &c); err != nil {
			t.Fatalf("to-device content: %v", err)
		}
		ct, ok := c.Ciphertext[curve]
		if c.Algorithm != id.AlgorithmOlmV1 || !ok || ct.Type != id.OlmMsgTypePreKey {
			continue
		}
		sess, err := d.acct.Internal.NewInboundSessionFrom(&c.SenderKey, ct.Body)
		if err != nil {
			t.Fatalf("olm inbound session: %v", err)
		}
		plain, err := sess.Decrypt(ct.Body, ct.Type)
		if err != nil {
			t.Fatalf("olm decrypt: %v", err)
		}
		var p struct {
			Type      string    `json:"type"`
			Sender    id.UserID `json:"sender"`
			Recipient id.UserID `json:"recipient"`
			Content   struct {
				RoomID     id.RoomID `json:"room_id"`
				SessionKey string    `json:"session_key"`
			} `json:"content"`
		}
		if err := json.Unmarshal(plain, &p); err != nil {
			t.Fatalf("olm plaintext: %v", err)
		}
		if p.Type == "m.room_key" && p.Sender == sender && p.Recipient == recipient && p.Content.RoomID == roomID {
			return p.Content.SessionKey
		}
	}
	t.Fatalf("no room key for the dehydrated device among %d to-device events %v", len(events), types)
	return ""
}
