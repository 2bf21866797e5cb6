package conformance

import (
	"net/url"
	"slices"
	"testing"
)

// membershipOf returns u's membership in roomID as seen by viewer.
func (e *env) membershipOf(viewer user, roomID, userID string) string {
	e.t.Helper()
	m, _ := e.stateContent(viewer, roomID, "m.room.member", userID)["membership"].(string)
	return m
}

// joinedRooms returns u's joined rooms.
func (e *env) joinedRooms(u user) []string {
	e.t.Helper()
	var r struct {
		JoinedRooms []string `json:"joined_rooms"`
	}
	e.do("GET", "/_matrix/client/v3/joined_rooms", u.Token, nil, 200).Decode(e.t, &r)
	return r.JoinedRooms
}

// Joining: POST /rooms/{roomId}/join and /join/{roomIdOrAlias}, and
// GET /joined_rooms.
func TestMembershipJoin(t *testing.T) {
	e := newEnv(t)
	alice := e.register("mja")
	bob := e.register("mjb")
	carol := e.register("mjc")
	alias := "#" + localpartOf(alice.ID) + "-pub:" + e.srv.Config.ServerName
	pub := e.createRoom(alice, map[string]any{"preset": "public_chat", "room_alias_name": localpartOf(alice.ID) + "-pub"})

	r := e.do("POST", "/_matrix/client/v3/join/"+esc(alias), bob.Token, map[string]any{"reason": "hi"}, 200).JSON(t)
	if r["room_id"] != pub {
		t.Fatalf("join by alias = %v", r)
	}
	if m := e.stateContent(alice, pub, "m.room.member", bob.ID); m["membership"] != "join" || m["reason"] != "hi" {
		t.Fatalf("bob's member event = %v", m)
	}
	r = e.do("POST", "/_matrix/client/v3/join/"+esc(pub), carol.Token, nil, 200).JSON(t)
	if r["room_id"] != pub {
		t.Fatalf("join by ID = %v", r)
	}
	// Joining again is harmless.
	e.join(carol, pub)
	if got := e.joinedRooms(carol); !slices.Equal(got, []string{pub}) {
		t.Fatalf("joined_rooms = %v", got)
	}

	// Errors.
	e.doErr("POST", "/_matrix/client/v3/join/"+esc("#nope:"+e.srv.Config.ServerName), bob.Token, nil, 404, "M_NOT_FOUND")
	e.doErr("POST", "/_matrix/client/v3/join/"+esc("!nope:"+e.srv.Config.ServerName), bob.Token, nil, 404, "M_NOT_FOUND")
	e.doErr("POST", "/_matrix/client/v3/join/nonsense", bob.Token, nil, 400, "M_INVALID_PARAM")
	e.doErr("POST", roomPath("!nope:"+e.srv.Config.ServerName, "/join"), bob.Token, nil, 404, "M_NOT_FOUND")
	e.doErr("POST", roomPath("nonsense", "/join"), bob.Token, nil, 400, "M_INVALID_PARAM")
	e.doErr("POST", roomPath(pub, "/join"), bob.Token, "{not json", 400, "M_NOT_JSON")
	e.doErr("POST", roomPath(pub, "/join"), bob.Token, map[string]any{"reason": 1}, 400, "M_BAD_JSON")
	e.doErr("POST", roomPath(pub, "/join"), "", nil, 401, "M_MISSING_TOKEN")
	e.doErr("GET", roomPath(pub, "/join"), bob.Token, nil, 405, "M_UNRECOGNIZED")

	// An invite-only room needs an invite.
	priv := e.createRoom(alice, map[string]any{"preset": "private_chat"})
	e.doErr("POST", roomPath(priv, "/join"), bob.Token, map[string]any{}, 403, "M_FORBIDDEN")
	e.do("POST", roomPath(priv, "/invite"), alice.Token, map[string]any{"user_id": bob.ID, "reason": "welcome"}, 200)
	if m := e.stateContent(alice, priv, "m.room.member", bob.ID); m["membership"] != "invite" || m["reason"] != "welcome" {
		t.Fatalf("invite = %v", m)
	}
	e.join(bob, priv)
	if got := e.joinedRooms(bob); len(got) != 2 {
		t.Fatalf("bob's joined_rooms = %v", got)
	}
}

// Invite, leave, forget, kick, ban and unban, with their permission
// checks.
func TestMembershipChanges(t *testing.T) {
	e := newEnv(t)
	alice := e.register("mca") // creator, power 100
	bob := e.register("mcb")
	carol := e.register("mcc")
	dave := e.register("mcd")
	room := e.createRoom(alice, map[string]any{"preset": "private_chat"})
	rp := func(rest string) string { return roomPath(room, rest) }

	// Invite.
	e.doErr("POST", rp("/invite"), bob.Token, map[string]any{"user_id": carol.ID}, 403, "M_FORBIDDEN") // bob is not in the room
	e.doErr("POST", rp("/invite"), alice.Token, map[string]any{}, 400, "M_MISSING_PARAM")
	e.doErr("POST", rp("/invite"), alice.Token, map[string]any{"user_id": "carol"}, 400, "M_INVALID_PARAM")
	e.doErr("POST", rp("/invite"), alice.Token, map[string]any{"user_id": 5}, 400, "M_BAD_JSON")
	e.doErr("POST", rp("/invite"), alice.Token, "{not json", 400, "M_NOT_JSON")
	e.doErr("POST", rp("/invite"), alice.Token, map[string]any{"user_id": "@ghost:" + e.srv.Config.ServerName}, 404, "M_NOT_FOUND")
	e.doErr("POST", rp("/invite"), alice.Token, map[string]any{"user_id": alice.ID}, 403, "M_FORBIDDEN") // already joined
	for _, u := range []user{bob, carol, dave} {
		e.do("POST", rp("/invite"), alice.Token, map[string]any{"user_id": u.ID}, 200)
	}
	e.join(bob, room)
	e.join(carol, room)

	// Leave, and leaving twice.
	e.do("POST", rp("/leave"), carol.Token, map[string]any{"reason": "bye"}, 200)
	if m := e.stateContent(alice, room, "m.room.member", carol.ID); m["membership"] != "leave" || m["reason"] != "bye" {
		t.Fatalf("leave = %v", m)
	}
	e.do("POST", rp("/leave"), carol.Token, map[string]any{}, 200)
	e.doErr("POST", roomPath("!nope:"+e.srv.Config.ServerName, "/leave"), carol.Token, map[string]any{}, 404, "M_NOT_FOUND")
	outsider := e.register("mco")
	e.doErr("POST", rp("/leave"), outsider.Token, map[string]any{}, 403, "M_FORBIDDEN")
	// Rejecting an invite is a leave too.
	e.do("POST", rp("/leave"), dave.Token, map[string]any{}, 200)
	if got := e.membershipOf(alice, room, dave.ID); got != "leave" {
		t.Fatalf("rejected invite = %s", got)
	}

	// Forget: only after leaving; the room disappears from sync.
	e.doErr("POST", rp("/forget"), bob.Token, map[string]any{}, 400, "M_UNKNOWN")
	e.doErr("POST", rp("/forget"), outsider.Token, map[string]any{}, 404, "M_NOT_FOUND")
	e.do("POST", rp("/forget"), carol.Token, map[string]any{}, 200)
	s := e.do("GET", "/_matrix/client/v3/sync?filter="+esc(`{"room":{"include_leave":true}}`), carol.Token, nil, 200).JSON(t)
	if rooms, _ := s["rooms"].(map[string]any); rooms != nil {
		if leave, _ := rooms["leave"].(map[string]any); leave[room] != nil {
			t.Fatalf("forgotten room still in sync: %v", rooms)
		}
	}

	// Kick: needs power; the kicked user can rejoin after a new invite.
	e.doErr("POST", rp("/kick"), bob.Token, map[string]any{"user_id": alice.ID}, 403, "M_FORBIDDEN")
	e.doErr("POST", rp("/kick"), alice.Token, map[string]any{}, 400, "M_MISSING_PARAM")
	e.do("POST", rp("/kick"), alice.Token, map[string]any{"user_id": bob.ID, "reason": "noise"}, 200)
	k := e.stateEvent(alice, room, "m.room.member", bob.ID)
	if k["sender"] != alice.ID || k["content"].(map[string]any)["membership"] != "leave" || k["content"].(map[string]any)["reason"] != "noise" {
		t.Fatalf("kick = %v", k)
	}
	e.doErr("POST", rp("/join"), bob.Token, map[string]any{}, 403, "M_FORBIDDEN") // invite-only
	if got := e.joinedRooms(bob); len(got) != 0 {
		t.Fatalf("kicked user's joined_rooms = %v", got)
	}

	// Ban: needs power; a banned user can not rejoin or be invited; unban.
	e.do("POST", rp("/invite"), alice.Token, map[string]any{"user_id": bob.ID}, 200)
	e.join(bob, room)
	e.doErr("POST", rp("/ban"), bob.Token, map[string]any{"user_id": alice.ID}, 403, "M_FORBIDDEN")
	e.doErr("POST", rp("/ban"), alice.Token, map[string]any{"reason": "x"}, 400, "M_MISSING_PARAM")
	e.do("POST", rp("/ban"), alice.Token, map[string]any{"user_id": bob.ID, "reason": "spam"}, 200)
	if got := e.membershipOf(alice, room, bob.ID); got != "ban" {
		t.Fatalf("ban = %s", got)
	}
	e.doErr("POST", rp("/join"), bob.Token, map[string]any{}, 403, "M_FORBIDDEN")
	e.doErr("POST", rp("/invite"), alice.Token, map[string]any{"user_id": bob.ID}, 403, "M_FORBIDDEN")
	// A ban also works on someone who never was in the room.
	e.do("POST", rp("/ban"), alice.Token, map[string]any{"user_id": outsider.ID}, 200)
	// Leaving while banned changes nothing.
	e.do("POST", rp("/leave"), bob.Token, map[string]any{}, 200)
	if got := e.membershipOf(alice, room, bob.ID); got != "ban" {
		t.Fatalf("after leave while banned: %s", got)
	}
	e.doErr("POST", rp("/unban"), alice.Token, map[string]any{"user_id": carol.ID}, 403, "M_FORBIDDEN") // not banned
	e.doErr("POST", rp("/unban"), alice.Token, map[string]any{}, 400, "M_MISSING_PARAM")
	e.do("POST", rp("/unban"), alice.Token, map[string]any{"user_id": bob.ID}, 200)
	if got := e.membershipOf(alice, room, bob.ID); got != "leave" {
		t.Fatalf("after unban: %s", got)
	}
	e.doErr("POST", rp("/join"), bob.Token, map[string]any{}, 403, "M_FORBIDDEN") // still invite-only
	e.do("POST", rp("/invite"), alice.Token, map[string]any{"user_id": bob.ID}, 200)
	e.join(bob, room)

	// Rejoining a public room after a ban is refused too.
	pub := e.createRoom(alice, map[string]any{"preset": "public_chat"})
	e.join(carol, pub)
	e.do("POST", roomPath(pub, "/ban"), alice.Token, map[string]any{"user_id": carol.ID}, 200)
	e.doErr("POST", roomPath(pub, "/join"), carol.Token, map[string]any{}, 403, "M_FORBIDDEN")
	e.doErr("POST", "/_matrix/client/v3/join/"+esc(pub), carol.Token, map[string]any{}, 403, "M_FORBIDDEN")

	// Moderators: bob gets power 50 and may kick carol but not alice.
	e.do("PUT", rp("/state/m.room.power_levels/"), alice.Token, map[string]any{
		"users": map[string]any{alice.ID: 100, bob.ID: 50}, "kick": 50, "ban": 50, "invite": 0, "redact": 50,
		"state_default": 50, "events_default": 0, "users_default": 0}, 200)
	e.do("POST", rp("/invite"), bob.Token, map[string]any{"user_id": carol.ID}, 200)
	e.join(carol, room)
	e.do("POST", rp("/kick"), bob.Token, map[string]any{"user_id": carol.ID}, 200)
	e.doErr("POST", rp("/kick"), bob.Token, map[string]any{"user_id": alice.ID}, 403, "M_FORBIDDEN")
}

// Restricted join rules (restricted and knock_restricted with an allow
// list of m.room_membership conditions): members of an allowed room may
// join, and the join is authorised by a local member with invite power.
func TestMembershipRestricted(t *testing.T) {
	e := newEnv(t)
	alice := e.register("rja")
	bob := e.register("rjb") // member of the space
	carol := e.register("rjc")
	space := e.createRoom(alice, map[string]any{"preset": "public_chat"})
	e.join(bob, space)
	for _, v := range []string{"10", "11", "12"} {
		for _, rule := range []string{"restricted", "knock_restricted"} {
			t.Run(rule+"-v"+v, func(t *testing.T) {
				room := e.createRoom(alice, map[string]any{"room_version": v, "preset": "private_chat", "initial_state": []any{
					map[string]any{"type": "m.room.join_rules", "content": map[string]any{"join_rule": rule,
						"allow": []any{map[string]any{"type": "m.room_membership", "room_id": space}}}},
				}})
				e.join(bob, room)
				m := e.stateContent(alice, room, "m.room.member", bob.ID)
				if m["membership"] != "join" || m["join_authorised_via_users_server"] != alice.ID {
					t.Fatalf("restricted join = %v", m)
				}
				// Not in the allowed room: refused.
				e.doErr("POST", roomPath(room, "/join"), carol.Token, map[string]any{}, 403, "M_FORBIDDEN")
				// An invite is enough whatever the allow list says.
				e.do("POST", roomPath(room, "/invite"), alice.Token, map[string]any{"user_id": carol.ID}, 200)
				e.join(carol, room)
				if m := e.stateContent(alice, room, "m.room.member", carol.ID); m["join_authorised_via_users_server"] != nil {
					t.Fatalf("invited join carries an authorisation: %v", m)
				}
				e.do("POST", roomPath(room, "/leave"), carol.Token, map[string]any{}, 200)
				if rule == "knock_restricted" {
					// Those who do not qualify may knock instead.
					e.do("POST", "/_matrix/client/v3/knock/"+esc(room), carol.Token, map[string]any{"reason": "let me in"}, 200)
					if got := e.membershipOf(alice, room, carol.ID); got != "knock" {
						t.Fatalf("knock = %s", got)
					}
				} else {
					e.doErr("POST", "/_matrix/client/v3/knock/"+esc(room), carol.Token, map[string]any{}, 403, "M_FORBIDDEN")
				}
			})
		}
	}
	// Nobody here may invite: the join can not be authorised.
	room := e.createRoom(alice, map[string]any{"preset": "private_chat",
		"power_level_content_override": map[string]any{"invite": 101},
		"initial_state": []any{
			map[string]any{"type": "m.room.join_rules", "content": map[string]any{"join_rule": "restricted",
				"allow": []any{map[string]any{"type": "m.room_membership", "room_id": space}}}},
		}})
	e.doErr("POST", roomPath(room, "/join"), bob.Token, map[string]any{}, 400, "M_UNABLE_TO_GRANT_JOIN")
}

// Knocking: POST /knock/{roomIdOrAlias}, the knock section of sync, and
// the answers (invite, or a kick to deny) and rescinding.
func TestMembershipKnock(t *testing.T) {
	e := newEnv(t)
	alice := e.register("kna")
	bob := e.register("knb")
	aliasName := localpartOf(alice.ID) + "-knock"
	room := e.createRoom(alice, map[string]any{"preset": "private_chat", "name": "knock knock", "room_alias_name": aliasName,
		"initial_state": []any{map[string]any{"type": "m.room.join_rules", "content": map[string]any{"join_rule": "knock"}}}})
	since := e.sync(bob, nil).NextBatch
	aliceSince := e.sync(alice, nil).NextBatch

	r := e.do("POST", "/_matrix/client/v3/knock/"+esc("#"+aliasName+":"+e.srv.Config.ServerName), bob.Token, map[string]any{"reason": "hello"}, 200).JSON(t)
	if r["room_id"] != room {
		t.Fatalf("knock = %v", r)
	}
	if m := e.stateContent(alice, room, "m.room.member", bob.ID); m["membership"] != "knock" || m["reason"] != "hello" {
		t.Fatalf("knock event = %v", m)
	}
	// The knocker sees the room in the knock section with stripped state.
	var ks struct {
		Rooms struct {
			Knock map[string]struct {
				KnockState struct {
					Events []map[string]any `json:"events"`
				} `json:"knock_state"`
			} `json:"knock"`
		} `json:"rooms"`
	}
	e.do("GET", "/_matrix/client/v3/sync?since="+esc(since), bob.Token, nil, 200).Decode(t, &ks)
	kr, ok := ks.Rooms.Knock[room]
	if !ok {
		t.Fatal("no knock section in sync")
	}
	if keys := stateKeys(kr.KnockState.Events); !slices.Contains(keys, "m.room.name|") || !slices.Contains(keys, "m.room.member|"+bob.ID) {
		t.Fatalf("knock_state = %v", keys)
	}
	// The room's members see the knock in their timeline.
	s := e.sync(alice, url.Values{"since": {aliceSince}})
	found := false
	for _, ev := range s.Rooms.Join[room].Timeline.Events {
		if ev["type"] == "m.room.member" && ev["state_key"] == bob.ID && ev["content"].(map[string]any)["membership"] == "knock" {
			found = true
		}
	}
	if !found {
		t.Fatal("the knock is not in the room's timeline")
	}
	// Knocking while knocking is fine; joining is not.
	e.doErr("POST", roomPath(room, "/join"), bob.Token, map[string]any{}, 403, "M_FORBIDDEN")
	// Denied by a kick, rescinded by a leave, accepted by an invite.
	e.do("POST", roomPath(room, "/kick"), alice.Token, map[string]any{"user_id": bob.ID}, 200)
	e.do("POST", "/_matrix/client/v3/knock/"+esc(room), bob.Token, map[string]any{}, 200)
	e.do("POST", roomPath(room, "/leave"), bob.Token, map[string]any{}, 200)
	if got := e.membershipOf(alice, room, bob.ID); got != "leave" {
		t.Fatalf("after rescinding: %s", got)
	}
	e.do("POST", "/_matrix/client/v3/knock/"+esc(room), bob.Token, map[string]any{}, 200)
	e.do("POST", roomPath(room, "/invite"), alice.Token, map[string]any{"user_id": bob.ID}, 200)
	e.join(bob, room)
	e.doErr("POST", "/_matrix/client/v3/knock/"+esc(room), bob.Token, map[string]any{}, 403, "M_FORBIDDEN") // already joined

	// Rooms that do not accept knocks, and bad targets.
	priv := e.createRoom(alice, map[string]any{"preset": "private_chat"})
	carol := e.register("knc")
	e.doErr("POST", "/_matrix/client/v3/knock/"+esc(priv), carol.Token, map[string]any{}, 403, "M_FORBIDDEN")
	e.doErr("POST", "/_matrix/client/v3/knock/"+esc("#nope:"+e.srv.Config.ServerName), carol.Token, map[string]any{}, 404, "M_NOT_FOUND")
	e.doErr("POST", "/_matrix/client/v3/knock/"+esc("!nope:"+e.srv.Config.ServerName), carol.Token, map[string]any{}, 404, "M_NOT_FOUND")
	e.doErr("POST", "/_matrix/client/v3/knock/nonsense", carol.Token, map[string]any{}, 400, "M_INVALID_PARAM")
	e.doErr("POST", "/_matrix/client/v3/knock/"+esc(room), carol.Token, "{not json", 400, "M_NOT_JSON")
	// A banned user may not knock.
	e.do("POST", roomPath(room, "/ban"), alice.Token, map[string]any{"user_id": carol.ID}, 200)
	e.doErr("POST", "/_matrix/client/v3/knock/"+esc(room), carol.Token, map[string]any{}, 403, "M_FORBIDDEN")
}
