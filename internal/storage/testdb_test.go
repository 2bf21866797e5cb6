package storage_test

import (
	"context"
	"testing"

	"github.com/rempart-hs/rempart/internal/storage"
	"github.com/rempart-hs/rempart/internal/testserver"
)

// openTestDB opens (and migrates) a fresh database on the backend the
// tests run against (REMPART_TEST_DB), closed at the end of the test. It
// returns the database URL too, for tests that also read it directly.
func openTestDB(tb testing.TB) (*storage.DB, string) {
	tb.Helper()
	cfg := testserver.TestConfig(tb)
	url := cfg.DatabaseURL()
	db, err := storage.Open(context.Background(), url)
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { db.Close() })
	return db, url
}

// mustTx runs f in a write transaction and fails the test if it fails.
func mustTx(tb testing.TB, db *storage.DB, f func(tx *storage.Tx) error) {
	tb.Helper()
	if err := db.WithTx(context.Background(), f); err != nil {
		tb.Fatal(err)
	}
}
