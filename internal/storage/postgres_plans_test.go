package storage_test

import (
	"testing"

	"github.com/rempart-hs/rempart/internal/storage"
)

// TestPostgresPlansGeneric: connections to PostgreSQL plan each prepared
// statement once (plan_cache_mode=force_generic_plan, see
// withGenericPlans), rather than again at every execution.
func TestPostgresPlansGeneric(t *testing.T) {
	db, _ := openTestDB(t)
	if db.Dialect() != storage.Postgres {
		t.Skip("PostgreSQL only")
	}
	mode, err := storage.PlanCacheMode(db)
	if err != nil {
		t.Fatal(err)
	}
	if mode != "force_generic_plan" {
		t.Fatalf("plan_cache_mode %q, want force_generic_plan", mode)
	}
}
