package conformance

import (
	"strings"
	"testing"

	"github.com/rempart-hs/rempart/internal/testserver"
)

const loginPath = "/_matrix/client/v3/login"

// passwordLogin logs u in with a new device and returns the response body.
func (e *env) passwordLogin(userID string, extra map[string]any, wantStatus int) map[string]any {
	e.t.Helper()
	body := map[string]any{"type": "m.login.password", "identifier": map[string]any{"type": "m.id.user", "user": userID},
		"password": testserver.Password}
	for k, v := range extra {
		body[k] = v
	}
	return e.do("POST", loginPath, "", body, wantStatus).JSON(e.t)
}

// Login: GET /login flows, POST /login with identifiers, device IDs and
// its errors.
func TestLogin(t *testing.T) {
	e := newEnv(t)
	alice := e.register("login")
	flows := e.do("GET", loginPath, "", nil, 200).JSON(t)["flows"].([]any)
	found := false
	for _, f := range flows {
		if f.(map[string]any)["type"] == "m.login.password" {
			found = true
		}
	}
	if !found {
		t.Fatalf("no m.login.password flow in %v", flows)
	}

	// Full user ID, bare localpart, the deprecated "user" field.
	r := e.passwordLogin(alice.ID, map[string]any{"initial_device_display_name": "laptop"}, 200)
	if r["user_id"] != alice.ID || r["access_token"] == "" || r["device_id"] == "" {
		t.Fatalf("login = %v", r)
	}
	if r["access_token"] == alice.Token {
		t.Fatal("login reused an access token")
	}
	localpart := strings.TrimPrefix(strings.Split(alice.ID, ":")[0], "@")
	e.passwordLogin(localpart, nil, 200)
	e.passwordLogin(strings.ToUpper(localpart), nil, 200)
	e.do("POST", loginPath, "", map[string]any{"type": "m.login.password", "user": alice.ID, "password": testserver.Password}, 200)

	// Logging in with an existing device ID replaces that device's token.
	first := e.passwordLogin(alice.ID, map[string]any{"device_id": "KEEPME"}, 200)
	second := e.passwordLogin(alice.ID, map[string]any{"device_id": "KEEPME"}, 200)
	if first["device_id"] != "KEEPME" || second["device_id"] != "KEEPME" {
		t.Fatalf("device IDs %v, %v", first["device_id"], second["device_id"])
	}
	e.doErr("GET", "/_matrix/client/v3/account/whoami", first["access_token"].(string), nil, 401, "M_UNKNOWN_TOKEN")
	e.do("GET", "/_matrix/client/v3/account/whoami", second["access_token"].(string), nil, 200)

	// Failures never reveal whether the account exists.
	e.doErr("POST", loginPath, "", map[string]any{"type": "m.login.password", "identifier": map[string]any{"type": "m.id.user", "user": alice.ID},
		"password": "wrong password"}, 403, "M_FORBIDDEN")
	e.doErr("POST", loginPath, "", map[string]any{"type": "m.login.password", "identifier": map[string]any{"type": "m.id.user", "user": "@nobody:" + e.srv.Config.ServerName},
		"password": "wrong password"}, 403, "M_FORBIDDEN")
	e.doErr("POST", loginPath, "", map[string]any{"type": "m.login.password", "identifier": map[string]any{"type": "m.id.user", "user": alice.ID}}, 403, "M_FORBIDDEN")
	e.doErr("POST", loginPath, "", map[string]any{"type": "m.login.bogus", "user": alice.ID, "password": testserver.Password}, 400, "M_UNKNOWN")
	e.doErr("POST", loginPath, "", map[string]any{"type": "m.login.password", "identifier": map[string]any{"type": "m.id.thirdparty", "medium": "email", "address": "a@b.c"},
		"password": testserver.Password}, 400, "M_UNKNOWN")
	e.doErr("POST", loginPath, "", map[string]any{"type": "m.login.password", "password": testserver.Password}, 400, "M_MISSING_PARAM")
	e.doErr("POST", loginPath, "", "{not json", 400, "M_NOT_JSON")
	e.doErr("POST", loginPath, "", map[string]any{"type": "m.login.password", "identifier": "alice", "password": testserver.Password}, 400, "M_BAD_JSON")
	e.doErr("POST", loginPath, "", `{"type": "m.login.password", "type": "m.login.token"}`, 400, "M_BAD_JSON")
	e.doErr("POST", loginPath, "", map[string]any{"type": "m.login.password", "user": alice.ID, "password": testserver.Password,
		"device_id": strings.Repeat("D", 300)}, 400, "M_INVALID_PARAM")
	e.doErr("DELETE", loginPath, "", nil, 405, "M_UNRECOGNIZED")
}

// Logout: POST /logout and /logout/all revoke tokens and delete devices.
func TestLogout(t *testing.T) {
	e := newEnv(t)
	alice := e.register("logout")
	other := e.passwordLogin(alice.ID, nil, 200)
	third := e.passwordLogin(alice.ID, nil, 200)

	e.do("POST", "/_matrix/client/v3/logout", alice.Token, map[string]any{}, 200)
	r := e.doErr("GET", "/_matrix/client/v3/account/whoami", alice.Token, nil, 401, "M_UNKNOWN_TOKEN").JSON(t)
	if r["soft_logout"] != false {
		t.Fatalf("soft_logout after logout = %v", r["soft_logout"])
	}
	devs := e.do("GET", "/_matrix/client/v3/devices", other["access_token"].(string), nil, 200).JSON(t)["devices"].([]any)
	for _, d := range devs {
		if d.(map[string]any)["device_id"] == alice.DeviceID {
			t.Fatalf("logged-out device %s still listed", alice.DeviceID)
		}
	}
	if len(devs) != 2 {
		t.Fatalf("devices after logout = %v", devs)
	}
	e.doErr("POST", "/_matrix/client/v3/logout", "", map[string]any{}, 401, "M_MISSING_TOKEN")
	e.doErr("POST", "/_matrix/client/v3/logout", alice.Token, map[string]any{}, 401, "M_UNKNOWN_TOKEN")

	e.do("POST", "/_matrix/client/v3/logout/all", other["access_token"].(string), map[string]any{}, 200)
	e.doErr("GET", "/_matrix/client/v3/account/whoami", other["access_token"].(string), nil, 401, "M_UNKNOWN_TOKEN")
	e.doErr("GET", "/_matrix/client/v3/account/whoami", third["access_token"].(string), nil, 401, "M_UNKNOWN_TOKEN")
	// The password still works afterwards.
	e.passwordLogin(alice.ID, nil, 200)
	e.doErr("GET", "/_matrix/client/v3/logout", alice.Token, nil, 405, "M_UNRECOGNIZED")
}
