package specschema

import (
	"encoding/json"
	"fmt"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
)

// These tests run against the real Matrix spec v1.19 in ../shared/matrix-spec
// and are skipped (by Require) where it is absent.

func TestClientServerSpecCompiles(t *testing.T) {
	s := Require(t)
	files, err := filepath.Glob(filepath.Join(s.Dir(), "api", "client-server", "*.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	opsPerFile := map[string]int{}
	schemas := 0
	for _, op := range s.ops {
		opsPerFile[op.file]++
		for _, c := range op.responses {
			if c.schema != nil {
				schemas++
			}
		}
		if op.request != nil && op.request.schema != nil {
			schemas++
		}
	}
	for _, f := range files {
		if rel := s.rel(f); opsPerFile[rel] == 0 {
			t.Errorf("%s: no operations loaded", rel)
		}
	}
	for _, p := range s.Problems() {
		t.Errorf("schema does not compile: %v", p)
	}
	t.Logf("%d files, %d operations, %d compiled JSON schemas", len(files), len(s.ops), schemas)
	if schemas < 300 {
		t.Errorf("only %d schemas compiled; the spec has several hundred", schemas)
	}
}

func TestEventSchemasCompile(t *testing.T) {
	s := Require(t)
	files, err := filepath.Glob(filepath.Join(s.Dir(), "event-schemas", "schema", "*.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	if len(files) < 50 {
		t.Fatalf("only %d event schemas found", len(files))
	}
	for _, f := range files {
		typ := strings.TrimSuffix(filepath.Base(f), ".yaml")
		c, err := s.eventSchema(typ)
		if err != nil {
			t.Errorf("%s: %v", typ, err)
		} else if c.err != nil {
			t.Errorf("%s: %v", typ, c.err)
		}
	}
}

const syncBody = `{
  "next_batch": "s72595_4483_1934",
  "account_data": {"events": [{"type": "org.example.custom.config", "content": {"k": "v"}}]},
  "presence": {"events": []},
  "rooms": {
    "join": {
      "!726s6s6q:localhost": {
        "summary": {"m.heroes": ["@bob:localhost"], "m.joined_member_count": 2, "m.invited_member_count": 0},
        "state": {"events": []},
        "timeline": {
          "limited": false,
          "prev_batch": "t34-23535_0_0",
          "events": [
            {
              "type": "m.room.member", "state_key": "@alice:localhost",
              "content": {"membership": "join", "displayname": "Alice"},
              "event_id": "$ev1", "origin_server_ts": 1432735824653, "sender": "@alice:localhost",
              "unsigned": {"age": 1234}
            },
            {
              "type": "m.room.message",
              "content": {"msgtype": "m.text", "body": "hello"},
              "event_id": "$ev2", "origin_server_ts": 1432735824654, "sender": "@alice:localhost"
            }
          ]
        },
        "ephemeral": {"events": [{"type": "m.typing", "content": {"user_ids": []}}]},
        "account_data": {"events": []},
        "unread_notifications": {"highlight_count": 0, "notification_count": 1}
      }
    },
    "invite": {}, "leave": {}, "knock": {}
  }
}`

func TestValidateRealSpec(t *testing.T) {
	s := Require(t)
	syncBad := strings.Replace(syncBody, `"sender": "@alice:localhost"
            }`, `"sender": 42
            }`, 1)
	if syncBad == syncBody {
		t.Fatal("test setup: replacement did not apply")
	}
	tests := []struct {
		name    string
		method  string
		path    string
		status  int
		body    string
		wantErr string // "" = valid; otherwise "|"-separated substrings
		noSch   bool
	}{
		{"versions", "GET", "/_matrix/client/versions", 200, `{"versions":["v1.11"]}`, "", false},
		{"versions with unstable features", "GET", "/_matrix/client/versions", 200, `{"versions":["v1.11","v1.19"],"unstable_features":{"org.example.x":true}}`, "", false},
		{"versions as a string", "GET", "/_matrix/client/versions", 200, `{"versions":"v1.11"}`, `at "/versions"|want array`, false},
		{"versions missing", "GET", "/_matrix/client/versions", 200, `{}`, "missing property 'versions'", false},
		{"unstable feature not boolean", "GET", "/_matrix/client/versions", 200, `{"versions":[],"unstable_features":{"x":"yes"}}`, `at "/unstable_features/x"`, false},
		{"whoami", "GET", "/_matrix/client/v3/account/whoami", 200, `{"user_id":"@alice:localhost","device_id":"ABCDEF","is_guest":false}`, "", false},
		{"whoami missing user_id", "GET", "/_matrix/client/v3/account/whoami", 200, `{"device_id":"ABCDEF"}`, "missing property 'user_id'", false},
		{"whoami user_id pattern", "GET", "/_matrix/client/v3/account/whoami", 200, `{"user_id":"alice"}`, "does not match pattern", false},
		{"whoami 401 error", "GET", "/_matrix/client/v3/account/whoami", 401, `{"errcode":"M_UNKNOWN_TOKEN","error":"Unknown token"}`, "", false},
		{"whoami 429", "GET", "/_matrix/client/v3/account/whoami", 429, `{"errcode":"M_LIMIT_EXCEEDED","error":"Too many requests","retry_after_ms":2000}`, "", false},
		{"whoami 429 bad retry", "GET", "/_matrix/client/v3/account/whoami", 429, `{"errcode":"M_LIMIT_EXCEEDED","retry_after_ms":"2s"}`, `at "/retry_after_ms"`, false},
		{"whoami undefined status", "GET", "/_matrix/client/v3/account/whoami", 418, `{}`, "no schema for GET /_matrix/client/v3/account/whoami status 418", true},
		{"sync with room timeline", "GET", "/_matrix/client/v3/sync?since=s1&timeout=0", 200, syncBody, "", false},
		{"sync bad timeline event", "GET", "/_matrix/client/v3/sync", 200, syncBad, `at "/rooms/join/!726s6s6q:localhost/timeline/events/1/sender"`, false},
		{"sync missing next_batch", "GET", "/_matrix/client/v3/sync", 200, `{"rooms":{}}`, "missing property 'next_batch'", false},
		{"room alias 404 error", "GET", "/_matrix/client/v3/directory/room/%23alias%3Alocalhost", 404, `{"errcode":"M_NOT_FOUND","error":"Room alias not found"}`, "", false},
		{"room alias 404 without errcode", "GET", "/_matrix/client/v3/directory/room/%23alias%3Alocalhost", 404, `{"error":"Room alias not found"}`, "missing property 'errcode'", false},
		{"room alias", "GET", "/_matrix/client/v3/directory/room/%23alias%3Alocalhost", 200, `{"room_id":"!abc:localhost","servers":["localhost"]}`, "", false},
		{"send event, encoded room ID", "PUT", "/_matrix/client/v3/rooms/%21room%3Alocalhost/send/m.room.message/txn1", 200, `{"event_id":"$abc"}`, "", false},
		{"send event, raw room ID", "PUT", "/_matrix/client/v3/rooms/!room:localhost/send/m.room.message/txn1", 200, `{"event_id":"$abc"}`, "", false},
		{"send event missing event_id", "PUT", "/_matrix/client/v3/rooms/%21room%3Alocalhost/send/m.room.message/txn1", 200, `{}`, "missing property 'event_id'", false},
		{"state event with empty state key", "PUT", "/_matrix/client/v3/rooms/%21room%3Alocalhost/state/m.room.name/", 200, `{"event_id":"$abc"}`, "", false},
		{"get state event", "GET", "/_matrix/client/v3/rooms/%21room%3Alocalhost/state/m.room.name", 200, `{"name":"Room"}`, "", false},
		{"create room", "POST", "/_matrix/client/v3/createRoom", 200, `{"room_id":"!new:localhost"}`, "", false},
		{"create room missing room_id", "POST", "/_matrix/client/v3/createRoom", 200, `{}`, "missing property 'room_id'", false},
		{"joined rooms", "GET", "/_matrix/client/v3/joined_rooms", 200, `{"joined_rooms":["!a:localhost"]}`, "", false},
		{"login flows", "GET", "/_matrix/client/v3/login", 200, `{"flows":[{"type":"m.login.password"}]}`, "", false},
		{"login response", "POST", "/_matrix/client/v3/login", 200, `{"user_id":"@a:localhost","access_token":"tok","device_id":"DEV"}`, "", false},
		{"capabilities", "GET", "/_matrix/client/v3/capabilities", 200, `{"capabilities":{"m.change_password":{"enabled":true},"m.room_versions":{"default":"10","available":{"10":"stable"}}}}`, "", false},
		{"capabilities wrong type", "GET", "/_matrix/client/v3/capabilities", 200, `{"capabilities":{"m.change_password":{"enabled":"yes"}}}`, `at "/capabilities/m.change_password/enabled"`, false},
		{"pushrules trailing slash", "GET", "/_matrix/client/v3/pushrules/", 200, `{"global":{}}`, "", false},
		{"client v1 base path", "GET", "/_matrix/client/v1/rooms/%21r%3Alocalhost/relations/%24ev", 200, `{"chunk":[]}`, "", false},
		{"client v1 not v3", "GET", "/_matrix/client/v3/rooms/%21r%3Alocalhost/relations/%24ev", 200, `{"chunk":[]}`, "no schema", true},
		{"media v3 config", "GET", "/_matrix/media/v3/config", 200, `{"m.upload.size":50000000}`, "", false},
		{"authed media config", "GET", "/_matrix/client/v1/media/config", 200, `{"m.upload.size":50000000}`, "", false},
		{"media download is not JSON", "GET", "/_matrix/media/v3/download/localhost/abc", 200, `x`, "no schema for GET /_matrix/media/v3/download/localhost/abc status 200", true},
		{"well-known", "GET", "/.well-known/matrix/client", 200, `{"m.homeserver":{"base_url":"https://localhost:8008"}}`, "", false},
		{"well-known missing homeserver", "GET", "/.well-known/matrix/client", 200, `{}`, "missing property 'm.homeserver'", false},
		{"admin whois base path", "GET", "/_matrix/client/v3/admin/whois/%40a%3Alocalhost", 200, `{"user_id":"@a:localhost","devices":{}}`, "", false},
		{"unknown endpoint", "GET", "/_matrix/client/v3/nope", 200, `{}`, "no schema for GET /_matrix/client/v3/nope status 200", true},
		{"peeking /events (path with a trailing space in the spec)", "GET", "/_matrix/client/v3/events?room_id=%21r", 200, `{"start":"a","end":"b","chunk":[]}`, "", false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			checkErr(t, s.Validate(tc.method, tc.path, tc.status, []byte(tc.body)), tc.wantErr, tc.noSch)
		})
	}
}

func TestValidateRequestRealSpec(t *testing.T) {
	s := Require(t)
	tests := []struct {
		name, method, path, body, wantErr string
		noSch                             bool
	}{
		{"login password", "POST", "/_matrix/client/v3/login", `{"type":"m.login.password","identifier":{"type":"m.id.user","user":"alice"},"password":"secret"}`, "", false},
		{"login without type", "POST", "/_matrix/client/v3/login", `{"password":"secret"}`, "missing property 'type'", false},
		{"create room", "POST", "/_matrix/client/v3/createRoom", `{"preset":"private_chat","name":"x","invite":["@b:localhost"]}`, "", false},
		{"create room bad preset", "POST", "/_matrix/client/v3/createRoom", `{"preset":"nope"}`, `at "/preset"`, false},
		{"invite by user ID", "POST", "/_matrix/client/v3/rooms/%21r%3Alocalhost/invite", `{"user_id":"@b:localhost","reason":"hi"}`, "", false},
		{"invite by third-party ID (same path, second operation)", "POST", "/_matrix/client/v3/rooms/%21r%3Alocalhost/invite", `{"id_server":"id.example.org","id_access_token":"t","medium":"email","address":"b@example.org"}`, "", false},
		{"invite matching neither operation", "POST", "/_matrix/client/v3/rooms/%21r%3Alocalhost/invite", `{"reason":"hi"}`, "2 operations|missing property 'user_id'|missing properties", false},
		{"send state without state key", "PUT", "/_matrix/client/v3/rooms/%21r%3Alocalhost/state/m.room.name", `{"name":"Room"}`, "", false},
		{"no body for GET", "GET", "/_matrix/client/v3/account/whoami", ``, "no schema for GET /_matrix/client/v3/account/whoami request", true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			checkErr(t, s.ValidateRequest(tc.method, tc.path, []byte(tc.body)), tc.wantErr, tc.noSch)
		})
	}
}

func TestValidateEventRealSpec(t *testing.T) {
	s := Require(t)
	const msg = `{"type":"m.room.message","room_id":"!r:localhost","event_id":"$e","sender":"@a:localhost","origin_server_ts":1,"content":{"msgtype":"m.text","body":"hi"}}`
	tests := []struct {
		name, typ, body, wantErr string
		noSch                    bool
	}{
		{"m.room.message", "m.room.message", msg, "", false},
		{"m.room.message without body", "m.room.message", strings.Replace(msg, `,"body":"hi"`, ``, 1), "missing property 'body'", false},
		{"m.room.message without sender", "m.room.message", strings.Replace(msg, `"sender":"@a:localhost",`, ``, 1), "missing property 'sender'", false},
		{"m.room.message wrong type", "m.room.message", strings.Replace(msg, `"type":"m.room.message"`, `"type":"m.room.name"`, 1), `at "/type"`, false},
		{"m.room.member", "m.room.member", `{"type":"m.room.member","state_key":"@a:localhost","room_id":"!r:localhost","event_id":"$e","sender":"@a:localhost","origin_server_ts":1,"content":{"membership":"join"}}`, "", false},
		{"m.room.member bad membership", "m.room.member", `{"type":"m.room.member","state_key":"@a:localhost","room_id":"!r:localhost","event_id":"$e","sender":"@a:localhost","origin_server_ts":1,"content":{"membership":"joined"}}`, `at "/content/membership"`, false},
		{"msgtype variant", "m.room.message$m.text", msg, "", false},
		{"unknown event type", "m.nope", `{}`, "no schema for event m.nope", true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			checkErr(t, s.ValidateEvent(tc.typ, []byte(tc.body)), tc.wantErr, tc.noSch)
		})
	}
}

// expandExample resolves the "$ref" convention used by the spec's examples:
// an object with a "$ref" is the referenced file's (expanded) content with
// the object's other members replacing the referenced ones (a shallow merge,
// as the spec's renderer does: see event-schemas/examples/m.receipt.yaml).
func expandExample(s *Spec, file string, v any) (any, error) {
	switch v := v.(type) {
	case []any:
		out := make([]any, len(v))
		for i, e := range v {
			x, err := expandExample(s, file, e)
			if err != nil {
				return nil, err
			}
			out[i] = x
		}
		return out, nil
	case map[string]any:
		out := map[string]any{}
		if ref, ok := v["$ref"].(string); ok {
			f, _, target, err := s.resolveRef(file, ref)
			if err != nil {
				return nil, err
			}
			base, err := expandExample(s, f, target)
			if err != nil {
				return nil, err
			}
			m, ok := base.(map[string]any)
			if !ok {
				return nil, fmt.Errorf("$ref %q is not an object", ref)
			}
			maps.Copy(out, m)
		}
		for k, e := range v {
			if k == "$ref" {
				continue
			}
			x, err := expandExample(s, file, e)
			if err != nil {
				return nil, err
			}
			out[k] = x
		}
		return out, nil
	}
	return v, nil
}

// TestSpecResponseExamples validates every JSON response example in the
// client-server API against the schema of its own response: a strong check
// that refs, allOf and friends resolve the way the spec authors intend.
func TestSpecResponseExamples(t *testing.T) {
	s := Require(t)
	files, _ := filepath.Glob(filepath.Join(s.Dir(), "api", "client-server", "*.yaml"))
	checked := 0
	for _, file := range files {
		doc, err := s.docs.get(file)
		if err != nil {
			t.Fatal(err)
		}
		paths, _ := doc.(map[string]any)["paths"].(map[string]any)
		for _, tmpl := range slices.Sorted(maps.Keys(paths)) {
			item, _ := paths[tmpl].(map[string]any)
			for _, m := range httpMethods {
				op, ok := item[m].(map[string]any)
				if !ok {
					continue
				}
				responses, _ := op["responses"].(map[string]any)
				for status, r := range responses {
					rf := file
					for {
						rm, _ := r.(map[string]any)
						ref, ok := rm["$ref"].(string)
						if !ok {
							break
						}
						if rf, _, r, err = s.resolveRef(rf, ref); err != nil {
							t.Fatal(err)
						}
					}
					content, _ := r.(map[string]any)["content"].(map[string]any)
					media, _ := content["application/json"].(map[string]any)
					var examples []any
					if ex, ok := media["example"]; ok {
						examples = append(examples, ex)
					}
					exs, _ := media["examples"].(map[string]any)
					for _, name := range slices.Sorted(maps.Keys(exs)) {
						if e, ok := exs[name].(map[string]any); ok {
							if v, ok := e["value"]; ok {
								examples = append(examples, v)
							}
						}
					}
					for i, ex := range examples {
						name := fmt.Sprintf("%s %s %s %s #%d", s.rel(file), strings.ToUpper(m), strings.TrimSpace(tmpl), status, i)
						ex, err := expandExample(s, rf, ex)
						if err != nil {
							t.Errorf("%s: expanding example: %v", name, err)
							continue
						}
						body, err := json.Marshal(ex)
						if err != nil {
							t.Fatal(err)
						}
						path := examplePath(s, file, tmpl)
						var st int
						if _, err := fmt.Sscan(status, &st); err != nil {
							continue // "default" or "4XX"
						}
						checked++
						if err := s.Validate(m, path, st, body); err != nil {
							t.Errorf("%s: spec example does not validate:\n%v", name, err)
						}
					}
				}
			}
		}
	}
	t.Logf("%d response examples validated", checked)
	if checked < 100 {
		t.Errorf("only %d response examples found", checked)
	}
}

// examplePath turns a path template of file into a concrete path, with
// every parameter replaced by "x".
func examplePath(s *Spec, file, tmpl string) string {
	for _, op := range s.ops {
		if op.file == s.rel(file) && strings.HasSuffix(op.template, strings.TrimSpace(tmpl)) {
			return paramRE.ReplaceAllString(op.template, "x")
		}
	}
	return tmpl
}

// TestSpecEventExamples validates the spec's event examples
// (event-schemas/examples/<type>.yaml) against the matching event schema.
func TestSpecEventExamples(t *testing.T) {
	s := Require(t)
	files, _ := filepath.Glob(filepath.Join(s.Dir(), "event-schemas", "examples", "*.yaml"))
	checked := 0
	for _, f := range files {
		typ := strings.TrimSuffix(filepath.Base(f), ".yaml")
		if _, err := os.Stat(filepath.Join(s.Dir(), "event-schemas", "schema", typ+".yaml")); err != nil {
			continue // examples of a msgtype variant without a schema of its own
		}
		doc, err := s.docs.get(f)
		if err != nil {
			t.Fatal(err)
		}
		ex, err := expandExample(s, f, doc)
		if err != nil {
			t.Errorf("%s: %v", typ, err)
			continue
		}
		body, _ := json.Marshal(ex)
		checked++
		if err := s.ValidateEvent(typ, body); err != nil {
			t.Errorf("spec example for %s does not validate:\n%v", typ, err)
		}
	}
	t.Logf("%d event examples validated", checked)
	if checked < 40 {
		t.Errorf("only %d event examples found", checked)
	}
}

func TestConcurrentUse(t *testing.T) {
	s := Require(t)
	var wg sync.WaitGroup
	errs := make(chan error, 64)
	for i := range 16 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for j := range 20 {
				if err := s.Validate("GET", "/_matrix/client/v3/sync", 200, []byte(syncBody)); err != nil {
					errs <- err
					return
				}
				typ := []string{"m.room.message", "m.room.member", "m.room.name", "m.room.topic"}[(i+j)%4]
				if err := s.ValidateEvent(typ, []byte(`{}`)); err == nil {
					errs <- fmt.Errorf("empty %s event validated", typ)
					return
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
}

func TestLoadIsCached(t *testing.T) {
	a := Require(t)
	b, err := Load()
	if err != nil || a != b {
		t.Fatalf("second Load() = %p, %v; want the cached %p", b, err, a)
	}
}
