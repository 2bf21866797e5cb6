package storage

import (
	"context"
	"log/slog"
	"time"
)

// Planner statistics on PostgreSQL when autovacuum is off.
//
// Connections plan each prepared statement once (plan_cache_mode =
// force_generic_plan, see withGenericPlans), and PostgreSQL plans a
// statement again only when the statistics of a table it reads change.
// Autovacuum's analyses bring those statistics up to date as tables grow.
// With autovacuum off (some deployments vacuum on a schedule of their own;
// this repository's CI machine turns it off), a server that started on a
// small database kept the plans made for small tables, sequential scans
// that cost more with every row. On a 10,000-user benchmark data set grown
// by one server process, an initial sync of 500 rooms took 2.7 s, and
// 0.77 s with the analyses below.
//
// So when autovacuum is off, an analyser goroutine does what its analyses
// would: every analyzeEvery it analyses the tables of the schema in which
// more rows changed since their last analysis than autovacuum's default
// threshold (50 rows plus a tenth of the table). Vacuuming is left to the
// deployment. Several processes sharing a database each run one; a second
// ANALYZE of a table only repeats the first.

// Analysis tuning (variables so that tests can change them).
var (
	// analyzeEvery is how often the analyser looks for changed tables.
	analyzeEvery = 30 * time.Second
)

// Autovacuum's defaults: autovacuum_analyze_threshold and
// autovacuum_analyze_scale_factor.
const (
	analyzeThreshold = 50
	analyzeScale     = 0.1
)

// staleTablesSQL lists the tables of the current schema changed enough
// since their last analysis, each spelled for a statement (quoted by
// PostgreSQL itself).
const staleTablesSQL = `SELECT format('%I.%I', schemaname, relname) FROM pg_stat_user_tables
	WHERE schemaname = current_schema() AND n_mod_since_analyze > ?::float8 + ?::float8 * GREATEST(n_live_tup, 0)
	ORDER BY relname`

// AnalyzeStale analyses, on PostgreSQL, the tables changed enough since
// their last analysis (see staleTablesSQL) and returns their names. It
// does nothing on SQLite, whose plans do not depend on statistics it
// has not been asked to gather.
func (db *DB) AnalyzeStale(ctx context.Context) ([]string, error) {
	if db.dialect != Postgres {
		return nil, nil
	}
	tables, err := db.strings(ctx, staleTablesSQL, analyzeThreshold, analyzeScale)
	if err != nil {
		return nil, err
	}
	for i, t := range tables {
		if _, err := db.write.ExecContext(ctx, `ANALYZE `+t); err != nil {
			return tables[:i], err
		}
	}
	return tables, nil
}

// autovacuumSettings reads PostgreSQL's autovacuum and track_counts
// settings (the changed-row counts the analyser reads need the latter).
func (db *DB) autovacuumSettings(ctx context.Context) (autovacuum, trackCounts bool, err error) {
	err = db.queryRow(ctx, `SELECT current_setting('autovacuum') = 'on', current_setting('track_counts') = 'on'`).Scan(&autovacuum, &trackCounts)
	return autovacuum, trackCounts, err
}

// startAnalyser runs AnalyzeStale every analyzeEvery, from the start,
// when the database is PostgreSQL with autovacuum off; otherwise it
// returns nil.
func startAnalyser(ctx context.Context, db *DB) *background {
	if db.dialect != Postgres {
		return nil
	}
	autovacuum, trackCounts, err := db.autovacuumSettings(ctx)
	switch {
	case err != nil:
		slog.Warn("storage: cannot read PostgreSQL's autovacuum setting; tables are not analysed by Rempart", "err", err)
		return nil
	case autovacuum:
		return nil
	case !trackCounts:
		slog.Warn("storage: PostgreSQL's autovacuum and track_counts are off: no table statistics are gathered, and plans stay those made for the tables' first sizes")
		return nil
	}
	slog.Info("storage: PostgreSQL's autovacuum is off: Rempart analyses its tables as they change (it does not vacuum them)")
	return startBackground(analyzeEvery, true, func(ctx context.Context) {
		tctx, tcancel := context.WithTimeout(ctx, 5*time.Minute)
		defer tcancel()
		if tables, err := db.AnalyzeStale(tctx); err != nil && ctx.Err() == nil {
			slog.Warn("storage: analyse changed tables", "err", err)
		} else if len(tables) > 0 {
			slog.Debug("storage: analysed changed tables", "tables", tables)
		}
	})
}
