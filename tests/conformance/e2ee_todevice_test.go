package conformance

import (
	"fmt"
	"testing"
	"time"
)

// Send-to-device messaging: PUT /sendToDevice/{eventType}/{txnId} and the
// to_device section of /sync.

func sendToDevicePath(evType, txn string) string {
	return "/_matrix/client/v3/sendToDevice/" + esc(evType) + "/" + esc(txn)
}

// toDeviceEvents returns the to_device events of a sync response.
func toDeviceEvents(s map[string]any) []map[string]any {
	var out []map[string]any
	list, _ := path(s, "to_device", "events").([]any)
	for _, x := range list {
		out = append(out, x.(map[string]any))
	}
	return out
}

func TestSendToDevice(t *testing.T) {
	e := newEnv(t)
	alice := e.register("td")
	bob := e.register("tdbob")
	l := e.passwordLogin(bob.ID, map[string]any{"device_id": "BOB2"}, 200)
	bob2 := user{ID: bob.ID, Token: l["access_token"].(string), DeviceID: "BOB2"}
	bobSince := e.syncSince(bob, "")["next_batch"].(string)
	bob2Since := e.syncSince(bob2, "")["next_batch"].(string)

	// One device, in order, with the sender; a retried transaction is not
	// delivered twice.
	for i := range 3 {
		e.do("PUT", sendToDevicePath("m.test", fmt.Sprintf("t%d", i)), alice.Token,
			map[string]any{"messages": map[string]any{bob.ID: map[string]any{bob.DeviceID: map[string]any{"n": i}}}}, 200)
	}
	e.do("PUT", sendToDevicePath("m.test", "t0"), alice.Token,
		map[string]any{"messages": map[string]any{bob.ID: map[string]any{bob.DeviceID: map[string]any{"n": 0}}}}, 200)
	s := e.syncSince(bob, bobSince)
	evs := toDeviceEvents(s)
	if len(evs) != 3 {
		t.Fatalf("to_device = %v", s["to_device"])
	}
	for i, ev := range evs {
		if ev["sender"] != alice.ID || ev["type"] != "m.test" || path(ev, "content", "n") != float64(i) {
			t.Fatalf("event %d = %v", i, ev)
		}
	}
	// Until acknowledged, the same messages come again.
	if again := toDeviceEvents(e.syncSince(bob, bobSince)); len(again) != 3 {
		t.Fatalf("unacknowledged messages not redelivered: %v", again)
	}
	// Acknowledged by the next token: gone.
	bobSince = s["next_batch"].(string)
	s = e.syncSince(bob, bobSince)
	if evs := toDeviceEvents(s); len(evs) != 0 {
		t.Fatalf("acknowledged messages redelivered: %v", evs)
	}
	bobSince = s["next_batch"].(string)
	if evs := toDeviceEvents(e.syncSince(bob2, bob2Since)); len(evs) != 0 {
		t.Fatalf("bob's other device got messages: %v", evs)
	}

	// "*" reaches every device, and survives a restart.
	e.do("PUT", sendToDevicePath("m.test", "all"), alice.Token,
		map[string]any{"messages": map[string]any{bob.ID: map[string]any{"*": map[string]any{"all": true}}}}, 200)
	e.srv.Restart()
	for _, c := range []struct {
		u     user
		since string
	}{{bob, bobSince}, {bob2, bob2Since}} {
		evs := toDeviceEvents(e.syncSince(c.u, c.since))
		if len(evs) != 1 || path(evs[0], "content", "all") != true {
			t.Fatalf("%s: to_device after restart = %v", c.u.DeviceID, evs)
		}
	}

	// A long-polling sync wakes up for a to-device message.
	since := e.syncSince(bob2, "")["next_batch"].(string)
	done := make(chan map[string]any, 1)
	go func() {
		done <- e.do("GET", "/_matrix/client/v3/sync?timeout=20000&since="+esc(since), bob2.Token, nil, 200).JSON(t)
	}()
	time.Sleep(300 * time.Millisecond)
	start := time.Now()
	e.do("PUT", sendToDevicePath("m.test", "wake"), alice.Token,
		map[string]any{"messages": map[string]any{bob.ID: map[string]any{"BOB2": map[string]any{"wake": 1}}}}, 200)
	select {
	case s := <-done:
		if evs := toDeviceEvents(s); len(evs) == 0 || time.Since(start) > 10*time.Second {
			t.Fatalf("long-poll = %v after %v", s, time.Since(start))
		}
	case <-time.After(25 * time.Second):
		t.Fatal("long-poll not woken by a to-device message")
	}

	// Unknown devices and remote users are dropped silently; bad input is refused.
	e.do("PUT", sendToDevicePath("m.test", "x1"), alice.Token,
		map[string]any{"messages": map[string]any{bob.ID: map[string]any{"NOPE": map[string]any{}}, "@x:elsewhere.example": map[string]any{"D": map[string]any{}}}}, 200)
	e.doErr("PUT", sendToDevicePath("m.test", "x2"), alice.Token, map[string]any{}, 400, "M_MISSING_PARAM")
	e.doErr("PUT", sendToDevicePath("m.test", "x3"), alice.Token, map[string]any{"messages": map[string]any{"bob": map[string]any{"D": map[string]any{}}}}, 400, "M_INVALID_PARAM")
	e.doErr("PUT", sendToDevicePath("m.test", "x4"), alice.Token, map[string]any{"messages": map[string]any{bob.ID: map[string]any{"D": "text"}}}, 400, "M_BAD_JSON")
	e.doErr("PUT", sendToDevicePath("m.test", "x5"), alice.Token, `{"messages":`, 400, "M_NOT_JSON")
	e.doErr("PUT", sendToDevicePath("m.test", "x6"), "", map[string]any{"messages": map[string]any{}}, 401, "M_MISSING_TOKEN")
}

func TestSendToDeviceManyMessages(t *testing.T) {
	e := newEnv(t)
	alice := e.register("tdm")
	bob := e.register("tdmbob")
	since := e.syncSince(bob, "")["next_batch"].(string)
	const n = 130
	for i := range n {
		e.do("PUT", sendToDevicePath("m.test", fmt.Sprintf("m%d", i)), alice.Token,
			map[string]any{"messages": map[string]any{bob.ID: map[string]any{bob.DeviceID: map[string]any{"i": i}}}}, 200)
	}
	// Delivered in pages, in order, none lost or repeated.
	next := 0
	for range 5 {
		s := e.syncSince(bob, since)
		for _, ev := range toDeviceEvents(s) {
			if path(ev, "content", "i") != float64(next) {
				t.Fatalf("got message %v, want %d", path(ev, "content", "i"), next)
			}
			next++
		}
		since = s["next_batch"].(string)
		if next == n {
			break
		}
	}
	if next != n {
		t.Fatalf("received %d of %d messages", next, n)
	}
}
