package storage

import (
	"context"
	"database/sql"
	"encoding/json"
	"strings"
)

// PublishedRoom is a room listed in the published room directory, with
// the state the directory shows.
type PublishedRoom struct {
	RoomID        string
	CreatedTS     int64
	JoinedMembers int
	// State maps a state event type (state key "") to its content.
	State map[string]json.RawMessage
}

// directoryStateTypes are the state events the room directory shows.
var directoryStateTypes = []string{
	"m.room.create", "m.room.name", "m.room.topic", "m.room.avatar", "m.room.canonical_alias",
	"m.room.join_rules", "m.room.history_visibility", "m.room.guest_access",
}

// PublishedRooms returns every room published in the directory with its
// joined member count and directory state, in two queries.
func (db *DB) PublishedRooms(ctx context.Context) ([]PublishedRoom, error) {
	rows, err := db.query(ctx, `SELECT r.room_id, r.created_ts,
		(SELECT COUNT(*) FROM memberships m WHERE m.room_id = r.room_id AND m.membership = 'join')
		FROM rooms r WHERE r.visibility = 'public'`)
	if err != nil {
		return nil, err
	}
	var out []PublishedRoom
	idx := map[string]int{}
	for rows.Next() {
		var p PublishedRoom
		if err := rows.Scan(&p.RoomID, &p.CreatedTS, &p.JoinedMembers); err != nil {
			rows.Close()
			return nil, err
		}
		p.State = map[string]json.RawMessage{}
		idx[p.RoomID] = len(out)
		out = append(out, p)
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return nil, err
	}
	if len(out) == 0 {
		return nil, nil
	}
	args := make([]any, 0, len(directoryStateTypes))
	for _, t := range directoryStateTypes {
		args = append(args, t)
	}
	srows, err := db.query(ctx, `SELECT c.room_id, c.type, e.json FROM rooms r
		JOIN current_state c ON c.room_id = r.room_id AND c.state_key = ''
		JOIN events e ON e.event_id = c.event_id
		WHERE r.visibility = 'public' AND c.type IN (`+placeholders(len(args))+`)`, args...)
	if err != nil {
		return nil, err
	}
	defer srows.Close()
	for srows.Next() {
		var roomID, typ, js string
		if err := srows.Scan(&roomID, &typ, &js); err != nil {
			return nil, err
		}
		i, ok := idx[roomID]
		if !ok {
			continue // published between the two queries
		}
		var ev struct {
			Content json.RawMessage `json:"content"`
		}
		if json.Unmarshal([]byte(js), &ev) == nil && len(ev.Content) > 0 {
			out[i].State[typ] = ev.Content
		}
	}
	return out, srows.Err()
}

// DirectoryUser is a user directory search result.
type DirectoryUser struct {
	UserID      string
	DisplayName string
	AvatarURL   string
}

// UserSearch is a user directory query. Each term must match the start of
// the localpart, the start of a word of the localpart (after '.', '_', '-'
// or '='), or the start of a word of the display name, case-insensitively
// (directoryWords).
type UserSearch struct {
	Terms []string // lower-case, non-empty
	// SharedWith, when not empty, restricts results to users joined to a
	// room this user is joined to.
	SharedWith string
	// Exclude is left out of the results (the searcher).
	Exclude string
	Limit   int
}

// SearchUsers runs a user directory search over active (not deactivated,
// not guest) accounts, ordered with display-name holders first, then by
// user ID. It returns at most s.Limit users. Its cost follows what it may
// find, not the number of accounts: a scoped search starts from the
// searcher's rooms' members and checks each against the word index; an
// unscoped one starts from the word index range of its longest term.
func (db *DB) SearchUsers(ctx context.Context, s UserSearch) ([]DirectoryUser, error) {
	if len(s.Terms) == 0 || s.Limit <= 0 {
		return nil, nil
	}
	// Only active, non-guest accounts have directory words, so candidates
	// are filtered on the word index alone and users rows are read for the
	// matches only.
	var q strings.Builder
	var args []any
	terms := s.Terms
	if s.SharedWith != "" {
		q.WriteString(`WITH matched AS (SELECT DISTINCT p.user_id FROM memberships me JOIN memberships p ON p.room_id = me.room_id
			WHERE me.user_id = ? AND me.membership = 'join' AND p.membership = 'join' AND p.user_id <> ?`)
		args = append(args, s.SharedWith, s.Exclude)
	} else {
		// The longest term is the most selective start.
		longest := 0
		for i, t := range terms {
			if len(t) > len(terms[longest]) {
				longest = i
			}
		}
		lo, hi := directoryTermRange(terms[longest])
		q.WriteString(`WITH matched AS (SELECT DISTINCT p.user_id FROM user_directory_words p WHERE p.word >= ? AND p.word < ? AND p.user_id <> ?`)
		args = append(args, lo, hi, s.Exclude)
		terms = append(append([]string{}, terms[:longest]...), terms[longest+1:]...)
	}
	for _, t := range terms {
		lo, hi := directoryTermRange(t)
		q.WriteString(` AND EXISTS (SELECT 1 FROM user_directory_words w WHERE w.user_id = p.user_id AND w.word >= ? AND w.word < ?)`)
		args = append(args, lo, hi)
	}
	q.WriteString(`)
		SELECT u.user_id, u.displayname, u.avatar_url FROM matched m JOIN users u ON u.user_id = m.user_id
		WHERE u.deactivated = 0 AND u.is_guest = 0
		ORDER BY CASE WHEN u.displayname IS NULL THEN 1 ELSE 0 END, u.user_id LIMIT ?`)
	args = append(args, s.Limit)
	rows, err := db.query(ctx, q.String(), args...)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []DirectoryUser
	for rows.Next() {
		var u DirectoryUser
		var dn, av sql.NullString
		if err := rows.Scan(&u.UserID, &dn, &av); err != nil {
			return nil, err
		}
		u.DisplayName, u.AvatarURL = dn.String, av.String
		out = append(out, u)
	}
	return out, rows.Err()
}
