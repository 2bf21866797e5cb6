package auth

import (
	"context"
	"strings"
	"testing"
)

func TestPasswordCost(t *testing.T) {
	ctx := context.Background()
	s := New(nil, "example.org", 1)
	def, err := s.HashPassword(ctx, "correct horse")
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(def, "$m=65536,t=1,p=2$") {
		t.Fatalf("default hash %q does not carry the default cost", def)
	}
	s.SetPasswordCost(256, 2)
	cheap, err := s.HashPassword(ctx, "correct horse")
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(cheap, "$m=256,t=2,p=2$") {
		t.Fatalf("hash %q does not carry the configured cost", cheap)
	}
	if !strings.Contains(s.dummyHash(), "$m=256,t=2,p=2$") {
		t.Fatalf("the unknown-user hash %q does not cost what a real one does", s.dummyHash())
	}
	// Hashes made at either cost are checked with their own parameters.
	for _, h := range []string{def, cheap} {
		if ok, err := s.CheckPassword(ctx, h, "correct horse"); err != nil || !ok {
			t.Fatalf("CheckPassword(%q) = %v, %v; want true", h, ok, err)
		}
		if ok, err := s.CheckPassword(ctx, h, "wrong horse"); err != nil || ok {
			t.Fatalf("CheckPassword(%q, wrong) = %v, %v; want false", h, ok, err)
		}
	}
}
