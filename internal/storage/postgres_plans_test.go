package storage_test

import (
	"context"
	"database/sql"
	"fmt"
	"strings"
	"testing"

	"github.com/rempart-hs/rempart/internal/storage"
)

// openPostgresTestDB is openTestDB for the tests of PostgreSQL's plans:
// they skip on SQLite.
func openPostgresTestDB(t *testing.T) (*storage.DB, string) {
	t.Helper()
	db, url := openTestDB(t)
	if db.Dialect() != storage.Postgres {
		t.Skip("PostgreSQL only")
	}
	return db, url
}

// TestPostgresPlansGeneric: connections to PostgreSQL plan each prepared
// statement once (plan_cache_mode=force_generic_plan, see
// withGenericPlans), rather than again at every execution.
func TestPostgresPlansGeneric(t *testing.T) {
	db, _ := openPostgresTestDB(t)
	mode, err := storage.PlanCacheMode(db)
	if err != nil {
		t.Fatal(err)
	}
	if mode != "force_generic_plan" {
		t.Fatalf("plan_cache_mode %q, want force_generic_plan", mode)
	}
}

// TestStateGroupIDsPostgresGenericPlan: on PostgreSQL, StateGroupIDs reads
// the entries of its chain through the primary key even in the generic
// plan of its prepared statement (pgx prepares every statement, and
// PostgreSQL may switch to the generic plan after five executions). The
// plain join of the chain with state_group_entries got a sequential scan
// of the whole table there, a cost that grows with the server.
func TestStateGroupIDsPostgresGenericPlan(t *testing.T) {
	db, url := openPostgresTestDB(t)
	ctx := context.Background()
	conn, err := sql.Open("pgx", url)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	// 20,000 groups in chains of 21, each with an entry of its own, and
	// 100 groups of 1,500 members (the snapshots of a big room), which
	// make most of the table: PostgreSQL's statistics then see few
	// distinct groups and expect hundreds of rows per group, as on a
	// server with big rooms.
	for _, q := range []string{
		`INSERT INTO state_groups (group_id, room_id, prev_group, chain_len) OVERRIDING SYSTEM VALUE
			SELECT g, '!r' || (g / 21), CASE WHEN (g - 1000000) % 21 = 0 THEN NULL ELSE g - 1 END, (g - 1000000) % 21 FROM generate_series(1000000, 1019999) g`,
		`INSERT INTO state_group_entries (group_id, type, state_key, event_id)
			SELECT g, 't' || ((g - 1000000) % 21), '', '$e' || g FROM generate_series(1000000, 1019999) g`,
		`INSERT INTO state_group_entries (group_id, type, state_key, event_id)
			SELECT c * 21 + 1000008, 'm.room.member', '@u' || k, '$m' || c || '_' || k FROM generate_series(0, 99) c, generate_series(1, 1500) k`,
		`INSERT INTO state_group_entries (group_id, type, state_key, event_id) VALUES (1000015, 'm.room.member', '@u7', '$override')`,
		`ANALYZE state_groups`,
		`ANALYZE state_group_entries`,
	} {
		if _, err := conn.ExecContext(ctx, q); err != nil {
			t.Fatalf("%s: %v", q, err)
		}
	}
	plan := func(query string, params ...string) string {
		t.Helper()
		c, err := conn.Conn(ctx)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		if _, err := c.ExecContext(ctx, `SET plan_cache_mode = force_generic_plan`); err != nil {
			t.Fatal(err)
		}
		// The group, then text parameters (params, quoted).
		types, values := []string{"bigint"}, []string{"1000020"}
		for _, v := range params {
			types, values = append(types, "text"), append(values, "'"+v+"'")
		}
		for i := range types {
			query = strings.Replace(query, "?", fmt.Sprintf("$%d", i+1), 1)
		}
		if _, err := c.ExecContext(ctx, `PREPARE q (`+strings.Join(types, ", ")+`) AS `+query); err != nil {
			t.Fatal(err)
		}
		rows, err := c.QueryContext(ctx, `EXPLAIN EXECUTE q(`+strings.Join(values, ", ")+`)`)
		if err != nil {
			t.Fatal(err)
		}
		defer rows.Close()
		var out []string
		for rows.Next() {
			var line string
			if err := rows.Scan(&line); err != nil {
				t.Fatal(err)
			}
			out = append(out, line)
		}
		_, _ = c.ExecContext(ctx, `DEALLOCATE q`)
		return strings.Join(out, "\n")
	}
	const seqScan = "Seq Scan on state_group_entries"
	// The test can fail: the plain join (SQLite's form) scans the table.
	if p := plan(storage.StateGroupIDsSQL(storage.SQLite)); !strings.Contains(p, seqScan) {
		t.Logf("the plain join no longer scans the table here; the check below proves less:\n%s", p)
	}
	if p := plan(storage.StateGroupIDsSQL(storage.Postgres)); strings.Contains(p, seqScan) || !strings.Contains(p, "state_group_entries_pkey") {
		t.Fatalf("generic plan of StateGroupIDs does not read state_group_entries through its key:\n%s", p)
	}
	if p := plan(storage.StateGroupLazyIDsSQL(storage.Postgres, 2), "@u7", "@u8"); strings.Contains(p, seqScan) || !strings.Contains(p, "state_group_entries_pkey") {
		t.Fatalf("generic plan of StateGroupIDsLazy does not read state_group_entries through its key:\n%s", p)
	}
	// And the answer: each group of the chain adds its entry, a later
	// group overrides an earlier one.
	ids, err := db.StateGroupIDs(ctx, 1000020)
	if err != nil {
		t.Fatal(err)
	}
	if len(ids) != 21+1500 {
		t.Fatalf("state of group 1000020: %d entries, want %d", len(ids), 21+1500)
	}
	for g := 1000000; g <= 1000020; g++ {
		key := storage.StateKeyTuple{Type: fmt.Sprintf("t%d", (g-1000000)%21)}
		if want := fmt.Sprintf("$e%d", g); ids[key] != want {
			t.Errorf("%v = %q, want %q", key, ids[key], want)
		}
	}
	if got := ids[storage.StateKeyTuple{Type: "m.room.member", StateKey: "@u7"}]; got != "$override" {
		t.Errorf("@u7 = %q, want the later group's $override", got)
	}
	if got := ids[storage.StateKeyTuple{Type: "m.room.member", StateKey: "@u8"}]; got != "$m0_8" {
		t.Errorf("@u8 = %q, want $m0_8", got)
	}
}
