package conformance

import (
	"net/url"
	"testing"

	"github.com/rempart-hs/rempart/internal/config"
)

func aliasPath(alias string) string {
	return "/_matrix/client/v3/directory/room/" + url.PathEscape(alias)
}

func TestRoomAliases(t *testing.T) {
	e := newEnv(t)
	alice, bob, eve := e.register("alice"), e.register("bob"), e.register("eve")
	room := e.createRoom(alice, map[string]any{"preset": "public_chat"})
	e.join(bob, room)

	e.do("PUT", aliasPath("#general:localhost"), alice.Token, map[string]any{"room_id": room}, 200)
	var got struct {
		RoomID  string   `json:"room_id"`
		Servers []string `json:"servers"`
	}
	e.do("GET", aliasPath("#general:localhost"), "", nil, 200).Decode(t, &got)
	if got.RoomID != room || len(got.Servers) != 1 || got.Servers[0] != "localhost" {
		t.Fatalf("alias resolves to %+v, want %s on localhost", got, room)
	}
	// Any codepoint but ':' and NUL may appear in the localpart.
	e.do("PUT", aliasPath("#salle de réunion:localhost"), bob.Token, map[string]any{"room_id": room}, 200)

	var list struct {
		Aliases []string `json:"aliases"`
	}
	e.do("GET", "/_matrix/client/v3/rooms/"+esc(room)+"/aliases", bob.Token, nil, 200).Decode(t, &list)
	if len(list.Aliases) != 2 {
		t.Fatalf("room aliases = %v, want 2", list.Aliases)
	}
	e.doErr("GET", "/_matrix/client/v3/rooms/"+esc(room)+"/aliases", eve.Token, nil, 403, "M_FORBIDDEN")

	// Errors on creation.
	e.doErr("PUT", aliasPath("#general:localhost"), bob.Token, map[string]any{"room_id": room}, 409, "M_UNKNOWN")
	e.doErr("PUT", aliasPath("#elsewhere:example.org"), alice.Token, map[string]any{"room_id": room}, 400, "M_INVALID_PARAM")
	for _, bad := range []string{"general:localhost", "#:localhost", "#nodomain", "#bad:not a server", "#" + string(make([]byte, 260)) + ":localhost"} {
		e.doErr("PUT", aliasPath(bad), alice.Token, map[string]any{"room_id": room}, 400, "M_INVALID_PARAM")
	}
	e.doErr("PUT", aliasPath("#x:localhost"), alice.Token, map[string]any{}, 400, "M_BAD_JSON")
	e.doErr("PUT", aliasPath("#x:localhost"), alice.Token, map[string]any{"room_id": "nope"}, 400, "M_INVALID_PARAM")
	e.doErr("PUT", aliasPath("#x:localhost"), alice.Token, map[string]any{"room_id": "!unknown:localhost"}, 404, "M_NOT_FOUND")
	e.doErr("PUT", aliasPath("#x:localhost"), eve.Token, map[string]any{"room_id": room}, 403, "M_FORBIDDEN")
	e.doErr("PUT", aliasPath("#x:localhost"), "", map[string]any{"room_id": room}, 401, "M_MISSING_TOKEN")

	// Errors on lookup.
	e.doErr("GET", aliasPath("#missing:localhost"), "", nil, 404, "M_NOT_FOUND")
	e.doErr("GET", aliasPath("#remote:example.org"), "", nil, 404, "M_NOT_FOUND")
	e.doErr("GET", aliasPath("no-sigil:localhost"), "", nil, 400, "M_INVALID_PARAM")

	// Deletion: not by strangers nor by members without power; by the
	// alias's creator and by room admins.
	e.doErr("DELETE", aliasPath("#general:localhost"), eve.Token, nil, 403, "M_FORBIDDEN")
	e.doErr("DELETE", aliasPath("#general:localhost"), bob.Token, nil, 403, "M_FORBIDDEN")
	e.do("DELETE", aliasPath("#salle de réunion:localhost"), alice.Token, nil, 200)
	e.do("DELETE", aliasPath("#general:localhost"), alice.Token, nil, 200)
	e.doErr("GET", aliasPath("#general:localhost"), "", nil, 404, "M_NOT_FOUND")
	e.doErr("DELETE", aliasPath("#general:localhost"), alice.Token, nil, 404, "M_NOT_FOUND")
	e.do("PUT", aliasPath("#bobs:localhost"), bob.Token, map[string]any{"room_id": room}, 200)
	e.do("DELETE", aliasPath("#bobs:localhost"), bob.Token, nil, 200)

	// World-readable rooms list their aliases to anyone.
	e.do("PUT", "/_matrix/client/v3/rooms/"+esc(room)+"/state/m.room.history_visibility", alice.Token, map[string]any{"history_visibility": "world_readable"}, 200)
	e.do("GET", "/_matrix/client/v3/rooms/"+esc(room)+"/aliases", eve.Token, nil, 200).Decode(t, &list)
	if len(list.Aliases) != 0 {
		t.Fatalf("aliases after deletion = %v, want none", list.Aliases)
	}
}

func TestRoomDirectoryVisibility(t *testing.T) {
	e := newEnv(t)
	alice, bob, eve := e.register("alice"), e.register("bob"), e.register("eve")
	room := e.createRoom(alice, map[string]any{"preset": "public_chat"})
	e.join(bob, room)
	path := "/_matrix/client/v3/directory/list/room/" + esc(room)
	var v struct {
		Visibility string `json:"visibility"`
	}
	e.do("GET", path, "", nil, 200).Decode(t, &v)
	if v.Visibility != "private" {
		t.Fatalf("new room visibility %q, want private", v.Visibility)
	}
	// Only members with the power to change state may publish.
	e.doErr("PUT", path, bob.Token, map[string]any{"visibility": "public"}, 403, "M_FORBIDDEN")
	e.doErr("PUT", path, eve.Token, map[string]any{"visibility": "public"}, 403, "M_FORBIDDEN")
	e.doErr("PUT", path, "", map[string]any{"visibility": "public"}, 401, "M_MISSING_TOKEN")
	e.doErr("PUT", path, alice.Token, map[string]any{"visibility": "everyone"}, 400, "M_INVALID_PARAM")
	e.doErr("PUT", path, alice.Token, map[string]any{"visibility": 1}, 400, "M_BAD_JSON")
	e.do("PUT", path, alice.Token, map[string]any{}, 200) // defaults to public
	e.do("GET", path, "", nil, 200).Decode(t, &v)
	if v.Visibility != "public" {
		t.Fatalf("visibility %q after publishing, want public", v.Visibility)
	}
	e.do("PUT", path, alice.Token, map[string]any{"visibility": "private"}, 200)
	e.do("GET", path, "", nil, 200).Decode(t, &v)
	if v.Visibility != "private" {
		t.Fatalf("visibility %q after unpublishing, want private", v.Visibility)
	}
	unknown := "/_matrix/client/v3/directory/list/room/" + esc("!unknown:localhost")
	e.doErr("GET", unknown, "", nil, 404, "M_NOT_FOUND")
	e.doErr("PUT", unknown, alice.Token, map[string]any{"visibility": "public"}, 404, "M_NOT_FOUND")
}

// publicRoomsPage is a /publicRooms response.
type publicRoomsPage struct {
	Chunk []struct {
		RoomID           string `json:"room_id"`
		Name             string `json:"name"`
		Topic            string `json:"topic"`
		CanonicalAlias   string `json:"canonical_alias"`
		NumJoinedMembers int    `json:"num_joined_members"`
		WorldReadable    bool   `json:"world_readable"`
		GuestCanJoin     bool   `json:"guest_can_join"`
		JoinRule         string `json:"join_rule"`
		RoomType         string `json:"room_type"`
	} `json:"chunk"`
	NextBatch string `json:"next_batch"`
	PrevBatch string `json:"prev_batch"`
	Total     int    `json:"total_room_count_estimate"`
}

func TestPublicRooms(t *testing.T) {
	e := newEnv(t)
	alice, bob := e.register("alice"), e.register("bob")
	big := e.createRoom(alice, map[string]any{"visibility": "public", "preset": "public_chat", "name": "Big Room", "topic": "All about cheese", "room_alias_name": "big"})
	e.join(bob, big)
	small := e.createRoom(alice, map[string]any{"visibility": "public", "preset": "public_chat", "name": "Small"})
	space := e.createRoom(alice, map[string]any{"visibility": "public", "name": "A space", "creation_content": map[string]any{"type": "m.space"}})
	e.createRoom(alice, map[string]any{"name": "Hidden"}) // not published

	// Anonymous listing is off by default (threat model T2).
	e.doErr("GET", "/_matrix/client/v3/publicRooms", "", nil, 401, "M_MISSING_TOKEN")
	e.doErr("GET", "/_matrix/client/v3/publicRooms", "bogus-token", nil, 401, "M_UNKNOWN_TOKEN")
	e.doErr("POST", "/_matrix/client/v3/publicRooms", "", map[string]any{}, 401, "M_MISSING_TOKEN")

	var p publicRoomsPage
	e.do("GET", "/_matrix/client/v3/publicRooms", bob.Token, nil, 200).Decode(t, &p)
	if len(p.Chunk) != 3 || p.Total != 3 || p.Chunk[0].RoomID != big {
		t.Fatalf("public rooms = %+v, want the 3 published rooms, largest first", p)
	}
	c := p.Chunk[0]
	if c.Name != "Big Room" || c.Topic != "All about cheese" || c.CanonicalAlias != "#big:localhost" || c.NumJoinedMembers != 2 ||
		c.JoinRule != "public" || c.WorldReadable || c.GuestCanJoin {
		t.Fatalf("big room entry = %+v", c)
	}

	// Pagination by limit and since.
	seen := map[string]bool{}
	since := ""
	for page := 0; page < 4; page++ {
		p = publicRoomsPage{}
		path := "/_matrix/client/v3/publicRooms?limit=1"
		if since != "" {
			path += "&since=" + url.QueryEscape(since)
		}
		e.do("GET", path, bob.Token, nil, 200).Decode(t, &p)
		if len(p.Chunk) != 1 {
			t.Fatalf("page %d has %d rooms", page, len(p.Chunk))
		}
		if page > 0 && p.PrevBatch == "" {
			t.Fatalf("page %d has no prev_batch", page)
		}
		seen[p.Chunk[0].RoomID] = true
		if p.NextBatch == "" {
			break
		}
		since = p.NextBatch
	}
	if len(seen) != 3 {
		t.Fatalf("paginated through %d rooms, want 3", len(seen))
	}

	// Filters.
	p = publicRoomsPage{}
	e.do("POST", "/_matrix/client/v3/publicRooms", bob.Token, map[string]any{"filter": map[string]any{"generic_search_term": "CHEESE"}}, 200).Decode(t, &p)
	if len(p.Chunk) != 1 || p.Chunk[0].RoomID != big {
		t.Fatalf("search for cheese = %+v, want the big room", p.Chunk)
	}
	p = publicRoomsPage{}
	e.do("POST", "/_matrix/client/v3/publicRooms", bob.Token, map[string]any{"filter": map[string]any{"room_types": []any{"m.space"}}}, 200).Decode(t, &p)
	if len(p.Chunk) != 1 || p.Chunk[0].RoomID != space || p.Chunk[0].RoomType != "m.space" {
		t.Fatalf("room_types [m.space] = %+v, want the space", p.Chunk)
	}
	p = publicRoomsPage{}
	e.do("POST", "/_matrix/client/v3/publicRooms", bob.Token, map[string]any{"filter": map[string]any{"room_types": []any{nil}}, "limit": 10}, 200).Decode(t, &p)
	if len(p.Chunk) != 2 {
		t.Fatalf("room_types [null] = %+v, want the two plain rooms", p.Chunk)
	}
	_ = small
	p = publicRoomsPage{}
	e.do("POST", "/_matrix/client/v3/publicRooms", bob.Token, map[string]any{"include_all_networks": true}, 200).Decode(t, &p)
	if len(p.Chunk) != 3 {
		t.Fatalf("include_all_networks: %d rooms, want 3", len(p.Chunk))
	}

	// Errors.
	e.doErr("GET", "/_matrix/client/v3/publicRooms?since=garbage", bob.Token, nil, 400, "M_INVALID_PARAM")
	e.doErr("GET", "/_matrix/client/v3/publicRooms?limit=x", bob.Token, nil, 400, "M_INVALID_PARAM")
	e.doErr("GET", "/_matrix/client/v3/publicRooms?limit=-1", bob.Token, nil, 400, "M_INVALID_PARAM")
	e.doErr("GET", "/_matrix/client/v3/publicRooms?server=not%20a%20server", bob.Token, nil, 400, "M_INVALID_PARAM")
	e.doErr("POST", "/_matrix/client/v3/publicRooms", bob.Token, map[string]any{"include_all_networks": true, "third_party_instance_id": "irc"}, 400, "M_INVALID_PARAM")
	e.doErr("POST", "/_matrix/client/v3/publicRooms", bob.Token, map[string]any{"filter": "cheese"}, 400, "M_BAD_JSON")
	e.doErr("POST", "/_matrix/client/v3/publicRooms", bob.Token, map[string]any{"limit": "ten"}, 400, "M_BAD_JSON")
}

func TestPublicRoomsWithoutAuthWhenConfigured(t *testing.T) {
	e := newEnv(t, func(c *config.Config) { c.RoomDirectory.PublicRoomsWithoutAuth = true })
	alice := e.register("alice")
	room := e.createRoom(alice, map[string]any{"visibility": "public", "preset": "public_chat", "name": "Open"})
	var p publicRoomsPage
	e.do("GET", "/_matrix/client/v3/publicRooms", "", nil, 200).Decode(t, &p)
	if len(p.Chunk) != 1 || p.Chunk[0].RoomID != room {
		t.Fatalf("anonymous listing = %+v, want the published room", p.Chunk)
	}
}
