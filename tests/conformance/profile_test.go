package conformance

import (
	"context"
	"strings"
	"testing"

	"github.com/rempart-hs/rempart/internal/testserver"
)

// Profiles: GET /profile/{userId}, GET/PUT/DELETE /profile/{userId}/{keyName}.
func TestProfile(t *testing.T) {
	e := newEnv(t)
	alice := e.register("pralice")
	bob := e.register("prbob")
	p := func(u user) string { return "/_matrix/client/v3/profile/" + esc(u.ID) }

	e.do("GET", p(alice), alice.Token, nil, 200)
	e.do("PUT", p(alice)+"/displayname", alice.Token, map[string]any{"displayname": "Alice Liddell"}, 200)
	e.do("PUT", p(alice)+"/avatar_url", alice.Token, map[string]any{"avatar_url": "mxc://example.org/SEsfnsuifSDFSSEF"}, 200)
	if got := e.do("GET", p(alice)+"/displayname", alice.Token, nil, 200).JSON(t); got["displayname"] != "Alice Liddell" || len(got) != 1 {
		t.Fatalf("displayname = %v", got)
	}
	if got := e.do("GET", p(alice)+"/avatar_url", alice.Token, nil, 200).JSON(t); got["avatar_url"] != "mxc://example.org/SEsfnsuifSDFSSEF" {
		t.Fatalf("avatar_url = %v", got)
	}
	// Extensible profile fields (v1.16).
	e.do("PUT", p(alice)+"/m.tz", alice.Token, map[string]any{"m.tz": "Europe/Paris"}, 200)
	e.do("PUT", p(alice)+"/org.example.pronouns", alice.Token, map[string]any{"org.example.pronouns": map[string]any{"en": []any{"she", "her"}}}, 200)
	full := e.do("GET", p(alice), alice.Token, nil, 200).JSON(t)
	if full["displayname"] != "Alice Liddell" || full["avatar_url"] != "mxc://example.org/SEsfnsuifSDFSSEF" || full["m.tz"] != "Europe/Paris" || full["org.example.pronouns"] == nil {
		t.Fatalf("profile = %v", full)
	}
	if got := e.do("GET", p(alice)+"/org.example.pronouns", alice.Token, nil, 200).JSON(t); got["org.example.pronouns"].(map[string]any)["en"] == nil {
		t.Fatalf("custom field = %v", got)
	}
	e.do("DELETE", p(alice)+"/org.example.pronouns", alice.Token, nil, 200)
	e.do("DELETE", p(alice)+"/org.example.pronouns", alice.Token, nil, 200) // absent: still 200
	e.doErr("GET", p(alice)+"/org.example.pronouns", alice.Token, nil, 404, "M_NOT_FOUND")
	e.doErr("GET", p(alice)+"/org.example.neverset", alice.Token, nil, 404, "M_NOT_FOUND")

	// Invalid values.
	e.doErr("PUT", p(alice)+"/displayname", alice.Token, map[string]any{"displayname": strings.Repeat("é", 257)}, 400, "M_INVALID_PARAM")
	e.do("PUT", p(alice)+"/displayname", alice.Token, map[string]any{"displayname": strings.Repeat("é", 256)}, 200)
	e.doErr("PUT", p(alice)+"/displayname", alice.Token, map[string]any{"displayname": 42}, 400, "M_INVALID_PARAM")
	e.doErr("PUT", p(alice)+"/displayname", alice.Token, map[string]any{"displayname": nil}, 400, "M_INVALID_PARAM")
	e.doErr("PUT", p(alice)+"/avatar_url", alice.Token, map[string]any{"avatar_url": nil}, 400, "M_INVALID_PARAM")
	// Custom fields may hold null, which is stored, not a deletion.
	e.do("PUT", p(alice)+"/org.example.nothing", alice.Token, map[string]any{"org.example.nothing": nil}, 200)
	if got := e.do("GET", p(alice)+"/org.example.nothing", alice.Token, nil, 200).JSON(t); len(got) != 1 || got["org.example.nothing"] != nil {
		t.Fatalf("null field = %v", got)
	}
	e.do("DELETE", p(alice)+"/org.example.nothing", alice.Token, nil, 200)
	e.doErr("PUT", p(alice)+"/displayname", alice.Token, map[string]any{"avatar_url": "mxc://a/b"}, 400, "M_MISSING_PARAM")
	e.doErr("PUT", p(alice)+"/displayname", alice.Token, "{oops", 400, "M_NOT_JSON")
	e.doErr("PUT", p(alice)+"/displayname", alice.Token, "[]", 400, "M_BAD_JSON")
	for _, bad := range []string{"https://example.org/a.png", "mxc://", "mxc://example.org/", "mxc://example.org/a/b", "mxc://exa mple.org/x"} {
		e.doErr("PUT", p(alice)+"/avatar_url", alice.Token, map[string]any{"avatar_url": bad}, 400, "M_INVALID_PARAM")
	}
	e.doErr("PUT", p(alice)+"/m.tz", alice.Token, map[string]any{"m.tz": 1}, 400, "M_INVALID_PARAM")
	e.doErr("PUT", p(alice)+"/NotAKey", alice.Token, map[string]any{"NotAKey": 1}, 400, "M_INVALID_PARAM")
	e.doErr("PUT", p(alice)+"/nodots", alice.Token, map[string]any{"nodots": 1}, 400, "M_INVALID_PARAM")
	long := "org.example." + strings.Repeat("k", 250)
	e.doErr("PUT", p(alice)+"/"+long, alice.Token, map[string]any{long: 1}, 400, "M_KEY_TOO_LARGE")
	e.doErr("DELETE", p(alice)+"/NotAKey", alice.Token, nil, 400, "M_INVALID_PARAM")
	// The whole profile must stay under 64 KiB.
	e.do("PUT", p(alice)+"/org.example.big", alice.Token, map[string]any{"org.example.big": strings.Repeat("x", 40000)}, 200)
	e.doErr("PUT", p(alice)+"/org.example.big2", alice.Token, map[string]any{"org.example.big2": strings.Repeat("x", 30000)}, 400, "M_PROFILE_TOO_LARGE")
	e.do("DELETE", p(alice)+"/org.example.big", alice.Token, nil, 200)
	e.do("PUT", p(alice)+"/org.example.big2", alice.Token, map[string]any{"org.example.big2": strings.Repeat("x", 30000)}, 200)
	e.do("DELETE", p(alice)+"/org.example.big2", alice.Token, nil, 200)

	// Only one's own profile may change.
	e.doErr("PUT", p(alice)+"/displayname", bob.Token, map[string]any{"displayname": "Mallory"}, 403, "M_FORBIDDEN")
	e.doErr("DELETE", p(alice)+"/displayname", bob.Token, nil, 403, "M_FORBIDDEN")
	e.doErr("PUT", p(alice)+"/displayname", "", map[string]any{"displayname": "Mallory"}, 401, "M_MISSING_TOKEN")

	// Look-ups are limited to people one shares a room with (threat model
	// T2/T9); an unknown user is answered the same way as a stranger.
	e.doErr("GET", p(alice), bob.Token, nil, 403, "M_FORBIDDEN")
	e.doErr("GET", p(alice)+"/displayname", bob.Token, nil, 403, "M_FORBIDDEN")
	unknown := "/_matrix/client/v3/profile/" + esc("@nobody-here:"+e.srv.Config.ServerName)
	e.doErr("GET", unknown, bob.Token, nil, 403, "M_FORBIDDEN")
	e.doErr("GET", unknown+"/displayname", bob.Token, nil, 403, "M_FORBIDDEN")
	e.doErr("GET", p(alice), "", nil, 401, "M_MISSING_TOKEN")
	e.doErr("GET", "/_matrix/client/v3/profile/not-a-user-id", bob.Token, nil, 400, "M_INVALID_PARAM")

	room := e.createRoom(alice, map[string]any{"preset": "public_chat"})
	e.join(bob, room)
	if got := e.do("GET", p(alice), bob.Token, nil, 200).JSON(t); got["displayname"] != strings.Repeat("é", 256) || got["m.tz"] != "Europe/Paris" {
		t.Fatalf("profile seen by room-mate = %v", got)
	}
	e.do("GET", p(bob), alice.Token, nil, 200)

	// Deleting the display name removes it.
	e.do("DELETE", p(alice)+"/displayname", alice.Token, nil, 200)
	e.doErr("GET", p(alice)+"/displayname", bob.Token, nil, 404, "M_NOT_FOUND")
	if got := e.do("GET", p(alice), bob.Token, nil, 200).JSON(t); got["displayname"] != nil {
		t.Fatalf("profile after delete = %v", got)
	}
	// An empty avatar_url clears it, like DELETE.
	e.do("PUT", p(alice)+"/avatar_url", alice.Token, map[string]any{"avatar_url": ""}, 200)
	e.doErr("GET", p(alice)+"/avatar_url", alice.Token, nil, 404, "M_NOT_FOUND")

	// After leaving the last shared room, the profile is hidden again.
	e.do("POST", "/_matrix/client/v3/rooms/"+esc(room)+"/leave", bob.Token, map[string]any{}, 200)
	e.doErr("GET", p(alice), bob.Token, nil, 403, "M_FORBIDDEN")
}

// A change of display name or avatar updates the user's m.room.member
// event in every room they are joined to, and only there.
func TestProfilePropagatesToMemberEvents(t *testing.T) {
	e := newEnv(t)
	alice := e.register("propalice")
	bob := e.register("propbob")
	r1 := e.createRoom(alice, map[string]any{"preset": "public_chat"})
	r2 := e.createRoom(alice, map[string]any{"preset": "public_chat"})
	r3 := e.createRoom(alice, map[string]any{"preset": "public_chat"})
	e.do("POST", "/_matrix/client/v3/rooms/"+esc(r3)+"/leave", alice.Token, map[string]any{}, 200)
	e.join(bob, r2)

	e.do("PUT", "/_matrix/client/v3/profile/"+esc(alice.ID)+"/displayname", alice.Token, map[string]any{"displayname": "Queen Alice"}, 200)
	e.do("PUT", "/_matrix/client/v3/profile/"+esc(alice.ID)+"/avatar_url", alice.Token, map[string]any{"avatar_url": "mxc://example.org/crown"}, 200)
	member := func(u user, room string) map[string]any {
		t.Helper()
		return e.do("GET", "/_matrix/client/v3/rooms/"+esc(room)+"/state/m.room.member/"+esc(alice.ID), u.Token, nil, 200).JSON(t)
	}
	for _, room := range []string{r1, r2} {
		c := member(alice, room)
		if c["membership"] != "join" || c["displayname"] != "Queen Alice" || c["avatar_url"] != "mxc://example.org/crown" {
			t.Fatalf("member event in %s = %v", room, c)
		}
	}
	if c := member(bob, r2); c["displayname"] != "Queen Alice" {
		t.Fatalf("bob sees %v", c)
	}
	// The left room is not touched (no rejoin).
	js := e.do("GET", "/_matrix/client/v3/joined_rooms", alice.Token, nil, 200).JSON(t)["joined_rooms"].([]any)
	if len(js) != 2 {
		t.Fatalf("alice joined rooms after profile change: %v", js)
	}

	// Setting the same name again sends no new member event.
	before := e.do("GET", "/_matrix/client/v3/rooms/"+esc(r1)+"/messages?dir=b&limit=50", alice.Token, nil, 200).JSON(t)["chunk"].([]any)
	e.do("PUT", "/_matrix/client/v3/profile/"+esc(alice.ID)+"/displayname", alice.Token, map[string]any{"displayname": "Queen Alice"}, 200)
	after := e.do("GET", "/_matrix/client/v3/rooms/"+esc(r1)+"/messages?dir=b&limit=50", alice.Token, nil, 200).JSON(t)["chunk"].([]any)
	if len(after) != len(before) {
		t.Fatalf("unchanged display name sent %d events", len(after)-len(before))
	}
}

// Deactivating an account erases its extra profile fields too.
func TestProfileFieldsErasedOnDeactivation(t *testing.T) {
	e := newEnv(t)
	dave := e.register("prdave")
	e.do("PUT", "/_matrix/client/v3/profile/"+esc(dave.ID)+"/org.example.secret", dave.Token, map[string]any{"org.example.secret": "x"}, 200)
	e.do("POST", "/_matrix/client/v3/account/deactivate", dave.Token, map[string]any{"auth": map[string]any{
		"type": "m.login.password", "identifier": map[string]any{"type": "m.id.user", "user": dave.ID}, "password": testserver.Password,
	}}, 200)
	fields, err := e.srv.Srv.DB.ProfileFields(context.Background(), dave.ID)
	if err != nil || len(fields) != 0 {
		t.Fatalf("profile fields after deactivation: %v (%v)", fields, err)
	}
}
