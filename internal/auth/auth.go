// Package auth owns credentials: access tokens (random, stored only as
// hashes), password hashing (argon2id with bounded concurrency), and
// user-interactive authentication sessions.
package auth

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"strings"
	"time"

	"golang.org/x/crypto/argon2"
	"golang.org/x/crypto/bcrypt"

	"github.com/rempart-hs/rempart/internal/httpapi"
	"github.com/rempart-hs/rempart/internal/storage"
)

// Service authenticates requests and manages credentials.
type Service struct {
	db         *storage.DB
	serverName string
	hashSem    chan struct{}
	now        func() time.Time
	// argonMemory (KiB) and argonTime are the cost of new hashes.
	argonMemory uint32
	argonTime   uint32
}

// New returns an auth service; hashConcurrency bounds simultaneous
// password hashes (each argon2id hash allocates 64 MiB).
func New(db *storage.DB, serverName string, hashConcurrency int) *Service {
	if hashConcurrency < 1 {
		hashConcurrency = 1
	}
	return &Service{db: db, serverName: serverName, hashSem: make(chan struct{}, hashConcurrency), now: time.Now,
		argonMemory: defaultArgonMemory, argonTime: defaultArgonTime}
}

// SetPasswordCost sets the argon2id memory (KiB) and passes of new
// password hashes; existing hashes are checked with their own parameters.
func (s *Service) SetPasswordCost(memoryKiB, iterations uint32) {
	s.argonMemory, s.argonTime = memoryKiB, iterations
}

// NewToken returns a fresh 256-bit random token with the given prefix and
// the hash under which it is stored.
func NewToken(prefix string) (token, hash string) {
	b := make([]byte, 32)
	if _, err := rand.Read(b); err != nil {
		panic(err)
	}
	token = prefix + base64.RawURLEncoding.EncodeToString(b)
	return token, HashToken(token)
}

// HashToken is the storage form of a token: hex SHA-256.
func HashToken(token string) string {
	s := sha256.Sum256([]byte(token))
	return hex.EncodeToString(s[:])
}

// RandomString returns n random characters from [A-Z].
func RandomString(n int) string {
	const letters = "ABCDEFGHIJKLMNOPQRSTUVWXYZ"
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		panic(err)
	}
	for i := range b {
		b[i] = letters[int(b[i])%len(letters)]
	}
	return string(b)
}

// Authenticate implements httpapi.Authenticator. Every request reads its
// token and account from the database (one indexed read): a logout, a
// revoked device or a deactivation takes effect at once, whichever process
// made it.
func (s *Service) Authenticate(ctx context.Context, token string) (*httpapi.Requester, error) {
	hash := HashToken(token)
	t, err := s.db.LookupAccessToken(ctx, hash)
	if errors.Is(err, storage.ErrNotFound) {
		return nil, httpapi.UnknownToken("unknown access token").With("soft_logout", false)
	}
	if err != nil {
		return nil, err
	}
	if t.ExpiresTS > 0 && s.now().UnixMilli() >= t.ExpiresTS {
		return nil, httpapi.UnknownToken("access token expired").With("soft_logout", true)
	}
	if t.Deactivated {
		return nil, httpapi.UnknownToken("account deactivated").With("soft_logout", false)
	}
	return &httpapi.Requester{UserID: t.UserID, DeviceID: t.DeviceID, IsAdmin: t.IsAdmin, IsGuest: t.IsGuest, TokenHash: hash}, nil
}

// Session is a freshly issued login.
type Session struct {
	UserID      string
	DeviceID    string
	AccessToken string
}

// IssueSession creates (or reuses) a device and issues an access token for
// it, inside tx. An existing device's previous tokens are revoked.
func (s *Service) IssueSession(ctx context.Context, tx *storage.Tx, userID, deviceID, displayName string) (Session, error) {
	if deviceID == "" {
		deviceID = RandomString(10)
	}
	now := s.now().UnixMilli()
	if err := tx.UpsertDevice(ctx, storage.Device{UserID: userID, DeviceID: deviceID, DisplayName: displayName, CreatedTS: now}); err != nil {
		return Session{}, err
	}
	tok, hash := NewToken("mat_")
	if err := tx.InsertAccessToken(ctx, hash, storage.AccessToken{UserID: userID, DeviceID: deviceID, CreatedTS: now}); err != nil {
		return Session{}, err
	}
	return Session{UserID: userID, DeviceID: deviceID, AccessToken: tok}, nil
}

// Default argon2id parameters (RFC 9106 second recommended option, lighter
// memory); limits.password_hash_memory_kib and _iterations override the
// first two.
const (
	defaultArgonTime   = 1
	defaultArgonMemory = 64 * 1024
	argonThreads       = 2
	argonKeyLen        = 32
)

// HashPassword returns an argon2id PHC string for pw.
func (s *Service) HashPassword(ctx context.Context, pw string) (string, error) {
	if err := s.acquire(ctx); err != nil {
		return "", err
	}
	defer func() { <-s.hashSem }()
	salt := make([]byte, 16)
	if _, err := rand.Read(salt); err != nil {
		return "", err
	}
	key := argon2.IDKey([]byte(pw), salt, s.argonTime, s.argonMemory, argonThreads, argonKeyLen)
	return fmt.Sprintf("$argon2id$v=%d$m=%d,t=%d,p=%d$%s$%s", argon2.Version, s.argonMemory, s.argonTime, argonThreads,
		base64.RawStdEncoding.EncodeToString(salt), base64.RawStdEncoding.EncodeToString(key)), nil
}

func (s *Service) acquire(ctx context.Context) error {
	select {
	case s.hashSem <- struct{}{}:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// CheckPassword reports whether pw matches the stored hash (argon2id, or
// bcrypt for accounts imported from Synapse).
func (s *Service) CheckPassword(ctx context.Context, hash, pw string) (bool, error) {
	if hash == "" {
		return false, nil
	}
	if err := s.acquire(ctx); err != nil {
		return false, err
	}
	defer func() { <-s.hashSem }()
	if strings.HasPrefix(hash, "$2") {
		return bcrypt.CompareHashAndPassword([]byte(hash), []byte(pw)) == nil, nil
	}
	parts := strings.Split(hash, "$")
	if len(parts) != 6 || parts[1] != "argon2id" {
		return false, errors.New("unknown password hash format")
	}
	var m uint32
	var t uint32
	var p uint8
	if _, err := fmt.Sscanf(parts[3], "m=%d,t=%d,p=%d", &m, &t, &p); err != nil {
		return false, fmt.Errorf("parse argon2 params: %w", err)
	}
	salt, err := base64.RawStdEncoding.DecodeString(parts[4])
	if err != nil {
		return false, err
	}
	want, err := base64.RawStdEncoding.DecodeString(parts[5])
	if err != nil {
		return false, err
	}
	got := argon2.IDKey([]byte(pw), salt, t, m, p, uint32(len(want)))
	return subtle.ConstantTimeCompare(got, want) == 1, nil
}

// dummyHash is checked against when a login names an unknown user, so that
// timing does not reveal whether the account exists: it has the cost of
// new hashes.
func (s *Service) dummyHash() string {
	return fmt.Sprintf("$argon2id$v=19$m=%d,t=%d,p=%d$AAAAAAAAAAAAAAAAAAAAAA$AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA",
		s.argonMemory, s.argonTime, argonThreads)
}

// VerifyLogin checks a localpart/password pair. It returns the user on
// success and M_FORBIDDEN otherwise, never revealing whether the account
// exists.
func (s *Service) VerifyLogin(ctx context.Context, localpart, pw string) (storage.User, error) {
	u, err := s.db.GetUserByLocalpart(ctx, localpart)
	if err != nil && !errors.Is(err, storage.ErrNotFound) {
		return u, err
	}
	dummy := s.dummyHash()
	hash := dummy
	if err == nil && !u.Deactivated {
		hash = u.PasswordHash
	}
	ok, cerr := s.CheckPassword(ctx, hash, pw)
	if cerr != nil && hash != dummy {
		return u, cerr
	}
	if err != nil || !ok || u.Deactivated || u.PasswordHash == "" {
		if err == nil && u.Deactivated && ok {
			return u, httpapi.UserDeactivated("this account has been deactivated")
		}
		return u, httpapi.Forbidden("invalid username or password")
	}
	return u, nil
}
