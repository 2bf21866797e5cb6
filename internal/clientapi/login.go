package clientapi

import (
	"net/http"

	"github.com/rempart-hs/rempart/internal/auth"
	"github.com/rempart-hs/rempart/internal/httpapi"
	"github.com/rempart-hs/rempart/internal/storage"
)

func (a *API) routesLogin(rt *httpapi.Router) {
	rt.Public(v3("GET", "/login"), a.getLoginFlows)
	rt.Public(v3("POST", "/login"), a.postLogin)
	rt.Authed(v3("POST", "/logout"), a.postLogout)
	rt.Authed(v3("POST", "/logout/all"), a.postLogoutAll)
}

// getLoginFlows serves GET /_matrix/client/v3/login.
func (a *API) getLoginFlows(r *http.Request) (any, error) {
	return map[string]any{"flows": []map[string]any{{"type": "m.login.password"}}}, nil
}

type loginRequest struct {
	Type                     string           `json:"type"`
	Identifier               *auth.Identifier `json:"identifier"`
	User                     string           `json:"user"`
	Password                 string           `json:"password"`
	DeviceID                 string           `json:"device_id"`
	InitialDeviceDisplayName string           `json:"initial_device_display_name"`
	RefreshToken             bool             `json:"refresh_token"`
}

// postLogin serves POST /_matrix/client/v3/login. Failed logins never
// reveal whether the account exists.
func (a *API) postLogin(r *http.Request) (any, error) {
	var req loginRequest
	if err := httpapi.DecodeJSON(r, &req); err != nil {
		return nil, err
	}
	if req.Type != "m.login.password" {
		return nil, httpapi.Unknown("unsupported login type %q", req.Type)
	}
	user := req.User
	if req.Identifier != nil {
		if req.Identifier.Type != "m.id.user" {
			return nil, httpapi.Unknown("unsupported identifier type %q", req.Identifier.Type)
		}
		user = req.Identifier.User
	}
	if user == "" {
		return nil, httpapi.MissingParam("missing user identifier")
	}
	if len(req.DeviceID) > 255 || len(req.InitialDeviceDisplayName) > 255 {
		return nil, httpapi.InvalidParam("device_id or display name too long")
	}
	u, err := a.Auth.VerifyLogin(r.Context(), auth.LocalpartOf(user, a.Config.ServerName), req.Password)
	if err != nil {
		return nil, err
	}
	var sess auth.Session
	err = a.DB.WithTx(r.Context(), func(tx *storage.Tx) error {
		var err error
		if req.DeviceID != "" {
			// A dehydrated device (MSC3814) has no access token, ever: its
			// keys and messages are only for the client that rehydrates it.
			if d, derr := tx.DehydratedDevice(r.Context(), u.UserID); derr == nil && d.DeviceID == req.DeviceID {
				return httpapi.Forbidden("device %s is a dehydrated device; log in with another device ID", req.DeviceID)
			}
			// Logging in again with a known device ID replaces its tokens.
			if _, derr := a.DB.GetDevice(r.Context(), u.UserID, req.DeviceID); derr == nil {
				if err := tx.DeleteDeviceTokens(r.Context(), u.UserID, req.DeviceID); err != nil {
					return err
				}
			}
		}
		sess, err = a.Auth.IssueSession(r.Context(), tx, u.UserID, req.DeviceID, req.InitialDeviceDisplayName)
		return err
	})
	if err != nil {
		return nil, err
	}
	return map[string]any{
		"user_id":      sess.UserID,
		"access_token": sess.AccessToken,
		"device_id":    sess.DeviceID,
		"home_server":  a.Config.ServerName,
		"well_known":   map[string]any{"m.homeserver": map[string]string{"base_url": a.Config.PublicBaseURL}},
	}, nil
}

// postLogout serves POST /_matrix/client/v3/logout: the device and its
// tokens are deleted.
func (a *API) postLogout(r *http.Request) (any, error) {
	req := httpapi.RequesterFrom(r.Context())
	err := a.DB.WithTx(r.Context(), func(tx *storage.Tx) error {
		return a.removeDevices(r.Context(), tx, req.UserID, []string{req.DeviceID})
	})
	return struct{}{}, err
}

// postLogoutAll serves POST /_matrix/client/v3/logout/all.
func (a *API) postLogoutAll(r *http.Request) (any, error) {
	req := httpapi.RequesterFrom(r.Context())
	err := a.DB.WithTx(r.Context(), func(tx *storage.Tx) error {
		return a.removeDevicesExcept(r.Context(), tx, req.UserID, "")
	})
	return struct{}{}, err
}
