package conformance

import "testing"

// Server discovery and versions: GET /_matrix/client/versions,
// /.well-known/matrix/client, /capabilities.
func TestVersions(t *testing.T) {
	e := newEnv(t)
	r := e.do("GET", "/_matrix/client/versions", "", nil, 200)
	if len(r.JSON(t)["versions"].([]any)) == 0 {
		t.Fatal("no versions advertised")
	}
	e.do("GET", "/.well-known/matrix/client", "", nil, 200)
	u := e.register("caps")
	caps := e.do("GET", "/_matrix/client/v3/capabilities", u.Token, nil, 200).JSON(t)
	rv := caps["capabilities"].(map[string]any)["m.room_versions"].(map[string]any)
	if rv["default"] != "11" {
		t.Fatalf("default room version %v, want 11", rv["default"])
	}
	e.doErr("GET", "/_matrix/client/v3/capabilities", "", nil, 401, "M_MISSING_TOKEN")
	e.doErr("GET", "/_matrix/client/v3/capabilities", "not-a-token", nil, 401, "M_UNKNOWN_TOKEN")
	e.doErr("GET", "/_matrix/client/v3/no-such-endpoint", u.Token, nil, 404, "M_UNRECOGNIZED")
	e.doErr("DELETE", "/_matrix/client/versions", "", nil, 405, "M_UNRECOGNIZED")
}
