package storage

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"sort"
	"strconv"
)

// ErrKeyExists is returned when a one-time key ID is uploaded again with
// different contents.
var ErrKeyExists = errors.New("key already exists with different contents")

// DeviceKeys is a device's uploaded identity keys with its display name.
type DeviceKeys struct {
	UserID      string
	DeviceID    string
	DisplayName string
	KeyJSON     json.RawMessage
	Ed25519     string
}

// PutDeviceKeys stores a device's identity keys. It reports whether they
// changed; when the signing key changed, signatures made over the old keys
// are dropped.
func (tx *Tx) PutDeviceKeys(ctx context.Context, userID, deviceID string, keyJSON []byte, ed25519 string, ts int64) (bool, error) {
	var old, oldEd string
	err := tx.queryRow(ctx, `SELECT key_json, ed25519 FROM e2e_device_keys WHERE user_id = ? AND device_id = ?`, userID, deviceID).Scan(&old, &oldEd)
	if err != nil && !errors.Is(err, sql.ErrNoRows) {
		return false, err
	}
	if err == nil && old == string(keyJSON) {
		return false, nil
	}
	if err == nil && oldEd != ed25519 {
		if _, err := tx.exec(ctx, `DELETE FROM e2e_signatures WHERE target_user_id = ? AND target_key_id = ?`, userID, deviceID); err != nil {
			return false, err
		}
	}
	_, err = tx.exec(ctx, `INSERT INTO e2e_device_keys (user_id, device_id, key_json, ed25519, ts) VALUES (?, ?, ?, ?, ?)
		ON CONFLICT (user_id, device_id) DO UPDATE SET key_json = excluded.key_json, ed25519 = excluded.ed25519, ts = excluded.ts`,
		userID, deviceID, string(keyJSON), ed25519, ts)
	return true, err
}

// DeviceKeysOf returns the identity keys of a user's existing devices
// (all of them when deviceIDs is empty), ordered by device ID.
func (db *DB) DeviceKeysOf(ctx context.Context, userID string, deviceIDs []string) ([]DeviceKeys, error) {
	q := `SELECT k.user_id, k.device_id, d.display_name, k.key_json, k.ed25519 FROM e2e_device_keys k
		JOIN devices d ON d.user_id = k.user_id AND d.device_id = k.device_id WHERE k.user_id = ?`
	args := []any{userID}
	if len(deviceIDs) > 0 {
		q += ` AND k.device_id IN (` + placeholders(len(deviceIDs)) + `)`
		for _, id := range deviceIDs {
			args = append(args, id)
		}
	}
	rows, err := db.query(ctx, q+` ORDER BY k.device_id`, args...)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []DeviceKeys
	for rows.Next() {
		var k DeviceKeys
		var dn sql.NullString
		var js string
		if err := rows.Scan(&k.UserID, &k.DeviceID, &dn, &js, &k.Ed25519); err != nil {
			return nil, err
		}
		k.DisplayName, k.KeyJSON = dn.String, json.RawMessage(js)
		out = append(out, k)
	}
	return out, rows.Err()
}

// AddOneTimeKey stores a one-time key. Uploading the same key again is a
// no-op; the same ID with other contents gives ErrKeyExists.
func (tx *Tx) AddOneTimeKey(ctx context.Context, userID, deviceID, algorithm, keyID string, keyJSON []byte) error {
	var old string
	err := tx.queryRow(ctx, `SELECT key_json FROM e2e_one_time_keys WHERE user_id = ? AND device_id = ? AND key_id = ?`, userID, deviceID, keyID).Scan(&old)
	switch {
	case err == nil && old == string(keyJSON):
		return nil
	case err == nil:
		return ErrKeyExists
	case !errors.Is(err, sql.ErrNoRows):
		return err
	}
	tx.keysChanged(userID, deviceID)
	_, err = tx.exec(ctx, `INSERT INTO e2e_one_time_keys (user_id, device_id, algorithm, key_id, key_json) VALUES (?, ?, ?, ?, ?)`,
		userID, deviceID, algorithm, keyID, string(keyJSON))
	return err
}

// deviceKeyCounts reads what DeviceKeyCounts answers.
func (db *DB) deviceKeyCounts(ctx context.Context, userID, deviceID string) (map[string]int, []string, error) {
	rows, err := db.query(ctx, `SELECT 'otk', algorithm, COUNT(*) FROM e2e_one_time_keys WHERE user_id = ? AND device_id = ? GROUP BY algorithm
		UNION ALL SELECT 'fallback', algorithm, 0 FROM e2e_fallback_keys WHERE user_id = ? AND device_id = ? AND used = 0`,
		userID, deviceID, userID, deviceID)
	if err != nil {
		return nil, nil, err
	}
	defer rows.Close()
	counts := map[string]int{}
	var fallback []string
	for rows.Next() {
		var kind, alg string
		var n int
		if err := rows.Scan(&kind, &alg, &n); err != nil {
			return nil, nil, err
		}
		if kind == "otk" {
			counts[alg] = n
		} else {
			fallback = append(fallback, alg)
		}
	}
	sort.Strings(fallback)
	return counts, fallback, rows.Err()
}

// OneTimeKeyCounts is DB.OneTimeKeyCounts inside the transaction.
func (tx *Tx) OneTimeKeyCounts(ctx context.Context, userID, deviceID string) (map[string]int, error) {
	return oneTimeKeyCounts(ctx, tx.query, userID, deviceID)
}

func oneTimeKeyCounts(ctx context.Context, query queryFunc, userID, deviceID string) (map[string]int, error) {
	rows, err := query(ctx, `SELECT algorithm, COUNT(*) FROM e2e_one_time_keys WHERE user_id = ? AND device_id = ? GROUP BY algorithm`, userID, deviceID)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	out := map[string]int{}
	for rows.Next() {
		var alg string
		var n int
		if err := rows.Scan(&alg, &n); err != nil {
			return nil, err
		}
		out[alg] = n
	}
	return out, rows.Err()
}

// ClaimOneTimeKey removes and returns one of a device's one-time keys for
// the algorithm, oldest first; when none is left it returns the device's
// fallback key for the algorithm (marking it used), or ErrNotFound. A key
// is never handed out twice: under concurrent claims on PostgreSQL the
// loser of a race on a row retries with the next key.
func (tx *Tx) ClaimOneTimeKey(ctx context.Context, userID, deviceID, algorithm string) (keyID string, keyJSON json.RawMessage, err error) {
	tx.keysChanged(userID, deviceID)
	for range 1000 {
		var id int64
		var kid, js string
		err := tx.queryRow(ctx, `SELECT k.id, k.key_id, k.key_json FROM e2e_one_time_keys k JOIN devices d ON d.user_id = k.user_id AND d.device_id = k.device_id
			WHERE k.user_id = ? AND k.device_id = ? AND k.algorithm = ? ORDER BY k.id LIMIT 1`,
			userID, deviceID, algorithm).Scan(&id, &kid, &js)
		if errors.Is(err, sql.ErrNoRows) {
			break
		}
		if err != nil {
			return "", nil, err
		}
		res, err := tx.exec(ctx, `DELETE FROM e2e_one_time_keys WHERE id = ?`, id)
		if err != nil {
			return "", nil, err
		}
		if n, _ := res.RowsAffected(); n == 1 {
			return kid, json.RawMessage(js), nil
		}
		// Another transaction claimed this key first: try the next one.
	}
	var kid, js string
	err = tx.queryRow(ctx, `SELECT f.key_id, f.key_json FROM e2e_fallback_keys f JOIN devices d ON d.user_id = f.user_id AND d.device_id = f.device_id
		WHERE f.user_id = ? AND f.device_id = ? AND f.algorithm = ?`,
		userID, deviceID, algorithm).Scan(&kid, &js)
	if err != nil {
		return "", nil, notFound(err)
	}
	if _, err := tx.exec(ctx, `UPDATE e2e_fallback_keys SET used = 1 WHERE user_id = ? AND device_id = ? AND algorithm = ?`, userID, deviceID, algorithm); err != nil {
		return "", nil, err
	}
	return kid, json.RawMessage(js), nil
}

// PutFallbackKey sets a device's fallback key for an algorithm. Uploading
// the same key again keeps its used flag; a new key starts unused.
func (tx *Tx) PutFallbackKey(ctx context.Context, userID, deviceID, algorithm, keyID string, keyJSON []byte) error {
	var oldID, old string
	err := tx.queryRow(ctx, `SELECT key_id, key_json FROM e2e_fallback_keys WHERE user_id = ? AND device_id = ? AND algorithm = ?`,
		userID, deviceID, algorithm).Scan(&oldID, &old)
	if err == nil && oldID == keyID && old == string(keyJSON) {
		return nil
	}
	if err != nil && !errors.Is(err, sql.ErrNoRows) {
		return err
	}
	tx.keysChanged(userID, deviceID)
	_, err = tx.exec(ctx, `INSERT INTO e2e_fallback_keys (user_id, device_id, algorithm, key_id, key_json, used) VALUES (?, ?, ?, ?, ?, 0)
		ON CONFLICT (user_id, device_id, algorithm) DO UPDATE SET key_id = excluded.key_id, key_json = excluded.key_json, used = 0`,
		userID, deviceID, algorithm, keyID, string(keyJSON))
	return err
}

// CrossSigningKey is one of a user's cross-signing keys.
type CrossSigningKey struct {
	KeyType   string // master, self_signing or user_signing
	PublicKey string
	KeyJSON   json.RawMessage
}

// CrossSigningKeys returns a user's cross-signing keys by type.
func (db *DB) CrossSigningKeys(ctx context.Context, userID string) (map[string]CrossSigningKey, error) {
	return crossSigningKeys(ctx, db.query, userID)
}

// CrossSigningKeys is DB.CrossSigningKeys inside the transaction.
func (tx *Tx) CrossSigningKeys(ctx context.Context, userID string) (map[string]CrossSigningKey, error) {
	return crossSigningKeys(ctx, tx.query, userID)
}

func crossSigningKeys(ctx context.Context, query queryFunc, userID string) (map[string]CrossSigningKey, error) {
	rows, err := query(ctx, `SELECT key_type, public_key, key_json FROM e2e_cross_signing_keys WHERE user_id = ?`, userID)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	out := map[string]CrossSigningKey{}
	for rows.Next() {
		var k CrossSigningKey
		var js string
		if err := rows.Scan(&k.KeyType, &k.PublicKey, &js); err != nil {
			return nil, err
		}
		k.KeyJSON = json.RawMessage(js)
		out[k.KeyType] = k
	}
	return out, rows.Err()
}

// PutCrossSigningKey stores (or replaces) one of a user's cross-signing
// keys. Replacing a key drops the signatures made by and over the old one.
func (tx *Tx) PutCrossSigningKey(ctx context.Context, userID string, k CrossSigningKey, ts int64) error {
	var old string
	err := tx.queryRow(ctx, `SELECT public_key FROM e2e_cross_signing_keys WHERE user_id = ? AND key_type = ?`, userID, k.KeyType).Scan(&old)
	if err != nil && !errors.Is(err, sql.ErrNoRows) {
		return err
	}
	if old != "" && old != k.PublicKey {
		if _, err := tx.exec(ctx, `DELETE FROM e2e_signatures WHERE (signer_user_id = ? AND signer_key_id = ?) OR (target_user_id = ? AND target_key_id = ?)`,
			userID, "ed25519:"+old, userID, old); err != nil {
			return err
		}
	}
	_, err = tx.exec(ctx, `INSERT INTO e2e_cross_signing_keys (user_id, key_type, public_key, key_json, ts) VALUES (?, ?, ?, ?, ?)
		ON CONFLICT (user_id, key_type) DO UPDATE SET public_key = excluded.public_key, key_json = excluded.key_json, ts = excluded.ts`,
		userID, k.KeyType, k.PublicKey, string(k.KeyJSON), ts)
	return err
}

// KeySignature is a signature by a signer's key over a target key.
type KeySignature struct {
	TargetUserID string
	TargetKeyID  string // device ID or cross-signing public key
	SignerUserID string
	SignerKeyID  string // "ed25519:<device ID or public key>"
	Signature    string
}

// PutKeySignature stores (or replaces) one signature.
func (tx *Tx) PutKeySignature(ctx context.Context, s KeySignature) error {
	_, err := tx.exec(ctx, `INSERT INTO e2e_signatures (target_user_id, target_key_id, signer_user_id, signer_key_id, signature) VALUES (?, ?, ?, ?, ?)
		ON CONFLICT (target_user_id, target_key_id, signer_user_id, signer_key_id) DO UPDATE SET signature = excluded.signature`,
		s.TargetUserID, s.TargetKeyID, s.SignerUserID, s.SignerKeyID, s.Signature)
	return err
}

// KeySignaturesOf returns every stored signature over the keys of a user.
func (db *DB) KeySignaturesOf(ctx context.Context, targetUserID string) ([]KeySignature, error) {
	rows, err := db.query(ctx, `SELECT target_user_id, target_key_id, signer_user_id, signer_key_id, signature FROM e2e_signatures WHERE target_user_id = ?`, targetUserID)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []KeySignature
	for rows.Next() {
		var s KeySignature
		if err := rows.Scan(&s.TargetUserID, &s.TargetKeyID, &s.SignerUserID, &s.SignerKeyID, &s.Signature); err != nil {
			return nil, err
		}
		out = append(out, s)
	}
	return out, rows.Err()
}

// AddDeviceListChange records that a user's devices or keys changed and
// returns the new device_lists stream position.
func (tx *Tx) AddDeviceListChange(ctx context.Context, userID string) (int64, error) {
	pos, err := tx.NextStreamPos(ctx, "device_lists")
	if err != nil {
		return 0, err
	}
	_, err = tx.exec(ctx, `INSERT INTO e2e_device_list_changes (stream_pos, user_id) VALUES (?, ?)`, pos, userID)
	return pos, err
}

// DeviceListChanges returns the users whose devices changed with
// from < stream_pos <= to.
func (db *DB) DeviceListChanges(ctx context.Context, from, to int64) ([]string, error) {
	return db.strings(ctx, `SELECT DISTINCT user_id FROM e2e_device_list_changes WHERE stream_pos > ? AND stream_pos <= ?`, from, to)
}

// UsersSharingRooms returns the users joined to or invited to a room the
// user is joined to (the user included when joined anywhere).
func (db *DB) UsersSharingRooms(ctx context.Context, userID string) ([]string, error) {
	return db.strings(ctx, `SELECT DISTINCT m2.user_id FROM memberships m1 JOIN memberships m2 ON m1.room_id = m2.room_id
		WHERE m1.user_id = ? AND m1.membership = 'join' AND m2.membership IN ('join', 'invite')`, userID)
}

// ToDeviceMessage is a queued to-device message.
type ToDeviceMessage struct {
	StreamPos int64
	UserID    string
	DeviceID  string
	Sender    string
	Type      string
	Content   json.RawMessage
}

// QueueToDevice appends a message to a device's queue at the next
// to_device stream position.
func (tx *Tx) QueueToDevice(ctx context.Context, m ToDeviceMessage) (int64, error) {
	pos, err := tx.NextStreamPos(ctx, "to_device")
	if err != nil {
		return 0, err
	}
	_, err = tx.exec(ctx, `INSERT INTO e2e_to_device (stream_pos, user_id, device_id, sender, type, content) VALUES (?, ?, ?, ?, ?, ?)`,
		pos, m.UserID, m.DeviceID, m.Sender, m.Type, string(m.Content))
	return pos, err
}

// ToDeviceMessages returns up to limit of a device's queued messages with
// stream_pos <= upTo, in order. Every sync reads it: the limit is written
// into the statement (see TimelinePage).
func (db *DB) ToDeviceMessages(ctx context.Context, userID, deviceID string, upTo int64, limit int) ([]ToDeviceMessage, error) {
	rows, err := db.query(ctx, `SELECT stream_pos, user_id, device_id, sender, type, content FROM e2e_to_device
		WHERE user_id = ? AND device_id = ? AND stream_pos <= ? ORDER BY stream_pos LIMIT `+strconv.Itoa(max(limit, 0)), userID, deviceID, upTo)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []ToDeviceMessage
	for rows.Next() {
		var m ToDeviceMessage
		var c string
		if err := rows.Scan(&m.StreamPos, &m.UserID, &m.DeviceID, &m.Sender, &m.Type, &c); err != nil {
			return nil, err
		}
		m.Content = json.RawMessage(c)
		out = append(out, m)
	}
	return out, rows.Err()
}

// DeleteToDeviceUpTo deletes the device's messages with stream_pos <= upTo
// (those the device acknowledged).
func (tx *Tx) DeleteToDeviceUpTo(ctx context.Context, userID, deviceID string, upTo int64) error {
	_, err := tx.exec(ctx, `DELETE FROM e2e_to_device WHERE user_id = ? AND device_id = ? AND stream_pos <= ?`, userID, deviceID, upTo)
	return err
}

// DeleteDeviceE2EE removes a device's keys, signatures over them, its
// to-device queue and, if it was the user's dehydrated device, that mark.
func (tx *Tx) DeleteDeviceE2EE(ctx context.Context, userID, deviceID string) error {
	tx.keysChanged(userID, deviceID)
	for _, q := range []string{
		`DELETE FROM e2e_device_keys WHERE user_id = ? AND device_id = ?`,
		`DELETE FROM e2e_one_time_keys WHERE user_id = ? AND device_id = ?`,
		`DELETE FROM e2e_fallback_keys WHERE user_id = ? AND device_id = ?`,
		`DELETE FROM e2e_signatures WHERE target_user_id = ? AND target_key_id = ?`,
		`DELETE FROM e2e_to_device WHERE user_id = ? AND device_id = ?`,
		`DELETE FROM dehydrated_devices WHERE user_id = ? AND device_id = ?`,
	} {
		if _, err := tx.exec(ctx, q, userID, deviceID); err != nil {
			return fmt.Errorf("delete device keys: %w", err)
		}
	}
	return nil
}

// BackupVersion is a server-side key backup version.
type BackupVersion struct {
	UserID    string
	Version   int64
	Algorithm string
	AuthData  json.RawMessage
	Etag      int64
}

// CreateBackupVersion creates a user's next backup version, which becomes
// the current one.
func (tx *Tx) CreateBackupVersion(ctx context.Context, userID, algorithm string, authData []byte) (int64, error) {
	var maxV sql.NullInt64
	if err := tx.queryRow(ctx, `SELECT MAX(version) FROM e2e_backup_versions WHERE user_id = ?`, userID).Scan(&maxV); err != nil {
		return 0, err
	}
	v := maxV.Int64 + 1
	_, err := tx.exec(ctx, `INSERT INTO e2e_backup_versions (user_id, version, algorithm, auth_data, etag, deleted) VALUES (?, ?, ?, ?, 0, 0)`,
		userID, v, algorithm, string(authData))
	return v, err
}

// BackupVersion returns a live backup version, or the latest one when
// version is 0; ErrNotFound when there is none.
func (db *DB) BackupVersion(ctx context.Context, userID string, version int64) (BackupVersion, error) {
	return backupVersion(ctx, db.queryRow, userID, version)
}

// BackupVersion is DB.BackupVersion inside the transaction.
func (tx *Tx) BackupVersion(ctx context.Context, userID string, version int64) (BackupVersion, error) {
	return backupVersion(ctx, tx.queryRow, userID, version)
}

func backupVersion(ctx context.Context, queryRow func(context.Context, string, ...any) *sql.Row, userID string, version int64) (BackupVersion, error) {
	q := `SELECT user_id, version, algorithm, auth_data, etag FROM e2e_backup_versions WHERE user_id = ? AND deleted = 0`
	args := []any{userID}
	if version > 0 {
		q += ` AND version = ?`
		args = append(args, version)
	}
	var b BackupVersion
	var ad string
	err := queryRow(ctx, q+` ORDER BY version DESC LIMIT 1`, args...).Scan(&b.UserID, &b.Version, &b.Algorithm, &ad, &b.Etag)
	b.AuthData = json.RawMessage(ad)
	return b, notFound(err)
}

// UpdateBackupAuthData replaces a live backup version's auth_data.
func (tx *Tx) UpdateBackupAuthData(ctx context.Context, userID string, version int64, authData []byte) error {
	_, err := tx.exec(ctx, `UPDATE e2e_backup_versions SET auth_data = ? WHERE user_id = ? AND version = ? AND deleted = 0`, string(authData), userID, version)
	return err
}

// DeleteBackupVersion marks a backup version deleted and drops its keys.
func (tx *Tx) DeleteBackupVersion(ctx context.Context, userID string, version int64) error {
	if _, err := tx.exec(ctx, `UPDATE e2e_backup_versions SET deleted = 1 WHERE user_id = ? AND version = ?`, userID, version); err != nil {
		return err
	}
	_, err := tx.exec(ctx, `DELETE FROM e2e_backup_sessions WHERE user_id = ? AND version = ?`, userID, version)
	return err
}

// BumpBackupEtag advances a backup version's etag and returns it.
func (tx *Tx) BumpBackupEtag(ctx context.Context, userID string, version int64) (int64, error) {
	var e int64
	err := tx.queryRow(ctx, `UPDATE e2e_backup_versions SET etag = etag + 1 WHERE user_id = ? AND version = ? RETURNING etag`, userID, version).Scan(&e)
	return e, err
}

// BackupSession is one backed-up room key (session_data is ciphertext).
type BackupSession struct {
	RoomID            string
	SessionID         string
	FirstMessageIndex int64
	ForwardedCount    int64
	IsVerified        bool
	SessionData       json.RawMessage
}

// BackupSession returns one backed-up key, or ErrNotFound.
func (tx *Tx) BackupSession(ctx context.Context, userID string, version int64, roomID, sessionID string) (BackupSession, error) {
	var s BackupSession
	var v int
	var d string
	err := tx.queryRow(ctx, `SELECT room_id, session_id, first_message_index, forwarded_count, is_verified, session_data FROM e2e_backup_sessions
		WHERE user_id = ? AND version = ? AND room_id = ? AND session_id = ?`, userID, version, roomID, sessionID).
		Scan(&s.RoomID, &s.SessionID, &s.FirstMessageIndex, &s.ForwardedCount, &v, &d)
	s.IsVerified, s.SessionData = v != 0, json.RawMessage(d)
	return s, notFound(err)
}

// PutBackupSession stores or replaces a backed-up key.
func (tx *Tx) PutBackupSession(ctx context.Context, userID string, version int64, s BackupSession) error {
	_, err := tx.exec(ctx, `INSERT INTO e2e_backup_sessions (user_id, version, room_id, session_id, first_message_index, forwarded_count, is_verified, session_data)
		VALUES (?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT (user_id, version, room_id, session_id) DO UPDATE SET
		first_message_index = excluded.first_message_index, forwarded_count = excluded.forwarded_count,
		is_verified = excluded.is_verified, session_data = excluded.session_data`,
		userID, version, s.RoomID, s.SessionID, s.FirstMessageIndex, s.ForwardedCount, b2i(s.IsVerified), string(s.SessionData))
	return err
}

// BackupSessions returns the backed-up keys of a version, restricted to a
// room and a session when those are not empty.
func (db *DB) BackupSessions(ctx context.Context, userID string, version int64, roomID, sessionID string) ([]BackupSession, error) {
	q := `SELECT room_id, session_id, first_message_index, forwarded_count, is_verified, session_data FROM e2e_backup_sessions WHERE user_id = ? AND version = ?`
	args := []any{userID, version}
	if roomID != "" {
		q += ` AND room_id = ?`
		args = append(args, roomID)
	}
	if sessionID != "" {
		q += ` AND session_id = ?`
		args = append(args, sessionID)
	}
	rows, err := db.query(ctx, q+` ORDER BY room_id, session_id`, args...)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []BackupSession
	for rows.Next() {
		var s BackupSession
		var v int
		var d string
		if err := rows.Scan(&s.RoomID, &s.SessionID, &s.FirstMessageIndex, &s.ForwardedCount, &v, &d); err != nil {
			return nil, err
		}
		s.IsVerified, s.SessionData = v != 0, json.RawMessage(d)
		out = append(out, s)
	}
	return out, rows.Err()
}

// DeleteBackupSessions deletes backed-up keys of a version, restricted to a
// room and a session when those are not empty, and reports how many.
func (tx *Tx) DeleteBackupSessions(ctx context.Context, userID string, version int64, roomID, sessionID string) (int64, error) {
	q := `DELETE FROM e2e_backup_sessions WHERE user_id = ? AND version = ?`
	args := []any{userID, version}
	if roomID != "" {
		q += ` AND room_id = ?`
		args = append(args, roomID)
	}
	if sessionID != "" {
		q += ` AND session_id = ?`
		args = append(args, sessionID)
	}
	res, err := tx.exec(ctx, q, args...)
	if err != nil {
		return 0, err
	}
	return res.RowsAffected()
}

// CountBackupSessions counts the keys in a backup version.
func (db *DB) CountBackupSessions(ctx context.Context, userID string, version int64) (int64, error) {
	var n int64
	err := db.queryRow(ctx, `SELECT COUNT(*) FROM e2e_backup_sessions WHERE user_id = ? AND version = ?`, userID, version).Scan(&n)
	return n, err
}

// CountBackupSessionsTx is CountBackupSessions inside the transaction.
func (tx *Tx) CountBackupSessions(ctx context.Context, userID string, version int64) (int64, error) {
	var n int64
	err := tx.queryRow(ctx, `SELECT COUNT(*) FROM e2e_backup_sessions WHERE user_id = ? AND version = ?`, userID, version).Scan(&n)
	return n, err
}
