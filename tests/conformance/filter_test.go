package conformance

import (
	"reflect"
	"strings"
	"testing"
)

// Filtering: POST /user/{userId}/filter and GET /user/{userId}/filter/{filterId}.
func TestFilter(t *testing.T) {
	e := newEnv(t)
	alice := e.register("fialice")
	bob := e.register("fibob")
	base := "/_matrix/client/v3/user/" + esc(alice.ID) + "/filter"

	def := map[string]any{
		"room": map[string]any{
			"state":    map[string]any{"types": []any{"m.room.*"}, "not_rooms": []any{"!726s6s6q:example.com"}},
			"timeline": map[string]any{"limit": float64(10), "types": []any{"m.room.message"}, "not_senders": []any{"@spam:example.com"}},
		},
		"presence":     map[string]any{"types": []any{"m.presence"}},
		"event_format": "client",
		"event_fields": []any{"type", "content", "sender"},
	}
	id := e.do("POST", base, alice.Token, def, 200).JSON(t)["filter_id"].(string)
	if id == "" || strings.HasPrefix(id, "{") {
		t.Fatalf("bad filter_id %q", id)
	}
	if got := e.do("GET", base+"/"+esc(id), alice.Token, nil, 200).JSON(t); !reflect.DeepEqual(got, def) {
		t.Fatalf("filter = %v, want %v", got, def)
	}
	// An empty filter is valid.
	empty := e.do("POST", base, alice.Token, map[string]any{}, 200).JSON(t)["filter_id"].(string)
	if empty == id {
		t.Fatal("two filters got the same ID")
	}
	e.do("GET", base+"/"+esc(empty), alice.Token, nil, 200)
	// The stored filter is usable by /sync.
	e.do("GET", "/_matrix/client/v3/sync?filter="+id, alice.Token, nil, 200)

	e.doErr("GET", base+"/999999", alice.Token, nil, 404, "M_NOT_FOUND")
	e.doErr("GET", base+"/not-a-number", alice.Token, nil, 404, "M_NOT_FOUND")
	// Filters are private to their owner.
	e.doErr("GET", base+"/"+esc(id), bob.Token, nil, 403, "M_FORBIDDEN")
	e.doErr("POST", base, bob.Token, map[string]any{}, 403, "M_FORBIDDEN")
	e.doErr("GET", "/_matrix/client/v3/user/"+esc(bob.ID)+"/filter/"+esc(id), bob.Token, nil, 404, "M_NOT_FOUND")
	e.doErr("POST", base, "", map[string]any{}, 401, "M_MISSING_TOKEN")

	// Invalid definitions.
	e.doErr("POST", base, alice.Token, "{nope", 400, "M_NOT_JSON")
	e.doErr("POST", base, alice.Token, "[]", 400, "M_BAD_JSON")
	e.doErr("POST", base, alice.Token, map[string]any{"event_format": "xml"}, 400, "M_BAD_JSON")
	e.doErr("POST", base, alice.Token, map[string]any{"room": map[string]any{"timeline": map[string]any{"limit": -1}}}, 400, "M_BAD_JSON")
	e.doErr("POST", base, alice.Token, map[string]any{"room": map[string]any{"rooms": "!notalist:x"}}, 400, "M_BAD_JSON")
	e.doErr("POST", base, alice.Token, `{"event_format":"client","event_format":"federation"}`, 400, "M_BAD_JSON")
	e.doErr("POST", base, alice.Token, map[string]any{"room": map[string]any{"not_rooms": []string{strings.Repeat("x", 70000)}}}, 413, "M_TOO_LARGE")
}
