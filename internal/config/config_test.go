package config

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestDefaultsAreSecureAndValid(t *testing.T) {
	c := Default()
	if err := c.Validate(); err != nil {
		t.Fatalf("default config invalid: %v", err)
	}
	if c.Registration.Mode != "closed" {
		t.Errorf("registration mode %q, want closed", c.Registration.Mode)
	}
	if c.Presence.Enabled {
		t.Error("presence on by default")
	}
	if !c.RateLimits.Enabled {
		t.Error("rate limits off by default")
	}
	if c.AdminListen == c.Listen || !strings.HasPrefix(c.AdminListen, "127.0.0.1:") {
		t.Errorf("admin listener %q must be its own loopback address", c.AdminListen)
	}
	if c.Registration.SharedSecret != "" {
		t.Error("shared-secret registration on by default")
	}
}

func TestExampleParsesToDefaults(t *testing.T) {
	c := Default()
	if err := Parse([]byte(Example()), &c); err != nil {
		t.Fatalf("example does not parse: %v", err)
	}
	d := Default()
	if c.Listen != d.Listen || c.Registration != d.Registration || c.Limits != d.Limits || c.Rooms != d.Rooms || c.RateLimits != d.RateLimits {
		t.Fatalf("example differs from defaults:\n%+v\n%+v", c, d)
	}
}

func TestErrorsNameTheKey(t *testing.T) {
	cases := []struct {
		yaml string
		key  string
	}{
		{"bogus: 1\n", "bogus"},
		{"registration:\n  mode: maybe\n", "registration.mode"},
		{"registration:\n  nope: 1\n", "registration.nope"},
		{"rate_limits:\n  typo: 1\n", "rate_limits.typo"},
		{"listen: nowhere\n", "listen"},
		{"server_name: 'bad name'\n", "server_name"},
		{"rooms:\n  default_version: '9'\n", "rooms.default_version"},
		{"limits:\n  read_timeout: 10ms\n", "limits.read_timeout"},
		{"log:\n  level: loud\n", "log.level"},
		{"limits:\n  password_hash_memory_kib: 8\n", "limits.password_hash_memory_kib"},
		{"limits:\n  password_hash_iterations: 0\n", "limits.password_hash_iterations"},
	}
	for _, tc := range cases {
		c := Default()
		err := Parse([]byte(tc.yaml), &c)
		var ce *Error
		if !errors.As(err, &ce) {
			t.Errorf("%q: got %v, want a config error", tc.yaml, err)
			continue
		}
		if ce.Key != tc.key {
			t.Errorf("%q: error names %q, want %q (%v)", tc.yaml, ce.Key, tc.key, err)
		}
	}
}

func TestLoadFile(t *testing.T) {
	p := filepath.Join(t.TempDir(), "rempart.yaml")
	if err := os.WriteFile(p, []byte("server_name: example.org\ndatabase:\n  url: postgres://x@h/db\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	c, err := Load(p)
	if err != nil {
		t.Fatal(err)
	}
	if c.ServerName != "example.org" || c.DatabaseURL() != "postgres://x@h/db" {
		t.Fatalf("loaded %+v", c)
	}
	if c.Listen != Default().Listen {
		t.Fatal("defaults not kept for absent keys")
	}
	if _, err := Load(filepath.Join(t.TempDir(), "missing.yaml")); err == nil {
		t.Fatal("missing file accepted")
	}
}
