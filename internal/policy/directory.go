package policy

import (
	"context"
	"encoding/json"
	"errors"
	"strings"
	"unicode/utf8"

	gmsl "github.com/matrix-org/gomatrixserverlib"

	"github.com/rempart-hs/rempart/internal/httpapi"
	"github.com/rempart-hs/rempart/internal/storage"
)

// maxSearchTerms bounds the words of one user directory query.
const maxSearchTerms = 5

// UserSearch decides who searcher may find in the user directory for a
// search term and a requested limit, and returns the query to run (ok is
// false when the search must return nothing). It is the one place where
// "who may find whom" is decided (threat model T1):
//
//   - by default a user finds only users they share a joined room with;
//     user_directory.search_all_users widens this to every local user;
//   - guests find nobody;
//   - terms shorter than user_directory.min_search_length find nobody;
//   - results are capped by user_directory.max_results (at most 50);
//   - deactivated accounts, guests and the searcher are never returned.
//
// This is narrower than the spec's minimum (which also covers members of
// public and world-readable rooms); it is Rempart's deliberate choice.
func (p *Policy) UserSearch(searcher *httpapi.Requester, term string, limit int) (q storage.UserSearch, ok bool) {
	if searcher == nil || searcher.IsGuest {
		return q, false
	}
	term = strings.ToLower(strings.TrimSpace(term))
	if utf8.RuneCountInString(term) < p.cfg.UserDirectory.MinSearchLength {
		return q, false
	}
	words := strings.Fields(term)
	if len(words) > maxSearchTerms {
		words = words[:maxSearchTerms]
	}
	for i, w := range words {
		// A leading '@' or a ':server' suffix from a pasted user ID.
		w = strings.TrimPrefix(w, "@")
		if j := strings.IndexByte(w, ':'); j >= 0 {
			w = w[:j]
		}
		words[i] = w
	}
	kept := words[:0]
	for _, w := range words {
		if w != "" {
			kept = append(kept, w)
		}
	}
	if len(kept) == 0 {
		return q, false
	}
	max := p.cfg.UserDirectory.MaxResults
	if limit <= 0 || limit > max {
		limit = max
	}
	q = storage.UserSearch{Terms: kept, Exclude: searcher.UserID, Limit: limit}
	if !p.cfg.UserDirectory.SearchAllUsers {
		q.SharedWith = searcher.UserID
	}
	return q, true
}

// MayManageRoomDirectory reports whether userID may publish roomID in the
// room directory, or remove aliases of the room that others created: they
// must be joined and have the power to send m.room.canonical_alias (the
// room's state_default when unlisted). Server admins may always.
func (p *Policy) MayManageRoomDirectory(ctx context.Context, roomID, userID string, isAdmin bool) (bool, error) {
	if isAdmin {
		return true, nil
	}
	m, err := p.db.GetMembership(ctx, roomID, userID)
	if errors.Is(err, storage.ErrNotFound) || (err == nil && m.Membership != "join") {
		return false, nil
	}
	if err != nil {
		return false, err
	}
	room, err := p.db.GetRoom(ctx, roomID)
	if err != nil {
		return false, err
	}
	state, err := p.db.CurrentState(ctx, roomID, []storage.StateKeyTuple{{Type: "m.room.create"}, {Type: "m.room.power_levels"}})
	if err != nil {
		return false, err
	}
	var create, pl *storage.Event
	for i := range state {
		switch state[i].Type {
		case "m.room.create":
			create = &state[i]
		case "m.room.power_levels":
			pl = &state[i]
		}
	}
	if create != nil {
		if ver, err := gmsl.GetRoomVersion(gmsl.RoomVersion(room.RoomVersion)); err == nil && ver.PrivilegedCreators() {
			if create.Sender == userID {
				return true, nil
			}
			var c struct {
				Content struct {
					Additional []string `json:"additional_creators"`
				} `json:"content"`
			}
			_ = json.Unmarshal(create.JSON, &c)
			for _, u := range c.Content.Additional {
				if u == userID {
					return true, nil
				}
			}
		}
	}
	if pl == nil {
		// Without power levels the creator has 100 and state needs 0.
		return true, nil
	}
	var c struct {
		Content struct {
			Users        map[string]json.Number `json:"users"`
			UsersDefault json.Number            `json:"users_default"`
			Events       map[string]json.Number `json:"events"`
			StateDefault *json.Number           `json:"state_default"`
		} `json:"content"`
	}
	if err := json.Unmarshal(pl.JSON, &c); err != nil {
		return false, nil
	}
	num := func(n json.Number, def int64) int64 {
		if v, err := n.Int64(); err == nil {
			return v
		}
		return def
	}
	level := num(c.Content.UsersDefault, 0)
	if n, ok := c.Content.Users[userID]; ok {
		level = num(n, level)
	}
	need := int64(50)
	if c.Content.StateDefault != nil {
		need = num(*c.Content.StateDefault, 50)
	}
	if n, ok := c.Content.Events["m.room.canonical_alias"]; ok {
		need = num(n, need)
	}
	return level >= need, nil
}
