package auth

import (
	"context"
	"errors"
	"regexp"
	"strings"

	"github.com/rempart-hs/rempart/internal/httpapi"
	"github.com/rempart-hs/rempart/internal/pushrules"
	"github.com/rempart-hs/rempart/internal/storage"
)

var localpartRe = regexp.MustCompile(`^[a-z0-9._=\-/+]+$`)

// ValidateLocalpart checks a requested localpart against the spec's user ID
// grammar (lower-case historical characters excluded) and length.
func (s *Service) ValidateLocalpart(localpart string) error {
	if localpart == "" || !localpartRe.MatchString(localpart) {
		return httpapi.InvalidUsername("user ID may only contain a-z, 0-9, '.', '_', '=', '-', '/' and '+'")
	}
	if len("@"+localpart+":"+s.serverName) > 255 {
		return httpapi.InvalidUsername("user ID is too long")
	}
	return nil
}

// NewAccount describes an account to create.
type NewAccount struct {
	Localpart   string
	Password    string // "" creates an account that cannot log in by password
	Admin       bool
	Guest       bool
	DisplayName string
}

// CreateAccount validates and creates an account inside tx and returns the
// user ID. Passwords are hashed before the transaction is opened by the
// caller via HashPassword; pass the hash in PasswordHash.
func (s *Service) CreateAccount(ctx context.Context, tx *storage.Tx, acc NewAccount, passwordHash string) (string, error) {
	if err := s.ValidateLocalpart(acc.Localpart); err != nil {
		return "", err
	}
	userID := "@" + acc.Localpart + ":" + s.serverName
	dn := acc.DisplayName
	if dn == "" {
		dn = acc.Localpart
	}
	err := tx.CreateUser(ctx, storage.User{
		UserID: userID, Localpart: acc.Localpart, PasswordHash: passwordHash, IsAdmin: acc.Admin, IsGuest: acc.Guest,
		CreatedTS: s.now().UnixMilli(), DisplayName: dn,
	})
	if errors.Is(err, storage.ErrUserExists) {
		return "", httpapi.UserInUse("user ID already taken")
	}
	if err != nil {
		return "", err
	}
	// Every account starts with the default push rules in its account
	// data, so that its first sync carries m.push_rules.
	if _, err := tx.PutAccountData(ctx, userID, "", "m.push_rules", pushrules.AccountData(pushrules.Defaults(userID))); err != nil {
		return "", err
	}
	return userID, nil
}

// CheckPasswordPolicy enforces the minimum password length.
func CheckPasswordPolicy(pw string, minLen int) error {
	if len([]rune(pw)) < minLen {
		return httpapi.WeakPassword("password must be at least %d characters", minLen)
	}
	if len(pw) > 512 {
		return httpapi.WeakPassword("password too long")
	}
	if strings.TrimSpace(pw) == "" {
		return httpapi.WeakPassword("password must not be blank")
	}
	return nil
}
