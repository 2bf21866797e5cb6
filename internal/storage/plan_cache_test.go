package storage

import (
	"net/url"
	"strings"
	"testing"
)

// TestWithGenericPlans: a PostgreSQL URL gets plan_cache_mode=force_generic_plan
// unless it chooses a mode itself, its other parameters kept, and a URL
// that does not parse is refused without being quoted (it holds the
// password).
func TestWithGenericPlans(t *testing.T) {
	got, err := withGenericPlans("postgres://u:secret@db.example:5432/rempart?sslmode=disable")
	if err != nil {
		t.Fatal(err)
	}
	u, err := url.Parse(got)
	if err != nil {
		t.Fatal(err)
	}
	q := u.Query()
	if q.Get("plan_cache_mode") != "force_generic_plan" || q.Get("sslmode") != "disable" {
		t.Errorf("query %q, want plan_cache_mode=force_generic_plan and sslmode=disable", u.RawQuery)
	}
	if p, _ := u.User.Password(); u.User.Username() != "u" || p != "secret" || u.Host != "db.example:5432" || u.Path != "/rempart" {
		t.Errorf("URL %q lost its user, host or database", got)
	}
	own := "postgres://u@db.example/rempart?plan_cache_mode=auto"
	if got, err := withGenericPlans(own); err != nil || got != own {
		t.Errorf("withGenericPlans(%q) = %q, %v; want it unchanged", own, got, err)
	}
	if _, err := withGenericPlans("postgres://u:secret@db.example:bad/x"); err == nil || strings.Contains(err.Error(), "secret") {
		t.Errorf("invalid URL: error %v, want one that does not quote the password", err)
	}
}
