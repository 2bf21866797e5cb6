package conformance

import (
	"strings"
	"testing"

	"github.com/rempart-hs/rempart/internal/testserver"
)

// passwordAuth is a UIA m.login.password stage for u.
func passwordAuth(u user, session any, password string) map[string]any {
	a := map[string]any{"type": "m.login.password", "identifier": map[string]any{"type": "m.id.user", "user": u.ID}, "password": password}
	if session != nil {
		a["session"] = session
	}
	return a
}

// uiaSession starts a UIA flow at path and returns its session ID, checking
// the 401 challenge.
func (e *env) uiaSession(method, path string, u user, body map[string]any) any {
	e.t.Helper()
	ch := e.do(method, path, u.Token, body, 401).JSON(e.t)
	flows, _ := ch["flows"].([]any)
	if len(flows) == 0 || ch["session"] == nil || ch["errcode"] != nil {
		e.t.Fatalf("UIA challenge = %v", ch)
	}
	return ch["session"]
}

// Account: GET /account/whoami, GET /account/3pid.
func TestAccountWhoami(t *testing.T) {
	e := newEnv(t)
	alice := e.register("who")
	r := e.do("GET", "/_matrix/client/v3/account/whoami", alice.Token, nil, 200).JSON(t)
	if r["user_id"] != alice.ID || r["device_id"] != alice.DeviceID {
		t.Fatalf("whoami = %v", r)
	}
	if g, ok := r["is_guest"]; ok && g != false {
		t.Fatalf("is_guest = %v", g)
	}
	e.doErr("GET", "/_matrix/client/v3/account/whoami", "", nil, 401, "M_MISSING_TOKEN")
	bad := e.doErr("GET", "/_matrix/client/v3/account/whoami", "mat_nonsense", nil, 401, "M_UNKNOWN_TOKEN").JSON(t)
	if _, ok := bad["soft_logout"]; !ok {
		t.Fatalf("M_UNKNOWN_TOKEN without soft_logout: %v", bad)
	}
	// The deprecated query parameter works too.
	e.do("GET", "/_matrix/client/v3/account/whoami?access_token="+alice.Token, "", nil, 200)
	e.do("GET", "/_matrix/client/v3/account/3pid", alice.Token, nil, 200)
	e.doErr("POST", "/_matrix/client/v3/account/whoami", alice.Token, nil, 405, "M_UNRECOGNIZED")
}

// Password change: POST /account/password behind UIA, with and without
// logout_devices.
func TestAccountPassword(t *testing.T) {
	e := newEnv(t)
	alice := e.register("pw")
	other := e.passwordLogin(alice.ID, nil, 200)["access_token"].(string)
	const path = "/_matrix/client/v3/account/password"
	const newPW = "a much better passphrase"

	sid := e.uiaSession("POST", path, alice, map[string]any{"new_password": newPW})
	// Wrong password: 401 again with an errcode, same session.
	r := e.do("POST", path, alice.Token, map[string]any{"new_password": newPW, "auth": passwordAuth(alice, sid, "wrong")}, 401).JSON(t)
	if r["errcode"] != "M_FORBIDDEN" || r["session"] != sid {
		t.Fatalf("wrong password answer = %v", r)
	}
	e.doErr("POST", path, alice.Token, map[string]any{"auth": passwordAuth(alice, sid, testserver.Password)}, 400, "M_MISSING_PARAM")
	sid = e.uiaSession("POST", path, alice, map[string]any{"new_password": newPW})
	e.doErr("POST", path, alice.Token, map[string]any{"new_password": "short", "auth": passwordAuth(alice, sid, testserver.Password)}, 400, "M_WEAK_PASSWORD")
	sid = e.uiaSession("POST", path, alice, map[string]any{"new_password": newPW})
	e.doErr("POST", path, alice.Token, map[string]any{"new_password": 12345678}, 400, "M_BAD_JSON")
	e.doErr("POST", path, alice.Token, "{not json", 400, "M_NOT_JSON")
	e.do("POST", path, alice.Token, map[string]any{"new_password": newPW, "auth": passwordAuth(alice, sid, testserver.Password)}, 200)

	// Other devices are logged out by default, this one is not.
	e.do("GET", "/_matrix/client/v3/account/whoami", alice.Token, nil, 200)
	e.doErr("GET", "/_matrix/client/v3/account/whoami", other, nil, 401, "M_UNKNOWN_TOKEN")
	e.doErr("POST", loginPath, "", map[string]any{"type": "m.login.password", "user": alice.ID, "password": testserver.Password}, 403, "M_FORBIDDEN")
	l := e.do("POST", loginPath, "", map[string]any{"type": "m.login.password", "user": alice.ID, "password": newPW}, 200).JSON(t)

	// logout_devices: false keeps them.
	kept := l["access_token"].(string)
	sid = e.uiaSession("POST", path, alice, map[string]any{"new_password": testserver.Password})
	e.do("POST", path, alice.Token, map[string]any{"new_password": testserver.Password, "logout_devices": false,
		"auth": passwordAuth(alice, sid, newPW)}, 200)
	e.do("GET", "/_matrix/client/v3/account/whoami", kept, nil, 200)
	// A session can not be reused once completed, nor used by someone else.
	e.doErr("POST", path, alice.Token, map[string]any{"new_password": newPW, "auth": passwordAuth(alice, sid, testserver.Password)}, 400, "M_UNKNOWN")
	bob := e.register("pwbob")
	bsid := e.uiaSession("POST", path, bob, map[string]any{"new_password": newPW})
	e.doErr("POST", path, alice.Token, map[string]any{"new_password": newPW, "auth": passwordAuth(alice, bsid, testserver.Password)}, 403, "M_FORBIDDEN")
	// Authenticating as another user is refused.
	r = e.do("POST", path, alice.Token, map[string]any{"new_password": newPW, "auth": passwordAuth(bob, nil, testserver.Password)}, 401).JSON(t)
	if r["errcode"] != "M_FORBIDDEN" {
		t.Fatalf("auth as another user = %v", r)
	}
	// The spec's 401 schema here is the UIA one, so check the error by hand.
	e.rawErr("POST", path, "", map[string]any{"new_password": newPW}, 401, "M_MISSING_TOKEN")
}

// Deactivation: POST /account/deactivate behind UIA; the user leaves their
// rooms and can neither log in nor use old tokens.
func TestAccountDeactivate(t *testing.T) {
	e := newEnv(t)
	alice := e.register("deact")
	bob := e.register("deactbob")
	room := e.createRoom(bob, map[string]any{"preset": "public_chat"})
	e.join(alice, room)
	invited := e.createRoom(bob, map[string]any{"invite": []string{alice.ID}})
	const path = "/_matrix/client/v3/account/deactivate"

	sid := e.uiaSession("POST", path, alice, map[string]any{})
	r := e.do("POST", path, alice.Token, map[string]any{"auth": passwordAuth(alice, sid, "wrong")}, 401).JSON(t)
	if r["errcode"] != "M_FORBIDDEN" {
		t.Fatalf("wrong password answer = %v", r)
	}
	e.do("GET", "/_matrix/client/v3/account/whoami", alice.Token, nil, 200)
	e.doErr("POST", path, alice.Token, map[string]any{"erase": "yes"}, 400, "M_BAD_JSON")
	res := e.do("POST", path, alice.Token, map[string]any{"auth": passwordAuth(alice, sid, testserver.Password)}, 200).JSON(t)
	if res["id_server_unbind_result"] != "no-support" {
		t.Fatalf("deactivate = %v", res)
	}
	r = e.doErr("GET", "/_matrix/client/v3/account/whoami", alice.Token, nil, 401, "M_UNKNOWN_TOKEN").JSON(t)
	if r["soft_logout"] != false {
		t.Fatalf("soft_logout = %v", r)
	}
	e.doErr("POST", loginPath, "", map[string]any{"type": "m.login.password", "user": alice.ID, "password": testserver.Password}, 403, "M_FORBIDDEN")
	for _, rm := range []string{room, invited} {
		m := e.do("GET", "/_matrix/client/v3/rooms/"+esc(rm)+"/state/m.room.member/"+esc(alice.ID), bob.Token, nil, 200).JSON(t)
		if m["membership"] != "leave" {
			t.Fatalf("membership in %s after deactivation = %v", rm, m)
		}
	}
	// The user ID stays taken.
	e.doErr("GET", "/_matrix/client/v3/register/available?username="+esc(localpartOf(alice.ID)), "", nil, 400, "M_USER_IN_USE")
}

// localpartOf returns the localpart of a user ID.
func localpartOf(userID string) string {
	lp, _, _ := strings.Cut(strings.TrimPrefix(userID, "@"), ":")
	return lp
}

// rawErr checks an error response the spec's schema for the status can not
// describe (a 401 M_MISSING_TOKEN on an endpoint whose 401 is a UIA
// challenge).
func (e *env) rawErr(method, path, token string, body any, status int, code string) {
	e.t.Helper()
	r := e.raw(method, path, token, body)
	var m map[string]any
	r.Decode(e.t, &m)
	if r.Status != status || m["errcode"] != code {
		e.t.Fatalf("%s %s: %d %s, want %d %s", method, path, r.Status, r.Body, status, code)
	}
}
