package storage_test

import (
	"context"
	"database/sql"
	"regexp"
	"slices"
	"strconv"
	"testing"
	"time"

	"github.com/rempart-hs/rempart/internal/storage"
)

// TestAnalyzeStale: on PostgreSQL, AnalyzeStale analyses the tables whose
// rows changed since their last analysis, and a connection's statement
// planned before (once, as every statement is: force_generic_plan) is
// planned again from the new statistics. Without it, with autovacuum off,
// the plan made for an empty table stays.
func TestAnalyzeStale(t *testing.T) {
	defer storage.SetAnalyzeEvery(time.Hour)() // no pass of the analyser's own meanwhile
	db, url := openPostgresTestDB(t)
	ctx := context.Background()
	pool, err := sql.Open("pgx", url)
	if err != nil {
		t.Fatal(err)
	}
	defer pool.Close()
	conn, err := pool.Conn(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	if _, err := conn.ExecContext(ctx, `SET plan_cache_mode = force_generic_plan`); err != nil {
		t.Fatal(err)
	}
	// Planned while the table is empty.
	if _, err := conn.ExecContext(ctx, `PREPARE q AS SELECT user_id FROM txn_ids`); err != nil {
		t.Fatal(err)
	}
	estimate := func() int {
		t.Helper()
		var line string
		if err := conn.QueryRowContext(ctx, `EXPLAIN EXECUTE q`).Scan(&line); err != nil {
			t.Fatal(err)
		}
		m := regexp.MustCompile(`rows=(\d+)`).FindStringSubmatch(line)
		if m == nil {
			t.Fatalf("no row estimate in %q", line)
		}
		n, _ := strconv.Atoi(m[1])
		return n
	}
	estimate()
	const rows = 20000
	if _, err := conn.ExecContext(ctx, `INSERT INTO txn_ids (user_id, device_id, scope, txn_id, result, created_ts)
		SELECT '@u' || i || ':test', 'D', 'send', 't' || i, '$e' || i, 1 FROM generate_series(1, $1::int) i`, rows); err != nil {
		t.Fatal(err)
	}
	before := estimate()
	if before >= rows/2 {
		t.Logf("the plan was made again without an analysis (estimate %d); the check below proves less", before)
	}
	// The inserting backend reports its counts to the statistics system
	// within a second or so; wait for them.
	_, _ = conn.ExecContext(ctx, `SELECT pg_stat_force_next_flush()`)
	deadline := time.Now().Add(20 * time.Second)
	for {
		var n int64
		if err := pool.QueryRowContext(ctx, `SELECT n_mod_since_analyze FROM pg_stat_user_tables WHERE relname = 'txn_ids' AND schemaname = current_schema()`).Scan(&n); err != nil {
			t.Fatal(err)
		}
		if n >= rows {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("txn_ids: %d rows changed reported after 20 s, want %d", n, rows)
		}
		time.Sleep(200 * time.Millisecond)
	}

	analysed, err := db.AnalyzeStale(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Contains(analysed, "public.txn_ids") {
		t.Errorf("analysed %v, want public.txn_ids among them", analysed)
	}
	if slices.Contains(analysed, "public.users") {
		t.Errorf("analysed %v: users did not change", analysed)
	}
	if after := estimate(); after < rows*9/10 || after > rows*11/10 {
		t.Errorf("estimate after the analysis %d rows (before %d), want about %d: the statement was not planned again", after, before, rows)
	}
	// Analysed tables are no longer stale.
	if again, err := db.AnalyzeStale(ctx); err != nil || slices.Contains(again, "public.txn_ids") {
		t.Errorf("second pass analysed %v (%v), want txn_ids left alone", again, err)
	}
}

// TestAnalyserFollowsAutovacuum: the analyser runs exactly when
// PostgreSQL's autovacuum is off and its changed-row counts are kept, and
// never on SQLite.
func TestAnalyserFollowsAutovacuum(t *testing.T) {
	db, url := openTestDB(t)
	want := false
	if db.Dialect() == storage.Postgres {
		pool, err := sql.Open("pgx", url)
		if err != nil {
			t.Fatal(err)
		}
		defer pool.Close()
		var autovacuum, trackCounts bool
		if err := pool.QueryRow(`SELECT current_setting('autovacuum') = 'on', current_setting('track_counts') = 'on'`).Scan(&autovacuum, &trackCounts); err != nil {
			t.Fatal(err)
		}
		want = !autovacuum && trackCounts
	}
	if got := storage.AnalyserRunning(db); got != want {
		t.Errorf("analyser running: %v, want %v", got, want)
	}
	if tables, err := db.AnalyzeStale(context.Background()); db.Dialect() != storage.Postgres && (err != nil || tables != nil) {
		t.Errorf("SQLite AnalyzeStale: %v, %v; want nothing", tables, err)
	}
}
