package storage

import (
	"context"
	"database/sql"
	"encoding/json"
	"strconv"
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
		COALESCE((SELECT c.n FROM room_member_counts c WHERE c.room_id = r.room_id AND c.membership = 'join'), 0)
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
// not guest) accounts and returns at most s.Limit users. Its cost follows
// what the searcher may find, not the number of accounts: only active,
// non-guest accounts have directory words, so candidates are filtered on
// the word index alone and users rows are read for the results only.
//
// A scoped search (SharedWith) range-scans, in each of the searcher's
// rooms, the joined members' words starting with its longest term
// (room_member_words), so that it reads the matching members only, and
// orders its results with display-name holders first, then by user ID. An
// unscoped one walks the word index from its longest term's prefix in index
// order (matched word, then user ID) and stops once it has enough results,
// so that a common prefix costs no more than a rare one.
func (db *DB) SearchUsers(ctx context.Context, s UserSearch) ([]DirectoryUser, error) {
	if len(s.Terms) == 0 || s.Limit <= 0 {
		return nil, nil
	}
	if s.SharedWith != "" {
		return db.searchPeers(ctx, s)
	}
	return db.searchAllUsers(ctx, s)
}

// longestTerm splits terms into the longest (the most selective start of
// a search) and the others.
func longestTerm(terms []string) (string, []string) {
	longest := 0
	for i, t := range terms {
		if len(t) > len(terms[longest]) {
			longest = i
		}
	}
	return terms[longest], append(append([]string{}, terms[:longest]...), terms[longest+1:]...)
}

// termConditions adds, for each term, the condition that user column col
// has a word starting with it.
func termConditions(q *strings.Builder, args []any, col string, terms []string) []any {
	for _, t := range terms {
		lo, hi := directoryTermRange(t)
		q.WriteString(` AND EXISTS (SELECT 1 FROM user_directory_words w WHERE w.user_id = ` + col + ` AND w.word >= ? AND w.word < ?)`)
		args = append(args, lo, hi)
	}
	return args
}

func (db *DB) searchPeers(ctx context.Context, s UserSearch) ([]DirectoryUser, error) {
	first, rest := longestTerm(s.Terms)
	lo, hi := directoryTermRange(first)
	var q strings.Builder
	// (termConditions names user_directory_words w.)
	q.WriteString(`WITH matched AS (SELECT DISTINCT rw.user_id FROM memberships me
		JOIN room_member_words rw ON rw.room_id = me.room_id AND rw.word >= ? AND rw.word < ?
		WHERE me.user_id = ? AND me.membership = 'join' AND rw.user_id <> ?`)
	args := termConditions(&q, []any{lo, hi, s.SharedWith, s.Exclude}, "rw.user_id", rest)
	q.WriteString(`)
		SELECT u.user_id, u.displayname, u.avatar_url FROM matched m JOIN users u ON u.user_id = m.user_id
		WHERE u.deactivated = 0 AND u.is_guest = 0
		ORDER BY CASE WHEN u.displayname IS NULL THEN 1 ELSE 0 END, u.user_id LIMIT ` + strconv.Itoa(sqlLimit(s.Limit)))
	out, err := db.directoryUsers(ctx, q.String(), args...)
	if len(out) > s.Limit {
		out = out[:s.Limit]
	}
	return out, err
}

func (db *DB) searchAllUsers(ctx context.Context, s UserSearch) ([]DirectoryUser, error) {
	// The longest term is the most selective start.
	first, rest := longestTerm(s.Terms)
	lo, hi := directoryTermRange(first)
	var q strings.Builder
	q.WriteString(`SELECT p.word, p.user_id FROM user_directory_words p
		WHERE p.word < ? AND (p.word, p.user_id) > (?, ?) AND p.user_id <> ?`)
	// A user can match through several words: read a few more rows than
	// needed, and more pages while duplicates leave the list short.
	batch := sqlLimit(s.Limit*2 + 8)
	var ids []string
	seen := map[string]bool{}
	afterWord, afterUser := lo, ""
	for len(ids) < s.Limit {
		var qq strings.Builder
		qq.WriteString(q.String())
		args := termConditions(&qq, []any{hi, afterWord, afterUser, s.Exclude}, "p.user_id", rest)
		qq.WriteString(` ORDER BY p.word, p.user_id LIMIT ` + strconv.Itoa(batch))
		rows, err := db.query(ctx, qq.String(), args...)
		if err != nil {
			return nil, err
		}
		n := 0
		for rows.Next() {
			n++
			if err := rows.Scan(&afterWord, &afterUser); err != nil {
				rows.Close()
				return nil, err
			}
			if !seen[afterUser] && len(ids) < s.Limit {
				seen[afterUser] = true
				ids = append(ids, afterUser)
			}
		}
		rows.Close()
		if err := rows.Err(); err != nil {
			return nil, err
		}
		if n < batch {
			break
		}
	}
	if len(ids) == 0 {
		return nil, nil
	}
	args := make([]any, len(ids))
	for i, id := range ids {
		args[i] = id
	}
	found, err := db.directoryUsers(ctx, `SELECT user_id, displayname, avatar_url FROM users
		WHERE deactivated = 0 AND is_guest = 0 AND user_id IN (`+placeholders(len(ids))+`)`, args...)
	if err != nil {
		return nil, err
	}
	// Back in the word index's order.
	byID := make(map[string]DirectoryUser, len(found))
	for _, u := range found {
		byID[u.UserID] = u
	}
	out := make([]DirectoryUser, 0, len(found))
	for _, id := range ids {
		if u, ok := byID[id]; ok {
			out = append(out, u)
		}
	}
	return out, nil
}

// sqlLimit returns the LIMIT to spell in a statement's text for a query
// that needs n rows: n rounded up to a power of two, at least 16. A bound
// "LIMIT ?" made SQLite re-prepare the statement each time a value was
// bound (two thirds of a scoped search's time); spelled out, each distinct
// limit is a statement of its own in the statement caches, and rounding
// keeps those few whatever limits clients ask for.
func sqlLimit(n int) int {
	l := 16
	for l < n {
		l *= 2
	}
	return l
}

// directoryUsers runs a query returning (user_id, displayname, avatar_url).
func (db *DB) directoryUsers(ctx context.Context, q string, args ...any) ([]DirectoryUser, error) {
	rows, err := db.query(ctx, q, args...)
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
