package specschema

import (
	"errors"
	"testing"
)

// Require returns the loaded spec (see [Load]). When the spec directory is
// absent it skips the test with a message saying where the spec was looked
// for ("matrix spec not found at …; conformance checks need
// ../shared/matrix-spec"); any other load error fails the test.
func Require(t testing.TB) *Spec {
	t.Helper()
	return require(t, Load)
}

func require(t testing.TB, load func() (*Spec, error)) *Spec {
	t.Helper()
	s, err := load()
	if errors.Is(err, ErrSpecMissing) {
		where, lerr := specLocation()
		if lerr != nil {
			where = "(" + lerr.Error() + ")"
		}
		t.Skipf("matrix spec not found at %s; conformance checks need %s beside the repository (or %s set to a matrix-spec checkout)",
			where, defaultSpecDir, EnvSpecDir)
		return nil
	}
	if err != nil {
		t.Fatalf("specschema: loading the matrix spec: %v", err)
		return nil
	}
	return s
}
