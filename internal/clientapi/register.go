package clientapi

import (
	"context"
	"crypto/hmac"
	"crypto/sha1"
	"encoding/hex"
	"errors"
	"net/http"
	"strings"
	"time"

	"github.com/rempart-hs/rempart/internal/auth"
	"github.com/rempart-hs/rempart/internal/httpapi"
	"github.com/rempart-hs/rempart/internal/storage"
)

func (a *API) routesRegister(rt *httpapi.Router) {
	rt.Public(v3("POST", "/register"), a.postRegister)
	rt.Public(v3("GET", "/register/available"), a.getRegisterAvailable)
	rt.Public(v1("GET", "/register/m.login.registration_token/validity"), a.getRegistrationTokenValidity)
	rt.Public("GET /_synapse/admin/v1/register", a.getSharedSecretNonce)
	rt.Public("POST /_synapse/admin/v1/register", a.postSharedSecretRegister)
}

type registerRequest struct {
	Auth                     *authDictWithToken `json:"auth"`
	Username                 string             `json:"username"`
	Password                 string             `json:"password"`
	DeviceID                 string             `json:"device_id"`
	InitialDeviceDisplayName string             `json:"initial_device_display_name"`
	InhibitLogin             bool               `json:"inhibit_login"`
	RefreshToken             bool               `json:"refresh_token"`
}

type authDictWithToken struct {
	Type    string `json:"type"`
	Session string `json:"session"`
	Token   string `json:"token"`
}

func (a *API) registrationStage() string {
	if a.Config.Registration.Mode == "token" {
		return "m.login.registration_token"
	}
	return "m.login.dummy"
}

// postRegister serves POST /_matrix/client/v3/register.
func (a *API) postRegister(r *http.Request) (any, error) {
	ctx := r.Context()
	kind := r.URL.Query().Get("kind")
	if kind == "" {
		kind = "user"
	}
	if kind == "guest" {
		if !a.Config.Registration.GuestAccess {
			return nil, httpapi.Forbidden("guest access is disabled")
		}
	} else if kind != "user" {
		return nil, httpapi.InvalidParam("kind must be user or guest")
	}
	if a.Config.Registration.Mode == "closed" {
		return nil, httpapi.Forbidden("registration is disabled")
	}
	var req registerRequest
	if err := httpapi.DecodeJSON(r, &req); err != nil {
		return nil, err
	}
	stage := a.registrationStage()
	if kind == "user" {
		if req.Auth == nil || req.Auth.Type == "" {
			// Validate what we can before asking for authentication.
			if err := a.validateRegistration(ctx, &req); err != nil {
				return nil, err
			}
			sid, _ := auth.NewToken("")
			return httpapi.Response{Status: http.StatusUnauthorized, Body: map[string]any{
				"flows": []map[string]any{{"stages": []string{stage}}}, "params": map[string]any{}, "session": sid[:24],
			}}, nil
		}
		if req.Auth.Type != stage {
			return httpapi.Response{Status: http.StatusUnauthorized, Body: map[string]any{
				"flows": []map[string]any{{"stages": []string{stage}}}, "params": map[string]any{}, "session": req.Auth.Session,
				"errcode": "M_UNRECOGNIZED", "error": "unsupported authentication stage",
			}}, nil
		}
	} else {
		// Guests get a generated user ID and no password; every other
		// body field is ignored, as the spec requires.
		req = registerRequest{Username: strings.ToLower(auth.RandomString(12)), DeviceID: req.DeviceID,
			InitialDeviceDisplayName: req.InitialDeviceDisplayName}
	}
	hash := ""
	if kind == "user" {
		if err := a.validateRegistration(ctx, &req); err != nil {
			return nil, err
		}
		var err error
		if hash, err = a.Auth.HashPassword(ctx, req.Password); err != nil {
			return nil, err
		}
	} else if len(req.DeviceID) > 255 || len(req.InitialDeviceDisplayName) > 255 {
		return nil, httpapi.InvalidParam("device_id or display name too long")
	}
	var sess auth.Session
	var userID string
	err := a.DB.WithTx(ctx, func(tx *storage.Tx) error {
		if kind == "user" && stage == "m.login.registration_token" {
			ok, err := tx.UseRegistrationToken(ctx, req.Auth.Token, a.now().UnixMilli())
			if err != nil {
				return err
			}
			if !ok {
				return errBadRegistrationToken
			}
		}
		var err error
		userID, err = a.Auth.CreateAccount(ctx, tx, auth.NewAccount{Localpart: req.Username, Guest: kind == "guest"}, hash)
		if err != nil {
			return err
		}
		if req.InhibitLogin {
			return nil
		}
		sess, err = a.Auth.IssueSession(ctx, tx, userID, req.DeviceID, req.InitialDeviceDisplayName)
		return err
	})
	if errors.Is(err, errBadRegistrationToken) {
		// A failed stage: the flows again, with the error.
		return httpapi.Response{Status: http.StatusUnauthorized, Body: map[string]any{
			"flows": []map[string]any{{"stages": []string{stage}}}, "params": map[string]any{}, "session": req.Auth.Session,
			"errcode": "M_UNAUTHORIZED", "error": "invalid or expired registration token",
		}}, nil
	}
	if err != nil {
		return nil, err
	}
	resp := map[string]any{"user_id": userID, "home_server": a.Config.ServerName}
	if !req.InhibitLogin {
		resp["access_token"] = sess.AccessToken
		resp["device_id"] = sess.DeviceID
	}
	return resp, nil
}

// errBadRegistrationToken rolls back a registration whose token is invalid.
var errBadRegistrationToken = errors.New("invalid registration token")

func (a *API) validateRegistration(ctx context.Context, req *registerRequest) error {
	if req.Username == "" {
		req.Username = strings.ToLower(auth.RandomString(12))
	}
	req.Username = strings.ToLower(req.Username)
	if err := a.Auth.ValidateLocalpart(req.Username); err != nil {
		return err
	}
	exists, err := a.DB.UserExists(ctx, req.Username)
	if err != nil {
		return err
	}
	if exists {
		return httpapi.UserInUse("user ID already taken")
	}
	if req.Password == "" {
		return httpapi.MissingParam("missing password")
	}
	if len(req.DeviceID) > 255 || len(req.InitialDeviceDisplayName) > 255 {
		return httpapi.InvalidParam("device_id or display name too long")
	}
	return auth.CheckPasswordPolicy(req.Password, a.Config.Registration.PasswordMinLength)
}

// getRegisterAvailable serves GET /_matrix/client/v3/register/available.
func (a *API) getRegisterAvailable(r *http.Request) (any, error) {
	if a.Config.Registration.Mode == "closed" {
		return nil, httpapi.Forbidden("registration is disabled")
	}
	name := strings.ToLower(r.URL.Query().Get("username"))
	if name == "" {
		return nil, httpapi.MissingParam("missing username")
	}
	if err := a.Auth.ValidateLocalpart(name); err != nil {
		return nil, err
	}
	exists, err := a.DB.UserExists(r.Context(), name)
	if err != nil {
		return nil, err
	}
	if exists {
		return nil, httpapi.UserInUse("user ID already taken")
	}
	return map[string]bool{"available": true}, nil
}

// getRegistrationTokenValidity serves
// GET /_matrix/client/v1/register/m.login.registration_token/validity.
func (a *API) getRegistrationTokenValidity(r *http.Request) (any, error) {
	if a.Config.Registration.Mode != "token" {
		return nil, httpapi.Forbidden("registration tokens are not in use")
	}
	tok := r.URL.Query().Get("token")
	if tok == "" {
		return nil, httpapi.MissingParam("missing token")
	}
	t, err := a.DB.GetRegistrationToken(r.Context(), tok)
	if errors.Is(err, storage.ErrNotFound) {
		return map[string]bool{"valid": false}, nil
	}
	if err != nil {
		return nil, err
	}
	valid := (t.UsesAllowed == nil || t.Completed < *t.UsesAllowed) && (t.ExpiryTS == 0 || t.ExpiryTS > a.now().UnixMilli())
	return map[string]bool{"valid": valid}, nil
}

// nonceTTL bounds how long a shared-secret registration nonce is valid.
const nonceTTL = 5 * time.Minute

// getSharedSecretNonce serves GET /_synapse/admin/v1/register.
func (a *API) getSharedSecretNonce(r *http.Request) (any, error) {
	if a.Config.Registration.SharedSecret == "" {
		return nil, httpapi.NotFound("shared-secret registration is disabled")
	}
	tok, _ := auth.NewToken("")
	nonce := tok[:32]
	err := a.DB.WithTx(r.Context(), func(tx *storage.Tx) error { return tx.PutNonce(r.Context(), nonce, a.now().UnixMilli()) })
	if err != nil {
		return nil, err
	}
	return map[string]string{"nonce": nonce}, nil
}

type sharedSecretRequest struct {
	Nonce       string `json:"nonce"`
	Username    string `json:"username"`
	Password    string `json:"password"`
	Admin       bool   `json:"admin"`
	Displayname string `json:"displayname"`
	MAC         string `json:"mac"`
}

// postSharedSecretRegister serves POST /_synapse/admin/v1/register, the
// Synapse-compatible HMAC-SHA1 nonce flow.
func (a *API) postSharedSecretRegister(r *http.Request) (any, error) {
	secret := a.Config.Registration.SharedSecret
	if secret == "" {
		return nil, httpapi.NotFound("shared-secret registration is disabled")
	}
	ctx := r.Context()
	var req sharedSecretRequest
	if err := httpapi.DecodeJSON(r, &req); err != nil {
		return nil, err
	}
	if req.Nonce == "" || req.Username == "" || req.Password == "" || req.MAC == "" {
		return nil, httpapi.MissingParam("nonce, username, password and mac are required")
	}
	// The nonce is consumed before anything else, so that it can never be
	// tried twice, whatever the outcome (as Synapse does).
	var known bool
	err := a.DB.WithTx(ctx, func(tx *storage.Tx) error {
		var err error
		known, err = tx.TakeNonce(ctx, req.Nonce, a.now().Add(-nonceTTL).UnixMilli())
		return err
	})
	if err != nil {
		return nil, err
	}
	if !known {
		return nil, httpapi.Unknown("unrecognised nonce")
	}
	mac := hmac.New(sha1.New, []byte(secret))
	mac.Write([]byte(req.Nonce + "\x00" + req.Username + "\x00" + req.Password + "\x00"))
	if req.Admin {
		mac.Write([]byte("admin"))
	} else {
		mac.Write([]byte("notadmin"))
	}
	want := mac.Sum(nil)
	got, err := hex.DecodeString(req.MAC)
	if err != nil || !hmac.Equal(want, got) {
		return nil, httpapi.Forbidden("HMAC incorrect")
	}
	localpart := strings.ToLower(req.Username)
	if err := a.Auth.ValidateLocalpart(localpart); err != nil {
		return nil, err
	}
	if err := auth.CheckPasswordPolicy(req.Password, 1); err != nil {
		return nil, err
	}
	hash, err := a.Auth.HashPassword(ctx, req.Password)
	if err != nil {
		return nil, err
	}
	var sess auth.Session
	err = a.DB.WithTx(ctx, func(tx *storage.Tx) error {
		userID, err := a.Auth.CreateAccount(ctx, tx, auth.NewAccount{Localpart: localpart, Admin: req.Admin, DisplayName: req.Displayname}, hash)
		if err != nil {
			return err
		}
		sess, err = a.Auth.IssueSession(ctx, tx, userID, "", "")
		return err
	})
	if err != nil {
		return nil, err
	}
	return map[string]any{"user_id": sess.UserID, "access_token": sess.AccessToken, "device_id": sess.DeviceID, "home_server": a.Config.ServerName}, nil
}
