package storage

import (
	"context"
	"database/sql"
	"errors"
	"strings"
)

// ErrUserExists is returned by CreateUser when the localpart is taken.
var ErrUserExists = errors.New("user already exists")

// User is an account row.
type User struct {
	UserID       string
	Localpart    string
	PasswordHash string
	IsAdmin      bool
	IsGuest      bool
	Deactivated  bool
	CreatedTS    int64
	DisplayName  string
	AvatarURL    string
}

// Device is a device (a login session) of a user.
type Device struct {
	UserID      string
	DeviceID    string
	DisplayName string
	CreatedTS   int64
	LastSeenTS  int64
	LastSeenIP  string
}

func isUniqueViolation(err error) bool {
	if err == nil {
		return false
	}
	s := err.Error()
	return strings.Contains(s, "UNIQUE constraint failed") || strings.Contains(s, "duplicate key value") || strings.Contains(s, "SQLSTATE 23505")
}

func b2i(b bool) int {
	if b {
		return 1
	}
	return 0
}

// CreateUser inserts a new account.
func (tx *Tx) CreateUser(ctx context.Context, u User) error {
	_, err := tx.exec(ctx, `INSERT INTO users (user_id, localpart, password_hash, is_admin, is_guest, created_ts, displayname) VALUES (?, ?, ?, ?, ?, ?, ?)`,
		u.UserID, u.Localpart, u.PasswordHash, b2i(u.IsAdmin), b2i(u.IsGuest), u.CreatedTS, nullString(u.DisplayName))
	if isUniqueViolation(err) {
		return ErrUserExists
	}
	if err != nil || u.IsGuest {
		return err
	}
	return tx.indexDirectoryUser(ctx, u.UserID, u.Localpart, u.DisplayName)
}

func nullString(s string) sql.NullString { return sql.NullString{String: s, Valid: s != ""} }

const userColumns = `user_id, localpart, password_hash, is_admin, is_guest, deactivated, created_ts, displayname, avatar_url`

func scanUser(row interface{ Scan(...any) error }) (User, error) {
	var u User
	var admin, guest, deact int
	var dn, av sql.NullString
	err := row.Scan(&u.UserID, &u.Localpart, &u.PasswordHash, &admin, &guest, &deact, &u.CreatedTS, &dn, &av)
	u.IsAdmin, u.IsGuest, u.Deactivated = admin != 0, guest != 0, deact != 0
	u.DisplayName, u.AvatarURL = dn.String, av.String
	return u, notFound(err)
}

// GetUser loads an account by full user ID.
func (db *DB) GetUser(ctx context.Context, userID string) (User, error) {
	return scanUser(db.queryRow(ctx, `SELECT `+userColumns+` FROM users WHERE user_id = ?`, userID))
}

// GetUserByLocalpart loads an account by localpart, case-insensitively
// folded by the caller.
func (db *DB) GetUserByLocalpart(ctx context.Context, localpart string) (User, error) {
	return scanUser(db.queryRow(ctx, `SELECT `+userColumns+` FROM users WHERE localpart = ?`, localpart))
}

// UserExists reports whether an account with this localpart exists.
func (db *DB) UserExists(ctx context.Context, localpart string) (bool, error) {
	var n int
	err := db.queryRow(ctx, `SELECT COUNT(*) FROM users WHERE localpart = ?`, localpart).Scan(&n)
	return n > 0, err
}

// SetPasswordHash replaces a user's password hash.
func (tx *Tx) SetPasswordHash(ctx context.Context, userID, hash string) error {
	_, err := tx.exec(ctx, `UPDATE users SET password_hash = ? WHERE user_id = ?`, hash, userID)
	return err
}

// SetAdmin grants or removes server admin rights.
func (tx *Tx) SetAdmin(ctx context.Context, userID string, admin bool) error {
	tx.tokensChanged()
	_, err := tx.exec(ctx, `UPDATE users SET is_admin = ? WHERE user_id = ?`, b2i(admin), userID)
	return err
}

// DeactivateUser marks the account deactivated, clears its password and
// profile, and deletes its devices and tokens.
func (tx *Tx) DeactivateUser(ctx context.Context, userID string) error {
	tx.tokensChanged()
	if _, err := tx.exec(ctx, `UPDATE users SET deactivated = 1, password_hash = '', displayname = NULL, avatar_url = NULL WHERE user_id = ?`, userID); err != nil {
		return err
	}
	if _, err := tx.exec(ctx, `DELETE FROM access_tokens WHERE user_id = ?`, userID); err != nil {
		return err
	}
	if err := tx.unindexDirectoryUser(ctx, userID); err != nil {
		return err
	}
	// Extra profile fields and presence (002_profile_reports.sql) go too.
	if err := tx.DeleteProfileFields(ctx, userID); err != nil {
		return err
	}
	if _, err := tx.exec(ctx, `DELETE FROM presence WHERE user_id = ?`, userID); err != nil {
		return err
	}
	_, err := tx.exec(ctx, `DELETE FROM devices WHERE user_id = ?`, userID)
	return err
}

// SetProfile updates display name and avatar URL; nil leaves a field as is.
func (tx *Tx) SetProfile(ctx context.Context, userID string, displayName, avatarURL *string) error {
	if displayName != nil {
		if _, err := tx.exec(ctx, `UPDATE users SET displayname = ? WHERE user_id = ?`, nullString(*displayName), userID); err != nil {
			return err
		}
		var localpart string
		var inactive bool
		if err := tx.queryRow(ctx, `SELECT localpart, deactivated <> 0 OR is_guest <> 0 FROM users WHERE user_id = ?`, userID).Scan(&localpart, &inactive); err != nil {
			return notFound(err)
		}
		if !inactive {
			if err := tx.indexDirectoryUser(ctx, userID, localpart, *displayName); err != nil {
				return err
			}
		}
	}
	if avatarURL != nil {
		if _, err := tx.exec(ctx, `UPDATE users SET avatar_url = ? WHERE user_id = ?`, nullString(*avatarURL), userID); err != nil {
			return err
		}
	}
	return nil
}

// UpsertDevice creates a device or, if it exists, updates its display name
// when one is given.
func (tx *Tx) UpsertDevice(ctx context.Context, d Device) error {
	_, err := tx.exec(ctx, `INSERT INTO devices (user_id, device_id, display_name, created_ts) VALUES (?, ?, ?, ?)
		ON CONFLICT (user_id, device_id) DO UPDATE SET display_name = COALESCE(excluded.display_name, devices.display_name)`,
		d.UserID, d.DeviceID, nullString(d.DisplayName), d.CreatedTS)
	return err
}

// SetDeviceDisplayName renames a device.
func (tx *Tx) SetDeviceDisplayName(ctx context.Context, userID, deviceID, name string) error {
	res, err := tx.exec(ctx, `UPDATE devices SET display_name = ? WHERE user_id = ? AND device_id = ?`, nullString(name), userID, deviceID)
	if err != nil {
		return err
	}
	if n, _ := res.RowsAffected(); n == 0 {
		return ErrNotFound
	}
	return nil
}

// DeleteDevice removes a device and every token issued to it.
func (tx *Tx) DeleteDevice(ctx context.Context, userID, deviceID string) error {
	tx.tokensChanged()
	if _, err := tx.exec(ctx, `DELETE FROM access_tokens WHERE user_id = ? AND device_id = ?`, userID, deviceID); err != nil {
		return err
	}
	_, err := tx.exec(ctx, `DELETE FROM devices WHERE user_id = ? AND device_id = ?`, userID, deviceID)
	return err
}

func scanDevice(row interface{ Scan(...any) error }) (Device, error) {
	var d Device
	var dn, ip sql.NullString
	var seen sql.NullInt64
	err := row.Scan(&d.UserID, &d.DeviceID, &dn, &d.CreatedTS, &seen, &ip)
	d.DisplayName, d.LastSeenTS, d.LastSeenIP = dn.String, seen.Int64, ip.String
	return d, notFound(err)
}

const deviceColumns = `user_id, device_id, display_name, created_ts, last_seen_ts, last_seen_ip`

// GetDevice loads one device.
func (db *DB) GetDevice(ctx context.Context, userID, deviceID string) (Device, error) {
	return scanDevice(db.queryRow(ctx, `SELECT `+deviceColumns+` FROM devices WHERE user_id = ? AND device_id = ?`, userID, deviceID))
}

// ListDevices returns a user's devices ordered by device ID.
func (db *DB) ListDevices(ctx context.Context, userID string) ([]Device, error) {
	rows, err := db.query(ctx, `SELECT `+deviceColumns+` FROM devices WHERE user_id = ? ORDER BY device_id`, userID)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []Device
	for rows.Next() {
		d, err := scanDevice(rows)
		if err != nil {
			return nil, err
		}
		out = append(out, d)
	}
	return out, rows.Err()
}

// DeviceTouch is one sighting of a device.
type DeviceTouch struct {
	UserID, DeviceID, IP string
	TS                   int64
}

// touchChunk bounds the sightings of one statement (PostgreSQL).
const touchChunk = 1000

// TouchDevices records when and from where devices were last seen, in one
// transaction. A sighting never moves a device's last_seen_ts back. On
// PostgreSQL the sightings go in one statement per thousand: a flush of
// the sightings of 5,000 syncing devices made some 400 round trips, a
// second or more of work that slowed every other statement meanwhile.
func (db *DB) TouchDevices(ctx context.Context, touches []DeviceTouch) error {
	return db.WithTx(ctx, func(tx *Tx) error {
		if db.dialect == Postgres {
			for start := 0; start < len(touches); start += touchChunk {
				chunk := touches[start:min(start+touchChunk, len(touches))]
				users, devices, ips := make([]string, len(chunk)), make([]string, len(chunk)), make([]string, len(chunk))
				ts := make([]int64, len(chunk))
				for i, t := range chunk {
					users[i], devices[i], ips[i], ts[i] = t.UserID, t.DeviceID, t.IP, t.TS
				}
				if _, err := tx.exec(ctx, `UPDATE devices d SET last_seen_ts = v.ts, last_seen_ip = v.ip
					FROM (SELECT DISTINCT ON (user_id, device_id) * FROM unnest(?::text[], ?::text[], ?::text[], ?::bigint[]) AS u (user_id, device_id, ip, ts)
						ORDER BY user_id, device_id, ts DESC) AS v
					WHERE d.user_id = v.user_id AND d.device_id = v.device_id AND (d.last_seen_ts IS NULL OR d.last_seen_ts < v.ts)`,
					users, devices, ips, ts); err != nil {
					return err
				}
			}
			return nil
		}
		for _, t := range touches {
			if _, err := tx.exec(ctx, `UPDATE devices SET last_seen_ts = ?, last_seen_ip = ?
				WHERE user_id = ? AND device_id = ? AND (last_seen_ts IS NULL OR last_seen_ts < ?)`,
				t.TS, t.IP, t.UserID, t.DeviceID, t.TS); err != nil {
				return err
			}
		}
		return nil
	})
}

// AccessToken is what an access token hash resolves to.
type AccessToken struct {
	UserID    string
	DeviceID  string
	CreatedTS int64
	ExpiresTS int64 // 0: no expiry
}

// InsertAccessToken stores the hash of a new access token.
func (tx *Tx) InsertAccessToken(ctx context.Context, hash string, t AccessToken) error {
	var exp sql.NullInt64
	if t.ExpiresTS > 0 {
		exp = sql.NullInt64{Int64: t.ExpiresTS, Valid: true}
	}
	_, err := tx.exec(ctx, `INSERT INTO access_tokens (token_hash, user_id, device_id, created_ts, expires_ts) VALUES (?, ?, ?, ?, ?)`,
		hash, t.UserID, t.DeviceID, t.CreatedTS, exp)
	return err
}

// TokenOwner is an access token with what authenticating a request needs
// of the account it belongs to.
type TokenOwner struct {
	AccessToken
	IsAdmin     bool
	IsGuest     bool
	Deactivated bool
}

// lookupAccessToken resolves a token hash to the token and its account, in
// one read (every authenticated request makes it): ErrNotFound when the
// token is unknown or its account is gone.
func (db *DB) lookupAccessToken(ctx context.Context, hash string) (TokenOwner, error) {
	var t TokenOwner
	var exp sql.NullInt64
	var admin, guest, deact int
	// Without the read gate: see queryInternal.
	err := db.queryRowInternal(ctx, `SELECT t.user_id, t.device_id, t.created_ts, t.expires_ts, u.is_admin, u.is_guest, u.deactivated
		FROM access_tokens t JOIN users u ON u.user_id = t.user_id WHERE t.token_hash = ?`, hash).
		Scan(&t.UserID, &t.DeviceID, &t.CreatedTS, &exp, &admin, &guest, &deact)
	t.ExpiresTS = exp.Int64
	t.IsAdmin, t.IsGuest, t.Deactivated = admin != 0, guest != 0, deact != 0
	return t, notFound(err)
}

// DeleteAccessToken revokes one token.
func (tx *Tx) DeleteAccessToken(ctx context.Context, hash string) error {
	tx.tokensChanged()
	_, err := tx.exec(ctx, `DELETE FROM access_tokens WHERE token_hash = ?`, hash)
	return err
}

// DeleteUserTokensExcept revokes every token of a user except keepDeviceID's
// (pass "" to revoke all) and deletes the corresponding devices.
func (tx *Tx) DeleteDevicesExcept(ctx context.Context, userID, keepDeviceID string) ([]string, error) {
	rows, err := tx.query(ctx, `SELECT device_id FROM devices WHERE user_id = ? AND device_id <> ?`, userID, keepDeviceID)
	if err != nil {
		return nil, err
	}
	var ids []string
	for rows.Next() {
		var id string
		if err := rows.Scan(&id); err != nil {
			rows.Close()
			return nil, err
		}
		ids = append(ids, id)
	}
	rows.Close()
	for _, id := range ids {
		if err := tx.DeleteDevice(ctx, userID, id); err != nil {
			return nil, err
		}
	}
	return ids, nil
}

// CreateUIASession stores a new user-interactive authentication session.
func (tx *Tx) CreateUIASession(ctx context.Context, sid, userID string, ts int64) error {
	_, err := tx.exec(ctx, `INSERT INTO uia_sessions (session_id, user_id, created_ts) VALUES (?, ?, ?)`, sid, userID, ts)
	return err
}

// GetUIASession returns the owner and creation time of a UIA session.
func (db *DB) GetUIASession(ctx context.Context, sid string) (userID string, created int64, err error) {
	err = db.queryRow(ctx, `SELECT user_id, created_ts FROM uia_sessions WHERE session_id = ?`, sid).Scan(&userID, &created)
	return userID, created, notFound(err)
}

// DeleteUIASession removes a completed session.
func (tx *Tx) DeleteUIASession(ctx context.Context, sid string) error {
	_, err := tx.exec(ctx, `DELETE FROM uia_sessions WHERE session_id = ?`, sid)
	return err
}

// DeleteDeviceTokens revokes every access token of one device.
func (tx *Tx) DeleteDeviceTokens(ctx context.Context, userID, deviceID string) error {
	tx.tokensChanged()
	_, err := tx.exec(ctx, `DELETE FROM access_tokens WHERE user_id = ? AND device_id = ?`, userID, deviceID)
	return err
}

// RegistrationToken is a token allowing registration in token mode.
type RegistrationToken struct {
	Token       string
	UsesAllowed *int
	Pending     int
	Completed   int
	ExpiryTS    int64 // 0: never
}

// CreateRegistrationToken stores a new registration token.
func (tx *Tx) CreateRegistrationToken(ctx context.Context, t RegistrationToken) error {
	var exp sql.NullInt64
	if t.ExpiryTS > 0 {
		exp = sql.NullInt64{Int64: t.ExpiryTS, Valid: true}
	}
	_, err := tx.exec(ctx, `INSERT INTO registration_tokens (token, uses_allowed, expiry_ts) VALUES (?, ?, ?)`, t.Token, t.UsesAllowed, exp)
	return err
}

// GetRegistrationToken loads a registration token.
func (db *DB) GetRegistrationToken(ctx context.Context, token string) (RegistrationToken, error) {
	var t RegistrationToken
	var uses, exp sql.NullInt64
	err := db.queryRow(ctx, `SELECT token, uses_allowed, pending, completed, expiry_ts FROM registration_tokens WHERE token = ?`, token).
		Scan(&t.Token, &uses, &t.Pending, &t.Completed, &exp)
	if uses.Valid {
		n := int(uses.Int64)
		t.UsesAllowed = &n
	}
	t.ExpiryTS = exp.Int64
	return t, notFound(err)
}

// UseRegistrationToken consumes one use of a token if it is still valid at
// now, reporting whether it was.
func (tx *Tx) UseRegistrationToken(ctx context.Context, token string, now int64) (bool, error) {
	res, err := tx.exec(ctx, `UPDATE registration_tokens SET completed = completed + 1
		WHERE token = ? AND (uses_allowed IS NULL OR completed < uses_allowed) AND (expiry_ts IS NULL OR expiry_ts > ?)`, token, now)
	if err != nil {
		return false, err
	}
	n, err := res.RowsAffected()
	return n == 1, err
}

// PutNonce stores a shared-secret registration nonce.
func (tx *Tx) PutNonce(ctx context.Context, nonce string, ts int64) error {
	_, err := tx.exec(ctx, `INSERT INTO registration_nonces (nonce, created_ts) VALUES (?, ?)`, nonce, ts)
	return err
}

// TakeNonce consumes a nonce created after notBefore, reporting whether it
// existed.
func (tx *Tx) TakeNonce(ctx context.Context, nonce string, notBefore int64) (bool, error) {
	if _, err := tx.exec(ctx, `DELETE FROM registration_nonces WHERE created_ts < ?`, notBefore); err != nil {
		return false, err
	}
	res, err := tx.exec(ctx, `DELETE FROM registration_nonces WHERE nonce = ?`, nonce)
	if err != nil {
		return false, err
	}
	n, err := res.RowsAffected()
	return n == 1, err
}
