package storage

import (
	"context"
	"path/filepath"
	"strings"
	"testing"
)

// TestSyncQueryPlans checks, on SQLite, that the reads of a sync use the
// indexes that keep their cost to the user's rooms or to the window between
// two sync positions. SQLite has no statistics here and picks indexes by
// rule, so a small change of a query (an ORDER BY) can make it read a
// type of event across the whole server.
func TestSyncQueryPlans(t *testing.T) {
	ctx := context.Background()
	db, err := Open(ctx, filepath.Join(t.TempDir(), "plans.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	cases := []struct {
		name, query string
		want        []string // each must appear in the plan
	}{
		{"StateHistory", stateHistorySQL(true), []string{"events_room_state (room_id=? AND type=? AND state_key=?)"}},
		{"StateHistoryRooms", stateHistoryRoomsSQL(3), []string{"events_room_state (room_id=? AND type=? AND state_key=?)"}},
		{"JoinedRoomMemberEvents scan", db.joinedRoomMemberEventsSQL(true), []string{"INTEGER PRIMARY KEY (rowid>? AND rowid<?)", "COVERING INDEX memberships_room_joined (room_id=? AND membership=? AND user_id=?)"}},
		{"JoinedRoomMemberEvents per room", db.joinedRoomMemberEventsSQL(false), []string{"memberships_user_sync (user_id=?)", "events_room_stream (room_id=? AND stream_pos>? AND stream_pos<?)"}},
		{"RoomsWithEventsBetween scan", db.roomsInWindowSQL(), []string{"INTEGER PRIMARY KEY (rowid>? AND rowid<?)"}},
		{"StateEventsBetweenRooms", stateEventsBetweenRoomsSQL(3), []string{"events_room_stream (room_id=? AND stream_pos>? AND stream_pos<?)"}},
		{"StateChangesAndMembers", stateChangesAndMembersSQL(2, 2), []string{"events_room_stream (room_id=? AND stream_pos>? AND stream_pos<?)",
			"SEARCH c USING INDEX sqlite_autoindex_current_state_1 (room_id=? AND type=? AND state_key=?)"}},
		{"CurrentStateRooms without members", currentStateRoomsSQL(3, false), []string{"SEARCH c USING INDEX sqlite_autoindex_current_state_1 (room_id=? AND type<?)",
			"SEARCH c USING INDEX sqlite_autoindex_current_state_1 (room_id=? AND type>?)"}},
		{"directoryStates", directoryStatesSQL(3), []string{"SEARCH c USING INDEX sqlite_autoindex_current_state_1 (room_id=? AND type=? AND state_key=?)"}},
		{"RoomsWithState", roomsWithStateSQL(3, 2), []string{"SEARCH current_state USING COVERING INDEX sqlite_autoindex_current_state_1 (room_id=? AND type=? AND state_key=?)"}},
		{"TimelinePage", timelinePageSQL(11), []string{"events_room_stream (room_id=? AND stream_pos>? AND stream_pos<?)"}},
		{"TimelinePages", timelinePagesSQL(2, 11), []string{"SCAN t0", "SCAN t1", "events_room_stream (room_id=? AND stream_pos>? AND stream_pos<?)"}},
		{"UnreadCountsRooms", unreadCountsRoomsSQL(2), []string{"MATERIALIZE rp", "SEARCH p USING PRIMARY KEY (user_id=? AND room_id=? AND stream_pos>? AND stream_pos<?)",
			"SEARCH p USING PRIMARY KEY (room_id=? AND user_id=? AND stream_pos>? AND stream_pos<?)",
			"SEARCH r USING INDEX sqlite_autoindex_receipts_1 (room_id=? AND receipt_type=? AND user_id=? AND thread_id=?)"}},
		{"ThreadRoots", threadRootsSQL(false), []string{"events_room_rel (room_id=? AND rel_type=?"}},
		{"ThreadRoots participant", threadRootsSQL(true), []string{"events_room_rel (room_id=? AND rel_type=?"}},
		{"StateGroupIDs", stateGroupIDsSQL(SQLite), []string{"SEARCH e USING INDEX sqlite_autoindex_state_group_entries_1 (group_id=?)"}},
		{"StateGroupIDsLazy", stateGroupLazyIDsSQL(SQLite, 3), []string{"SEARCH e USING INDEX sqlite_autoindex_state_group_entries_1 (group_id=? AND type<?)",
			"SEARCH e USING INDEX sqlite_autoindex_state_group_entries_1 (group_id=? AND type>?)",
			"SEARCH e USING INDEX sqlite_autoindex_state_group_entries_1 (group_id=? AND type=? AND state_key=?)"}},
		{"PruneTxnIDs", pruneTxnIDsSQL, []string{"SEARCH txn_ids USING COVERING INDEX txn_ids_created (created_ts<?)", "SEARCH txn_ids USING PRIMARY KEY (user_id=? AND device_id=? AND scope=? AND txn_id=?)"}},
		{"PruneReadPushActions", pruneReadPushActionsSQL + ` AND thread_id = ?`, []string{"SEARCH event_push_actions USING PRIMARY KEY (user_id=? AND room_id=? AND stream_pos<?)"}},
		{"ReadReceiptsAfter", readReceiptsAfterSQL, []string{"SEARCH receipts USING COVERING INDEX sqlite_autoindex_receipts_1 ((room_id,receipt_type,user_id,thread_id)>(?,?,?,?))"}},
		{"FirstEventFrom", firstEventFromSQL, []string{"SEARCH events USING INTEGER PRIMARY KEY (rowid>?)"}},
		{"SyncMemberships", syncMembershipsSQL, []string{"COVERING INDEX memberships_user_sync (user_id=? AND forgotten=?)"}},
		{"MembershipChanges", membershipChangesSQL, []string{"events_state (type=? AND state_key=? AND stream_pos>? AND stream_pos<?)"}},
		{"Relations", relationsSQL, []string{"events_relates_to (relates_to=? AND room_id=? AND stream_pos>? AND stream_pos<?)"}},
		{"ThreadSummaries", threadSummariesSQL(2), []string{"events_relates_to (relates_to=?)"}},
		{"DeviceListChangesSharing", deviceListChangesSharingSQL, []string{"SEARCH c USING INDEX sqlite_autoindex_e2e_device_list_changes_1 (stream_pos>? AND stream_pos<?)", "SEARCH a USING", "SEARCH b USING COVERING INDEX memberships_room_joined (room_id=? AND membership=? AND user_id=?)"}},
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

// queryPlan returns SQLite's EXPLAIN QUERY PLAN of query, one line per
// step, with every parameter bound to a string.
func queryPlan(t *testing.T, ctx context.Context, db *DB, query string) string {
	t.Helper()
	args := make([]any, strings.Count(query, "?"))
	for i := range args {
		args[i] = "x"
	}
	rows, err := db.read.QueryContext(ctx, "EXPLAIN QUERY PLAN "+query, args...)
	if err != nil {
		t.Fatalf("explain: %v", err)
	}
	defer rows.Close()
	var plan []string
	for rows.Next() {
		var id, parent, unused int
		var detail string
		if err := rows.Scan(&id, &parent, &unused, &detail); err != nil {
			t.Fatal(err)
		}
		plan = append(plan, detail)
	}
	return strings.Join(plan, "\n")
}
