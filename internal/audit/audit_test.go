package audit_test

import (
	"context"
	"database/sql"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/rempart-hs/rempart/internal/audit"
	"github.com/rempart-hs/rempart/internal/storage"
	"github.com/rempart-hs/rempart/internal/testserver"
)

// openLog opens a fresh database of the backend under test and returns its
// audit log, plus a raw connection to play an attacker who can write to the
// database but holds no key.
func openLog(t *testing.T) (*audit.Log, *storage.DB, *sql.DB) {
	t.Helper()
	cfg := testserver.TestConfig(t)
	ctx := context.Background()
	db, err := storage.Open(ctx, cfg.DatabaseURL())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	key, err := audit.LoadOrCreateKey(filepath.Join(cfg.DataDir, "audit.key"))
	if err != nil {
		t.Fatal(err)
	}
	driver, dsn := "sqlite", "file:"+cfg.DatabaseURL()
	if strings.HasPrefix(cfg.DatabaseURL(), "postgres") {
		driver, dsn = "pgx", cfg.DatabaseURL()
	}
	raw, err := sql.Open(driver, dsn)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { raw.Close() })
	return audit.New(db, key), db, raw
}

func mustVerify(t *testing.T, l *audit.Log) audit.Report {
	t.Helper()
	rep, err := l.Verify(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	return rep
}

// TestChainUnderConcurrency: concurrent appends form one gapless chain.
func TestChainUnderConcurrency(t *testing.T) {
	l, db, _ := openLog(t)
	ctx := context.Background()
	var wg sync.WaitGroup
	errs := make(chan error, 40)
	for i := range 40 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			errs <- l.Record(ctx, audit.Entry{Actor: fmt.Sprintf("@u%d:localhost", i%4), Action: "test.act", Target: fmt.Sprint(i),
				Details: map[string]any{"n": i}})
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
	rep := mustVerify(t, l)
	if !rep.OK() || rep.Records != 40 || rep.HeadSeq != 40 || len(rep.HeadHash) != 64 {
		t.Fatalf("report: %+v", rep)
	}
	recs, err := db.AuditRecords(ctx, 0, 100, storage.AuditFilter{Actor: "@u1:localhost"})
	if err != nil || len(recs) != 10 {
		t.Fatalf("filter by actor: %d records, %v", len(recs), err)
	}
}

// TestTamperingIsDetected plays an attacker with write access to the
// database: every alteration, insertion, removal or truncation is found.
func TestTamperingIsDetected(t *testing.T) {
	cases := []struct {
		name   string
		sql    []string
		broken int64
	}{
		{"altered details", []string{`UPDATE audit_log SET details = '{"n":99}' WHERE seq = 3`}, 3},
		{"altered actor", []string{`UPDATE audit_log SET actor = '@someone:localhost' WHERE seq = 2`}, 2},
		{"removed record", []string{`DELETE FROM audit_log WHERE seq = 4`}, 4},
		{"renumbered after removal", []string{`DELETE FROM audit_log WHERE seq = 4`, `UPDATE audit_log SET seq = seq - 1 WHERE seq > 4`,
			`UPDATE audit_head SET seq = seq - 1`}, 4},
		{"truncated head", []string{`DELETE FROM audit_log WHERE seq = 5`}, 5},
		{"forged record", []string{`INSERT INTO audit_log (seq, ts, actor, action, target, ip, details, prev_hash, hash)
			SELECT 6, ts, actor, action, target, ip, details, hash, hash FROM audit_log WHERE seq = 5`,
			`UPDATE audit_head SET seq = 6, hash = (SELECT hash FROM audit_log WHERE seq = 5)`}, 6},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			l, _, raw := openLog(t)
			ctx := context.Background()
			for i := range 5 {
				if err := l.Record(ctx, audit.Entry{Actor: "@a:localhost", Action: "test.act", Target: fmt.Sprint(i), Details: map[string]any{"n": i}}); err != nil {
					t.Fatal(err)
				}
			}
			if rep := mustVerify(t, l); !rep.OK() || rep.Records != 5 {
				t.Fatalf("before tampering: %+v", rep)
			}
			for _, q := range c.sql {
				if _, err := raw.Exec(q); err != nil {
					t.Fatalf("%s: %v", q, err)
				}
			}
			rep := mustVerify(t, l)
			if rep.OK() || rep.Broken != c.broken || rep.Problem == "" {
				t.Fatalf("tampering not found where expected (%d): %+v", c.broken, rep)
			}
		})
	}
}

// TestWrongKeyFails: a chain does not verify under another key.
func TestWrongKeyFails(t *testing.T) {
	l, db, _ := openLog(t)
	ctx := context.Background()
	if err := l.Record(ctx, audit.Entry{Actor: "@a:localhost", Action: "test.act"}); err != nil {
		t.Fatal(err)
	}
	other, err := audit.LoadOrCreateKey(filepath.Join(t.TempDir(), "other.key"))
	if err != nil {
		t.Fatal(err)
	}
	if rep := mustVerify(t, audit.New(db, other)); rep.OK() || rep.Broken != 1 {
		t.Fatalf("verified under another key: %+v", rep)
	}
}

// TestRecordTxRollsBackWithTheAct: a record made inside a transaction that
// fails is not kept, and the chain stays whole.
func TestRecordTxRollsBackWithTheAct(t *testing.T) {
	l, db, _ := openLog(t)
	ctx := context.Background()
	boom := fmt.Errorf("the act failed")
	err := db.WithTx(ctx, func(tx *storage.Tx) error {
		if err := l.RecordTx(ctx, tx, audit.Entry{Actor: "@a:localhost", Action: "test.act"}); err != nil {
			return err
		}
		return boom
	})
	if err != boom {
		t.Fatalf("WithTx: %v", err)
	}
	if err := l.Record(ctx, audit.Entry{Actor: "@a:localhost", Action: "test.after"}); err != nil {
		t.Fatal(err)
	}
	if rep := mustVerify(t, l); !rep.OK() || rep.Records != 1 {
		t.Fatalf("report: %+v", rep)
	}
}

// TestKeyFile: the key is created once, private, and read back the same.
func TestKeyFile(t *testing.T) {
	p := filepath.Join(t.TempDir(), "sub", "audit.key")
	k1, err := audit.LoadOrCreateKey(p)
	if err != nil {
		t.Fatal(err)
	}
	k2, err := audit.LoadOrCreateKey(p)
	if err != nil || string(k1) != string(k2) || len(k1) != 32 {
		t.Fatalf("key not stable: %v", err)
	}
	if fi, err := statMode(p); err != nil || fi != 0o600 {
		t.Fatalf("key mode %o, %v", fi, err)
	}
}

func statMode(p string) (uint32, error) {
	fi, err := os.Stat(p)
	if err != nil {
		return 0, err
	}
	return uint32(fi.Mode().Perm()), nil
}
