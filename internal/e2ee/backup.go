package e2ee

import (
	"encoding/json"
	"errors"
	"net/http"
	"strconv"
	"strings"

	"github.com/rempart-hs/rempart/internal/httpapi"
	"github.com/rempart-hs/rempart/internal/storage"
)

// backupAlgorithms are the server-side key backup algorithms accepted.
var backupAlgorithms = map[string]bool{"m.megolm_backup.v1.curve25519-aes-sha2": true}

// maxBackupSessions bounds the keys in one backup upload.
const maxBackupSessions = 5000

func (s *Service) routesBackup(rt *httpapi.Router) {
	rt.Authed(v3("POST", "/room_keys/version"), s.postBackupVersion)
	rt.Authed(v3("GET", "/room_keys/version"), s.getBackupVersion)
	rt.Authed(v3("GET", "/room_keys/version/{version}"), s.getBackupVersion)
	rt.Authed(v3("PUT", "/room_keys/version/{version}"), s.putBackupVersion)
	rt.Authed(v3("DELETE", "/room_keys/version/{version}"), s.deleteBackupVersion)
	rt.Authed(v3("PUT", "/room_keys/keys"), s.putBackupKeys)
	rt.Authed(v3("PUT", "/room_keys/keys/{roomId}"), s.putBackupKeys)
	rt.Authed(v3("PUT", "/room_keys/keys/{roomId}/{sessionId}"), s.putBackupKeys)
	rt.Authed(v3("GET", "/room_keys/keys"), s.getBackupKeys)
	rt.Authed(v3("GET", "/room_keys/keys/{roomId}"), s.getBackupKeys)
	rt.Authed(v3("GET", "/room_keys/keys/{roomId}/{sessionId}"), s.getBackupKeys)
	rt.Authed(v3("DELETE", "/room_keys/keys"), s.deleteBackupKeys)
	rt.Authed(v3("DELETE", "/room_keys/keys/{roomId}"), s.deleteBackupKeys)
	rt.Authed(v3("DELETE", "/room_keys/keys/{roomId}/{sessionId}"), s.deleteBackupKeys)
}

// backupVersionBody is the body of POST and PUT /room_keys/version.
type backupVersionBody struct {
	Algorithm string          `json:"algorithm"`
	AuthData  json.RawMessage `json:"auth_data"`
	Version   *string         `json:"version"`
}

func (b *backupVersionBody) check() error {
	if b.Algorithm == "" {
		return httpapi.MissingParam("missing algorithm")
	}
	if !backupAlgorithms[b.Algorithm] {
		return httpapi.InvalidParam("unsupported backup algorithm %q", b.Algorithm)
	}
	var ad map[string]json.RawMessage
	if len(b.AuthData) == 0 || json.Unmarshal(b.AuthData, &ad) != nil || ad == nil {
		return httpapi.MissingParam("auth_data must be an object")
	}
	if len(b.AuthData) > 16384 {
		return httpapi.TooLarge("auth_data too large")
	}
	return nil
}

// parseVersion parses a backup version; unknown forms are not found.
func parseVersion(v string) (int64, error) {
	n, err := strconv.ParseInt(v, 10, 64)
	if err != nil || n <= 0 {
		return 0, httpapi.NotFound("unknown backup version")
	}
	return n, nil
}

// postBackupVersion serves POST /_matrix/client/v3/room_keys/version.
func (s *Service) postBackupVersion(r *http.Request) (any, error) {
	ctx := r.Context()
	req := httpapi.RequesterFrom(ctx)
	var body backupVersionBody
	if err := decode(r, &body); err != nil {
		return nil, err
	}
	if err := body.check(); err != nil {
		return nil, err
	}
	var v int64
	err := s.db.WithTx(ctx, func(tx *storage.Tx) error {
		var err error
		v, err = tx.CreateBackupVersion(ctx, req.UserID, body.Algorithm, body.AuthData)
		return err
	})
	if err != nil {
		return nil, err
	}
	return map[string]string{"version": strconv.FormatInt(v, 10)}, nil
}

// getBackupVersion serves GET /_matrix/client/v3/room_keys/version and
// GET /_matrix/client/v3/room_keys/version/{version}.
func (s *Service) getBackupVersion(r *http.Request) (any, error) {
	ctx := r.Context()
	req := httpapi.RequesterFrom(ctx)
	var v int64
	if p := r.PathValue("version"); p != "" {
		var err error
		if v, err = parseVersion(p); err != nil {
			return nil, err
		}
	}
	b, err := s.db.BackupVersion(ctx, req.UserID, v)
	if errors.Is(err, storage.ErrNotFound) {
		return nil, httpapi.NotFound("no such backup version")
	}
	if err != nil {
		return nil, err
	}
	count, err := s.db.CountBackupSessions(ctx, req.UserID, b.Version)
	if err != nil {
		return nil, err
	}
	return map[string]any{"algorithm": b.Algorithm, "auth_data": b.AuthData, "count": count,
		"etag": strconv.FormatInt(b.Etag, 10), "version": strconv.FormatInt(b.Version, 10)}, nil
}

// putBackupVersion serves PUT /_matrix/client/v3/room_keys/version/{version}:
// only auth_data may change.
func (s *Service) putBackupVersion(r *http.Request) (any, error) {
	ctx := r.Context()
	req := httpapi.RequesterFrom(ctx)
	v, err := parseVersion(r.PathValue("version"))
	if err != nil {
		return nil, err
	}
	var body backupVersionBody
	if err := decode(r, &body); err != nil {
		return nil, err
	}
	if err := body.check(); err != nil {
		return nil, err
	}
	if body.Version != nil && *body.Version != r.PathValue("version") {
		return nil, httpapi.InvalidParam("version does not match the path")
	}
	err = s.db.WithTx(ctx, func(tx *storage.Tx) error {
		b, err := tx.BackupVersion(ctx, req.UserID, v)
		if errors.Is(err, storage.ErrNotFound) {
			return httpapi.NotFound("no such backup version")
		}
		if err != nil {
			return err
		}
		if b.Algorithm != body.Algorithm {
			return httpapi.InvalidParam("the algorithm of a backup cannot change")
		}
		return tx.UpdateBackupAuthData(ctx, req.UserID, v, body.AuthData)
	})
	if err != nil {
		return nil, err
	}
	return struct{}{}, nil
}

// deleteBackupVersion serves DELETE /_matrix/client/v3/room_keys/version/{version}.
func (s *Service) deleteBackupVersion(r *http.Request) (any, error) {
	ctx := r.Context()
	req := httpapi.RequesterFrom(ctx)
	v, err := parseVersion(r.PathValue("version"))
	if err != nil {
		return nil, err
	}
	err = s.db.WithTx(ctx, func(tx *storage.Tx) error {
		if _, err := tx.BackupVersion(ctx, req.UserID, v); errors.Is(err, storage.ErrNotFound) {
			return httpapi.NotFound("no such backup version")
		} else if err != nil {
			return err
		}
		return tx.DeleteBackupVersion(ctx, req.UserID, v)
	})
	if err != nil {
		return nil, err
	}
	return struct{}{}, nil
}

// keyBackupData is one backed-up session as the client sends it.
type keyBackupData struct {
	FirstMessageIndex *int64          `json:"first_message_index"`
	ForwardedCount    *int64          `json:"forwarded_count"`
	IsVerified        *bool           `json:"is_verified"`
	SessionData       json.RawMessage `json:"session_data"`
}

func (k *keyBackupData) toSession(roomID, sessionID string) (storage.BackupSession, error) {
	if k.FirstMessageIndex == nil || k.ForwardedCount == nil || k.IsVerified == nil || len(k.SessionData) == 0 {
		return storage.BackupSession{}, httpapi.MissingParam("key data needs first_message_index, forwarded_count, is_verified and session_data")
	}
	if *k.FirstMessageIndex < 0 || *k.ForwardedCount < 0 {
		return storage.BackupSession{}, httpapi.InvalidParam("first_message_index and forwarded_count must not be negative")
	}
	var sd map[string]json.RawMessage
	if json.Unmarshal(k.SessionData, &sd) != nil || sd == nil {
		return storage.BackupSession{}, httpapi.BadJSON("session_data must be an object")
	}
	if !validRoomID(roomID) || sessionID == "" || len(sessionID) > 255 {
		return storage.BackupSession{}, httpapi.InvalidParam("invalid room or session ID")
	}
	return storage.BackupSession{RoomID: roomID, SessionID: sessionID, FirstMessageIndex: *k.FirstMessageIndex,
		ForwardedCount: *k.ForwardedCount, IsVerified: *k.IsVerified, SessionData: k.SessionData}, nil
}

func validRoomID(id string) bool { return strings.HasPrefix(id, "!") && len(id) <= 255 }

// better reports whether a newly uploaded key should replace the stored
// one: the spec prefers a verified key, then the lower first message
// index, then the lower forwarded count.
func better(n, old storage.BackupSession) bool {
	if n.IsVerified != old.IsVerified {
		return n.IsVerified
	}
	if n.FirstMessageIndex != old.FirstMessageIndex {
		return n.FirstMessageIndex < old.FirstMessageIndex
	}
	return n.ForwardedCount < old.ForwardedCount
}

// wrongVersion is the spec's M_WRONG_ROOM_KEYS_VERSION error.
func wrongVersion(current int64) *httpapi.Error {
	e := httpapi.Forbidden("keys can only be written to the current backup version")
	e.Code = "M_WRONG_ROOM_KEYS_VERSION"
	return e.With("current_version", strconv.FormatInt(current, 10))
}

// queryVersion returns the version query parameter.
func queryVersion(r *http.Request) (int64, error) {
	p := r.URL.Query().Get("version")
	if p == "" {
		return 0, httpapi.MissingParam("missing version")
	}
	return parseVersion(p)
}

// putBackupKeys serves PUT /_matrix/client/v3/room_keys/keys and its
// per-room and per-session forms. Keys may only be written to the current
// version.
func (s *Service) putBackupKeys(r *http.Request) (any, error) {
	ctx := r.Context()
	req := httpapi.RequesterFrom(ctx)
	roomID, sessionID := r.PathValue("roomId"), r.PathValue("sessionId")
	p := r.URL.Query().Get("version")
	if p == "" {
		return nil, httpapi.MissingParam("missing version")
	}
	var sessions []storage.BackupSession
	switch {
	case sessionID != "":
		var k keyBackupData
		if err := decode(r, &k); err != nil {
			return nil, err
		}
		bs, err := k.toSession(roomID, sessionID)
		if err != nil {
			return nil, err
		}
		sessions = append(sessions, bs)
	case roomID != "":
		var body struct {
			Sessions map[string]keyBackupData `json:"sessions"`
		}
		if err := decode(r, &body); err != nil {
			return nil, err
		}
		if body.Sessions == nil {
			return nil, httpapi.MissingParam("missing sessions")
		}
		for sid, k := range body.Sessions {
			bs, err := k.toSession(roomID, sid)
			if err != nil {
				return nil, err
			}
			sessions = append(sessions, bs)
		}
	default:
		var body struct {
			Rooms map[string]struct {
				Sessions map[string]keyBackupData `json:"sessions"`
			} `json:"rooms"`
		}
		if err := decode(r, &body); err != nil {
			return nil, err
		}
		if body.Rooms == nil {
			return nil, httpapi.MissingParam("missing rooms")
		}
		for rid, room := range body.Rooms {
			if room.Sessions == nil {
				return nil, httpapi.MissingParam("missing sessions")
			}
			for sid, k := range room.Sessions {
				bs, err := k.toSession(rid, sid)
				if err != nil {
					return nil, err
				}
				sessions = append(sessions, bs)
			}
		}
	}
	if len(sessions) > maxBackupSessions {
		return nil, httpapi.InvalidParam("at most %d keys per upload", maxBackupSessions)
	}
	var etag, count int64
	err := s.db.WithTx(ctx, func(tx *storage.Tx) error {
		cur, err := tx.BackupVersion(ctx, req.UserID, 0)
		if errors.Is(err, storage.ErrNotFound) {
			return httpapi.NotFound("no backup version exists")
		}
		if err != nil {
			return err
		}
		if p != strconv.FormatInt(cur.Version, 10) {
			return wrongVersion(cur.Version)
		}
		changed := false
		for _, bs := range sessions {
			old, err := tx.BackupSession(ctx, req.UserID, cur.Version, bs.RoomID, bs.SessionID)
			if err == nil && !better(bs, old) {
				continue
			}
			if err != nil && !errors.Is(err, storage.ErrNotFound) {
				return err
			}
			if err := tx.PutBackupSession(ctx, req.UserID, cur.Version, bs); err != nil {
				return err
			}
			changed = true
		}
		etag = cur.Etag
		if changed {
			if etag, err = tx.BumpBackupEtag(ctx, req.UserID, cur.Version); err != nil {
				return err
			}
		}
		count, err = tx.CountBackupSessions(ctx, req.UserID, cur.Version)
		return err
	})
	if err != nil {
		return nil, err
	}
	return map[string]any{"etag": strconv.FormatInt(etag, 10), "count": count}, nil
}

// getBackupKeys serves GET /_matrix/client/v3/room_keys/keys and its
// per-room and per-session forms.
func (s *Service) getBackupKeys(r *http.Request) (any, error) {
	ctx := r.Context()
	req := httpapi.RequesterFrom(ctx)
	v, err := queryVersion(r)
	if err != nil {
		return nil, err
	}
	roomID, sessionID := r.PathValue("roomId"), r.PathValue("sessionId")
	if _, err := s.db.BackupVersion(ctx, req.UserID, v); errors.Is(err, storage.ErrNotFound) {
		return nil, httpapi.NotFound("no such backup version")
	} else if err != nil {
		return nil, err
	}
	list, err := s.db.BackupSessions(ctx, req.UserID, v, roomID, sessionID)
	if err != nil {
		return nil, err
	}
	asJSON := func(bs storage.BackupSession) map[string]any {
		return map[string]any{"first_message_index": bs.FirstMessageIndex, "forwarded_count": bs.ForwardedCount,
			"is_verified": bs.IsVerified, "session_data": bs.SessionData}
	}
	switch {
	case sessionID != "":
		if len(list) == 0 {
			return nil, httpapi.NotFound("no key for this session")
		}
		return asJSON(list[0]), nil
	case roomID != "":
		sessions := map[string]any{}
		for _, bs := range list {
			sessions[bs.SessionID] = asJSON(bs)
		}
		return map[string]any{"sessions": sessions}, nil
	default:
		roomsOut := map[string]map[string]map[string]any{}
		for _, bs := range list {
			if roomsOut[bs.RoomID] == nil {
				roomsOut[bs.RoomID] = map[string]map[string]any{"sessions": {}}
			}
			roomsOut[bs.RoomID]["sessions"][bs.SessionID] = asJSON(bs)
		}
		return map[string]any{"rooms": roomsOut}, nil
	}
}

// deleteBackupKeys serves DELETE /_matrix/client/v3/room_keys/keys and its
// per-room and per-session forms.
func (s *Service) deleteBackupKeys(r *http.Request) (any, error) {
	ctx := r.Context()
	req := httpapi.RequesterFrom(ctx)
	v, err := queryVersion(r)
	if err != nil {
		return nil, err
	}
	roomID, sessionID := r.PathValue("roomId"), r.PathValue("sessionId")
	var etag, count int64
	err = s.db.WithTx(ctx, func(tx *storage.Tx) error {
		b, err := tx.BackupVersion(ctx, req.UserID, v)
		if errors.Is(err, storage.ErrNotFound) {
			return httpapi.NotFound("no such backup version")
		}
		if err != nil {
			return err
		}
		n, err := tx.DeleteBackupSessions(ctx, req.UserID, v, roomID, sessionID)
		if err != nil {
			return err
		}
		etag = b.Etag
		if n > 0 {
			if etag, err = tx.BumpBackupEtag(ctx, req.UserID, v); err != nil {
				return err
			}
		}
		count, err = tx.CountBackupSessions(ctx, req.UserID, v)
		return err
	})
	if err != nil {
		return nil, err
	}
	return map[string]any{"etag": strconv.FormatInt(etag, 10), "count": count}, nil
}
