package specschema

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
)

// These tests use a small spec written to a temporary directory, so the
// package's own logic is covered even where ../shared/matrix-spec is absent.

var miniSpec = map[string]string{
	"api/client-server/things.yaml": `
openapi: 3.1.0
info: {title: Things, version: 1.0.0}
servers:
  - url: "{protocol}://{hostname}{basePath}"
    variables:
      protocol: {enum: [http, https], default: https}
      hostname: {default: localhost:8008}
      basePath: {default: /_matrix/client/v3}
paths:
  "/things/{thingId}":
    get:
      operationId: getThing
      x-addedInMatrixVersion: "1.1"
      responses:
        200:
          description: A thing. (Unquoted status key on purpose.)
          content:
            application/json:
              schema:
                $ref: definitions/thing.yaml
              examples:
                response:
                  value: {"id": "x"}
        "404":
          $ref: "#/components/responses/notFound"
        "429":
          $ref: definitions/responses.yaml#/rateLimited
    put:
      operationId: putThing
      requestBody:
        $ref: "#/components/requestBodies/thing"
      responses:
        "200":
          description: ok
          content:
            application/json:
              schema: {type: object, additionalProperties: false}
  "/things/special":
    get:
      operationId: getSpecialThing
      responses:
        "200":
          description: special
          content:
            application/json:
              schema:
                type: object
                required: [special]
                properties:
                  special: {type: boolean, const: true}
  "/things/{thingId}/file.{ext}":
    get:
      operationId: getThingFile
      responses:
        "200":
          description: binary
          content:
            image/png:
              schema: {type: string, format: binary}
        4XX:
          description: any client error
          content:
            application/json:
              schema: {$ref: definitions/error.yaml}
        default:
          description: anything else
          content:
            application/json:
              schema: {type: object, required: [fallback]}
  "/things/{thingId}/dup":
    post:
      operationId: dupA
      requestBody:
        content:
          application/json:
            schema: {type: object, required: [a]}
      responses:
        "200":
          description: ok
          content:
            application/json:
              schema: {type: object, required: [a]}
  "/things/{thingId}/parts/{partId}":
    get:
      operationId: getPart
      parameters:
        - in: path
          name: thingId
          required: true
          schema: {type: string}
        - $ref: "#/components/parameters/partId"
      responses:
        "200":
          description: ok
          content:
            application/json:
              schema: {type: object, required: [part]}
  "/pushrules/":
    get:
      operationId: getRules
      responses:
        "200":
          description: rules
          content:
            application/json:
              schema: {type: object, required: [global]}
components:
  parameters:
    partId:
      in: path
      name: partId
      required: true
      description: |-
        The part. Defaults to the empty string. When
        an empty string, the trailing slash on this endpoint is optional.
      schema: {type: string}
  responses:
    notFound:
      description: not found
      content:
        application/json:
          schema:
            $ref: definitions/error.yaml
  requestBodies:
    thing:
      content:
        application/json:
          schema:
            $ref: definitions/thing.yaml
`,
	"api/client-server/other.yaml": `
openapi: 3.1.0
info: {title: Other, version: 1.0.0}
servers:
  - url: "{protocol}://{hostname}{basePath}"
    variables:
      protocol: {default: https}
      hostname: {default: localhost:8008}
      basePath: {default: /_matrix}
paths:
  "/client/v3/things/{thingId}/dup":
    post:
      operationId: dupB
      requestBody:
        content:
          application/json:
            schema: {type: object, required: [b]}
      responses:
        "200":
          description: ok
          content:
            application/json:
              schema: {type: object, required: [b]}
  /media/v3/config:
    get:
      operationId: getConfig
      responses:
        "200":
          description: config
          content:
            application/json:
              schema:
                type: object
                properties:
                  m.upload.size: {type: integer, format: int64}
`,
	"api/client-server/definitions/thing.yaml": `
type: object
title: Thing
example: {"id": "not validated"}
required: [id]
properties:
  id:
    type: string
    format: mx-thing-id
    pattern: "^[a-z]+$"
  size:
    x-addedInMatrixVersion: "1.2"
    x-changedInMatrixVersion: {"1.3": "made bigger"}
    example: 3
    examples: [3]
    type: integer
    minimum: 0
  created:
    $ref: ../../../schemas/timestamp.yaml
  tags:
    type: object
    patternProperties:
      "^m\\.":
        type: string
    additionalProperties: {type: number}
`,
	"api/client-server/definitions/error.yaml": `
type: object
properties:
  errcode: {type: string}
  error: {type: string}
required: [errcode]
`,
	"api/client-server/definitions/responses.yaml": `
rateLimited:
  description: slow down
  content:
    application/json:
      schema:
        allOf:
          - $ref: error.yaml
          - type: object
            properties:
              retry_after_ms: {type: integer}
`,
	"schemas/timestamp.yaml": `
type: integer
minimum: 0
`,
	"event-schemas/schema/m.test.yaml": `
---
$schema: https://json-schema.org/draft/2020-12/schema
allOf:
  - $ref: core-event-schema/event.yaml
properties:
  type: {enum: [m.test], type: string}
  content:
    type: object
    required: [body]
    properties:
      body: {type: string}
type: object
`,
	"event-schemas/schema/core-event-schema/event.yaml": `
type: object
required: [type, content]
properties:
  type: {type: string}
  content: {type: object}
`,
}

func writeMiniSpec(t *testing.T) string {
	t.Helper()
	root := t.TempDir()
	for name, text := range miniSpec {
		p := filepath.Join(root, "data", filepath.FromSlash(name))
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(strings.TrimPrefix(text, "\n")), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return root
}

func loadMiniSpec(t *testing.T) *Spec {
	t.Helper()
	s, err := loadDir(filepath.Join(writeMiniSpec(t), "data"))
	if err != nil {
		t.Fatalf("loadDir: %v", err)
	}
	if p := s.Problems(); len(p) > 0 {
		t.Fatalf("mini spec has compile problems: %v", p)
	}
	return s
}

func TestMiniSpecValidate(t *testing.T) {
	s := loadMiniSpec(t)
	tests := []struct {
		name    string
		method  string
		path    string
		status  int
		body    string
		wantErr string // "" = valid; otherwise substrings, "|"-separated
		noSch   bool   // error must wrap ErrNoSchema
	}{
		{"valid thing", "GET", "/_matrix/client/v3/things/abc", 200, `{"id":"abc","size":3,"created":5,"tags":{"m.x":"y","z":1.5}}`, "", false},
		{"lower-case method", "get", "/_matrix/client/v3/things/abc", 200, `{"id":"abc"}`, "", false},
		{"full URL and query", "GET", "https://localhost:8008/_matrix/client/v3/things/abc?x=1", 200, `{"id":"abc"}`, "", false},
		{"unknown format is not asserted", "GET", "/_matrix/client/v3/things/abc", 200, `{"id":"abc"}`, "", false},
		{"missing id", "GET", "/_matrix/client/v3/things/abc", 200, `{"size":1}`, "missing property 'id'|1 violation", false},
		{"every violation listed", "GET", "/_matrix/client/v3/things/abc", 200, `{"id":"ABC","size":-1,"created":"x","tags":{"m.a":1,"b":"c"}}`,
			`5 violations|at "/id"|at "/size"|at "/created"|at "/tags/m.a"|at "/tags/b"|schemas/timestamp.yaml`, false},
		{"violation names schema location", "GET", "/_matrix/client/v3/things/abc", 200, `{"id":7}`,
			"api/client-server/definitions/thing.yaml#/properties/id/type", false},
		{"literal beats parameter", "GET", "/_matrix/client/v3/things/special", 200, `{"special":true}`, "", false},
		{"literal schema applies", "GET", "/_matrix/client/v3/things/special", 200, `{"id":"special"}`, "missing property 'special'", false},
		{"encoded segment", "GET", "/_matrix/client/v3/things/%73pecial", 200, `{"special":true}`, "", false},
		{"encoded slash stays in segment", "GET", "/_matrix/client/v3/things/a%2Fb", 200, `{"id":"ab"}`, "", false},
		{"component response ref", "GET", "/_matrix/client/v3/things/abc", 404, `{"errcode":"M_NOT_FOUND","error":"no"}`, "", false},
		{"component response ref invalid", "GET", "/_matrix/client/v3/things/abc", 404, `{"error":"no"}`, "missing property 'errcode'", false},
		{"cross-file response ref", "GET", "/_matrix/client/v3/things/abc", 429, `{"errcode":"M_LIMIT_EXCEEDED","retry_after_ms":10}`, "", false},
		{"cross-file response ref invalid", "GET", "/_matrix/client/v3/things/abc", 429, `{"errcode":"M_LIMIT_EXCEEDED","retry_after_ms":"soon"}`, `at "/retry_after_ms"`, false},
		{"mixed segment template", "GET", "/_matrix/client/v3/things/abc/file.png", 403, `{"errcode":"M_FORBIDDEN"}`, "", false},
		{"status range", "GET", "/_matrix/client/v3/things/abc/file.png", 418, `{}`, "missing property 'errcode'", false},
		{"default response", "GET", "/_matrix/client/v3/things/abc/file.png", 500, `{"fallback":1}`, "", false},
		{"non-JSON response", "GET", "/_matrix/client/v3/things/abc/file.png", 200, `x`, "no schema for GET /_matrix/client/v3/things/abc/file.png status 200|no application/json schema", true},
		{"trailing slash path", "GET", "/_matrix/client/v3/pushrules/", 200, `{"global":{}}`, "", false},
		{"media base path", "GET", "/_matrix/media/v3/config", 200, `{"m.upload.size":1024}`, "", false},
		{"media base path invalid", "GET", "/_matrix/media/v3/config", 200, `{"m.upload.size":1.5}`, "want integer", false},
		{"wrong base path", "GET", "/_matrix/client/v3/media/v3/config", 200, `{}`, "no schema for GET /_matrix/client/v3/media/v3/config status 200|no client-server API path matches", true},
		{"unknown path", "GET", "/x", 200, `{}`, "no schema for GET /x status 200", true},
		{"unknown status", "GET", "/_matrix/client/v3/things/abc", 418, `{}`, "no schema for GET /_matrix/client/v3/things/abc status 418|defined: 200, 404, 429", true},
		{"unknown method", "POST", "/_matrix/client/v3/things/abc", 200, `{}`, "no schema for POST|defined only for GET, PUT", true},
		{"invalid JSON", "GET", "/_matrix/client/v3/things/abc", 200, `{"id":`, "not valid JSON", false},
		{"trailing garbage", "GET", "/_matrix/client/v3/things/abc", 200, `{"id":"a"} x`, "not valid JSON", false},
		{"empty body", "GET", "/_matrix/client/v3/things/abc", 200, ``, "not valid JSON", false},
		{"duplicate operation A", "POST", "/_matrix/client/v3/things/x/dup", 200, `{"a":1}`, "", false},
		{"duplicate operation B", "POST", "/_matrix/client/v3/things/x/dup", 200, `{"b":1}`, "", false},
		{"duplicate operations, neither", "POST", "/_matrix/client/v3/things/x/dup", 200, `{"c":1}`, "2 operations|(dupA)|(dupB)|missing property 'a'|missing property 'b'", false},
		{"optional trailing parameter given", "GET", "/_matrix/client/v3/things/x/parts/p", 200, `{"part":1}`, "", false},
		{"optional trailing parameter empty", "GET", "/_matrix/client/v3/things/x/parts/", 200, `{"part":1}`, "", false},
		{"optional trailing parameter omitted", "GET", "/_matrix/client/v3/things/x/parts", 200, `{}`, "missing property 'part'", false},
		{"required trailing parameter not omittable", "GET", "/_matrix/client/v3/things/x/dup", 200, `{}`, "no schema|defined only for POST", true},
		{"additionalProperties false", "PUT", "/_matrix/client/v3/things/abc", 200, `{"x":1}`, "additional properties 'x' not allowed", false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			err := s.Validate(tc.method, tc.path, tc.status, []byte(tc.body))
			checkErr(t, err, tc.wantErr, tc.noSch)
		})
	}
}

func checkErr(t *testing.T, err error, want string, noSchema bool) {
	t.Helper()
	if want == "" {
		if err != nil {
			t.Fatalf("unexpected error: %v", err)
		}
		return
	}
	if err == nil {
		t.Fatalf("expected an error containing %q, got nil", want)
	}
	for _, w := range strings.Split(want, "|") {
		if !strings.Contains(err.Error(), w) {
			t.Errorf("error does not contain %q:\n%v", w, err)
		}
	}
	if got := errors.Is(err, ErrNoSchema); got != noSchema {
		t.Errorf("errors.Is(err, ErrNoSchema) = %v, want %v (err: %v)", got, noSchema, err)
	}
}

func TestMiniSpecValidateRequest(t *testing.T) {
	s := loadMiniSpec(t)
	tests := []struct {
		name, method, path, body, wantErr string
		noSch                             bool
	}{
		{"valid", "PUT", "/_matrix/client/v3/things/abc", `{"id":"abc"}`, "", false},
		{"invalid", "PUT", "/_matrix/client/v3/things/abc", `{"id":1}`, "request body does not match|want string", false},
		{"duplicate operation B", "POST", "/_matrix/client/v3/things/x/dup", `{"b":true}`, "", false},
		{"duplicate operations, neither", "POST", "/_matrix/client/v3/things/x/dup", `{}`, "2 operations", false},
		{"no request body", "GET", "/_matrix/client/v3/things/abc", `{}`, "no schema for GET /_matrix/client/v3/things/abc request|no request body", true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			checkErr(t, s.ValidateRequest(tc.method, tc.path, []byte(tc.body)), tc.wantErr, tc.noSch)
		})
	}
}

func TestMiniSpecValidateEvent(t *testing.T) {
	s := loadMiniSpec(t)
	tests := []struct {
		name, typ, body, wantErr string
		noSch                    bool
	}{
		{"valid", "m.test", `{"type":"m.test","content":{"body":"hi"}}`, "", false},
		{"ref'd core schema", "m.test", `{"type":"m.test"}`, "missing property 'content'", false},
		{"local schema", "m.test", `{"type":"m.other","content":{}}`, `missing property 'body'|at "/type"`, false},
		{"unknown type", "m.nope", `{}`, "no schema for event m.nope", true},
		{"path traversal", "../schemas/timestamp", `1`, "not a valid event type", true},
		{"empty type", "", `{}`, "not a valid event type", true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			checkErr(t, s.ValidateEvent(tc.typ, []byte(tc.body)), tc.wantErr, tc.noSch)
		})
	}
}

func TestMiniSpecCompileProblems(t *testing.T) {
	root := writeMiniSpec(t)
	broken := `
openapi: 3.1.0
info: {title: Broken, version: 1.0.0}
paths:
  /broken:
    get:
      operationId: getBroken
      responses:
        "200":
          description: bad ref
          content:
            application/json:
              schema: {$ref: definitions/missing.yaml}
`
	if err := os.WriteFile(filepath.Join(root, "data", "api", "client-server", "broken.yaml"), []byte(broken), 0o644); err != nil {
		t.Fatal(err)
	}
	s, err := loadDir(filepath.Join(root, "data"))
	if err != nil {
		t.Fatalf("a schema that fails to compile must not fail loading: %v", err)
	}
	if p := s.Problems(); len(p) != 1 || !strings.Contains(p[0].Error(), "broken.yaml") {
		t.Fatalf("Problems() = %v, want one problem naming broken.yaml", p)
	}
	// No servers entry: the path is taken as is.
	err = s.Validate("GET", "/broken", 200, []byte(`{}`))
	if err == nil || !strings.Contains(err.Error(), "could not be compiled") || errors.Is(err, ErrNoSchema) {
		t.Fatalf("Validate on a broken schema: %v", err)
	}
	// The rest of the spec still works.
	if err := s.Validate("GET", "/_matrix/client/v3/things/abc", 200, []byte(`{"id":"abc"}`)); err != nil {
		t.Fatal(err)
	}
}

func TestLoadDirErrors(t *testing.T) {
	if _, err := loadDir(t.TempDir()); !errors.Is(err, ErrSpecMissing) {
		t.Errorf("empty dir: got %v, want ErrSpecMissing", err)
	}
	root := writeMiniSpec(t)
	bad := filepath.Join(root, "data", "api", "client-server", "bad.yaml")
	if err := os.WriteFile(bad, []byte("paths: [unclosed"), 0o644); err != nil {
		t.Fatal(err)
	}
	_, err := loadDir(filepath.Join(root, "data"))
	if err == nil || !strings.Contains(err.Error(), "bad.yaml") {
		t.Errorf("unparsable YAML: got %v, want an error naming bad.yaml", err)
	}
}

func TestFindSpecDir(t *testing.T) {
	root := writeMiniSpec(t)

	t.Setenv(EnvSpecDir, root)
	if got, err := findSpecDir(); err != nil || got != filepath.Join(root, "data") {
		t.Errorf("checkout root: got %q, %v; want %q", got, err, filepath.Join(root, "data"))
	}

	t.Setenv(EnvSpecDir, filepath.Join(root, "data"))
	if got, err := findSpecDir(); err != nil || got != filepath.Join(root, "data") {
		t.Errorf("data dir: got %q, %v", got, err)
	}

	missing := filepath.Join(root, "nope")
	t.Setenv(EnvSpecDir, missing)
	_, err := findSpecDir()
	if !errors.Is(err, ErrSpecMissing) || !strings.Contains(err.Error(), missing) {
		t.Errorf("missing dir: got %v, want ErrSpecMissing naming %s", err, missing)
	}

	// Relative values are relative to the repository root.
	repo, err := repoRoot()
	if err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(repo, "go.mod")); err != nil {
		t.Fatalf("repoRoot() = %s without go.mod", repo)
	}
	t.Setenv(EnvSpecDir, "some/relative/dir")
	if got, _ := specLocation(); got != filepath.Join(repo, "some", "relative", "dir") {
		t.Errorf("relative env: specLocation() = %q", got)
	}
	t.Setenv(EnvSpecDir, "")
	if got, _ := specLocation(); got != filepath.Join(repo, "..", "shared", "matrix-spec") {
		t.Errorf("default: specLocation() = %q", got)
	}
}

func TestPathMatching(t *testing.T) {
	ops := []*operation{}
	for _, tmpl := range []string{
		"/_matrix/client/v3/rooms/{roomId}/send/{eventType}/{txnId}",
		"/_matrix/client/v3/rooms/{roomId}/state/{eventType}",
		"/_matrix/client/v3/rooms/{roomId}/state/{eventType}/{stateKey}",
		"/_matrix/client/v3/rooms/{roomId}/{x}/m.room.name",
		"/_matrix/client/v3/pushrules/",
		"/_matrix/client/v3/pushrules/global/",
		"/_matrix/client/v3/pushrules/global/{kind}/{ruleId}",
		"/_matrix/client/v3/pushrules/{scope}/{kind}/{ruleId}",
		"/_matrix/media/v3/download/{serverName}/{mediaId}/{fileName}",
	} {
		ops = append(ops, &operation{method: "GET", template: tmpl, segs: parseTemplate(tmpl)})
	}
	s := &Spec{ops: ops}
	tests := []struct{ path, want string }{
		{"/_matrix/client/v3/rooms/!abc:localhost/send/m.room.message/txn1", ops[0].template},
		{"/_matrix/client/v3/rooms/%21abc%3Alocalhost/send/m.room.message/txn1", ops[0].template},
		{"/_matrix/client/v3/rooms/!abc:localhost/state/m.room.name", ops[1].template},
		{"/_matrix/client/v3/rooms/!abc:localhost/state/m.room.name/", ops[2].template}, // empty state key
		{"/_matrix/client/v3/rooms/!abc:localhost/state/m.room.member/%40u%3Ahs", ops[2].template},
		{"/_matrix/client/v3/rooms/!abc:localhost/state/m.room.name", ops[1].template},
		{"/_matrix/client/v3/pushrules/", ops[4].template},
		{"/_matrix/client/v3/pushrules/global/", ops[5].template},
		{"/_matrix/client/v3/pushrules/global/override/.m.rule.master", ops[6].template},
		{"/_matrix/client/v3/pushrules/device/override/x", ops[7].template},
		{"/_matrix/media/v3/download/localhost/abc/my%20file.png", ops[8].template},
		{"/_matrix/client/v3/pushrules", ""},
		{"/_matrix/client/v3/rooms/!abc:localhost/send/m.room.message", ""},
		{"/_matrix/client/r0/pushrules/", ""},
	}
	for _, tc := range tests {
		ops, _ := s.findOperations("GET", tc.path)
		got := ""
		if len(ops) > 1 {
			t.Errorf("%s: %d operations matched", tc.path, len(ops))
		}
		if len(ops) > 0 {
			got = ops[0].template
		}
		if got != tc.want {
			t.Errorf("%s: matched %q, want %q", tc.path, got, tc.want)
		}
	}
}

func TestSplitConcretePath(t *testing.T) {
	tests := []struct {
		in   string
		want []string
	}{
		{"/_matrix/client/v3/rooms/%21room%3Alocalhost/state", []string{"_matrix", "client", "v3", "rooms", "!room:localhost", "state"}},
		{"/a/b%2Fc/?q=1#frag", []string{"a", "b/c", ""}},
		{"http://localhost:8008/a/%40u%3Ahs", []string{"a", "@u:hs"}},
		{"/a/%zz", []string{"a", "%zz"}}, // invalid escapes are kept
	}
	for _, tc := range tests {
		if got := splitConcretePath(tc.in); !reflect.DeepEqual(got, tc.want) {
			t.Errorf("splitConcretePath(%q) = %q, want %q", tc.in, got, tc.want)
		}
	}
}

func TestServerBasePaths(t *testing.T) {
	mk := func(url, base string) any {
		return []any{map[string]any{"url": url, "variables": map[string]any{
			"protocol": map[string]any{"default": "https"},
			"hostname": map[string]any{"default": "localhost:8008"},
			"basePath": map[string]any{"default": base},
		}}}
	}
	tests := []struct {
		in   any
		want []string
	}{
		{nil, nil},
		{mk("{protocol}://{hostname}{basePath}", "/_matrix/client/v3"), []string{"/_matrix/client/v3"}},
		{mk("{protocol}://{hostname}{basePath}", "/_matrix/client/v1"), []string{"/_matrix/client/v1"}},
		{mk("{protocol}://{hostname}{basePath}", "/.well-known"), []string{"/.well-known"}},
		{mk("{protocol}://{hostname}", ""), []string{"/"}},
		{mk("/_matrix/media{basePath}", "/v3"), []string{"/_matrix/media/v3"}},
		{[]any{}, []string{"/"}},
	}
	for _, tc := range tests {
		got, err := serverBasePaths(tc.in)
		if err != nil || !reflect.DeepEqual(got, tc.want) {
			t.Errorf("serverBasePaths(%v) = %q, %v; want %q", tc.in, got, err, tc.want)
		}
	}
	if _, err := serverBasePaths([]any{map[string]any{"url": "{nope}/x"}}); err == nil {
		t.Error("a variable without default must be an error")
	}
}

func TestYAMLToJSON(t *testing.T) {
	tests := []struct {
		name, yaml, json string
	}{
		{"status keys are strings", "200: {a: 1}\n\"404\": x", `{"200":{"a":1},"404":"x"}`},
		{"scalars", "i: 12\nf: 1.5\nhex: 0x10\nbig: 12345678901234567890123\nt: true\nn: null\ntilde: ~\ns: 'true'\nd: 2024-01-02\nv: 1.10", `{"i":12,"f":1.5,"hex":16,"big":12345678901234567890123,"t":true,"n":null,"tilde":null,"s":"true","d":"2024-01-02","v":1.1}`},
		{"quoted version stays a string", `v: "1.10"`, `{"v":"1.10"}`},
		{"sequences and anchors", "a: &x [1, two]\nb: *x", `{"a":[1,"two"],"b":[1,"two"]}`},
		{"document marker", "---\n$schema: https://json-schema.org/draft/2020-12/schema\n", `{"$schema":"https://json-schema.org/draft/2020-12/schema"}`},
		{"empty", "", `null`},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, err := yamlToJSON([]byte(tc.yaml))
			if err != nil {
				t.Fatal(err)
			}
			gotJSON, err := json.Marshal(got)
			if err != nil {
				t.Fatal(err)
			}
			var a, b any
			if err := json.Unmarshal(gotJSON, &a); err != nil {
				t.Fatal(err)
			}
			if err := json.Unmarshal([]byte(tc.json), &b); err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(a, b) {
				t.Errorf("got %s, want %s", gotJSON, tc.json)
			}
		})
	}
	for _, bad := range []string{"a: [1", "a: .inf", "? [1]\n: x"} {
		if _, err := yamlToJSON([]byte(bad)); err == nil {
			t.Errorf("yamlToJSON(%q) succeeded, want error", bad)
		}
	}
}

// fakeTB records Skipf and Fatalf instead of stopping the test.
type fakeTB struct {
	testing.TB
	skipped, fatal string
}

func (f *fakeTB) Helper()                           {}
func (f *fakeTB) Skipf(format string, args ...any)  { f.skipped = fmt.Sprintf(format, args...) }
func (f *fakeTB) Fatalf(format string, args ...any) { f.fatal = fmt.Sprintf(format, args...) }

func TestRequire(t *testing.T) {
	t.Setenv(EnvSpecDir, "/nonexistent/matrix-spec")
	f := &fakeTB{TB: t}
	s := require(f, func() (*Spec, error) { return nil, findSpecDirErr() })
	if s != nil || f.fatal != "" || !strings.Contains(f.skipped, "matrix spec not found at /nonexistent/matrix-spec; conformance checks need ../shared/matrix-spec") {
		t.Errorf("missing spec: skipped %q, fatal %q", f.skipped, f.fatal)
	}

	f = &fakeTB{TB: t}
	s = require(f, func() (*Spec, error) { return nil, errors.New("boom") })
	if s != nil || f.skipped != "" || !strings.Contains(f.fatal, "boom") {
		t.Errorf("other error: skipped %q, fatal %q", f.skipped, f.fatal)
	}

	want := &Spec{}
	f = &fakeTB{TB: t}
	if s = require(f, func() (*Spec, error) { return want, nil }); s != want || f.skipped != "" || f.fatal != "" {
		t.Errorf("success: got %p, skipped %q, fatal %q", s, f.skipped, f.fatal)
	}
}

func findSpecDirErr() error {
	_, err := findSpecDir()
	return err
}
