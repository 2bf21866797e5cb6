package conformance

import (
	"testing"
)

// Server-side key backups: /room_keys/version and /room_keys/keys at the
// three levels.

const backupAlg = "m.megolm_backup.v1.curve25519-aes-sha2"

func backupKeyData(first, forwarded int, verified bool, tag string) map[string]any {
	return map[string]any{"first_message_index": first, "forwarded_count": forwarded, "is_verified": verified,
		"session_data": map[string]any{"ephemeral": tag, "ciphertext": "c", "mac": "m"}}
}

func TestKeyBackupVersions(t *testing.T) {
	e := newEnv(t)
	alice := e.register("kb")
	bob := e.register("kbbob")
	const ver = "/_matrix/client/v3/room_keys/version"
	e.doErr("GET", ver, alice.Token, nil, 404, "M_NOT_FOUND")
	e.doErr("POST", ver, alice.Token, map[string]any{"algorithm": "m.rot13", "auth_data": map[string]any{}}, 400, "M_INVALID_PARAM")
	e.doErr("POST", ver, alice.Token, map[string]any{"algorithm": backupAlg}, 400, "M_MISSING_PARAM")
	e.doErr("POST", ver, alice.Token, map[string]any{"algorithm": backupAlg, "auth_data": "x"}, 400, "M_MISSING_PARAM")

	v1 := e.do("POST", ver, alice.Token, map[string]any{"algorithm": backupAlg, "auth_data": map[string]any{"public_key": "pk1"}}, 200).JSON(t)["version"].(string)
	v2 := e.do("POST", ver, alice.Token, map[string]any{"algorithm": backupAlg, "auth_data": map[string]any{"public_key": "pk2"}}, 200).JSON(t)["version"].(string)
	if v1 == v2 {
		t.Fatalf("versions %s and %s", v1, v2)
	}
	latest := e.do("GET", ver, alice.Token, nil, 200).JSON(t)
	if latest["version"] != v2 || path(latest, "auth_data", "public_key") != "pk2" || latest["count"] != float64(0) || latest["etag"] == nil {
		t.Fatalf("latest = %v", latest)
	}
	if got := e.do("GET", ver+"/"+v1, alice.Token, nil, 200).JSON(t); path(got, "auth_data", "public_key") != "pk1" {
		t.Fatalf("v1 = %v", got)
	}
	e.doErr("GET", ver+"/"+v1, bob.Token, nil, 404, "M_NOT_FOUND") // not bob's
	e.doErr("GET", ver+"/nonsense", alice.Token, nil, 404, "M_NOT_FOUND")

	// Only auth_data may change.
	e.do("PUT", ver+"/"+v2, alice.Token, map[string]any{"algorithm": backupAlg, "auth_data": map[string]any{"public_key": "pk2", "signatures": map[string]any{}}, "version": v2}, 200)
	e.doErr("PUT", ver+"/"+v2, alice.Token, map[string]any{"algorithm": backupAlg, "auth_data": map[string]any{}, "version": v1}, 400, "M_INVALID_PARAM")
	e.doErr("PUT", ver+"/"+v2, alice.Token, map[string]any{"algorithm": "m.rot13", "auth_data": map[string]any{}}, 400, "M_INVALID_PARAM")
	e.doErr("PUT", ver+"/99", alice.Token, map[string]any{"algorithm": backupAlg, "auth_data": map[string]any{}}, 404, "M_NOT_FOUND")

	// Deleting the latest makes the previous one current again.
	e.do("DELETE", ver+"/"+v2, alice.Token, nil, 200)
	e.doErr("GET", ver+"/"+v2, alice.Token, nil, 404, "M_NOT_FOUND")
	e.doErr("DELETE", ver+"/"+v2, alice.Token, nil, 404, "M_NOT_FOUND")
	if got := e.do("GET", ver, alice.Token, nil, 200).JSON(t); got["version"] != v1 {
		t.Fatalf("latest after delete = %v", got)
	}
	v3 := e.do("POST", ver, alice.Token, map[string]any{"algorithm": backupAlg, "auth_data": map[string]any{"public_key": "pk3"}}, 200).JSON(t)["version"].(string)
	if v3 == v2 || v3 == v1 {
		t.Fatalf("a deleted version number was reused: %s", v3)
	}
}

func TestKeyBackupKeys(t *testing.T) {
	e := newEnv(t)
	alice := e.register("kbk")
	const room = "!room:localhost"
	const sid = "session/with+slash"
	keys := "/_matrix/client/v3/room_keys/keys"
	roomKeys := keys + "/" + esc(room)
	sessKey := roomKeys + "/" + esc(sid)

	e.doErr("PUT", keys+"?version=1", alice.Token, map[string]any{"rooms": map[string]any{}}, 404, "M_NOT_FOUND")
	v1 := e.do("POST", "/_matrix/client/v3/room_keys/version", alice.Token, map[string]any{"algorithm": backupAlg, "auth_data": map[string]any{"public_key": "a"}}, 200).JSON(t)["version"].(string)
	v2 := e.do("POST", "/_matrix/client/v3/room_keys/version", alice.Token, map[string]any{"algorithm": backupAlg, "auth_data": map[string]any{"public_key": "b"}}, 200).JSON(t)["version"].(string)

	// Writing to an old version is refused with the current one.
	r := e.doErr("PUT", sessKey+"?version="+v1, alice.Token, backupKeyData(0, 0, false, "x"), 403, "M_WRONG_ROOM_KEYS_VERSION").JSON(t)
	if r["current_version"] != v2 {
		t.Fatalf("wrong version error = %v", r)
	}
	e.doErr("PUT", sessKey, alice.Token, backupKeyData(0, 0, false, "x"), 400, "M_MISSING_PARAM")
	e.doErr("PUT", sessKey+"?version="+v2, alice.Token, map[string]any{"first_message_index": 1}, 400, "M_MISSING_PARAM")
	e.doErr("PUT", sessKey+"?version="+v2, alice.Token, map[string]any{"first_message_index": "one", "forwarded_count": 0, "is_verified": false, "session_data": map[string]any{}}, 400, "M_BAD_JSON")

	// Three levels of upload.
	up := e.do("PUT", sessKey+"?version="+v2, alice.Token, backupKeyData(5, 1, false, "first"), 200).JSON(t)
	if up["count"] != float64(1) {
		t.Fatalf("upload = %v", up)
	}
	etag1 := up["etag"]
	up = e.do("PUT", roomKeys+"?version="+v2, alice.Token, map[string]any{"sessions": map[string]any{"s2": backupKeyData(0, 0, false, "s2")}}, 200).JSON(t)
	if up["count"] != float64(2) || up["etag"] == etag1 {
		t.Fatalf("room upload = %v", up)
	}
	up = e.do("PUT", keys+"?version="+v2, alice.Token, map[string]any{"rooms": map[string]any{"!other:localhost": map[string]any{"sessions": map[string]any{"s3": backupKeyData(0, 0, true, "s3")}}}}, 200).JSON(t)
	if up["count"] != float64(3) {
		t.Fatalf("all upload = %v", up)
	}

	// Which key wins.
	steps := []struct {
		data map[string]any
		want string
	}{
		{backupKeyData(9, 0, false, "worse index"), "first"},
		{backupKeyData(5, 2, false, "worse forwarded"), "first"},
		{backupKeyData(5, 0, false, "better forwarded"), "better forwarded"},
		{backupKeyData(2, 0, false, "better index"), "better index"},
		{backupKeyData(7, 3, true, "verified"), "verified"},
		{backupKeyData(0, 0, false, "unverified"), "verified"},
	}
	for _, st := range steps {
		before := e.do("GET", "/_matrix/client/v3/room_keys/version/"+v2, alice.Token, nil, 200).JSON(t)["etag"]
		after := e.do("PUT", sessKey+"?version="+v2, alice.Token, st.data, 200).JSON(t)["etag"]
		got := e.do("GET", sessKey+"?version="+v2, alice.Token, nil, 200).JSON(t)
		if path(got, "session_data", "ephemeral") != st.want {
			t.Fatalf("after uploading %q the stored key is %v, want %q", path(st.data, "session_data", "ephemeral"), got, st.want)
		}
		if changed := before != after; changed != (st.want == path(st.data, "session_data", "ephemeral")) {
			t.Fatalf("etag %v -> %v after %q", before, after, st.want)
		}
	}

	// Reads at three levels.
	all := e.do("GET", keys+"?version="+v2, alice.Token, nil, 200).JSON(t)
	if path(all, "rooms", room, "sessions", sid) == nil || path(all, "rooms", "!other:localhost", "sessions", "s3") == nil {
		t.Fatalf("all keys = %v", all)
	}
	if rk := e.do("GET", roomKeys+"?version="+v2, alice.Token, nil, 200).JSON(t); len(rk["sessions"].(map[string]any)) != 2 {
		t.Fatalf("room keys = %v", rk)
	}
	if rk := e.do("GET", keys+"/"+esc("!empty:localhost")+"?version="+v2, alice.Token, nil, 200).JSON(t); len(rk["sessions"].(map[string]any)) != 0 {
		t.Fatalf("empty room keys = %v", rk)
	}
	e.doErr("GET", keys+"/"+esc(room)+"/nope?version="+v2, alice.Token, nil, 404, "M_NOT_FOUND")
	e.doErr("GET", keys+"?version=77", alice.Token, nil, 404, "M_NOT_FOUND")
	if old := e.do("GET", keys+"?version="+v1, alice.Token, nil, 200).JSON(t); len(old["rooms"].(map[string]any)) != 0 {
		t.Fatalf("old version keys = %v", old)
	}

	// Deletes at three levels.
	if d := e.do("DELETE", sessKey+"?version="+v2, alice.Token, nil, 200).JSON(t); d["count"] != float64(2) {
		t.Fatalf("delete session = %v", d)
	}
	if d := e.do("DELETE", roomKeys+"?version="+v2, alice.Token, nil, 200).JSON(t); d["count"] != float64(1) {
		t.Fatalf("delete room = %v", d)
	}
	if d := e.do("DELETE", keys+"?version="+v2, alice.Token, nil, 200).JSON(t); d["count"] != float64(0) {
		t.Fatalf("delete all = %v", d)
	}
	e.doErr("DELETE", keys+"?version=77", alice.Token, nil, 404, "M_NOT_FOUND")
	// Deleting the version deletes its keys.
	e.do("PUT", sessKey+"?version="+v2, alice.Token, backupKeyData(0, 0, false, "again"), 200)
	e.do("DELETE", "/_matrix/client/v3/room_keys/version/"+v2, alice.Token, nil, 200)
	e.doErr("GET", sessKey+"?version="+v2, alice.Token, nil, 404, "M_NOT_FOUND")
}
