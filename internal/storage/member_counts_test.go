package storage_test

import (
	"context"
	"fmt"
	"maps"
	"testing"

	"github.com/rempart-hs/rempart/internal/rooms"
	"github.com/rempart-hs/rempart/internal/storage"
)

// TestMemberCountsFollowMemberships checks that a room's member counts,
// kept by triggers on memberships (migration 018), equal a count of its
// memberships after each kind of change: invites, joins, a leave, a kick,
// a ban, an unban and a rejoin.
func TestMemberCountsFollowMemberships(t *testing.T) {
	f := newPushFixture(t, 2)
	ctx := context.Background()
	room, other := f.rooms[0], f.rooms[1]
	var users []string
	for i := range 4 {
		users = append(users, f.srv.RegisterUser(fmt.Sprintf("member%d", i)).UserID.String())
	}
	change := func(sender, target, membership string) {
		t.Helper()
		if _, err := f.srv.Srv.Rooms.ChangeMembership(ctx, rooms.MembershipRequest{RoomID: room, Sender: sender, Target: target, Membership: membership}); err != nil {
			t.Fatalf("%s %s by %s: %v", membership, target, sender, err)
		}
	}
	check := func(step string, want map[string]int) {
		t.Helper()
		counts, err := f.db.MemberCounts(ctx, []string{room, other})
		if err != nil {
			t.Fatal(err)
		}
		direct, err := storage.CountMemberships(f.db, room)
		if err != nil {
			t.Fatal(err)
		}
		if !maps.Equal(counts[room], direct) || !maps.Equal(counts[room], want) {
			t.Fatalf("%s: counts %v, memberships %v, want %v", step, counts[room], direct, want)
		}
		if counts[other]["join"] != 2 {
			t.Fatalf("%s: the other room's counts changed: %v", step, counts[other])
		}
	}
	check("created", map[string]int{"join": 2})
	for _, u := range users {
		change(f.alice, u, "invite")
	}
	check("invites", map[string]int{"join": 2, "invite": 4})
	for _, u := range users[:3] {
		change(u, u, "join")
	}
	check("joins", map[string]int{"join": 5, "invite": 1})
	change(users[0], users[0], "leave")
	change(f.alice, users[1], "leave") // a kick
	check("a leave and a kick", map[string]int{"join": 3, "invite": 1, "leave": 2})
	change(f.alice, users[2], "ban")
	change(f.alice, users[3], "ban") // banned while invited
	check("bans", map[string]int{"join": 2, "leave": 2, "ban": 2})
	change(f.alice, users[2], "leave") // an unban
	change(f.alice, users[0], "invite")
	change(users[0], users[0], "join")
	check("an unban and a rejoin", map[string]int{"join": 3, "leave": 2, "ban": 1})
}
