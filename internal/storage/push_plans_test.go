package storage

import (
	"context"
	"path/filepath"
	"strings"
	"testing"
)

// TestPushActionQueryPlans checks, on SQLite, that the reads and deletes
// of event_push_actions (one row per notified member and event) and of
// event_push_staged go through their keys rather than the whole table.
func TestPushActionQueryPlans(t *testing.T) {
	ctx := context.Background()
	db, err := Open(ctx, filepath.Join(t.TempDir(), "plans.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	cases := []struct {
		name, query string
		want        []string
	}{
		{"delete for a redacted event", deletePushActionsSQL, []string{"SEARCH event_push_actions USING PRIMARY KEY (user_id=? AND room_id=? AND stream_pos=?)"}},
		{"delete staged for a redacted event", deleteStagedPushActionsSQL, []string{"SEARCH event_push_staged USING PRIMARY KEY (room_id=?)"}},
		{"notifications", notificationsSQL(false, true), []string{"SEARCH p USING PRIMARY KEY (user_id=? AND room_id=? AND stream_pos<?)", "SEARCH e USING INTEGER PRIMARY KEY (rowid=?)"}},
		{"staged notifications", notificationsSQL(true, true), []string{"SEARCH p USING PRIMARY KEY (room_id=? AND user_id=? AND stream_pos<?)", "SEARCH e USING INTEGER PRIMARY KEY (rowid=?)"}},
		{"unread counts of a thread", threadCountSQL, []string{"SEARCH event_push_actions USING PRIMARY KEY (user_id=? AND room_id=? AND stream_pos>? AND stream_pos<?)",
			"SEARCH event_push_staged USING PRIMARY KEY (room_id=? AND user_id=? AND stream_pos>? AND stream_pos<?)"}},
		{"unread counts brought up to date", unreadIncrementSQL, []string{"SEARCH event_push_actions USING PRIMARY KEY (user_id=? AND room_id=? AND stream_pos>? AND stream_pos<?)",
			"SEARCH event_push_staged USING PRIMARY KEY (room_id=? AND user_id=? AND stream_pos>? AND stream_pos<?)",
			"SEARCH events USING INDEX events_room_stream (room_id=? AND stream_pos>? AND stream_pos<?)",
			"SEARCH r USING INDEX sqlite_autoindex_receipts_1 (room_id=? AND receipt_type=? AND user_id=?)"}},
		{"move: a chunk's end", `SELECT room_id, user_id, stream_pos FROM event_push_staged WHERE 1 = 1 AND (room_id, user_id, stream_pos) > (?, ?, ?)
			ORDER BY room_id, user_id, stream_pos LIMIT 1 OFFSET ?`, []string{"SEARCH event_push_staged USING PRIMARY KEY ((room_id,user_id,stream_pos)>(?,?,?))"}},
		{"move: a chunk's copy", moveStagedSQLiteInsert + `1 = 1 AND (room_id, user_id, stream_pos) > (?, ?, ?) AND (room_id, user_id, stream_pos) <= (?, ?, ?)
			ORDER BY user_id, room_id, stream_pos`, []string{"SEARCH event_push_staged USING PRIMARY KEY ((room_id,user_id,stream_pos)>(?,?,?) AND (room_id,user_id,stream_pos)<(?,?,?))", "USE TEMP B-TREE FOR ORDER BY"}},
		{"move: a chunk's delete", `DELETE FROM event_push_staged WHERE 1 = 1 AND (room_id, user_id, stream_pos) > (?, ?, ?) AND (room_id, user_id, stream_pos) <= (?, ?, ?)`,
			[]string{"SEARCH event_push_staged USING PRIMARY KEY ((room_id,user_id,stream_pos)>(?,?,?) AND (room_id,user_id,stream_pos)<(?,?,?))"}},
	}
	for _, c := range cases {
		text := queryPlan(t, ctx, db, c.query)
		for _, w := range c.want {
			if !strings.Contains(text, w) {
				t.Errorf("%s: plan lacks %q:\n%s", c.name, w, text)
			}
		}
	}
}
