package conformance

import (
	"strings"
	"testing"

	"maunium.net/go/mautrix/id"
)

// Pusher registration: set, list, replace, delete with kind null, append,
// validation errors.
func TestPushers(t *testing.T) {
	e := newEnv(t)
	u := e.register("pshr")
	other := e.register("pshr2")
	body := func(key string) map[string]any {
		return map[string]any{"app_id": "org.example.app", "pushkey": key, "kind": "http", "app_display_name": "App",
			"device_display_name": "Phone", "lang": "fr", "data": map[string]any{"url": "https://push.example.org/_matrix/push/v1/notify", "format": "event_id_only"}}
	}
	list := func(tok string) []any {
		t.Helper()
		return e.do("GET", "/_matrix/client/v3/pushers", tok, nil, 200).JSON(t)["pushers"].([]any)
	}
	if n := len(list(u.Token)); n != 0 {
		t.Fatalf("new user has %d pushers", n)
	}
	e.do("POST", "/_matrix/client/v3/pushers/set", u.Token, body("k1"), 200)
	e.do("POST", "/_matrix/client/v3/pushers/set", u.Token, body("k2"), 200)
	if n := len(list(u.Token)); n != 2 {
		t.Fatalf("%d pushers, want 2", n)
	}
	// The same app and key for another user, without append, takes it over.
	e.do("POST", "/_matrix/client/v3/pushers/set", other.Token, body("k1"), 200)
	if n := len(list(u.Token)); n != 1 {
		t.Fatalf("after takeover: %d pushers, want 1", n)
	}
	b := body("k2")
	b["append"] = true
	e.do("POST", "/_matrix/client/v3/pushers/set", other.Token, b, 200)
	if n := len(list(u.Token)); n != 1 {
		t.Fatalf("append removed the other user's pusher: %d", n)
	}
	del := body("k2")
	del["kind"] = nil
	e.do("POST", "/_matrix/client/v3/pushers/set", u.Token, del, 200)
	if n := len(list(u.Token)); n != 0 {
		t.Fatalf("kind null did not delete: %d", n)
	}

	bad := body("k3")
	delete(bad, "app_id")
	e.doErr("POST", "/_matrix/client/v3/pushers/set", u.Token, bad, 400, "M_MISSING_PARAM")
	bad = body("k3")
	bad["data"] = map[string]any{}
	e.doErr("POST", "/_matrix/client/v3/pushers/set", u.Token, bad, 400, "M_MISSING_PARAM")
	bad = body("k3")
	bad["data"] = map[string]any{"url": "https://push.example.org/elsewhere"}
	e.doErr("POST", "/_matrix/client/v3/pushers/set", u.Token, bad, 400, "M_INVALID_PARAM")
	bad = body("k3")
	bad["kind"] = "carrier-pigeon"
	e.doErr("POST", "/_matrix/client/v3/pushers/set", u.Token, bad, 400, "M_INVALID_PARAM")
	for _, badURL := range []string{"https://push.example.org/_matrix/push/v1/notify/extra", "ftp://push.example.org/_matrix/push/v1/notify",
		"/_matrix/push/v1/notify", "https://user:pw@push.example.org/_matrix/push/v1/notify"} {
		bad = body("k3")
		bad["data"] = map[string]any{"url": badURL}
		e.doErr("POST", "/_matrix/client/v3/pushers/set", u.Token, bad, 400, "M_INVALID_PARAM")
	}
	bad = body("k3")
	bad["data"] = map[string]any{"url": 42}
	e.doErr("POST", "/_matrix/client/v3/pushers/set", u.Token, bad, 400, "M_INVALID_PARAM")
	bad = body("k3")
	bad["data"] = map[string]any{"url": "https://push.example.org/_matrix/push/v1/notify", "format": "full"}
	e.doErr("POST", "/_matrix/client/v3/pushers/set", u.Token, bad, 400, "M_INVALID_PARAM")
	bad = body("k3")
	delete(bad, "kind")
	e.doErr("POST", "/_matrix/client/v3/pushers/set", u.Token, bad, 400, "M_MISSING_PARAM")
	bad = body("k3")
	delete(bad, "lang")
	e.doErr("POST", "/_matrix/client/v3/pushers/set", u.Token, bad, 400, "M_MISSING_PARAM")
	bad = body("k3")
	bad["data"] = nil
	e.doErr("POST", "/_matrix/client/v3/pushers/set", u.Token, bad, 400, "M_MISSING_PARAM")
	bad = body("k3")
	bad["app_id"] = strings.Repeat("a", 65)
	e.doErr("POST", "/_matrix/client/v3/pushers/set", u.Token, bad, 400, "M_INVALID_PARAM")
	bad = body("k3")
	bad["kind"], bad["data"] = "email", map[string]any{}
	e.doErr("POST", "/_matrix/client/v3/pushers/set", u.Token, bad, 400, "M_INVALID_PARAM") // app_id must be m.email
	e.doErr("POST", "/_matrix/client/v3/pushers/set", u.Token, "[]", 400, "M_BAD_JSON")

	// An email pusher; a plain-http gateway URL; profile_tag round-trips.
	mail := map[string]any{"app_id": "m.email", "pushkey": "pshr@example.org", "kind": "email", "app_display_name": "Email",
		"device_display_name": "Mail", "lang": "en", "data": map[string]any{}}
	e.do("POST", "/_matrix/client/v3/pushers/set", u.Token, mail, 200)
	plain := body("k4")
	plain["data"] = map[string]any{"url": "http://gateway.internal:5000/_matrix/push/v1/notify"}
	plain["profile_tag"] = "tag1"
	e.do("POST", "/_matrix/client/v3/pushers/set", u.Token, plain, 200)
	ps := list(u.Token)
	if len(ps) != 2 {
		t.Fatalf("pushers = %v", ps)
	}
	tagged := false
	for _, p := range ps {
		if p.(map[string]any)["profile_tag"] == "tag1" {
			tagged = true
		}
	}
	if !tagged {
		t.Fatalf("profile_tag lost: %v", ps)
	}

	// Pushers go with the device that registered them (here: logout).
	e.do("POST", "/_matrix/client/v3/logout", u.Token, map[string]any{}, 200)
	again := e.srv.Login(id.UserID(u.ID))
	if n := len(list(again.AccessToken)); n != 0 {
		t.Fatalf("%d pushers survived their device", n)
	}
	e.doErr("GET", "/_matrix/client/v3/pushers", "", nil, 401, "M_MISSING_TOKEN")
}
