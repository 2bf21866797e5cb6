package e2ee

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"sort"
	"strings"

	"github.com/rempart-hs/rempart/internal/auth"
	"github.com/rempart-hs/rempart/internal/httpapi"
	"github.com/rempart-hs/rempart/internal/storage"
)

// crossSigningKeyJSON is the part of a CrossSigningKey the server checks.
type crossSigningKeyJSON struct {
	UserID string            `json:"user_id"`
	Usage  []string          `json:"usage"`
	Keys   map[string]string `json:"keys"`
}

// checkCrossSigningKey validates an uploaded cross-signing key of the given
// usage and returns its public key.
func checkCrossSigningKey(userID, usage string, raw json.RawMessage) (string, error) {
	var k crossSigningKeyJSON
	if err := json.Unmarshal(raw, &k); err != nil {
		return "", httpapi.BadJSON("%s key is malformed", usage)
	}
	if k.UserID != userID {
		return "", httpapi.InvalidParam("%s key must belong to the uploading user", usage)
	}
	hasUsage := false
	for _, u := range k.Usage {
		hasUsage = hasUsage || u == usage
	}
	if !hasUsage || len(k.Usage) > 8 {
		return "", httpapi.InvalidParam("%s key must have usage %q", usage, usage)
	}
	if len(k.Keys) != 1 {
		return "", httpapi.InvalidParam("%s key must contain exactly one key", usage)
	}
	for id, pub := range k.Keys {
		alg, kid, _ := strings.Cut(id, ":")
		if alg != "ed25519" {
			return "", httpapi.InvalidParam("unknown key algorithm %q", alg)
		}
		if kid != pub {
			return "", httpapi.InvalidParam("key ID %q does not match its public key", id)
		}
		if _, ok := decodeKey(pub); !ok {
			return "", httpapi.InvalidParam("%s key is not a 32-byte base64 key", usage)
		}
		return pub, nil
	}
	return "", nil
}

// postDeviceSigningUpload serves POST /_matrix/client/v3/keys/device_signing/upload.
// User-interactive authentication is required unless the user has no
// master key yet or the request uploads no new key.
func (s *Service) postDeviceSigningUpload(r *http.Request) (any, error) {
	ctx := r.Context()
	req := httpapi.RequesterFrom(ctx)
	var body struct {
		MasterKey      json.RawMessage `json:"master_key"`
		SelfSigningKey json.RawMessage `json:"self_signing_key"`
		UserSigningKey json.RawMessage `json:"user_signing_key"`
		Auth           *auth.AuthDict  `json:"auth"`
	}
	if err := decode(r, &body); err != nil {
		return nil, err
	}
	type upload struct {
		keyType, usage string
		raw            json.RawMessage
		pub            string
	}
	var ups []upload
	for _, u := range []upload{{"master", "master", body.MasterKey, ""}, {"self_signing", "self_signing", body.SelfSigningKey, ""}, {"user_signing", "user_signing", body.UserSigningKey, ""}} {
		if len(u.raw) == 0 || string(u.raw) == "null" {
			continue
		}
		pub, err := checkCrossSigningKey(req.UserID, u.usage, u.raw)
		if err != nil {
			return nil, err
		}
		u.pub = pub
		ups = append(ups, u)
	}
	existing, err := s.db.CrossSigningKeys(ctx, req.UserID)
	if err != nil {
		return nil, err
	}
	masterPub := existing["master"].PublicKey
	for _, u := range ups {
		if u.keyType == "master" {
			masterPub = u.pub
		}
	}
	if len(ups) == 0 {
		return nil, httpapi.MissingParam("no key to upload")
	}
	for _, u := range ups {
		if u.keyType == "master" {
			continue
		}
		if masterPub == "" {
			return nil, httpapi.MissingParam("no master signing key is available")
		}
		if err := verify(u.raw, req.UserID, "ed25519:"+masterPub, masterPub); err != nil {
			return nil, invalidSignature("the %s key is not signed by the master key", u.usage)
		}
	}
	for _, u := range ups {
		if _, err := s.db.GetDevice(ctx, req.UserID, u.pub); err == nil {
			return nil, httpapi.Forbidden("a key's public key is the ID of one of your devices")
		} else if !errors.Is(err, storage.ErrNotFound) {
			return nil, err
		}
	}
	// UIA unless this is the first upload or a repeat of the stored keys.
	if _, ok := existing["master"]; ok {
		same := true
		for _, u := range ups {
			same = same && existing[u.keyType].PublicKey == u.pub
		}
		if !same {
			if err := s.auth.RequirePassword(ctx, req.UserID, body.Auth); err != nil {
				return auth.AsResponse(err)
			}
		}
	}
	err = s.db.WithTx(ctx, func(tx *storage.Tx) error {
		for _, u := range ups {
			if err := tx.PutCrossSigningKey(ctx, req.UserID, storage.CrossSigningKey{KeyType: u.keyType, PublicKey: u.pub, KeyJSON: u.raw}, s.now().UnixMilli()); err != nil {
				return err
			}
		}
		return s.deviceListChanged(ctx, tx, req.UserID)
	})
	if err != nil {
		return nil, err
	}
	return struct{}{}, nil
}

// signatureFailure is one entry of /keys/signatures/upload's failures.
func signatureFailure(code, msg string) map[string]string {
	return map[string]string{"errcode": code, "error": msg}
}

// postSignaturesUpload serves POST /_matrix/client/v3/keys/signatures/upload.
// Accepted signatures are: the requester's self-signing key over one of
// their devices, one of the requester's devices over their master key, and
// the requester's user-signing key over another user's master key. Each
// signature is verified; failures are reported per key.
func (s *Service) postSignaturesUpload(r *http.Request) (any, error) {
	ctx := r.Context()
	req := httpapi.RequesterFrom(ctx)
	var body map[string]map[string]json.RawMessage
	if err := decode(r, &body); err != nil {
		return nil, err
	}
	n := 0
	for _, ks := range body {
		n += len(ks)
	}
	if n > maxKeysPerUpload*5 {
		return nil, httpapi.InvalidParam("too many signatures in one request")
	}
	own, err := s.db.CrossSigningKeys(ctx, req.UserID)
	if err != nil {
		return nil, err
	}
	failures := map[string]map[string]any{}
	fail := func(u, k string, f map[string]string) {
		if failures[u] == nil {
			failures[u] = map[string]any{}
		}
		failures[u][k] = f
	}
	var accepted []storage.KeySignature
	notify := map[string]bool{}
	users := make([]string, 0, len(body))
	for u := range body {
		users = append(users, u)
	}
	sort.Strings(users)
	for _, target := range users {
		for keyID, obj := range body[target] {
			sigs, f := s.checkSignatureUpload(ctx, req.UserID, own, target, keyID, obj)
			if f != nil {
				fail(target, keyID, f)
				continue
			}
			accepted = append(accepted, sigs...)
			notify[target] = true
		}
	}
	if len(accepted) > 0 {
		err := s.db.WithTx(ctx, func(tx *storage.Tx) error {
			for _, sg := range accepted {
				if err := tx.PutKeySignature(ctx, sg); err != nil {
					return err
				}
			}
			for u := range notify {
				// Another user's master key signed by the requester's
				// user-signing key concerns only the requester.
				if u != req.UserID {
					u = req.UserID
				}
				if err := s.deviceListChanged(ctx, tx, u); err != nil {
					return err
				}
			}
			return nil
		})
		if err != nil {
			return nil, err
		}
	}
	return map[string]any{"failures": failures}, nil
}

// checkSignatureUpload validates the signatures by signer over target's key
// keyID and returns them, or a failure entry.
func (s *Service) checkSignatureUpload(ctx context.Context, signer string, own map[string]storage.CrossSigningKey, target, keyID string, obj json.RawMessage) ([]storage.KeySignature, map[string]string) {
	var head struct {
		UserID     string                       `json:"user_id"`
		Signatures map[string]map[string]string `json:"signatures"`
	}
	if err := json.Unmarshal(obj, &head); err != nil {
		return nil, signatureFailure("M_BAD_JSON", "signed object is malformed")
	}
	if head.UserID != target {
		return nil, signatureFailure("M_INVALID_PARAM", "user_id does not match")
	}
	if serverOf(target) != serverOf(signer) {
		return nil, signatureFailure("M_UNAVAILABLE", "federation is not available")
	}
	mine := head.Signatures[signer]
	if len(mine) == 0 {
		return nil, signatureFailure("M_INVALID_SIGNATURE", "no signature by the uploading user")
	}
	// Which stored key is being signed, and which signing keys may sign it.
	var stored json.RawMessage
	signers := map[string]string{} // accepted signer key ID → public key
	if target == signer {
		devs, err := s.db.DeviceKeysOf(ctx, target, []string{keyID})
		if err != nil {
			return nil, signatureFailure("M_UNKNOWN", "could not load the key")
		}
		switch {
		case len(devs) == 1:
			stored = devs[0].KeyJSON
			if ssk, ok := own["self_signing"]; ok {
				signers["ed25519:"+ssk.PublicKey] = ssk.PublicKey
			}
		case own["master"].PublicKey == keyID:
			stored = own["master"].KeyJSON
			for kid := range mine {
				alg, dev, _ := strings.Cut(kid, ":")
				if alg != "ed25519" || dev == keyID {
					continue
				}
				if ds, err := s.db.DeviceKeysOf(ctx, signer, []string{dev}); err == nil && len(ds) == 1 {
					signers[kid] = ds[0].Ed25519
				}
			}
		default:
			return nil, signatureFailure("M_NOT_FOUND", "unknown key")
		}
	} else {
		theirs, err := s.db.CrossSigningKeys(ctx, target)
		if err != nil {
			return nil, signatureFailure("M_UNKNOWN", "could not load the key")
		}
		if theirs["master"].PublicKey != keyID || keyID == "" {
			return nil, signatureFailure("M_NOT_FOUND", "unknown key: only master keys of other users can be signed")
		}
		stored = theirs["master"].KeyJSON
		if usk, ok := own["user_signing"]; ok {
			signers["ed25519:"+usk.PublicKey] = usk.PublicKey
		}
	}
	if !sameSignedContent(stored, obj) {
		return nil, signatureFailure("M_INVALID_PARAM", "signed object does not match the stored key")
	}
	var out []storage.KeySignature
	for kid, sig := range mine {
		pub, ok := signers[kid]
		if !ok {
			continue
		}
		if err := verify(obj, signer, kid, pub); err != nil {
			return nil, signatureFailure("M_INVALID_SIGNATURE", "invalid signature")
		}
		out = append(out, storage.KeySignature{TargetUserID: target, TargetKeyID: keyID, SignerUserID: signer, SignerKeyID: kid, Signature: sig})
	}
	if len(out) == 0 {
		return nil, signatureFailure("M_INVALID_SIGNATURE", "no signature by a key allowed to sign this key")
	}
	return out, nil
}
