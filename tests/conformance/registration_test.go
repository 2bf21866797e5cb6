package conformance

import (
	"context"
	"crypto/hmac"
	"crypto/sha1"
	"encoding/hex"
	"strings"
	"testing"
	"time"

	"github.com/rempart-hs/rempart/internal/config"
	"github.com/rempart-hs/rempart/internal/storage"
	"github.com/rempart-hs/rempart/internal/testserver"
)

const registerPath = "/_matrix/client/v3/register"

// registerDummy runs the two-step dummy registration flow by hand and
// returns the final response.
func (e *env) registerDummy(body map[string]any, wantStatus int) response {
	e.t.Helper()
	first := e.do("POST", registerPath, "", body, 401).JSON(e.t)
	withAuth := map[string]any{}
	for k, v := range body {
		withAuth[k] = v
	}
	withAuth["auth"] = map[string]any{"type": "m.login.dummy", "session": first["session"]}
	return e.do("POST", registerPath, "", withAuth, wantStatus)
}

// Registration: POST /register (user and guest), GET /register/available,
// and their errors.
func TestRegistration(t *testing.T) {
	e := newEnv(t)
	name := testserver.UniqueName("reg")

	// The first request without auth returns the UIA flows.
	ch := e.do("POST", registerPath, "", map[string]any{"username": name, "password": testserver.Password}, 401).JSON(t)
	flows, _ := ch["flows"].([]any)
	if len(flows) == 0 || ch["session"] == "" {
		t.Fatalf("no UIA flows: %v", ch)
	}
	if stages := flows[0].(map[string]any)["stages"].([]any); stages[0] != "m.login.dummy" {
		t.Fatalf("stages = %v", stages)
	}
	// An unknown stage is refused with the flows again.
	bad := e.do("POST", registerPath, "", map[string]any{"username": name, "password": testserver.Password,
		"auth": map[string]any{"type": "m.login.bogus", "session": ch["session"]}}, 401).JSON(t)
	if bad["flows"] == nil || bad["errcode"] == nil {
		t.Fatalf("unknown stage answer: %v", bad)
	}

	got := e.registerDummy(map[string]any{"username": name, "password": testserver.Password, "device_id": "REGDEV",
		"initial_device_display_name": "Reg device"}, 200).JSON(t)
	wantID := "@" + name + ":" + e.srv.Config.ServerName
	if got["user_id"] != wantID || got["device_id"] != "REGDEV" || got["access_token"] == "" {
		t.Fatalf("register = %v", got)
	}
	tok := got["access_token"].(string)
	who := e.do("GET", "/_matrix/client/v3/account/whoami", tok, nil, 200).JSON(t)
	if who["user_id"] != wantID || who["device_id"] != "REGDEV" {
		t.Fatalf("whoami = %v", who)
	}
	dev := e.do("GET", "/_matrix/client/v3/devices/REGDEV", tok, nil, 200).JSON(t)
	if dev["display_name"] != "Reg device" {
		t.Fatalf("device = %v", dev)
	}

	// inhibit_login: an account but no token.
	inh := e.registerDummy(map[string]any{"username": testserver.UniqueName("inh"), "password": testserver.Password, "inhibit_login": true}, 200).JSON(t)
	if _, ok := inh["access_token"]; ok {
		t.Fatalf("inhibit_login still returned a token: %v", inh)
	}
	// No username: the server picks one.
	anon := e.registerDummy(map[string]any{"password": testserver.Password}, 200).JSON(t)
	if !strings.HasPrefix(anon["user_id"].(string), "@") {
		t.Fatalf("generated user = %v", anon)
	}
	// Upper case is folded to lower case.
	upper := testserver.UniqueName("upper")
	up := e.registerDummy(map[string]any{"username": strings.ToUpper(upper), "password": testserver.Password}, 200).JSON(t)
	if up["user_id"] != "@"+upper+":"+e.srv.Config.ServerName {
		t.Fatalf("upper-case registration = %v", up)
	}

	// Errors.
	e.doErr("POST", registerPath, "", map[string]any{"username": name, "password": testserver.Password}, 400, "M_USER_IN_USE")
	e.doErr("POST", registerPath, "", map[string]any{"username": "bad name!", "password": testserver.Password}, 400, "M_INVALID_USERNAME")
	e.doErr("POST", registerPath, "", map[string]any{"username": "é", "password": testserver.Password}, 400, "M_INVALID_USERNAME")
	e.doErr("POST", registerPath, "", map[string]any{"username": strings.Repeat("a", 250), "password": testserver.Password}, 400, "M_INVALID_USERNAME")
	e.doErr("POST", registerPath, "", map[string]any{"username": testserver.UniqueName("nopw")}, 400, "M_MISSING_PARAM")
	e.doErr("POST", registerPath, "", map[string]any{"username": testserver.UniqueName("weak"), "password": "short"}, 400, "M_WEAK_PASSWORD")
	e.doErr("POST", registerPath, "", "{not json", 400, "M_NOT_JSON")
	e.doErr("POST", registerPath, "", map[string]any{"username": 42, "password": testserver.Password}, 400, "M_BAD_JSON")
	e.doErr("POST", registerPath, "", `{"username": "a", "username": "b", "password": "x"}`, 400, "M_BAD_JSON")
	e.doErr("POST", registerPath+"?kind=robot", "", map[string]any{"username": testserver.UniqueName("k")}, 400, "M_INVALID_PARAM")
	// Guest registration is off by default.
	e.doErr("POST", registerPath+"?kind=guest", "", map[string]any{}, 403, "M_FORBIDDEN")

	// GET /register/available.
	avail := "/_matrix/client/v3/register/available?username="
	if r := e.do("GET", avail+testserver.UniqueName("free"), "", nil, 200).JSON(t); r["available"] != true {
		t.Fatalf("available = %v", r)
	}
	e.doErr("GET", avail+name, "", nil, 400, "M_USER_IN_USE")
	e.doErr("GET", avail+strings.ToUpper(name), "", nil, 400, "M_USER_IN_USE")
	e.doErr("GET", avail+"bad%20name", "", nil, 400, "M_INVALID_USERNAME")
	e.doErr("GET", "/_matrix/client/v3/register/available", "", nil, 400, "M_MISSING_PARAM")
	e.doErr("GET", "/_matrix/client/v3/register/available", "", nil, 400, "M_MISSING_PARAM")
	e.doErr("PUT", "/_matrix/client/v3/register/available", "", nil, 405, "M_UNRECOGNIZED")
}

// Registration when closed: POST /register and /register/available refuse.
func TestRegistrationClosed(t *testing.T) {
	e := newEnv(t, func(c *config.Config) { c.Registration.Mode = "closed" })
	e.doErr("POST", registerPath, "", map[string]any{"username": "x", "password": testserver.Password}, 403, "M_FORBIDDEN")
	e.doErr("GET", "/_matrix/client/v3/register/available?username=x", "", nil, 403, "M_FORBIDDEN")
	e.doErr("GET", "/_matrix/client/v1/register/m.login.registration_token/validity?token=abc", "", nil, 403, "M_FORBIDDEN")
}

// Guest accounts: POST /register?kind=guest with guest access enabled;
// guests may not create rooms (M_GUEST_ACCESS_FORBIDDEN) or join rooms
// without guest_access can_join.
func TestRegistrationGuest(t *testing.T) {
	e := newEnv(t, func(c *config.Config) { c.Registration.GuestAccess = true })
	g := e.do("POST", registerPath+"?kind=guest", "", map[string]any{"username": "ignored", "password": "ignored"}, 200).JSON(t)
	tok, _ := g["access_token"].(string)
	if tok == "" || g["device_id"] == nil {
		t.Fatalf("guest registration = %v", g)
	}
	if strings.HasPrefix(g["user_id"].(string), "@ignored:") {
		t.Fatalf("guest got the requested username: %v", g)
	}
	who := e.do("GET", "/_matrix/client/v3/account/whoami", tok, nil, 200).JSON(t)
	if who["is_guest"] != true {
		t.Fatalf("whoami for a guest = %v", who)
	}
	e.doErr("POST", "/_matrix/client/v3/createRoom", tok, map[string]any{}, 403, "M_GUEST_ACCESS_FORBIDDEN")

	alice := e.register("galice")
	public := e.createRoom(alice, map[string]any{"preset": "public_chat"}) // guest_access forbidden
	e.doErr("POST", "/_matrix/client/v3/rooms/"+esc(public)+"/join", tok, map[string]any{}, 403, "M_GUEST_ACCESS_FORBIDDEN")
	open := e.createRoom(alice, map[string]any{"preset": "public_chat", "initial_state": []any{
		map[string]any{"type": "m.room.guest_access", "state_key": "", "content": map[string]any{"guest_access": "can_join"}},
	}})
	e.do("POST", "/_matrix/client/v3/rooms/"+esc(open)+"/join", tok, map[string]any{}, 200)
}

// Registration tokens: registration in token mode and
// GET /_matrix/client/v1/register/m.login.registration_token/validity.
func TestRegistrationTokens(t *testing.T) {
	e := newEnv(t, func(c *config.Config) { c.Registration.Mode = "token" })
	ctx := context.Background()
	one := 1
	db := e.srv.Srv.DB
	mk := func(tok string, uses *int, expiry int64) {
		t.Helper()
		if err := db.WithTx(ctx, func(tx *storage.Tx) error {
			return tx.CreateRegistrationToken(ctx, storage.RegistrationToken{Token: tok, UsesAllowed: uses, ExpiryTS: expiry})
		}); err != nil {
			t.Fatal(err)
		}
	}
	mk("once", &one, 0)
	mk("expired", nil, time.Now().Add(-time.Hour).UnixMilli())
	mk("forever", nil, 0)

	validity := "/_matrix/client/v1/register/m.login.registration_token/validity?token="
	check := func(tok string, want bool) {
		t.Helper()
		if r := e.do("GET", validity+tok, "", nil, 200).JSON(t); r["valid"] != want {
			t.Fatalf("validity of %q = %v, want %v", tok, r["valid"], want)
		}
	}
	check("once", true)
	check("expired", false)
	check("unknown", false)
	check("forever", true)
	e.doErr("GET", "/_matrix/client/v1/register/m.login.registration_token/validity", "", nil, 400, "M_MISSING_PARAM")

	name := testserver.UniqueName("tok")
	ch := e.do("POST", registerPath, "", map[string]any{"username": name, "password": testserver.Password}, 401).JSON(t)
	if stages := ch["flows"].([]any)[0].(map[string]any)["stages"].([]any); stages[0] != "m.login.registration_token" {
		t.Fatalf("stages = %v", stages)
	}
	// The dummy stage is not enough in token mode.
	e.do("POST", registerPath, "", map[string]any{"username": name, "password": testserver.Password,
		"auth": map[string]any{"type": "m.login.dummy", "session": ch["session"]}}, 401)
	// A wrong token is a failed stage: 401 with the flows and an errcode.
	for _, bad := range []string{"unknown", "expired"} {
		r := e.do("POST", registerPath, "", map[string]any{"username": name, "password": testserver.Password,
			"auth": map[string]any{"type": "m.login.registration_token", "token": bad, "session": ch["session"]}}, 401).JSON(t)
		if r["flows"] == nil || r["errcode"] == nil {
			t.Fatalf("bad token answer: %v", r)
		}
	}
	e.do("POST", registerPath, "", map[string]any{"username": name, "password": testserver.Password,
		"auth": map[string]any{"type": "m.login.registration_token", "token": "once", "session": ch["session"]}}, 200)
	check("once", false) // used up
	e.do("POST", registerPath, "", map[string]any{"username": testserver.UniqueName("tok"), "password": testserver.Password,
		"auth": map[string]any{"type": "m.login.registration_token", "token": "once"}}, 401)
}

// sharedSecretMAC computes the HMAC-SHA1 of the Synapse shared-secret
// registration API.
func sharedSecretMAC(secret, nonce, user, password string, admin bool) string {
	m := hmac.New(sha1.New, []byte(secret))
	m.Write([]byte(nonce + "\x00" + user + "\x00" + password + "\x00"))
	if admin {
		m.Write([]byte("admin"))
	} else {
		m.Write([]byte("notadmin"))
	}
	return hex.EncodeToString(m.Sum(nil))
}

// Shared-secret registration: GET/POST /_synapse/admin/v1/register.
func TestRegistrationSharedSecret(t *testing.T) {
	e := newEnv(t, func(c *config.Config) { c.Registration.Mode = "closed" })
	secret := e.srv.Config.Registration.SharedSecret
	const path = "/_synapse/admin/v1/register"
	nonce := func() string {
		t.Helper()
		r := e.raw("GET", path, "", nil)
		var m map[string]any
		if r.Status != 200 {
			t.Fatalf("nonce: %d %s", r.Status, r.Body)
		}
		r.Decode(t, &m)
		return m["nonce"].(string)
	}
	post := func(body map[string]any, status int, code string) map[string]any {
		t.Helper()
		r := e.raw("POST", path, "", body)
		var m map[string]any
		r.Decode(t, &m)
		if r.Status != status || (code != "" && m["errcode"] != code) {
			t.Fatalf("POST %s: %d %s, want %d %s", path, r.Status, r.Body, status, code)
		}
		return m
	}
	name := testserver.UniqueName("ssadmin")
	n := nonce()
	ok := post(map[string]any{"nonce": n, "username": name, "password": testserver.Password, "admin": true,
		"mac": sharedSecretMAC(secret, n, name, testserver.Password, true)}, 200, "")
	tok := ok["access_token"].(string)
	who := e.do("GET", "/_matrix/client/v3/account/whoami", tok, nil, 200).JSON(t)
	if who["user_id"] != "@"+name+":"+e.srv.Config.ServerName {
		t.Fatalf("whoami = %v", who)
	}
	// A nonce is single-use.
	post(map[string]any{"nonce": n, "username": testserver.UniqueName("ss"), "password": testserver.Password,
		"mac": sharedSecretMAC(secret, n, name, testserver.Password, false)}, 400, "M_UNKNOWN")
	// A wrong MAC (here: admin flag flipped) is refused and burns the nonce.
	n2 := nonce()
	other := testserver.UniqueName("ss")
	post(map[string]any{"nonce": n2, "username": other, "password": testserver.Password, "admin": false,
		"mac": sharedSecretMAC(secret, n2, other, testserver.Password, true)}, 403, "M_FORBIDDEN")
	post(map[string]any{"nonce": n2, "username": other, "password": testserver.Password, "admin": false,
		"mac": sharedSecretMAC(secret, n2, other, testserver.Password, false)}, 400, "M_UNKNOWN")
	n3 := nonce()
	post(map[string]any{"nonce": n3, "username": other, "password": testserver.Password,
		"mac": sharedSecretMAC("wrong secret", n3, other, testserver.Password, false)}, 403, "M_FORBIDDEN")
	// Taken user names and bad bodies.
	n4 := nonce()
	post(map[string]any{"nonce": n4, "username": name, "password": testserver.Password,
		"mac": sharedSecretMAC(secret, n4, name, testserver.Password, false)}, 400, "M_USER_IN_USE")
	n5 := nonce()
	post(map[string]any{"nonce": n5, "username": "bad name", "password": testserver.Password,
		"mac": sharedSecretMAC(secret, n5, "bad name", testserver.Password, false)}, 400, "M_INVALID_USERNAME")
	post(map[string]any{"nonce": nonce(), "username": other}, 400, "M_MISSING_PARAM")

	// Disabled without a secret.
	e2 := newEnv(t, func(c *config.Config) { c.Registration.SharedSecret = "" })
	if r := e2.raw("GET", path, "", nil); r.Status != 404 {
		t.Fatalf("nonce without a secret: %d %s", r.Status, r.Body)
	}
}
