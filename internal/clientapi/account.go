package clientapi

import (
	"net/http"

	"github.com/rempart-hs/rempart/internal/auth"
	"github.com/rempart-hs/rempart/internal/httpapi"
	"github.com/rempart-hs/rempart/internal/storage"
)

func (a *API) routesAccount(rt *httpapi.Router) {
	rt.Authed(v3("GET", "/account/whoami"), a.getWhoami)
	rt.Authed(v3("POST", "/account/password"), a.postPassword)
	rt.Authed(v3("POST", "/account/deactivate"), a.postDeactivate)
	rt.Authed(v3("GET", "/account/3pid"), a.get3PIDs)
}

// getWhoami serves GET /_matrix/client/v3/account/whoami.
func (a *API) getWhoami(r *http.Request) (any, error) {
	req := httpapi.RequesterFrom(r.Context())
	resp := map[string]any{"user_id": req.UserID, "device_id": req.DeviceID}
	if req.IsGuest {
		resp["is_guest"] = true
	}
	return resp, nil
}

type passwordRequest struct {
	Auth          *auth.AuthDict `json:"auth"`
	NewPassword   string         `json:"new_password"`
	LogoutDevices *bool          `json:"logout_devices"`
}

// postPassword serves POST /_matrix/client/v3/account/password (behind
// user-interactive authentication). Other devices are logged out unless
// logout_devices is false.
func (a *API) postPassword(r *http.Request) (any, error) {
	ctx := r.Context()
	req := httpapi.RequesterFrom(ctx)
	var body passwordRequest
	if err := httpapi.DecodeJSON(r, &body); err != nil {
		return nil, err
	}
	if err := a.Auth.RequirePassword(ctx, req.UserID, body.Auth); err != nil {
		return auth.AsResponse(err)
	}
	if body.NewPassword == "" {
		return nil, httpapi.MissingParam("missing new_password")
	}
	if err := auth.CheckPasswordPolicy(body.NewPassword, a.Config.Registration.PasswordMinLength); err != nil {
		return nil, err
	}
	hash, err := a.Auth.HashPassword(ctx, body.NewPassword)
	if err != nil {
		return nil, err
	}
	err = a.DB.WithTx(ctx, func(tx *storage.Tx) error {
		if err := tx.SetPasswordHash(ctx, req.UserID, hash); err != nil {
			return err
		}
		if body.LogoutDevices == nil || *body.LogoutDevices {
			return a.removeDevicesExcept(ctx, tx, req.UserID, req.DeviceID)
		}
		return nil
	})
	return struct{}{}, err
}

type deactivateRequest struct {
	Auth  *auth.AuthDict `json:"auth"`
	Erase bool           `json:"erase"`
}

// postDeactivate serves POST /_matrix/client/v3/account/deactivate: the
// account leaves every room, loses its devices, and can never log in again.
func (a *API) postDeactivate(r *http.Request) (any, error) {
	ctx := r.Context()
	req := httpapi.RequesterFrom(ctx)
	var body deactivateRequest
	if err := httpapi.DecodeJSON(r, &body); err != nil {
		return nil, err
	}
	if err := a.Auth.RequirePassword(ctx, req.UserID, body.Auth); err != nil {
		return auth.AsResponse(err)
	}
	if err := a.leaveAllRooms(ctx, req.UserID); err != nil {
		return nil, err
	}
	err := a.DB.WithTx(ctx, func(tx *storage.Tx) error {
		if err := a.removeDevicesExcept(ctx, tx, req.UserID, ""); err != nil {
			return err
		}
		return tx.DeactivateUser(ctx, req.UserID)
	})
	if err != nil {
		return nil, err
	}
	return map[string]string{"id_server_unbind_result": "no-support"}, nil
}

// get3PIDs serves GET /_matrix/client/v3/account/3pid (Rempart binds no
// third-party identifiers yet).
func (a *API) get3PIDs(r *http.Request) (any, error) {
	return map[string]any{"threepids": []any{}}, nil
}
