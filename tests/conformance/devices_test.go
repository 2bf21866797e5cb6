package conformance

import (
	"strings"
	"testing"
)

// Devices: GET /devices, GET/PUT/DELETE /devices/{deviceId} and
// POST /delete_devices (the deletions behind UIA).
func TestDevices(t *testing.T) {
	e := newEnv(t)
	alice := e.register("dev")
	bob := e.register("devbob")
	second := e.passwordLogin(alice.ID, map[string]any{"device_id": "SECOND", "initial_device_display_name": "phone"}, 200)
	e.passwordLogin(alice.ID, map[string]any{"device_id": "THIRD"}, 200)
	fourth := e.passwordLogin(alice.ID, map[string]any{"device_id": "FOURTH"}, 200)

	list := e.do("GET", "/_matrix/client/v3/devices", alice.Token, nil, 200).JSON(t)["devices"].([]any)
	ids := map[string]map[string]any{}
	for _, d := range list {
		m := d.(map[string]any)
		ids[m["device_id"].(string)] = m
	}
	if len(ids) != 4 || ids["SECOND"]["display_name"] != "phone" || ids[alice.DeviceID] == nil {
		t.Fatalf("devices = %v", list)
	}
	// last_seen_* is recorded for a device that made requests.
	if ids[alice.DeviceID]["last_seen_ts"] == nil {
		t.Fatalf("no last_seen_ts on the current device: %v", ids[alice.DeviceID])
	}

	dev := func(id string) string { return "/_matrix/client/v3/devices/" + esc(id) }
	if d := e.do("GET", dev("SECOND"), alice.Token, nil, 200).JSON(t); d["device_id"] != "SECOND" {
		t.Fatalf("device = %v", d)
	}
	e.doErr("GET", dev("NOPE"), alice.Token, nil, 404, "M_NOT_FOUND")
	e.doErr("GET", dev("SECOND"), bob.Token, nil, 404, "M_NOT_FOUND") // not bob's
	e.doErr("GET", dev("SECOND"), "", nil, 401, "M_MISSING_TOKEN")

	// Rename.
	e.do("PUT", dev("SECOND"), alice.Token, map[string]any{"display_name": "old phone"}, 200)
	if d := e.do("GET", dev("SECOND"), alice.Token, nil, 200).JSON(t); d["display_name"] != "old phone" {
		t.Fatalf("renamed device = %v", d)
	}
	e.do("PUT", dev("SECOND"), alice.Token, map[string]any{}, 200)
	if d := e.do("GET", dev("SECOND"), alice.Token, nil, 200).JSON(t); d["display_name"] != "old phone" {
		t.Fatalf("empty update changed the device: %v", d)
	}
	e.doErr("PUT", dev("NOPE"), alice.Token, map[string]any{"display_name": "x"}, 404, "M_NOT_FOUND")
	e.doErr("PUT", dev("SECOND"), bob.Token, map[string]any{"display_name": "mine"}, 404, "M_NOT_FOUND")
	e.doErr("PUT", dev("SECOND"), alice.Token, map[string]any{"display_name": 7}, 400, "M_BAD_JSON")
	e.doErr("PUT", dev("SECOND"), alice.Token, "{not json", 400, "M_NOT_JSON")
	e.doErr("PUT", dev("SECOND"), alice.Token, map[string]any{"display_name": strings.Repeat("x", 300)}, 400, "M_INVALID_PARAM")

	// Delete one, behind UIA.
	e.doErr("DELETE", dev("NOPE"), alice.Token, map[string]any{}, 404, "M_NOT_FOUND")
	sid := e.uiaSession("DELETE", dev("SECOND"), alice, map[string]any{})
	r := e.do("DELETE", dev("SECOND"), alice.Token, map[string]any{"auth": passwordAuth(alice, sid, "wrong")}, 401).JSON(t)
	if r["errcode"] != "M_FORBIDDEN" {
		t.Fatalf("wrong password = %v", r)
	}
	e.do("DELETE", dev("SECOND"), alice.Token, map[string]any{"auth": passwordAuth(alice, sid, "correct horse battery staple")}, 200)
	e.doErr("GET", dev("SECOND"), alice.Token, nil, 404, "M_NOT_FOUND")
	e.doErr("GET", "/_matrix/client/v3/account/whoami", second["access_token"].(string), nil, 401, "M_UNKNOWN_TOKEN")
	// Bob can not delete alice's device even with his own password.
	bsid := e.uiaSession("DELETE", dev("THIRD"), alice, map[string]any{})
	r = e.do("DELETE", dev("THIRD"), alice.Token, map[string]any{"auth": passwordAuth(bob, bsid, "correct horse battery staple")}, 401).JSON(t)
	if r["errcode"] != "M_FORBIDDEN" {
		t.Fatalf("auth as bob = %v", r)
	}

	// Delete several.
	const many = "/_matrix/client/v3/delete_devices"
	e.doErr("POST", many, alice.Token, map[string]any{}, 400, "M_MISSING_PARAM")
	e.doErr("POST", many, alice.Token, map[string]any{"devices": "THIRD"}, 400, "M_BAD_JSON")
	sid = e.uiaSession("POST", many, alice, map[string]any{"devices": []string{"THIRD", "FOURTH", "UNKNOWN"}})
	e.do("POST", many, alice.Token, map[string]any{"devices": []string{"THIRD", "FOURTH", "UNKNOWN"},
		"auth": passwordAuth(alice, sid, "correct horse battery staple")}, 200)
	e.doErr("GET", "/_matrix/client/v3/account/whoami", fourth["access_token"].(string), nil, 401, "M_UNKNOWN_TOKEN")
	list = e.do("GET", "/_matrix/client/v3/devices", alice.Token, nil, 200).JSON(t)["devices"].([]any)
	if len(list) != 1 || list[0].(map[string]any)["device_id"] != alice.DeviceID {
		t.Fatalf("devices left = %v", list)
	}
	e.doErr("PATCH", "/_matrix/client/v3/devices", alice.Token, nil, 405, "M_UNRECOGNIZED")
}
