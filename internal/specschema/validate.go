package specschema

import (
	"bytes"
	"errors"
	"fmt"
	"maps"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"

	"github.com/santhosh-tekuri/jsonschema/v6"
	"github.com/santhosh-tekuri/jsonschema/v6/kind"
)

// Validate checks body, a JSON response with the given HTTP status to a
// request with the given method and concrete path (e.g.
// "/_matrix/client/v3/rooms/%21abc:localhost/send/m.room.message/txn1"; a
// query string is ignored and percent-encoded segments are decoded before
// matching), against the schema the spec defines for that response.
//
// The path is matched against the spec's templated paths prefixed with each
// file's server base path (/_matrix/client/v3, /_matrix/client/v1,
// /_matrix/media/..., /.well-known, ...); when several templates match, the
// one with literal segments earliest wins. A final path parameter that the
// spec calls optional with its trailing slash (the state key of
// /rooms/{roomId}/state/{eventType}/{stateKey}) may be omitted. When the
// spec defines the same method and path twice (POST /rooms/{roomId}/invite),
// the body is accepted if either operation accepts it. The status is looked
// up exactly, then as "4XX"-style range, then "default".
//
// It returns nil if the body conforms; an error wrapping [ErrNoSchema] ("no
// schema for GET /x status 200: ...") if the spec defines no JSON schema for
// this method, path and status; otherwise an error listing every violation.
func (s *Spec) Validate(method, path string, status int, body []byte) error {
	what := fmt.Sprintf("%s %s status %d", strings.ToUpper(method), path, status)
	ops, err := s.lookup(method, path, what)
	if err != nil {
		return err
	}
	return anyOf(ops, func(op *operation) error {
		c := op.responses[strconv.Itoa(status)]
		if c == nil {
			c = op.responses[strconv.Itoa(status/100)+"XX"]
		}
		if c == nil {
			c = op.responses["default"]
		}
		if c == nil {
			return fmt.Errorf("specschema: %w for %s: operation %s defines no response for this status (defined: %s)",
				ErrNoSchema, what, op, strings.Join(slices.Sorted(maps.Keys(op.responses)), ", "))
		}
		return s.check(c, what+" ("+op.id+")", "response body", body)
	})
}

// ValidateRequest checks body, the JSON request body of a request with the
// given method and concrete path, against the spec's request body schema
// for that operation. Path matching and errors are as for [Spec.Validate].
func (s *Spec) ValidateRequest(method, path string, body []byte) error {
	what := fmt.Sprintf("%s %s request", strings.ToUpper(method), path)
	ops, err := s.lookup(method, path, what)
	if err != nil {
		return err
	}
	return anyOf(ops, func(op *operation) error {
		if op.request == nil {
			return fmt.Errorf("specschema: %w for %s: operation %s has no request body", ErrNoSchema, what, op)
		}
		return s.check(op.request, what+" ("+op.id+")", "request body", body)
	})
}

// anyOf returns nil if check accepts any of ops, and otherwise the most
// useful errors: schema violations rather than missing schemas.
func anyOf(ops []*operation, check func(*operation) error) error {
	var noSchema, violations []error
	for _, op := range ops {
		err := check(op)
		switch {
		case err == nil:
			return nil
		case errors.Is(err, ErrNoSchema):
			noSchema = append(noSchema, err)
		default:
			violations = append(violations, err)
		}
	}
	switch {
	case len(violations) == 1:
		return violations[0]
	case len(violations) > 1:
		return fmt.Errorf("specschema: the spec defines %d operations for this method and path, and the body matches none:\n%w",
			len(violations), errors.Join(violations...))
	}
	return noSchema[0]
}

// ValidateEvent validates an event (a JSON object) against the spec's event
// schema event-schemas/schema/<eventType>.yaml, e.g. "m.room.message" or
// "m.room.member"; variants named with a "$" such as
// "m.key.verification.start$m.sas.v1" are accepted too. Schemas are compiled
// on first use and cached. It returns an error wrapping [ErrNoSchema] if
// the spec has no schema for eventType, or an error listing every violation.
func (s *Spec) ValidateEvent(eventType string, event []byte) error {
	what := "event " + eventType
	if eventType == "" || strings.ContainsAny(eventType, `/\`) || strings.HasPrefix(eventType, ".") {
		return fmt.Errorf("specschema: %w for %s: not a valid event type", ErrNoSchema, what)
	}
	c, err := s.eventSchema(eventType)
	if err != nil {
		return fmt.Errorf("specschema: %w for %s: %v", ErrNoSchema, what, err)
	}
	return s.check(c, what, "event", event)
}

// eventSchema compiles (once) the schema of an event type.
func (s *Spec) eventSchema(eventType string) (*compiled, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if c, ok := s.events[eventType]; ok {
		return c, nil
	}
	file := filepath.Join(s.dir, "event-schemas", "schema", eventType+".yaml")
	if _, err := os.Stat(file); err != nil {
		return nil, fmt.Errorf("no file event-schemas/schema/%s.yaml", eventType)
	}
	c := s.compile(file, "")
	s.events[eventType] = c
	return c, nil
}

// lookup finds the operations for method and path.
func (s *Spec) lookup(method, path, what string) ([]*operation, error) {
	ops, others := s.findOperations(method, path)
	if len(ops) > 0 {
		return ops, nil
	}
	if len(others) > 0 {
		return nil, fmt.Errorf("specschema: %w for %s: the path is defined only for %s",
			ErrNoSchema, what, strings.Join(others, ", "))
	}
	return nil, fmt.Errorf("specschema: %w for %s: no client-server API path matches", ErrNoSchema, what)
}

// check validates the JSON document data against c.
func (s *Spec) check(c *compiled, what, noun string, data []byte) error {
	if c.err != nil {
		return fmt.Errorf("specschema: schema for %s could not be compiled: %w", what, c.err)
	}
	if c.schema == nil {
		return fmt.Errorf("specschema: %w for %s: the spec gives no application/json schema (%s)", ErrNoSchema, what, c.loc)
	}
	inst, err := jsonschema.UnmarshalJSON(bytes.NewReader(data))
	if err != nil {
		return fmt.Errorf("specschema: %s: %s is not valid JSON: %v", what, noun, err)
	}
	err = c.schema.Validate(inst)
	if err == nil {
		return nil
	}
	var ve *jsonschema.ValidationError
	if !errors.As(err, &ve) {
		return fmt.Errorf("specschema: %s: validating %s: %w", what, noun, err)
	}
	var sb strings.Builder
	n := s.writeViolations(&sb, ve, 1)
	plural := "s"
	if n == 1 {
		plural = ""
	}
	return fmt.Errorf("specschema: %s: %s does not match the spec (%d violation%s of %s):%s",
		what, noun, n, plural, c.loc, sb.String())
}

// writeViolations writes the tree of validation errors below e, one per
// line, and returns the number of leaves (actual violations).
func (s *Spec) writeViolations(sb *strings.Builder, e *jsonschema.ValidationError, depth int) int {
	// Skip the "validation failed" root and pure $ref hops, as the
	// library's own formatting does.
	_, isSchema := e.ErrorKind.(*kind.Schema)
	_, isRef := e.ErrorKind.(*kind.Reference)
	if isSchema || (isRef && len(e.Causes) > 0) {
		n := 0
		for _, c := range e.Causes {
			n += s.writeViolations(sb, c, depth)
		}
		return n
	}
	sb.WriteString("\n")
	sb.WriteString(strings.Repeat("  ", depth))
	fmt.Fprintf(sb, "- at %s: %s", strconv.Quote(instancePointer(e.InstanceLocation)), message(e))
	if len(e.Causes) == 0 {
		loc := e.SchemaURL
		if u, frag, ok := strings.Cut(loc, "#"); ok {
			if f, err := url.PathUnescape(frag); err == nil {
				loc = u + "#" + f
			}
		}
		loc += instancePointer(e.ErrorKind.KeywordPath())
		fmt.Fprintf(sb, " [%s]", s.trimPaths(loc))
		return 1
	}
	n := 0
	for _, c := range e.Causes {
		n += s.writeViolations(sb, c, depth+1)
	}
	return n
}

// message renders the error kind of e alone (without its causes) in
// English.
func message(e *jsonschema.ValidationError) string {
	leaf := &jsonschema.ValidationError{SchemaURL: e.SchemaURL, InstanceLocation: e.InstanceLocation, ErrorKind: e.ErrorKind}
	if out := leaf.BasicOutput(); out != nil && out.Error != nil {
		return out.Error.String()
	}
	return fmt.Sprint(e.ErrorKind)
}

func instancePointer(toks []string) string {
	var sb strings.Builder
	for _, t := range toks {
		sb.WriteString("/")
		sb.WriteString(escapeToken(t))
	}
	return sb.String()
}
