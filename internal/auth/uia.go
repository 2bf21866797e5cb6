package auth

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"strings"
	"time"

	"github.com/rempart-hs/rempart/internal/httpapi"
	"github.com/rempart-hs/rempart/internal/storage"
)

// AuthDict is the "auth" object of a user-interactive authentication request.
type AuthDict struct {
	Type       string          `json:"type"`
	Session    string          `json:"session"`
	Password   string          `json:"password"`
	Identifier *Identifier     `json:"identifier"`
	User       string          `json:"user"`
	Token      string          `json:"token"`
	Raw        json.RawMessage `json:"-"`
}

// Identifier is a login identifier (only m.id.user is supported).
type Identifier struct {
	Type string `json:"type"`
	User string `json:"user"`
}

// uiaTTL is how long a UIA session lives.
const uiaTTL = 15 * time.Minute

// Flow is one acceptable sequence of UIA stages.
type Flow struct {
	Stages []string `json:"stages"`
}

// uiaChallenge is the 401 body describing what remains to be done.
type uiaChallenge struct {
	Flows     []Flow         `json:"flows"`
	Params    map[string]any `json:"params"`
	Session   string         `json:"session"`
	Completed []string       `json:"completed,omitempty"`
	Errcode   string         `json:"errcode,omitempty"`
	Error     string         `json:"error,omitempty"`
}

// RequirePassword runs user-interactive authentication with the single
// flow [m.login.password] for the already-authenticated userID. It returns
// nil once the user has proved their password in this request; otherwise it
// returns a 401 challenge response as an error value.
func (s *Service) RequirePassword(ctx context.Context, userID string, auth *AuthDict) error {
	flows := []Flow{{Stages: []string{"m.login.password"}}}
	if auth == nil || auth.Type == "" {
		sid, err := s.newUIASession(ctx, userID)
		if err != nil {
			return err
		}
		return challenge(flows, sid, nil, "", "")
	}
	if auth.Session != "" {
		if err := s.checkUIASession(ctx, auth.Session, userID); err != nil {
			return err
		}
	}
	sid := auth.Session
	if sid == "" {
		var err error
		if sid, err = s.newUIASession(ctx, userID); err != nil {
			return err
		}
	}
	if auth.Type != "m.login.password" {
		return challenge(flows, sid, nil, "M_UNRECOGNIZED", "unsupported authentication type")
	}
	localpart := auth.User
	if auth.Identifier != nil {
		if auth.Identifier.Type != "m.id.user" {
			return challenge(flows, sid, nil, "M_UNRECOGNIZED", "unsupported identifier type")
		}
		localpart = auth.Identifier.User
	}
	localpart = LocalpartOf(localpart, s.serverName)
	if "@"+localpart+":"+s.serverName != userID {
		return challenge(flows, sid, nil, "M_FORBIDDEN", "authentication must be for the logged-in user")
	}
	if _, err := s.VerifyLogin(ctx, localpart, auth.Password); err != nil {
		var me *httpapi.Error
		if errors.As(err, &me) {
			return challenge(flows, sid, nil, "M_FORBIDDEN", "invalid password")
		}
		return err
	}
	_ = s.db.WithTx(ctx, func(tx *storage.Tx) error { return tx.DeleteUIASession(ctx, sid) })
	return nil
}

func challenge(flows []Flow, session string, completed []string, code, msg string) error {
	return &ChallengeError{Body: uiaChallenge{Flows: flows, Params: map[string]any{}, Session: session, Completed: completed, Errcode: code, Error: msg}}
}

// ChallengeError is a 401 user-interactive authentication response.
type ChallengeError struct{ Body uiaChallenge }

func (c *ChallengeError) Error() string { return "user-interactive authentication required" }

// AsResponse converts a ChallengeError into the HTTP response to send; other
// errors are returned unchanged.
func AsResponse(err error) (any, error) {
	var ce *ChallengeError
	if errors.As(err, &ce) {
		return httpapi.Response{Status: http.StatusUnauthorized, Body: ce.Body}, nil
	}
	return nil, err
}

func (s *Service) newUIASession(ctx context.Context, userID string) (string, error) {
	tok, _ := NewToken("")
	sid := tok[:24]
	err := s.db.WithTx(ctx, func(tx *storage.Tx) error {
		return tx.CreateUIASession(ctx, sid, userID, s.now().UnixMilli())
	})
	return sid, err
}

func (s *Service) checkUIASession(ctx context.Context, sid, userID string) error {
	owner, created, err := s.db.GetUIASession(ctx, sid)
	if errors.Is(err, storage.ErrNotFound) || (err == nil && s.now().UnixMilli()-created > uiaTTL.Milliseconds()) {
		return httpapi.Unknown("unknown or expired UIA session")
	}
	if err != nil {
		return err
	}
	if owner != userID {
		return httpapi.Forbidden("UIA session belongs to another user")
	}
	return nil
}

// LocalpartOf returns the localpart of a user ID or bare localpart,
// lower-cased; IDs of other servers are returned whole (and will not match).
func LocalpartOf(user, serverName string) string {
	if strings.HasPrefix(user, "@") {
		lp, srv, ok := strings.Cut(user[1:], ":")
		if !ok || srv != serverName {
			return user
		}
		user = lp
	}
	return strings.ToLower(user)
}
