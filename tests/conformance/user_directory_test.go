package conformance

import (
	"testing"

	"github.com/rempart-hs/rempart/internal/config"
	"github.com/rempart-hs/rempart/internal/testserver"
)

// udResult is a user directory search response.
type udResult struct {
	Results []struct {
		UserID      string `json:"user_id"`
		DisplayName string `json:"display_name"`
		AvatarURL   string `json:"avatar_url"`
	} `json:"results"`
	Limited bool `json:"limited"`
}

func (e *env) udSearch(u user, term string, limit int) udResult {
	e.t.Helper()
	body := map[string]any{"search_term": term}
	if limit > 0 {
		body["limit"] = limit
	}
	var r udResult
	e.do("POST", "/_matrix/client/v3/user_directory/search", u.Token, body, 200).Decode(e.t, &r)
	return r
}

func (r udResult) has(userID string) bool {
	for _, x := range r.Results {
		if x.UserID == userID {
			return true
		}
	}
	return false
}

func (e *env) setDisplayName(u user, name string) {
	e.t.Helper()
	e.do("PUT", "/_matrix/client/v3/profile/"+esc(u.ID)+"/displayname", u.Token, map[string]any{"displayname": name}, 200)
}

// TestUserDirectoryIsScopedToSharedRooms plays threat model T1: a user who
// shares no room with another cannot find them, whatever they type, and
// can once they join a common room.
func TestUserDirectoryIsScopedToSharedRooms(t *testing.T) {
	e := newEnv(t)
	searcher := e.register("scout")
	target := e.register("marianne")
	e.setDisplayName(target, "Marianne Dupont")

	for _, term := range []string{"marianne", "Marianne", "dupont", "mari", "@" + target.ID[1:]} {
		if r := e.udSearch(searcher, term, 10); len(r.Results) != 0 || r.Limited {
			t.Fatalf("search %q without a shared room found %+v", term, r)
		}
	}
	room := e.createRoom(target, map[string]any{"preset": "public_chat"})
	e.join(searcher, room)
	for _, term := range []string{"marianne", "MARIANNE", "dupont", "Mari", "marianne dup", target.ID} {
		r := e.udSearch(searcher, term, 10)
		if !r.has(target.ID) {
			t.Fatalf("search %q with a shared room did not find %s: %+v", term, target.ID, r)
		}
	}
	r := e.udSearch(searcher, "dupont", 10)
	if r.Results[0].DisplayName != "Marianne Dupont" {
		t.Fatalf("result without display name: %+v", r.Results[0])
	}
	// Word prefixes only: the middle of a word does not match.
	if r := e.udSearch(searcher, "ianne", 10); r.has(target.ID) {
		t.Fatalf("infix search found %s", target.ID)
	}
	// Once the target leaves, the searcher cannot find them any more.
	e.do("POST", "/_matrix/client/v3/rooms/"+esc(room)+"/leave", target.Token, map[string]any{}, 200)
	if r := e.udSearch(searcher, "marianne", 10); r.has(target.ID) {
		t.Fatalf("found %s after they left the only shared room", target.ID)
	}
}

func TestUserDirectoryLimits(t *testing.T) {
	e := newEnv(t, func(c *config.Config) { c.UserDirectory.SearchAllUsers = true })
	searcher := e.register("scout")
	var agents []user
	for i := 0; i < 4; i++ {
		agents = append(agents, e.register("agent"))
	}
	// Short terms return nothing (not an error).
	if r := e.udSearch(searcher, "ag", 10); len(r.Results) != 0 || r.Limited {
		t.Fatalf("two-letter search returned %+v", r)
	}
	if r := e.udSearch(searcher, "   ", 10); len(r.Results) != 0 {
		t.Fatalf("blank search returned %+v", r)
	}
	// search_all_users finds users without a shared room.
	r := e.udSearch(searcher, "agent", 10)
	if len(r.Results) != 4 || r.Limited {
		t.Fatalf("search_all_users: %d results limited=%v, want 4 and not limited", len(r.Results), r.Limited)
	}
	r = e.udSearch(searcher, "agent", 2)
	if len(r.Results) != 2 || !r.Limited {
		t.Fatalf("limit 2: %d results limited=%v, want 2 and limited", len(r.Results), r.Limited)
	}
	// The searcher is never in their own results.
	if r := e.udSearch(searcher, "scout", 10); len(r.Results) != 0 {
		t.Fatalf("search for oneself returned %+v", r)
	}
	// LIKE wildcards in the term are literal.
	if r := e.udSearch(searcher, "a_e%", 10); len(r.Results) != 0 {
		t.Fatalf("wildcard search returned %+v", r)
	}
	// Deactivated users are never found.
	gone := agents[0]
	e.do("POST", "/_matrix/client/v3/account/deactivate", gone.Token, map[string]any{"auth": map[string]any{
		"type": "m.login.password", "identifier": map[string]any{"type": "m.id.user", "user": gone.ID}, "password": testserver.Password,
	}}, 200)
	if r := e.udSearch(searcher, "agent", 10); len(r.Results) != 3 || r.has(gone.ID) {
		t.Fatalf("after deactivation: %+v, want the 3 active agents", r)
	}
}

func TestUserDirectoryResultsAreCapped(t *testing.T) {
	e := newEnv(t, func(c *config.Config) {
		c.UserDirectory.SearchAllUsers = true
		c.UserDirectory.MaxResults = 2
		c.UserDirectory.MinSearchLength = 4
	})
	searcher := e.register("scout")
	for i := 0; i < 3; i++ {
		e.register("agent")
	}
	if r := e.udSearch(searcher, "age", 10); len(r.Results) != 0 {
		t.Fatalf("term shorter than min_search_length returned %+v", r)
	}
	r := e.udSearch(searcher, "agent", 1000)
	if len(r.Results) != 2 || !r.Limited {
		t.Fatalf("capped search: %d results limited=%v, want 2 and limited", len(r.Results), r.Limited)
	}
}

func TestUserDirectoryErrors(t *testing.T) {
	e := newEnv(t)
	u := e.register("scout")
	path := "/_matrix/client/v3/user_directory/search"
	e.doErr("POST", path, "", map[string]any{"search_term": "abc"}, 401, "M_MISSING_TOKEN")
	e.doErr("POST", path, u.Token, map[string]any{}, 400, "M_BAD_JSON")
	e.doErr("POST", path, u.Token, map[string]any{"search_term": 5}, 400, "M_BAD_JSON")
	e.doErr("POST", path, u.Token, map[string]any{"search_term": "abc", "limit": "ten"}, 400, "M_BAD_JSON")
	e.doErr("POST", path, u.Token, map[string]any{"search_term": "abc", "limit": -1}, 400, "M_INVALID_PARAM")
	long := make([]byte, 300)
	for i := range long {
		long[i] = 'a'
	}
	e.doErr("POST", path, u.Token, map[string]any{"search_term": string(long)}, 400, "M_INVALID_PARAM")
	e.doErr("POST", path, u.Token, "nope", 400, "M_NOT_JSON")
}

// TestUserDirectoryWords: terms match word starts of the localpart and of
// the display name, Unicode case-insensitively; a renamed user is found by
// the new name only.
func TestUserDirectoryWords(t *testing.T) {
	e := newEnv(t, func(c *config.Config) { c.UserDirectory.SearchAllUsers = true })
	searcher := e.register("scout")
	jd := e.register("jean.dupont")
	e.setDisplayName(jd, "Élise Brétecher")
	for _, term := range []string{"jean", "dupont", "jean.dup", "élise", "ÉLISE", "brét", "élise bré", "dupont élise"} {
		if r := e.udSearch(searcher, term, 10); !r.has(jd.ID) {
			t.Fatalf("search %q did not find %s: %+v", term, jd.ID, r)
		}
	}
	for _, term := range []string{"ean.dupont", "etecher", "élise zzz"} {
		if r := e.udSearch(searcher, term, 10); r.has(jd.ID) {
			t.Fatalf("search %q found %s", term, jd.ID)
		}
	}
	e.setDisplayName(jd, "Camille Vasseur")
	if r := e.udSearch(searcher, "élise", 10); r.has(jd.ID) {
		t.Fatalf("found by the old display name: %+v", r)
	}
	if r := e.udSearch(searcher, "vasseur", 10); !r.has(jd.ID) || r.Results[0].DisplayName != "Camille Vasseur" {
		t.Fatalf("not found by the new display name: %+v", r)
	}
}
