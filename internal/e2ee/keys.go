package e2ee

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"sort"
	"strings"

	"github.com/matrix-org/gomatrixserverlib/spec"

	"github.com/rempart-hs/rempart/internal/httpapi"
	"github.com/rempart-hs/rempart/internal/storage"
	"github.com/rempart-hs/rempart/internal/syncapi"
)

// Bounds on key uploads and look-ups.
const (
	maxKeysPerUpload  = 200
	maxKeyIDLen       = 128
	maxAlgorithms     = 32
	maxQueryUsers     = 10000
	maxQueryDevices   = 1000
	maxClaimDevices   = 10000
	maxOneTimeKeysDev = 10000
)

// oneTimeKeyAlgorithms are the one-time and fallback key algorithms the
// server accepts: signed ones must carry a valid signature by the device.
var oneTimeKeyAlgorithms = map[string]bool{"signed_curve25519": true, "curve25519": true}

// deviceKeysJSON is the part of a DeviceKeys object the server checks.
type deviceKeysJSON struct {
	UserID     string            `json:"user_id"`
	DeviceID   string            `json:"device_id"`
	Algorithms []string          `json:"algorithms"`
	Keys       map[string]string `json:"keys"`
}

// keysUploadRequest is the body of POST /keys/upload.
type keysUploadRequest struct {
	DeviceKeys       json.RawMessage            `json:"device_keys"`
	OneTimeKeys      map[string]json.RawMessage `json:"one_time_keys"`
	FallbackKeys     map[string]json.RawMessage `json:"fallback_keys"`
	UnstableFallback map[string]json.RawMessage `json:"org.matrix.msc2732.fallback_keys"`
}

// checkDeviceKeys validates uploaded device keys for the requester's device
// and returns the device's ed25519 key.
func checkDeviceKeys(req *httpapi.Requester, raw json.RawMessage) (string, error) {
	var dk deviceKeysJSON
	if err := json.Unmarshal(raw, &dk); err != nil {
		return "", httpapi.BadJSON("device_keys is malformed")
	}
	if dk.UserID != req.UserID || dk.DeviceID != req.DeviceID {
		return "", httpapi.InvalidParam("device_keys must be for the uploading user and device")
	}
	if len(dk.Algorithms) == 0 || len(dk.Algorithms) > maxAlgorithms {
		return "", httpapi.InvalidParam("device_keys.algorithms must list 1 to %d algorithms", maxAlgorithms)
	}
	for _, a := range dk.Algorithms {
		if a == "" || len(a) > 255 {
			return "", httpapi.InvalidParam("invalid algorithm name")
		}
	}
	if len(dk.Keys) == 0 || len(dk.Keys) > 8 {
		return "", httpapi.InvalidParam("device_keys.keys must hold the device's identity keys")
	}
	for id, k := range dk.Keys {
		alg, dev, ok := strings.Cut(id, ":")
		if !ok || dev != req.DeviceID {
			return "", httpapi.InvalidParam("key ID %q is not <algorithm>:<device ID>", id)
		}
		if alg != "ed25519" && alg != "curve25519" {
			return "", httpapi.InvalidParam("unknown key algorithm %q", alg)
		}
		if _, ok := decodeKey(k); !ok {
			return "", httpapi.InvalidParam("key %q is not a 32-byte base64 key", id)
		}
	}
	ed := dk.Keys["ed25519:"+req.DeviceID]
	if ed == "" || dk.Keys["curve25519:"+req.DeviceID] == "" {
		return "", httpapi.InvalidParam("device_keys must contain ed25519 and curve25519 keys")
	}
	if err := verify(raw, req.UserID, "ed25519:"+req.DeviceID, ed); err != nil {
		return "", httpapi.InvalidParam("device_keys are not correctly signed by the device")
	}
	return ed, nil
}

// parsedKey is a validated one-time or fallback key.
type parsedKey struct {
	algorithm string
	keyID     string
	json      json.RawMessage
}

// checkOneTimeKeys validates one-time or fallback keys against the
// device's ed25519 key.
func checkOneTimeKeys(req *httpapi.Requester, keys map[string]json.RawMessage, ed string, fallback bool) ([]parsedKey, error) {
	out := make([]parsedKey, 0, len(keys))
	seen := map[string]bool{}
	for id, raw := range keys {
		alg, kid, ok := strings.Cut(id, ":")
		if !ok || kid == "" || len(id) > maxKeyIDLen {
			return nil, httpapi.InvalidParam("key ID %q is not <algorithm>:<key ID>", id)
		}
		if !oneTimeKeyAlgorithms[alg] {
			return nil, httpapi.InvalidParam("unknown key algorithm %q", alg)
		}
		if fallback && seen[alg] {
			return nil, httpapi.InvalidParam("more than one fallback key for %s", alg)
		}
		seen[alg] = true
		if alg == "curve25519" {
			var k string
			if err := json.Unmarshal(raw, &k); err != nil {
				return nil, httpapi.BadJSON("key %q must be a string", id)
			}
			if _, ok := decodeKey(k); !ok {
				return nil, httpapi.InvalidParam("key %q is not a 32-byte base64 key", id)
			}
		} else {
			var k struct {
				Key string `json:"key"`
			}
			if err := json.Unmarshal(raw, &k); err != nil {
				return nil, httpapi.BadJSON("key %q must be a signed key object", id)
			}
			if _, ok := decodeKey(k.Key); !ok {
				return nil, httpapi.InvalidParam("key %q is not a 32-byte base64 key", id)
			}
			if ed == "" {
				return nil, httpapi.InvalidParam("upload device keys before signed keys")
			}
			if err := verify(raw, req.UserID, "ed25519:"+req.DeviceID, ed); err != nil {
				return nil, httpapi.InvalidParam("key %q is not correctly signed by the device", id)
			}
		}
		out = append(out, parsedKey{algorithm: alg, keyID: id, json: raw})
	}
	sort.Slice(out, func(i, j int) bool { return out[i].keyID < out[j].keyID })
	return out, nil
}

// postKeysUpload serves POST /_matrix/client/v3/keys/upload.
func (s *Service) postKeysUpload(r *http.Request) (any, error) {
	ctx := r.Context()
	req := httpapi.RequesterFrom(ctx)
	var body keysUploadRequest
	if err := decode(r, &body); err != nil {
		return nil, err
	}
	if len(body.OneTimeKeys) > maxKeysPerUpload {
		return nil, httpapi.InvalidParam("at most %d one-time keys per upload", maxKeysPerUpload)
	}
	if body.FallbackKeys == nil {
		body.FallbackKeys = body.UnstableFallback
	}
	if len(body.FallbackKeys) > len(oneTimeKeyAlgorithms) {
		return nil, httpapi.InvalidParam("at most one fallback key per algorithm")
	}
	var ed string
	hasDeviceKeys := len(body.DeviceKeys) > 0 && string(body.DeviceKeys) != "null"
	if hasDeviceKeys {
		var err error
		if ed, err = checkDeviceKeys(req, body.DeviceKeys); err != nil {
			return nil, err
		}
	} else if len(body.OneTimeKeys) > 0 || len(body.FallbackKeys) > 0 {
		ks, err := s.db.DeviceKeysOf(ctx, req.UserID, []string{req.DeviceID})
		if err != nil {
			return nil, err
		}
		if len(ks) == 1 {
			ed = ks[0].Ed25519
		}
	}
	otks, err := checkOneTimeKeys(req, body.OneTimeKeys, ed, false)
	if err != nil {
		return nil, err
	}
	fbks, err := checkOneTimeKeys(req, body.FallbackKeys, ed, true)
	if err != nil {
		return nil, err
	}
	var counts map[string]int
	err = s.db.WithTx(ctx, func(tx *storage.Tx) error {
		if hasDeviceKeys {
			changed, err := tx.PutDeviceKeys(ctx, req.UserID, req.DeviceID, body.DeviceKeys, ed, s.now().UnixMilli())
			if err != nil {
				return err
			}
			if changed {
				if err := s.deviceListChanged(ctx, tx, req.UserID); err != nil {
					return err
				}
			}
		}
		for _, k := range otks {
			if err := tx.AddOneTimeKey(ctx, req.UserID, req.DeviceID, k.algorithm, k.keyID, k.json); err != nil {
				if errors.Is(err, storage.ErrKeyExists) {
					return httpapi.InvalidParam("one-time key %s already exists with different contents", k.keyID)
				}
				return err
			}
		}
		for _, k := range fbks {
			if err := tx.PutFallbackKey(ctx, req.UserID, req.DeviceID, k.algorithm, k.keyID, k.json); err != nil {
				return err
			}
		}
		var err error
		if counts, err = tx.OneTimeKeyCounts(ctx, req.UserID, req.DeviceID); err != nil {
			return err
		}
		total := 0
		for _, n := range counts {
			total += n
		}
		if total > maxOneTimeKeysDev {
			return httpapi.InvalidParam("too many unclaimed one-time keys for this device")
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	if _, ok := counts["signed_curve25519"]; !ok {
		counts["signed_curve25519"] = 0
	}
	return map[string]any{"one_time_key_counts": counts}, nil
}

// keysQueryRequest is the body of POST /keys/query.
type keysQueryRequest struct {
	DeviceKeys map[string][]string `json:"device_keys"`
	Timeout    *int64              `json:"timeout"`
}

// keysQueryResponse is the response of POST /keys/query.
type keysQueryResponse struct {
	DeviceKeys      map[string]map[string]json.RawMessage `json:"device_keys"`
	MasterKeys      map[string]json.RawMessage            `json:"master_keys"`
	SelfSigningKeys map[string]json.RawMessage            `json:"self_signing_keys"`
	UserSigningKeys map[string]json.RawMessage            `json:"user_signing_keys"`
	Failures        map[string]any                        `json:"failures"`
}

// postKeysQuery serves POST /_matrix/client/v3/keys/query.
func (s *Service) postKeysQuery(r *http.Request) (any, error) {
	ctx := r.Context()
	req := httpapi.RequesterFrom(ctx)
	var body keysQueryRequest
	if err := decode(r, &body); err != nil {
		return nil, err
	}
	if body.DeviceKeys == nil {
		return nil, httpapi.MissingParam("missing device_keys")
	}
	if len(body.DeviceKeys) > maxQueryUsers {
		return nil, httpapi.InvalidParam("at most %d users per query", maxQueryUsers)
	}
	resp := keysQueryResponse{
		DeviceKeys: map[string]map[string]json.RawMessage{}, MasterKeys: map[string]json.RawMessage{},
		SelfSigningKeys: map[string]json.RawMessage{}, UserSigningKeys: map[string]json.RawMessage{}, Failures: map[string]any{},
	}
	users := make([]string, 0, len(body.DeviceKeys))
	for u, devs := range body.DeviceKeys {
		if _, err := spec.NewUserID(u, true); err != nil {
			return nil, httpapi.InvalidParam("invalid user ID %q", u)
		}
		if len(devs) > maxQueryDevices {
			return nil, httpapi.InvalidParam("at most %d devices per user", maxQueryDevices)
		}
		users = append(users, u)
	}
	sort.Strings(users)
	for _, u := range users {
		if !isLocal(req, u) {
			resp.Failures[serverOf(u)] = map[string]any{"errcode": "M_UNAVAILABLE", "error": "federation is not available"}
			continue
		}
		if err := s.queryUser(ctx, req, u, body.DeviceKeys[u], &resp); err != nil {
			return nil, err
		}
	}
	return resp, nil
}

// queryUser adds one local user's keys to a query response. Signatures
// made by other users are shown only to their signer.
func (s *Service) queryUser(ctx context.Context, req *httpapi.Requester, userID string, deviceIDs []string, resp *keysQueryResponse) error {
	devs, err := s.db.DeviceKeysOf(ctx, userID, deviceIDs)
	if err != nil {
		return err
	}
	sigs, err := s.db.KeySignaturesOf(ctx, userID)
	if err != nil {
		return err
	}
	extra := map[string]map[string]map[string]string{} // target key → signer → key ID → sig
	for _, sg := range sigs {
		if sg.SignerUserID != userID && sg.SignerUserID != req.UserID {
			continue
		}
		t := extra[sg.TargetKeyID]
		if t == nil {
			t = map[string]map[string]string{}
			extra[sg.TargetKeyID] = t
		}
		if t[sg.SignerUserID] == nil {
			t[sg.SignerUserID] = map[string]string{}
		}
		t[sg.SignerUserID][sg.SignerKeyID] = sg.Signature
	}
	out := map[string]json.RawMessage{}
	for _, d := range devs {
		uns := map[string]any{}
		if d.DisplayName != "" {
			uns["device_display_name"] = d.DisplayName
		}
		out[d.DeviceID] = addSignatures(d.KeyJSON, extra[d.DeviceID], uns)
	}
	resp.DeviceKeys[userID] = out
	csk, err := s.db.CrossSigningKeys(ctx, userID)
	if err != nil {
		return err
	}
	if k, ok := csk["master"]; ok {
		resp.MasterKeys[userID] = addSignatures(k.KeyJSON, extra[k.PublicKey], nil)
	}
	if k, ok := csk["self_signing"]; ok {
		resp.SelfSigningKeys[userID] = addSignatures(k.KeyJSON, extra[k.PublicKey], nil)
	}
	if k, ok := csk["user_signing"]; ok && userID == req.UserID {
		resp.UserSigningKeys[userID] = addSignatures(k.KeyJSON, extra[k.PublicKey], nil)
	}
	return nil
}

// keysClaimRequest is the body of POST /keys/claim.
type keysClaimRequest struct {
	OneTimeKeys map[string]map[string]string `json:"one_time_keys"`
	Timeout     *int64                       `json:"timeout"`
}

// postKeysClaim serves POST /_matrix/client/v3/keys/claim. Each device
// yields one key, claimed atomically: a one-time key is deleted as it is
// handed out, and the fallback key is used once none is left.
func (s *Service) postKeysClaim(r *http.Request) (any, error) {
	ctx := r.Context()
	req := httpapi.RequesterFrom(ctx)
	var body keysClaimRequest
	if err := decode(r, &body); err != nil {
		return nil, err
	}
	if body.OneTimeKeys == nil {
		return nil, httpapi.MissingParam("missing one_time_keys")
	}
	type claim struct{ user, device, alg string }
	var claims []claim
	failures := map[string]any{}
	for u, devs := range body.OneTimeKeys {
		if _, err := spec.NewUserID(u, true); err != nil {
			return nil, httpapi.InvalidParam("invalid user ID %q", u)
		}
		for d, alg := range devs {
			if !oneTimeKeyAlgorithms[alg] {
				return nil, httpapi.InvalidParam("unknown key algorithm %q", alg)
			}
			if d == "" || len(d) > 255 {
				return nil, httpapi.InvalidParam("invalid device ID")
			}
			if !isLocal(req, u) {
				failures[serverOf(u)] = map[string]any{"errcode": "M_UNAVAILABLE", "error": "federation is not available"}
				continue
			}
			claims = append(claims, claim{u, d, alg})
		}
	}
	if len(claims) > maxClaimDevices {
		return nil, httpapi.InvalidParam("at most %d devices per claim", maxClaimDevices)
	}
	// A fixed order keeps concurrent claims from deadlocking on PostgreSQL.
	sort.Slice(claims, func(i, j int) bool {
		if claims[i].user != claims[j].user {
			return claims[i].user < claims[j].user
		}
		return claims[i].device < claims[j].device
	})
	out := map[string]map[string]map[string]json.RawMessage{}
	err := s.db.WithTx(ctx, func(tx *storage.Tx) error {
		clear(out)
		for _, c := range claims {
			kid, js, err := tx.ClaimOneTimeKey(ctx, c.user, c.device, c.alg)
			if errors.Is(err, storage.ErrNotFound) {
				continue
			}
			if err != nil {
				return err
			}
			if out[c.user] == nil {
				out[c.user] = map[string]map[string]json.RawMessage{}
			}
			out[c.user][c.device] = map[string]json.RawMessage{kid: js}
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	return map[string]any{"one_time_keys": out, "failures": failures}, nil
}

// getKeysChanges serves GET /_matrix/client/v3/keys/changes.
func (s *Service) getKeysChanges(r *http.Request) (any, error) {
	ctx := r.Context()
	req := httpapi.RequesterFrom(ctx)
	q := r.URL.Query()
	if q.Get("from") == "" || q.Get("to") == "" {
		return nil, httpapi.MissingParam("from and to are required")
	}
	from, err := syncapi.ParseToken(q.Get("from"))
	if err != nil {
		return nil, httpapi.InvalidParam("invalid from token")
	}
	to, err := syncapi.ParseToken(q.Get("to"))
	if err != nil {
		return nil, httpapi.InvalidParam("invalid to token")
	}
	own, err := s.db.MembershipChanges(ctx, req.UserID, from.Events, to.Events)
	if err != nil {
		return nil, err
	}
	members, err := s.db.JoinedRoomMemberEvents(ctx, req.UserID, from.Events, to.Events)
	if err != nil {
		return nil, err
	}
	changed, left, err := s.deviceListDelta(ctx, req.UserID, from, to, own, members)
	if err != nil {
		return nil, err
	}
	if changed == nil {
		changed = []string{}
	}
	if left == nil {
		left = []string{}
	}
	return map[string]any{"changed": changed, "left": left}, nil
}
