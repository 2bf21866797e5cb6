package storage_test

import (
	"context"
	"database/sql"
	"fmt"
	"slices"
	"strings"
	"testing"

	"github.com/rempart-hs/rempart/internal/storage"
)

// TestScopedSearchFollowsMembershipsAndProfiles checks that the words of
// each room's joined members (room_member_words, kept by triggers) follow
// joins, leaves, re-joins, deleted memberships, display name changes and
// deactivation, on the running backend: after each change, a scoped search
// finds exactly the users it should, and the table equals the joined
// memberships joined with user_directory_words.
func TestScopedSearchFollowsMembershipsAndProfiles(t *testing.T) {
	ctx := context.Background()
	db, url := openTestDB(t)
	driver, dsn := "sqlite", "file:"+url
	if strings.HasPrefix(url, "postgres") {
		driver, dsn = "pgx", url
	}
	raw, err := sql.Open(driver, dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer raw.Close()
	ph := func(q string) string { // '?' placeholders on both backends
		if driver != "pgx" {
			return q
		}
		for n := 1; strings.Contains(q, "?"); n++ {
			q = strings.Replace(q, "?", fmt.Sprintf("$%d", n), 1)
		}
		return q
	}
	users := map[string]string{"me": "Searcher", "ann": "Annabel Lee", "bob": "Annick Bob", "cid": "Carl", "dan": "Anna Dan"}
	for lp, dn := range users {
		err := db.WithTx(ctx, func(tx *storage.Tx) error {
			return tx.CreateUser(ctx, storage.User{UserID: "@" + lp + ":t", Localpart: lp, CreatedTS: 1, DisplayName: dn})
		})
		if err != nil {
			t.Fatal(err)
		}
	}
	pos := 0
	// setMembership writes a membership as the event path does (upsert).
	setMembership := func(room, lp, membership string) {
		t.Helper()
		pos++
		_, err := raw.Exec(ph(`INSERT INTO memberships (room_id, user_id, membership, event_id, stream_pos, forgotten) VALUES (?, ?, ?, ?, ?, 0)
			ON CONFLICT (room_id, user_id) DO UPDATE SET membership = excluded.membership, event_id = excluded.event_id, stream_pos = excluded.stream_pos, forgotten = 0`),
			room, "@"+lp+":t", membership, fmt.Sprintf("$e%d", pos), pos)
		if err != nil {
			t.Fatal(err)
		}
	}
	check := func(step, term string, want ...string) {
		t.Helper()
		res, err := db.SearchUsers(ctx, storage.UserSearch{Terms: strings.Fields(term), SharedWith: "@me:t", Exclude: "@me:t", Limit: 10})
		if err != nil {
			t.Fatal(err)
		}
		var got []string
		for _, u := range res {
			got = append(got, strings.TrimSuffix(strings.TrimPrefix(u.UserID, "@"), ":t"))
		}
		slices.Sort(got)
		slices.Sort(want)
		if !slices.Equal(got, want) {
			t.Errorf("%s: search %q found %v, want %v", step, term, got, want)
		}
		// The table is the join it stands for.
		var extra, missing int
		if err := raw.QueryRow(`SELECT
			(SELECT COUNT(*) FROM (SELECT user_id, room_id, word FROM room_member_words
				EXCEPT SELECT w.user_id, m.room_id, w.word FROM memberships m JOIN user_directory_words w ON w.user_id = m.user_id WHERE m.membership = 'join') x),
			(SELECT COUNT(*) FROM (SELECT w.user_id, m.room_id, w.word FROM memberships m JOIN user_directory_words w ON w.user_id = m.user_id WHERE m.membership = 'join'
				EXCEPT SELECT user_id, room_id, word FROM room_member_words) y)`).Scan(&extra, &missing); err != nil {
			t.Fatal(err)
		}
		if extra != 0 || missing != 0 {
			t.Errorf("%s: room_member_words has %d rows too many and lacks %d", step, extra, missing)
		}
	}
	check("no rooms", "ann")
	setMembership("!a:t", "me", "join")
	setMembership("!a:t", "ann", "join")
	setMembership("!a:t", "bob", "invite")
	setMembership("!b:t", "dan", "join")
	check("joined", "ann", "ann") // bob is only invited, dan is in another room
	setMembership("!b:t", "me", "join")
	check("searcher joins a second room", "ann", "ann", "dan")
	check("two terms", "ann lee", "ann")
	check("two terms, longest first", "annabel le", "ann")
	setMembership("!a:t", "bob", "join")
	check("invite accepted", "ann", "ann", "bob", "dan")
	check("localpart", "bo", "bob")
	setMembership("!c:t", "bob", "join")
	setMembership("!c:t", "me", "join")
	check("shared twice, found once", "annick", "bob")
	// The statement's LIMIT is rounded up; the answer is not.
	for _, all := range []bool{false, true} {
		s := storage.UserSearch{Terms: []string{"ann"}, SharedWith: "@me:t", Exclude: "@me:t", Limit: 2}
		if all {
			s.SharedWith = ""
		}
		if res, err := db.SearchUsers(ctx, s); err != nil || len(res) != 2 {
			t.Errorf("limit 2 (all users %v): %d results, %v", all, len(res), err)
		}
	}
	setMembership("!a:t", "ann", "leave")
	check("left", "ann", "bob", "dan")
	setMembership("!a:t", "ann", "join")
	check("joined again", "annabel", "ann")
	err = db.WithTx(ctx, func(tx *storage.Tx) error {
		name := "Zelda"
		return tx.SetProfile(ctx, "@dan:t", &name, nil)
	})
	if err != nil {
		t.Fatal(err)
	}
	check("renamed: old name", "anna", "ann")
	check("renamed: new name", "zel", "dan")
	if err := db.WithTx(ctx, func(tx *storage.Tx) error { return tx.DeactivateUser(ctx, "@bob:t") }); err != nil {
		t.Fatal(err)
	}
	check("deactivated", "bob")
	check("deactivated, by name", "annick")
	if _, err := raw.Exec(ph(`DELETE FROM memberships WHERE room_id = ? AND user_id = ?`), "!a:t", "@ann:t"); err != nil {
		t.Fatal(err)
	}
	check("membership deleted", "annabel")
	setMembership("!b:t", "cid", "ban")
	check("banned", "carl")
}
