package main

import (
	"bytes"
	"database/sql"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// walDB makes a SQLite database in WAL mode whose log holds known
// transactions, and keeps it open (closing would checkpoint the log away):
// one creating two tables and an index, then ten each inserting 200 rows
// into notes (a table and its index), then one updating a row of other.
func walDB(t *testing.T) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "w.db")
	db, err := sql.Open("sqlite", "file:"+path+"?_pragma=journal_mode(WAL)&_pragma=wal_autocheckpoint(0)")
	if err != nil {
		t.Fatal(err)
	}
	db.SetMaxOpenConns(1)
	t.Cleanup(func() { db.Close() })
	exec := func(q string, args ...any) {
		t.Helper()
		if _, err := db.Exec(q, args...); err != nil {
			t.Fatal(err)
		}
	}
	exec(`BEGIN; CREATE TABLE notes (id INTEGER PRIMARY KEY, body TEXT); CREATE INDEX notes_body ON notes (body);
		CREATE TABLE other (k TEXT PRIMARY KEY, v TEXT); INSERT INTO other VALUES ('a', 'x'); COMMIT`)
	for i := range 10 {
		tx, err := db.Begin()
		if err != nil {
			t.Fatal(err)
		}
		for j := range 200 {
			if _, err := tx.Exec(`INSERT INTO notes (body) VALUES (?)`, fmt.Sprintf("%08d %s", (i*7919+j*104729)%1000003, strings.Repeat("n", 40))); err != nil {
				t.Fatal(err)
			}
		}
		if err := tx.Commit(); err != nil {
			t.Fatal(err)
		}
	}
	exec(`UPDATE other SET v = 'y' WHERE k = 'a'`)
	return path
}

func TestWALPagesByTree(t *testing.T) {
	path := walDB(t)
	pageSize, commits, err := readWAL(path + "-wal")
	if err != nil {
		t.Fatal(err)
	}
	if pageSize != 4096 || len(commits) != 12 {
		t.Fatalf("page size %d, %d commits; want 4096, 12", pageSize, len(commits))
	}
	owners, err := pageOwners(path)
	if err != nil {
		t.Fatal(err)
	}
	// The inserts: notes and notes_body only, several pages each.
	r := analyse(pageSize, commits[1:11], owners, 0)
	got := map[string]float64{}
	for _, tr := range r.Trees {
		got[tr.Name] = tr.PerCommit
	}
	if got["notes"] < 2 || got["notes_body"] < 2 || got["other"] != 0 || got["sqlite_autoindex_other_1"] != 0 {
		t.Fatalf("inserts into notes wrote %v", got)
	}
	// The last commit: the other table's single page (and no more).
	last := analyse(pageSize, commits, owners, 1)
	if last.Commits != 1 || len(last.Trees) != 1 || last.Trees[0].Name != "other" || last.Trees[0].PerCommit != 1 {
		t.Fatalf("the update wrote %+v", last)
	}
}

// TestWALTornTail: a log cut in the middle of its last transaction (a
// crash during a write) gives the transactions before it.
func TestWALTornTail(t *testing.T) {
	path := walDB(t)
	b, err := os.ReadFile(path + "-wal")
	if err != nil {
		t.Fatal(err)
	}
	cut := filepath.Join(t.TempDir(), "cut-wal")
	// The last frame (the update) loses its last byte; one frame earlier
	// is flipped in a second copy, which ends the log there.
	if err := os.WriteFile(cut, b[:len(b)-1], 0o600); err != nil {
		t.Fatal(err)
	}
	_, commits, err := readWAL(cut)
	if err != nil {
		t.Fatal(err)
	}
	if len(commits) != 11 {
		t.Fatalf("%d commits in a log cut in its last frame, want 11", len(commits))
	}
	frame := 24 + 4096
	b[len(b)-frame-100] ^= 0xff // inside the page of the last insert's last frame
	if err := os.WriteFile(cut, b, 0o600); err != nil {
		t.Fatal(err)
	}
	if _, commits, err = readWAL(cut); err != nil || len(commits) != 10 {
		t.Fatalf("%d commits (%v) in a log whose 11th commit is damaged, want 10", len(commits), err)
	}
}

func TestRunPrintsJSON(t *testing.T) {
	path := walDB(t)
	var out bytes.Buffer
	if err := run([]string{"--json", "--commits", "10", path}, &out); err != nil {
		t.Fatal(err)
	}
	var r report
	if err := json.Unmarshal(out.Bytes(), &r); err != nil {
		t.Fatalf("%v: %s", err, out.String())
	}
	if r.Commits != 10 || r.PagesPerCommit <= 0 || len(r.Trees) == 0 {
		t.Fatalf("report %+v", r)
	}
	if err := run([]string{filepath.Join(t.TempDir(), "missing.db")}, &out); err == nil {
		t.Fatal("a database without a log: no error")
	}
}
