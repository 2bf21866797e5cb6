package storage

import (
	"context"
	"embed"
	"fmt"
	"io/fs"
	"sort"
	"strconv"
	"strings"
	"time"
)

//go:embed migrations/*.sql
var migrationFiles embed.FS

// dialectTokens maps the placeholders used in migration files to each
// backend's spelling, so that every migration is written once.
var dialectTokens = map[Dialect]*strings.Replacer{
	SQLite: strings.NewReplacer(
		"{{serial}}", "INTEGER PRIMARY KEY AUTOINCREMENT",
		"{{blob}}", "BLOB",
		"{{bool}}", "INTEGER",
		"{{binary}}", "",
		"{{without_rowid}}", "WITHOUT ROWID",
	),
	Postgres: strings.NewReplacer(
		"{{serial}}", "BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY",
		"{{blob}}", "BYTEA",
		"{{bool}}", "SMALLINT",
		"{{binary}}", `COLLATE "C"`,
		"{{without_rowid}}", "",
	),
}

// goSteps are migration steps written in Go, run right after the SQL file
// of the same version and in its transaction (data that SQL cannot derive).
var goSteps = map[int]func(ctx context.Context, tx *Tx) error{
	11: reindexUserDirectory,
	13: roomMemberWordsStep,
	18: roomMemberCountsStep,
}

// migrate applies, in order, each embedded migration not yet recorded in
// schema_migrations. Files are named NNN_description.sql; each runs in its
// own transaction. On PostgreSQL an advisory lock serialises concurrent
// start-ups of several processes.
func (db *DB) migrate(ctx context.Context) error {
	if _, err := db.exec(ctx, `CREATE TABLE IF NOT EXISTS schema_migrations (version INTEGER PRIMARY KEY, name TEXT NOT NULL, applied_ts BIGINT NOT NULL)`); err != nil {
		return fmt.Errorf("create schema_migrations: %w", err)
	}
	entries, err := fs.ReadDir(migrationFiles, "migrations")
	if err != nil {
		return err
	}
	type mig struct {
		version int
		name    string
	}
	var migs []mig
	for _, e := range entries {
		name := e.Name()
		num, _, ok := strings.Cut(name, "_")
		v, err := strconv.Atoi(num)
		if !ok || err != nil || !strings.HasSuffix(name, ".sql") {
			return fmt.Errorf("migration file %q is not named NNN_description.sql", name)
		}
		migs = append(migs, mig{v, name})
	}
	sort.Slice(migs, func(i, j int) bool { return migs[i].version < migs[j].version })
	for i := 1; i < len(migs); i++ {
		if migs[i].version == migs[i-1].version {
			return fmt.Errorf("two migrations numbered %d", migs[i].version)
		}
	}
	for _, m := range migs {
		body, err := migrationFiles.ReadFile("migrations/" + m.name)
		if err != nil {
			return err
		}
		sqlText := dialectTokens[db.dialect].Replace(string(body))
		err = db.WithTx(ctx, func(tx *Tx) error {
			if db.dialect == Postgres {
				if _, err := tx.exec(ctx, `SELECT pg_advisory_xact_lock(7263001)`); err != nil {
					return err
				}
			}
			var n int
			if err := tx.queryRow(ctx, `SELECT COUNT(*) FROM schema_migrations WHERE version = ?`, m.version).Scan(&n); err != nil {
				return err
			}
			if n > 0 {
				return nil
			}
			for _, stmt := range splitStatements(sqlText) {
				if _, err := tx.exec(ctx, stmt); err != nil {
					return fmt.Errorf("%w\nstatement: %s", err, stmt)
				}
			}
			if step := goSteps[m.version]; step != nil {
				if err := step(ctx, tx); err != nil {
					return err
				}
			}
			_, err := tx.exec(ctx, `INSERT INTO schema_migrations (version, name, applied_ts) VALUES (?, ?, ?)`, m.version, m.name, time.Now().UnixMilli())
			return err
		})
		if err != nil {
			return fmt.Errorf("migration %s: %w", m.name, err)
		}
	}
	return nil
}

// splitStatements splits a migration on semicolons at line ends and drops
// comment-only chunks.
func splitStatements(s string) []string {
	var out []string
	for _, part := range strings.Split(s, ";\n") {
		var lines []string
		for _, l := range strings.Split(part, "\n") {
			if t := strings.TrimSpace(l); t == "" || strings.HasPrefix(t, "--") {
				continue
			}
			lines = append(lines, l)
		}
		stmt := strings.TrimSuffix(strings.TrimSpace(strings.Join(lines, "\n")), ";")
		if stmt != "" {
			out = append(out, stmt)
		}
	}
	return out
}
