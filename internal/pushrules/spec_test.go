package pushrules

import (
	"encoding/json"
	"os"
	"path/filepath"
	"reflect"
	"regexp"
	"strings"
	"testing"
)

// specPushModule reads the spec's Push Notifications module from the
// matrix-spec checkout beside the repository (or REMPART_MATRIX_SPEC).
func specPushModule(t *testing.T) string {
	t.Helper()
	dir := os.Getenv("REMPART_MATRIX_SPEC")
	if dir == "" {
		dir = filepath.Join("..", "..", "..", "shared", "matrix-spec")
	} else if !filepath.IsAbs(dir) {
		dir = filepath.Join("..", "..", dir)
	}
	b, err := os.ReadFile(filepath.Join(dir, "content", "client-server-api", "modules", "push.md"))
	if os.IsNotExist(err) {
		t.Skip("matrix-spec checkout not found")
	}
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// TestDefaultsMatchSpec compares the server-default rules, in order, with
// the definitions the spec gives under "Predefined Rules".
func TestDefaultsMatchSpec(t *testing.T) {
	doc := specPushModule(t)
	start := strings.Index(doc, "#### Predefined Rules")
	end := strings.Index(doc, "#### Push Rules: API")
	if start < 0 || end < start {
		t.Fatal("Predefined Rules section not found")
	}
	section := doc[start:end]
	under := strings.Index(section, "##### Default Underride Rules")
	const me = "@alice:example.org"
	blocks := regexp.MustCompile("(?s)```json\n(.*?)```")
	var specOver, specUnder []any
	for _, m := range blocks.FindAllStringSubmatchIndex(section, -1) {
		text := strings.ReplaceAll(section[m[2]:m[3]], "[the user's Matrix ID]", me)
		var rule any
		if err := json.Unmarshal([]byte(text), &rule); err != nil {
			t.Fatalf("spec block: %v\n%s", err, text)
		}
		if m[0] < under {
			specOver = append(specOver, rule)
		} else {
			specUnder = append(specUnder, rule)
		}
	}
	rs := Defaults(me)
	if len(rs.Content) != 0 || len(rs.Room) != 0 || len(rs.Sender) != 0 {
		t.Fatal("the spec defines no default content, room or sender rules since v1.17")
	}
	for _, c := range []struct {
		kind string
		spec []any
		ours []Rule
	}{{"override", specOver, rs.Override}, {"underride", specUnder, rs.Underride}} {
		b, _ := json.Marshal(c.ours)
		var ours []any
		_ = json.Unmarshal(b, &ours)
		if len(ours) != len(c.spec) {
			t.Fatalf("%s: %d rules, the spec lists %d", c.kind, len(ours), len(c.spec))
		}
		for i := range ours {
			if !reflect.DeepEqual(ours[i], c.spec[i]) {
				t.Errorf("%s rule %d differs from the spec:\nours: %v\nspec: %v", c.kind, i, ours[i], c.spec[i])
			}
		}
	}
}
