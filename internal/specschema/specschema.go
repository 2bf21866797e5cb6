// Package specschema checks JSON produced by the homeserver against the
// Matrix specification's own OpenAPI 3.1 / JSON Schema definitions (spec
// v1.19, a checkout of matrix-org/matrix-spec kept beside the repository in
// ../shared/matrix-spec).
//
// It is a test-support package: conformance tests call [Require] to get the
// parsed client-server API, then [Spec.Validate] on each response body (and
// [Spec.ValidateEvent] on events), and fail with the list of violations.
//
// The spec directory is found as follows: if the environment variable
// REMPART_MATRIX_SPEC is set, it names the matrix-spec checkout (a relative
// value is taken relative to the repository root); otherwise
// ../shared/matrix-spec relative to the repository root, the directory
// holding go.mod found by walking up from the working directory. Either the
// checkout root (containing data/) or its data/ directory itself is accepted.
//
// OpenAPI annotations (example, examples, x-* extensions, description, ...)
// are ignored, and "format" is treated as an annotation, so the Matrix
// formats (mx-user-id, ...) never fail validation on their own.
package specschema

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"

	"github.com/santhosh-tekuri/jsonschema/v6"
)

// EnvSpecDir is the environment variable that overrides the location of the
// matrix-spec checkout.
const EnvSpecDir = "REMPART_MATRIX_SPEC"

// defaultSpecDir is the spec location relative to the repository root.
const defaultSpecDir = "../shared/matrix-spec"

// ErrSpecMissing is returned (wrapped, with the path tried) by [Load] when
// the matrix-spec directory does not exist.
var ErrSpecMissing = errors.New("matrix spec not found")

// ErrNoSchema is wrapped by the errors of [Spec.Validate],
// [Spec.ValidateRequest] and [Spec.ValidateEvent] when the spec defines no
// JSON schema for what was asked (unknown path, method, status or event
// type), as opposed to a body that violates a schema.
var ErrNoSchema = errors.New("no schema")

// Spec is the parsed client-server API of the Matrix specification. It is
// safe for concurrent use.
type Spec struct {
	dir  string // the spec's data directory (holding api/, schemas/, event-schemas/)
	docs *docCache

	mu       sync.Mutex // guards compiler and events
	compiler *jsonschema.Compiler
	events   map[string]*compiled

	ops      []*operation
	problems []error
}

// compiled is one schema location and the result of compiling it.
type compiled struct {
	loc    string // schema location, relative to the data directory
	schema *jsonschema.Schema
	err    error
}

var (
	loadOnce sync.Once
	loaded   *Spec
	loadErr  error
)

// Load parses and compiles all client-server API files of the spec once per
// process and returns the result (later calls return the cached value). It
// returns an error wrapping [ErrSpecMissing] if the spec directory is
// absent, and another error if a file cannot be read or parsed. Schemas that
// fail to compile do not fail Load: they are listed by [Spec.Problems] and
// reported by Validate for the affected operations.
func Load() (*Spec, error) {
	loadOnce.Do(func() {
		dir, err := findSpecDir()
		if err != nil {
			loadErr = err
			return
		}
		loaded, loadErr = loadDir(dir)
	})
	return loaded, loadErr
}

// Dir returns the spec's data directory (the one holding api/ and
// event-schemas/).
func (s *Spec) Dir() string { return s.dir }

// Problems returns the schemas of the client-server API that could not be
// compiled, one error per schema location; it is empty for a healthy spec.
func (s *Spec) Problems() []error { return append([]error(nil), s.problems...) }

// specLocation returns the configured matrix-spec directory, before any
// existence check.
func specLocation() (string, error) {
	dir := os.Getenv(EnvSpecDir)
	if dir != "" && filepath.IsAbs(dir) {
		return filepath.Clean(dir), nil
	}
	root, err := repoRoot()
	if err != nil {
		if dir != "" {
			return filepath.Abs(dir)
		}
		return "", err
	}
	if dir == "" {
		dir = defaultSpecDir
	}
	return filepath.Join(root, filepath.FromSlash(dir)), nil
}

// findSpecDir returns the spec's data directory or an error wrapping
// ErrSpecMissing.
func findSpecDir() (string, error) {
	dir, err := specLocation()
	if err != nil {
		return "", fmt.Errorf("%w: %v", ErrSpecMissing, err)
	}
	for _, cand := range []string{filepath.Join(dir, "data"), dir} {
		if st, err := os.Stat(filepath.Join(cand, "api", "client-server")); err == nil && st.IsDir() {
			return cand, nil
		}
	}
	return "", fmt.Errorf("%w at %s", ErrSpecMissing, dir)
}

// repoRoot walks up from the working directory to the directory holding
// go.mod.
func repoRoot() (string, error) {
	wd, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for d := wd; ; {
		if st, err := os.Stat(filepath.Join(d, "go.mod")); err == nil && !st.IsDir() {
			return d, nil
		}
		parent := filepath.Dir(d)
		if parent == d {
			return "", fmt.Errorf("no go.mod found above %s", wd)
		}
		d = parent
	}
}

// loadDir parses every api/client-server/*.yaml file under the data
// directory dir and compiles the request and response schemas of all their
// operations.
func loadDir(dir string) (*Spec, error) {
	dir, err := filepath.Abs(dir)
	if err != nil {
		return nil, err
	}
	files, err := filepath.Glob(filepath.Join(dir, "api", "client-server", "*.yaml"))
	if err != nil {
		return nil, err
	}
	if len(files) == 0 {
		return nil, fmt.Errorf("%w: no api/client-server/*.yaml files in %s", ErrSpecMissing, dir)
	}
	sort.Strings(files)
	s := &Spec{
		dir:      dir,
		docs:     newDocCache(),
		compiler: newCompiler(),
		events:   map[string]*compiled{},
	}
	s.compiler.UseLoader(s.docs)
	for _, f := range files {
		if err := s.loadAPIFile(f); err != nil {
			return nil, err
		}
	}
	return s, nil
}

func newCompiler() *jsonschema.Compiler {
	c := jsonschema.NewCompiler()
	// OpenAPI 3.1 schemas are JSON Schema 2020-12. Format stays an
	// annotation (no AssertFormat), content keywords too.
	c.DefaultDraft(jsonschema.Draft2020)
	return c
}

// compile compiles the schema at abs (an absolute file path) and JSON
// pointer ptr; s.mu must be held.
func (s *Spec) compile(abs, ptr string) *compiled {
	c := &compiled{loc: s.rel(abs) + "#" + ptr}
	c.schema, c.err = s.compiler.Compile(fileURL(abs) + "#" + escapeFragment(ptr))
	if c.err != nil {
		c.err = fmt.Errorf("compiling %s: %s", c.loc, s.trimPaths(c.err.Error()))
	}
	return c
}

// rel returns abs relative to the data directory, with forward slashes.
func (s *Spec) rel(abs string) string {
	if r, err := filepath.Rel(s.dir, abs); err == nil && !strings.HasPrefix(r, "..") {
		return filepath.ToSlash(r)
	}
	return filepath.ToSlash(abs)
}

// trimPaths shortens the absolute file URLs of spec files in msg.
func (s *Spec) trimPaths(msg string) string {
	prefix := fileURL(s.dir) + "/"
	msg = strings.ReplaceAll(msg, prefix, "")
	return strings.ReplaceAll(msg, filepath.ToSlash(s.dir)+"/", "")
}
