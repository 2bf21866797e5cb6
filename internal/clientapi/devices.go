package clientapi

import (
	"context"
	"errors"
	"net/http"

	"github.com/rempart-hs/rempart/internal/auth"
	"github.com/rempart-hs/rempart/internal/httpapi"
	"github.com/rempart-hs/rempart/internal/storage"
)

func (a *API) routesDevices(rt *httpapi.Router) {
	rt.Authed(v3("GET", "/devices"), a.getDevices)
	rt.Authed(v3("GET", "/devices/{deviceId}"), a.getDevice)
	rt.Authed(v3("PUT", "/devices/{deviceId}"), a.putDevice)
	rt.Authed(v3("DELETE", "/devices/{deviceId}"), a.deleteDevice)
	rt.Authed(v3("POST", "/delete_devices"), a.postDeleteDevices)
}

type deviceJSON struct {
	DeviceID    string  `json:"device_id"`
	DisplayName *string `json:"display_name,omitempty"`
	LastSeenIP  *string `json:"last_seen_ip,omitempty"`
	LastSeenTS  *int64  `json:"last_seen_ts,omitempty"`
}

func toDeviceJSON(d storage.Device) deviceJSON {
	out := deviceJSON{DeviceID: d.DeviceID}
	if d.DisplayName != "" {
		out.DisplayName = &d.DisplayName
	}
	if d.LastSeenIP != "" {
		out.LastSeenIP = &d.LastSeenIP
	}
	if d.LastSeenTS != 0 {
		out.LastSeenTS = &d.LastSeenTS
	}
	return out
}

// getDevices serves GET /_matrix/client/v3/devices.
func (a *API) getDevices(r *http.Request) (any, error) {
	req := httpapi.RequesterFrom(r.Context())
	ds, err := a.DB.ListDevices(r.Context(), req.UserID)
	if err != nil {
		return nil, err
	}
	out := make([]deviceJSON, 0, len(ds))
	for _, d := range ds {
		out = append(out, toDeviceJSON(d))
	}
	return map[string]any{"devices": out}, nil
}

// getDevice serves GET /_matrix/client/v3/devices/{deviceId}.
func (a *API) getDevice(r *http.Request) (any, error) {
	req := httpapi.RequesterFrom(r.Context())
	d, err := a.DB.GetDevice(r.Context(), req.UserID, r.PathValue("deviceId"))
	if errors.Is(err, storage.ErrNotFound) {
		return nil, httpapi.NotFound("unknown device")
	}
	if err != nil {
		return nil, err
	}
	return toDeviceJSON(d), nil
}

// putDevice serves PUT /_matrix/client/v3/devices/{deviceId}.
func (a *API) putDevice(r *http.Request) (any, error) {
	req := httpapi.RequesterFrom(r.Context())
	var body struct {
		DisplayName *string `json:"display_name"`
	}
	if err := httpapi.DecodeJSON(r, &body); err != nil {
		return nil, err
	}
	if body.DisplayName != nil && len(*body.DisplayName) > 255 {
		return nil, httpapi.InvalidParam("display_name too long")
	}
	err := a.DB.WithTx(r.Context(), func(tx *storage.Tx) error {
		if body.DisplayName == nil {
			_, err := a.DB.GetDevice(r.Context(), req.UserID, r.PathValue("deviceId"))
			return err
		}
		return tx.SetDeviceDisplayName(r.Context(), req.UserID, r.PathValue("deviceId"), *body.DisplayName)
	})
	if errors.Is(err, storage.ErrNotFound) {
		return nil, httpapi.NotFound("unknown device")
	}
	return struct{}{}, err
}

// deleteDevice serves DELETE /_matrix/client/v3/devices/{deviceId}
// (behind user-interactive authentication).
func (a *API) deleteDevice(r *http.Request) (any, error) {
	req := httpapi.RequesterFrom(r.Context())
	var body struct {
		Auth *auth.AuthDict `json:"auth"`
	}
	if err := httpapi.DecodeJSON(r, &body); err != nil {
		return nil, err
	}
	id := r.PathValue("deviceId")
	if _, err := a.DB.GetDevice(r.Context(), req.UserID, id); errors.Is(err, storage.ErrNotFound) {
		return nil, httpapi.NotFound("unknown device")
	} else if err != nil {
		return nil, err
	}
	if err := a.Auth.RequirePassword(r.Context(), req.UserID, body.Auth); err != nil {
		return auth.AsResponse(err)
	}
	if err := a.deleteDevices(r, req.UserID, []string{id}); err != nil {
		return nil, err
	}
	return struct{}{}, nil
}

// postDeleteDevices serves POST /_matrix/client/v3/delete_devices.
func (a *API) postDeleteDevices(r *http.Request) (any, error) {
	req := httpapi.RequesterFrom(r.Context())
	var body struct {
		Auth    *auth.AuthDict `json:"auth"`
		Devices []string       `json:"devices"`
	}
	if err := httpapi.DecodeJSON(r, &body); err != nil {
		return nil, err
	}
	if body.Devices == nil {
		return nil, httpapi.MissingParam("missing devices")
	}
	if err := a.Auth.RequirePassword(r.Context(), req.UserID, body.Auth); err != nil {
		return auth.AsResponse(err)
	}
	if err := a.deleteDevices(r, req.UserID, body.Devices); err != nil {
		return nil, err
	}
	return struct{}{}, nil
}

func (a *API) deleteDevices(r *http.Request, userID string, ids []string) error {
	return a.DB.WithTx(r.Context(), func(tx *storage.Tx) error {
		return a.removeDevices(r.Context(), tx, userID, ids)
	})
}

// removeDevices deletes devices with their tokens inside tx and runs the
// device hooks (end-to-end keys, to-device queues) for each. Every path
// that deletes a device (logout, logout/all, password change, device
// deletion, deactivation) goes through it.
func (a *API) removeDevices(ctx context.Context, tx *storage.Tx, userID string, ids []string) error {
	for _, id := range ids {
		if err := tx.DeleteDevice(ctx, userID, id); err != nil {
			return err
		}
		for _, hook := range a.DeviceHooks {
			if err := hook(ctx, tx, userID, id); err != nil {
				return err
			}
		}
	}
	return nil
}

// removeDevicesExcept deletes every device of userID but keep ("" for all).
func (a *API) removeDevicesExcept(ctx context.Context, tx *storage.Tx, userID, keep string) error {
	ids, err := tx.DeleteDevicesExcept(ctx, userID, keep)
	if err != nil {
		return err
	}
	return a.removeDevices(ctx, tx, userID, ids)
}
