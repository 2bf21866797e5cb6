package storage

import (
	"context"
	"database/sql"
	"os"
	"path/filepath"
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
