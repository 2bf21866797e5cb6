package storage

import (
	"context"
	"database/sql"
	"encoding/json"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/tidwall/gjson"
)

// PublishedRoom is a room listed in the published room directory, with
// the state the directory shows.
type PublishedRoom struct {
	RoomID        string
	CreatedTS     int64
	JoinedMembers int
	// State maps a state event type (state key "") to its content. It is
	// shared with later calls (see PublishedRooms): read it, never write.
	State map[string]json.RawMessage
}

// The published rooms' directory state kept by PublishedRooms: a minute at
// most, and as many rooms as a large deployment publishes.
const (
	directoryStateMaxAge = time.Minute
	directoryStateMax    = 50_000
)

// directoryStateTypes are the state events the room directory shows.
var directoryStateTypes = []string{
	"m.room.create", "m.room.name", "m.room.topic", "m.room.avatar", "m.room.canonical_alias",
	"m.room.join_rules", "m.room.history_visibility", "m.room.guest_access",
}

// isDirectoryState reports whether a state event is one the room directory
// shows.
func isDirectoryState(evType string, stateKey *string) bool {
	return stateKey != nil && *stateKey == "" && slices.Contains(directoryStateTypes, evType)
}

// PublishedRooms returns every room published in the directory with its
// joined member count and directory state.
//
// The list and the counts are read at each call (one row per published
// room). The directory state, which took a request 90 ms with 1,000
// published rooms (parsing 8,000 events), is kept per room in
// db.directoryState: a commit that stores a directory state event or
// redacts one drops its room's entry (AppendEvent, RedactEvent), and an entry
// expires after directoryStateMaxAge, the bound on what a write by another
// process sharing the database would wait.
func (db *DB) PublishedRooms(ctx context.Context) ([]PublishedRoom, error) {
	epoch := db.directoryState.begin()
	rows, err := db.query(ctx, `SELECT r.room_id, r.created_ts, COALESCE(c.n, 0)
		FROM rooms r LEFT JOIN room_member_counts c ON c.room_id = r.room_id AND c.membership = 'join'
		WHERE r.visibility = 'public'`)
	if err != nil {
		return nil, err
	}
	var out []PublishedRoom
	var missing []string
	now := time.Now()
	for rows.Next() {
		var p PublishedRoom
		if err := rows.Scan(&p.RoomID, &p.CreatedTS, &p.JoinedMembers); err != nil {
			rows.Close()
			return nil, err
		}
		if st, ok := db.directoryState.get(p.RoomID, now); ok {
			p.State = st
		} else {
			missing = append(missing, p.RoomID)
		}
		out = append(out, p)
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return nil, err
	}
	if len(missing) == 0 {
		return out, nil
	}
	// One request at a time reads what is missing: requests arriving
	// together after a restart or an invalidation find it kept by the
	// first, rather than all reading it.
	db.directoryLoad.Lock()
	defer db.directoryLoad.Unlock()
	now = time.Now()
	still := missing[:0]
	for _, id := range missing {
		if _, ok := db.directoryState.get(id, now); !ok {
			still = append(still, id)
		}
	}
	states, err := db.directoryStates(ctx, still)
	if err != nil {
		return nil, err
	}
	for i := range out {
		if out[i].State != nil {
			continue
		}
		if st, ok := db.directoryState.get(out[i].RoomID, now); ok {
			out[i].State = st
			continue
		}
		st := states[out[i].RoomID]
		if st == nil {
			st = map[string]json.RawMessage{}
		}
		out[i].State = st
		db.directoryState.put(out[i].RoomID, st, epoch, now)
	}
	return out, nil
}

// directoryStatesSQL is directoryStates' query for n rooms (arguments: the
// rooms, then directoryStateTypes): a look-up by current_state's whole key
// for each room and type.
func directoryStatesSQL(n int) string {
	return `SELECT c.room_id, c.type, e.json FROM current_state c JOIN events e ON e.event_id = c.event_id
			WHERE c.room_id IN (` + placeholders(n) + `) AND c.type IN (` + placeholders(len(directoryStateTypes)) + `) AND c.state_key = ''`
}

// directoryStates reads the directory state of the rooms: for each, the
// content of each of its directoryStateTypes events.
func (db *DB) directoryStates(ctx context.Context, roomIDs []string) (map[string]map[string]json.RawMessage, error) {
	out := map[string]map[string]json.RawMessage{}
	err := chunks(roomIDs, func(part []string) error {
		args := stringArgs(part)
		for _, t := range directoryStateTypes {
			args = append(args, t)
		}
		rows, err := db.query(ctx, directoryStatesSQL(len(part)), args...)
		if err != nil {
			return err
		}
		defer rows.Close()
		for rows.Next() {
			var roomID, typ, js string
			if err := rows.Scan(&roomID, &typ, &js); err != nil {
				return err
			}
			content := gjson.Get(js, "content")
			if !content.IsObject() {
				continue
			}
			if out[roomID] == nil {
				out[roomID] = map[string]json.RawMessage{}
			}
			out[roomID][typ] = json.RawMessage(content.Raw)
		}
		return rows.Err()
	})
	return out, err
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
