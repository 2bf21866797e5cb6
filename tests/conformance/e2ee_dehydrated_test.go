package conformance

import (
	"encoding/json"
	"fmt"
	"slices"
	"strings"
	"testing"

	"github.com/rempart-hs/rempart/internal/testserver"
)

// Dehydrated devices (MSC3814, unstable prefix org.matrix.msc3814.v1).
// The spec has no schema for these endpoints: success bodies are checked
// by hand; error bodies still go through doErr (a Matrix error body).

const dehydratedPath = "/_matrix/client/unstable/org.matrix.msc3814.v1/dehydrated_device"

func dehydratedEventsPath(deviceID string) string {
	return dehydratedPath + "/" + esc(deviceID) + "/events"
}

// newDehydratedDevice returns a crypto device for u whose ID is its
// curve25519 key, as MSC3814 asks; the ID contains a "/" so that path
// escaping is exercised.
func newDehydratedDevice(u user) *cryptoDevice {
	for {
		curve := randomKey()
		if strings.Contains(curve, "/") {
			return &cryptoDevice{u: user{ID: u.ID, Token: u.Token, DeviceID: curve}, ed: newEdKey(), curve: curve}
		}
	}
}

// dehydratedKeys returns the device's signed DeviceKeys with the
// dehydrated flag; edit, if not nil, changes the object before signing.
func (d *cryptoDevice) dehydratedKeys(t *testing.T, edit func(map[string]any)) map[string]any {
	obj := map[string]any{
		"user_id": d.u.ID, "device_id": d.u.DeviceID, "dehydrated": true,
		"algorithms": []string{"m.olm.v1.curve25519-aes-sha2", "m.megolm.v1.aes-sha2"},
		"keys":       map[string]string{"ed25519:" + d.u.DeviceID: d.ed.pub, "curve25519:" + d.u.DeviceID: d.curve},
	}
	if edit != nil {
		edit(obj)
	}
	return sign(t, obj, d.u.ID, "ed25519:"+d.u.DeviceID, d.ed)
}

// dehydratedBody is a valid PUT /dehydrated_device body for d.
func (d *cryptoDevice) dehydratedBody(t *testing.T, otks int) map[string]any {
	return map[string]any{
		"device_id":                   d.u.DeviceID,
		"device_data":                 map[string]any{"algorithm": "org.matrix.msc3814.v2", "device_pickle": "cGlja2xl", "nonce": "bm9uY2U"},
		"initial_device_display_name": "Dehydrated device",
		"device_keys":                 d.dehydratedKeys(t, nil),
		"one_time_keys":               d.oneTimeKeys(t, "D", otks),
		"fallback_keys":               map[string]any{"signed_curve25519:FB": d.signedKey(t, true)},
	}
}

// okJSON sends a request to an unstable endpoint and decodes its 200 body.
func (e *env) okJSON(method, path, token string, body any) map[string]any {
	e.t.Helper()
	r := e.raw(method, path, token, body)
	if r.Status != 200 {
		e.t.Fatalf("%s %s: status %d: %s", method, path, r.Status, r.Body)
	}
	if ct := r.Header.Get("Content-Type"); ct != "application/json" {
		e.t.Fatalf("%s %s: Content-Type %q", method, path, ct)
	}
	return r.JSON(e.t)
}

// putDehydrated uploads a dehydrated device and checks the answer.
func (e *env) putDehydrated(u user, body map[string]any) {
	e.t.Helper()
	r := e.okJSON("PUT", dehydratedPath, u.Token, body)
	if len(r) != 1 || r["device_id"] != body["device_id"] {
		e.t.Fatalf("PUT dehydrated_device = %v", r)
	}
}

// dehydratedEvents fetches one page of the dehydrated device's messages
// and checks the shape of the answer.
func (e *env) dehydratedEvents(u user, deviceID string, nextBatch *string) ([]map[string]any, string) {
	e.t.Helper()
	body := map[string]any{}
	if nextBatch != nil {
		body["next_batch"] = *nextBatch
	}
	r := e.okJSON("POST", dehydratedEventsPath(deviceID), u.Token, body)
	list, ok := r["events"].([]any)
	next, ok2 := r["next_batch"].(string)
	if !ok || !ok2 || next == "" || len(r) != 2 {
		e.t.Fatalf("events response = %v", r)
	}
	var evs []map[string]any
	for _, x := range list {
		ev, ok := x.(map[string]any)
		if !ok || ev["sender"] == nil || ev["type"] == nil || ev["content"] == nil {
			e.t.Fatalf("not a to-device event: %v", x)
		}
		evs = append(evs, ev)
	}
	return evs, next
}

// deviceIDs lists u's devices through GET /devices.
func (e *env) deviceIDs(u user) []string {
	e.t.Helper()
	var r struct {
		Devices []struct {
			DeviceID string `json:"device_id"`
		} `json:"devices"`
	}
	e.do("GET", "/_matrix/client/v3/devices", u.Token, nil, 200).Decode(e.t, &r)
	var ids []string
	for _, d := range r.Devices {
		ids = append(ids, d.DeviceID)
	}
	return ids
}

func TestDehydratedDeviceLifecycle(t *testing.T) {
	e := newEnv(t)
	alice := e.register("dha")
	bob := e.register("dhb")
	room := e.createRoom(alice, map[string]any{"preset": "public_chat"})
	e.join(bob, room)

	if path(e.do("GET", "/_matrix/client/versions", "", nil, 200).JSON(t), "unstable_features", "org.matrix.msc3814") != true {
		t.Fatal("org.matrix.msc3814 not advertised in /versions")
	}

	// None yet.
	e.doErr("GET", dehydratedPath, bob.Token, nil, 404, "M_NOT_FOUND")
	e.doErr("DELETE", dehydratedPath, bob.Token, nil, 404, "M_NOT_FOUND")
	e.doErr("POST", dehydratedEventsPath("NOPE"), bob.Token, map[string]any{}, 403, "M_FORBIDDEN")
	e.doErr("GET", dehydratedPath, "", nil, 401, "M_MISSING_TOKEN")

	// Create: the device is served like any other, marked dehydrated.
	aliceSince := e.syncSince(alice, "")["next_batch"].(string)
	d := newDehydratedDevice(bob)
	id := d.u.DeviceID
	body := d.dehydratedBody(t, 2)
	e.putDehydrated(bob, body)
	got := e.okJSON("GET", dehydratedPath, bob.Token, nil)
	if got["device_id"] != id || len(got) != 2 {
		t.Fatalf("GET dehydrated_device = %v", got)
	}
	// Nobody gets an access token for the dehydrated device, not even its
	// owner with the right password.
	e.doErr("POST", "/_matrix/client/v3/login", "", map[string]any{"type": "m.login.password",
		"identifier": map[string]any{"type": "m.id.user", "user": bob.ID}, "password": testserver.Password, "device_id": id}, 403, "M_FORBIDDEN")
	want, _ := json.Marshal(body["device_data"])
	if have, _ := json.Marshal(got["device_data"]); string(have) != string(want) {
		t.Fatalf("device_data = %s, want %s", have, want)
	}
	keys, _ := path(e.queryKeys(alice, bob.ID), "device_keys", bob.ID, id).(map[string]any)
	if keys == nil || keys["dehydrated"] != true || path(keys, "unsigned", "device_display_name") != "Dehydrated device" {
		t.Fatalf("/keys/query of the dehydrated device = %v", keys)
	}
	if ids := e.deviceIDs(bob); !slices.Contains(ids, id) || !slices.Contains(ids, bob.DeviceID) {
		t.Fatalf("GET /devices = %v", ids)
	}
	s := e.syncSince(alice, aliceSince)
	if ch := stringsOf(path(s, "device_lists", "changed")); !slices.Contains(ch, bob.ID) {
		t.Fatalf("device_lists after a dehydrated device = %v", s["device_lists"])
	}
	aliceSince = s["next_batch"].(string)

	// Its one-time keys, then its fallback key, can be claimed.
	for i := range 3 {
		r := e.do("POST", keysClaim, alice.Token, map[string]any{"one_time_keys": map[string]any{bob.ID: map[string]any{id: "signed_curve25519"}}}, 200).JSON(t)
		k, _ := path(r, "one_time_keys", bob.ID, id).(map[string]any)
		_, isFB := k["signed_curve25519:FB"]
		if len(k) != 1 || isFB != (i == 2) {
			t.Fatalf("claim %d = %v", i, r)
		}
	}

	// To-device messages to it queue up; they page in order, 100 at a time,
	// and paging deletes nothing.
	bobSince := e.syncSince(bob, "")["next_batch"].(string)
	const n = 103
	for i := range n {
		e.do("PUT", sendToDevicePath("m.room_key", fmt.Sprintf("dh%d", i)), alice.Token,
			map[string]any{"messages": map[string]any{bob.ID: map[string]any{id: map[string]any{"n": i}}}}, 200)
	}
	e.do("PUT", sendToDevicePath("m.test", "dhall"), alice.Token,
		map[string]any{"messages": map[string]any{bob.ID: map[string]any{"*": map[string]any{"all": true}}}}, 200)
	page1, next1 := e.dehydratedEvents(bob, id, nil)
	if len(page1) != 100 {
		t.Fatalf("first page has %d events", len(page1))
	}
	for i, ev := range page1 {
		if ev["sender"] != alice.ID || ev["type"] != "m.room_key" || path(ev, "content", "n") != float64(i) {
			t.Fatalf("event %d = %v", i, ev)
		}
	}
	page2, next2 := e.dehydratedEvents(bob, id, &next1)
	if len(page2) != n-100+1 || path(page2[len(page2)-1], "content", "all") != true {
		t.Fatalf("second page = %v", page2)
	}
	last, next3 := e.dehydratedEvents(bob, id, &next2)
	if len(last) != 0 || next3 != next2 {
		t.Fatalf("after the last page: %v, next_batch %q (was %q)", last, next3, next2)
	}
	if again, _ := e.dehydratedEvents(bob, id, nil); len(again) != 100 {
		t.Fatalf("paging deleted messages: %d left on the first page", len(again))
	}
	// Only the "*" message reached Bob's real device.
	if evs := toDeviceEvents(e.syncSince(bob, bobSince)); len(evs) != 1 || path(evs[0], "content", "all") != true {
		t.Fatalf("bob's own device got %v", evs)
	}

	// Only the owner, only for the current dehydrated device.
	e.doErr("POST", dehydratedEventsPath(id), alice.Token, map[string]any{}, 403, "M_FORBIDDEN")
	e.doErr("POST", dehydratedEventsPath(bob.DeviceID), bob.Token, map[string]any{}, 403, "M_FORBIDDEN")
	e.doErr("GET", dehydratedPath, alice.Token, nil, 404, "M_NOT_FOUND")
	for _, bad := range []any{"garbage", "dh-1", "dhx", 12} {
		status, code := 400, "M_INVALID_PARAM"
		if _, isNum := bad.(int); isNum {
			code = "M_BAD_JSON"
		}
		e.doErr("POST", dehydratedEventsPath(id), bob.Token, map[string]any{"next_batch": bad}, status, code)
	}

	// Replace: the old device goes with its keys and messages.
	d2 := newDehydratedDevice(bob)
	id2 := d2.u.DeviceID
	e.putDehydrated(bob, d2.dehydratedBody(t, 1))
	if got := e.okJSON("GET", dehydratedPath, bob.Token, nil); got["device_id"] != id2 {
		t.Fatalf("GET after replacing = %v", got)
	}
	dk, _ := path(e.queryKeys(alice, bob.ID), "device_keys", bob.ID).(map[string]any)
	if dk[id] != nil || dk[id2] == nil {
		t.Fatalf("keys after replacing: %v", dk)
	}
	if ids := e.deviceIDs(bob); slices.Contains(ids, id) {
		t.Fatalf("replaced device still listed: %v", ids)
	}
	r := e.do("POST", keysClaim, alice.Token, map[string]any{"one_time_keys": map[string]any{bob.ID: map[string]any{id: "signed_curve25519"}}}, 200).JSON(t)
	if path(r, "one_time_keys", bob.ID, id) != nil {
		t.Fatalf("claimed a key of the replaced device: %v", r)
	}
	e.doErr("POST", dehydratedEventsPath(id), bob.Token, map[string]any{}, 403, "M_FORBIDDEN")
	if evs, _ := e.dehydratedEvents(bob, id2, nil); len(evs) != 0 {
		t.Fatalf("new dehydrated device inherited messages: %v", evs)
	}
	// Replacing with the same device ID still starts afresh.
	e.do("PUT", sendToDevicePath("m.test", "to-new"), alice.Token,
		map[string]any{"messages": map[string]any{bob.ID: map[string]any{id2: map[string]any{"x": 1}}}}, 200)
	if evs, _ := e.dehydratedEvents(bob, id2, nil); len(evs) != 1 {
		t.Fatalf("message to the new device: %v", evs)
	}
	e.putDehydrated(bob, d2.dehydratedBody(t, 1))
	if evs, _ := e.dehydratedEvents(bob, id2, nil); len(evs) != 0 {
		t.Fatalf("queue kept across replacement: %v", evs)
	}

	// Delete: gone, with its keys; the device list changes.
	del := e.okJSON("DELETE", dehydratedPath, bob.Token, nil)
	if len(del) != 1 || del["device_id"] != id2 {
		t.Fatalf("DELETE dehydrated_device = %v", del)
	}
	e.doErr("GET", dehydratedPath, bob.Token, nil, 404, "M_NOT_FOUND")
	e.doErr("DELETE", dehydratedPath, bob.Token, nil, 404, "M_NOT_FOUND")
	e.doErr("POST", dehydratedEventsPath(id2), bob.Token, map[string]any{}, 403, "M_FORBIDDEN")
	if path(e.queryKeys(alice, bob.ID), "device_keys", bob.ID, id2) != nil {
		t.Fatal("a deleted dehydrated device's keys are still served")
	}
	if ids := e.deviceIDs(bob); slices.Contains(ids, id2) || !slices.Contains(ids, bob.DeviceID) {
		t.Fatalf("GET /devices after DELETE = %v", ids)
	}
	s = e.syncSince(alice, aliceSince)
	if ch := stringsOf(path(s, "device_lists", "changed")); !slices.Contains(ch, bob.ID) {
		t.Fatalf("device_lists after deletions = %v", s["device_lists"])
	}

	// The device APIs can delete it too (MSC3814), which clears the mark.
	d3 := newDehydratedDevice(bob)
	e.putDehydrated(bob, d3.dehydratedBody(t, 0))
	devPath := "/_matrix/client/v3/devices/" + esc(d3.u.DeviceID)
	sess := e.uiaSession("DELETE", devPath, bob, map[string]any{})
	e.do("DELETE", devPath, bob.Token, map[string]any{"auth": passwordAuth(bob, sess, "correct horse battery staple")}, 200)
	e.doErr("GET", dehydratedPath, bob.Token, nil, 404, "M_NOT_FOUND")

	// Survives a restart.
	d4 := newDehydratedDevice(bob)
	e.putDehydrated(bob, d4.dehydratedBody(t, 0))
	e.srv.Restart()
	if got := e.okJSON("GET", dehydratedPath, bob.Token, nil); got["device_id"] != d4.u.DeviceID {
		t.Fatalf("GET after restart = %v", got)
	}
}

func TestDehydratedDeviceValidation(t *testing.T) {
	e := newEnv(t)
	bob := e.register("dhv")
	other := e.register("dhvother")
	d := newDehydratedDevice(bob)
	put := func(edit func(map[string]any), status int, code string) {
		t.Helper()
		body := d.dehydratedBody(t, 1)
		edit(body)
		e.doErr("PUT", dehydratedPath, bob.Token, body, status, code)
	}
	put(func(b map[string]any) { delete(b, "device_id") }, 400, "M_MISSING_PARAM")
	put(func(b map[string]any) { b["device_id"] = "" }, 400, "M_INVALID_PARAM")
	put(func(b map[string]any) { b["device_id"] = 7 }, 400, "M_BAD_JSON")
	put(func(b map[string]any) { b["device_id"] = strings.Repeat("x", 256) }, 400, "M_INVALID_PARAM")
	put(func(b map[string]any) { b["device_id"] = "bad\nid" }, 400, "M_INVALID_PARAM")
	put(func(b map[string]any) { delete(b, "device_data") }, 400, "M_MISSING_PARAM")
	put(func(b map[string]any) { b["device_data"] = "pickle" }, 400, "M_BAD_JSON")
	put(func(b map[string]any) { b["device_data"] = map[string]any{"device_pickle": "x"} }, 400, "M_BAD_JSON")
	put(func(b map[string]any) { b["device_data"] = map[string]any{"algorithm": ""} }, 400, "M_INVALID_PARAM")
	put(func(b map[string]any) {
		b["device_data"] = map[string]any{"algorithm": "org.matrix.msc3814.v2", "device_pickle": strings.Repeat("A", 70000)}
	}, 413, "M_TOO_LARGE")
	put(func(b map[string]any) { b["initial_device_display_name"] = strings.Repeat("n", 256) }, 400, "M_INVALID_PARAM")
	put(func(b map[string]any) { delete(b, "device_keys") }, 400, "M_MISSING_PARAM")
	put(func(b map[string]any) { b["device_keys"] = "keys" }, 400, "M_BAD_JSON")
	// device_keys must name this user and device, be signed, be flagged.
	put(func(b map[string]any) {
		b["device_keys"] = d.dehydratedKeys(t, func(o map[string]any) { o["user_id"] = other.ID })
	}, 400, "M_INVALID_PARAM")
	put(func(b map[string]any) { b["device_id"] = bob.DeviceID }, 400, "M_INVALID_PARAM")
	put(func(b map[string]any) {
		k := d.dehydratedKeys(t, nil)
		k["algorithms"] = []string{"m.megolm.v1.aes-sha2"} // breaks the signature
		b["device_keys"] = k
	}, 400, "M_INVALID_PARAM")
	put(func(b map[string]any) {
		b["device_keys"] = d.dehydratedKeys(t, func(o map[string]any) { delete(o, "dehydrated") })
	}, 400, "M_INVALID_PARAM")
	put(func(b map[string]any) {
		b["device_keys"] = d.dehydratedKeys(t, func(o map[string]any) { o["dehydrated"] = false })
	}, 400, "M_INVALID_PARAM")
	// One-time and fallback keys must be signed by the device.
	put(func(b map[string]any) {
		b["one_time_keys"] = map[string]any{"signed_curve25519:X": newCryptoDevice(bob).signedKey(t, false)}
	}, 400, "M_INVALID_PARAM")
	put(func(b map[string]any) {
		b["fallback_keys"] = map[string]any{"signed_curve25519:A": d.signedKey(t, true), "signed_curve25519:B": d.signedKey(t, true)}
	}, 400, "M_INVALID_PARAM")
	put(func(b map[string]any) { b["one_time_keys"] = map[string]any{"rot13:X": "abc"} }, 400, "M_INVALID_PARAM")
	e.doErr("PUT", dehydratedPath, bob.Token, "[]", 400, "M_BAD_JSON")
	e.doErr("PUT", dehydratedPath, bob.Token, "{", 400, "M_NOT_JSON")
	e.doErr("PUT", dehydratedPath, "", d.dehydratedBody(t, 0), 401, "M_MISSING_TOKEN")

	// Nothing was stored by the failures.
	e.doErr("GET", dehydratedPath, bob.Token, nil, 404, "M_NOT_FOUND")

	// A device ID in use by a real device cannot be taken over, even with
	// valid keys for it.
	own := &cryptoDevice{u: bob, ed: newEdKey(), curve: randomKey()}
	e.uploadKeys(own, map[string]any{"device_keys": own.deviceKeys(t)})
	body := own.dehydratedBody(t, 0)
	e.doErr("PUT", dehydratedPath, bob.Token, body, 400, "M_INVALID_PARAM")
	keys, _ := path(e.queryKeys(other, bob.ID), "device_keys", bob.ID, bob.DeviceID).(map[string]any)
	if keys == nil || keys["dehydrated"] != nil {
		t.Fatalf("the real device's keys changed: %v", keys)
	}
	e.doErr("GET", dehydratedPath, bob.Token, nil, 404, "M_NOT_FOUND")
}
