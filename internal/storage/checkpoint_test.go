package storage

import (
	"context"
	"database/sql"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestCheckpointerCopiesCommitsBack checks that a few commits, far below
// the writer's own checkpoint threshold, reach the database file itself
// (not only the write-ahead log) soon after: the checkpointer ran.
func TestCheckpointerCopiesCommitsBack(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	path := filepath.Join(dir, "ckpt.db")
	db, err := Open(ctx, path)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	err = db.WithTx(ctx, func(tx *Tx) error {
		if _, err := tx.exec(ctx, `CREATE TABLE ckpt_probe (v INTEGER)`); err != nil {
			return err
		}
		_, err := tx.exec(ctx, `INSERT INTO ckpt_probe (v) VALUES (42)`)
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	// The database file alone (copied without its -wal) has the row
	// once a checkpoint copied it back.
	deadline := time.Now().Add(5 * time.Second)
	for i := 0; ; i++ {
		b, err := os.ReadFile(path)
		if err != nil {
			t.Fatal(err)
		}
		cp := filepath.Join(dir, "copy.db")
		_ = os.Remove(cp)
		if err := os.WriteFile(cp, b, 0o600); err != nil {
			t.Fatal(err)
		}
		c, err := sql.Open("sqlite", "file:"+cp+"?mode=ro")
		if err != nil {
			t.Fatal(err)
		}
		var v int
		err = c.QueryRow(`SELECT v FROM ckpt_probe`).Scan(&v)
		c.Close()
		if err == nil && v == 42 {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("the commit is still only in the write-ahead log after 5 s (%v)", err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// TestCatchUpKeepsLogShort: under continuous writes, the checkpointer's
// passes and the committer's catch-ups restart the write-ahead log, which
// otherwise grows until the writer's own (high) threshold. The same load
// runs with catch-ups and without (catchUpAt out of reach); the log file,
// which never shrinks, records the longest log.
func TestCatchUpKeepsLogShort(t *testing.T) {
	defer func(every time.Duration, at, left int64) {
		checkpointEvery, catchUpAt, catchUpLeft = every, at, left
	}(checkpointEvery, catchUpAt, catchUpLeft)
	checkpointEvery, catchUpLeft = 20*time.Millisecond, 16
	load := func(at int64) (walBytes int64, catchUps uint64) {
		catchUpAt = at
		ctx := context.Background()
		path := filepath.Join(t.TempDir(), "catchup.db")
		db, err := Open(ctx, path)
		if err != nil {
			t.Fatal(err)
		}
		defer db.Close()
		if err := db.WithTx(ctx, func(tx *Tx) error {
			_, err := tx.exec(ctx, `CREATE TABLE load (k TEXT PRIMARY KEY, v TEXT)`)
			return err
		}); err != nil {
			t.Fatal(err)
		}
		end := time.Now().Add(1500 * time.Millisecond)
		for i := 0; time.Now().Before(end); i++ {
			err := db.Batch(ctx, "", func(ctx context.Context, tx *Tx) error {
				for j := range 20 {
					// Keys spread over the table: a page each.
					if _, err := tx.exec(ctx, `INSERT INTO load (k, v) VALUES (?, ?)`,
						fmt.Sprintf("%08d-%d", (i*7919+j*104729)%10000019, i), strings.Repeat("v", 200)); err != nil {
						return err
					}
				}
				return nil
			})
			if err != nil {
				t.Fatal(err)
			}
		}
		st, err := os.Stat(path + "-wal")
		if err != nil {
			t.Fatal(err)
		}
		return st.Size(), db.catchUps.Load()
	}
	without, n := load(1 << 40)
	if n != 0 {
		t.Fatalf("%d catch-ups with catchUpAt out of reach", n)
	}
	with, n := load(64)
	t.Logf("log file: %d bytes with catch-ups (%d), %d without", with, n, without)
	if n == 0 {
		t.Fatal("no catch-up under continuous writes")
	}
	if with*4 > without {
		t.Fatalf("log file %d bytes with catch-ups, %d without: the log did not restart", with, without)
	}
}
