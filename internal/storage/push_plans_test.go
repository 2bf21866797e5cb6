package storage

import (
	"context"
	"path/filepath"
	"strings"
	"testing"
)

// TestPushActionQueryPlans checks, on SQLite, that the reads and deletes
// of event_push_actions (one row per notified member and event) go through
// its keys rather than the whole table.
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
		{"notifications", notificationsSQL(true), []string{"SEARCH p USING PRIMARY KEY (user_id=? AND room_id=? AND stream_pos<?)", "SEARCH e USING INTEGER PRIMARY KEY (rowid=?)"}},
		{"unread counts", `SELECT thread_id, COUNT(*), COALESCE(SUM(highlight), 0) FROM event_push_actions
		WHERE user_id = ? AND room_id = ? AND stream_pos > ? GROUP BY thread_id`, []string{"PRIMARY KEY (user_id=? AND room_id=? AND stream_pos>?)"}},
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
