package e2ee

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"strconv"
	"strings"
	"unicode"
	"unicode/utf8"

	"github.com/rempart-hs/rempart/internal/httpapi"
	"github.com/rempart-hs/rempart/internal/storage"
)

// Dehydrated devices (MSC3814). A user has at most one: a device with no
// access token, created with its keys in one request, that receives
// to-device messages (room keys) while the user has no client running. A
// new client of the user fetches device_data (encrypted with a key kept in
// secret storage), rehydrates the device locally and reads its queued
// to-device messages through the events endpoint.

// Bounds on dehydrated devices.
const (
	maxDehydratedDataBytes = 65536 // device_data, as JSON
	maxDehydratedEvents    = 100   // to-device messages per events page
	maxDeviceIDLen         = 255
	maxDisplayNameLen      = 255
)

// dehydratedTokenPrefix starts every next_batch token of the events
// endpoint; the rest is a to_device stream position.
const dehydratedTokenPrefix = "dh"

func msc3814(method, path string) string {
	return method + " /_matrix/client/unstable/org.matrix.msc3814.v1" + path
}

// routesDehydrated registers the MSC3814 endpoints.
func (s *Service) routesDehydrated(rt *httpapi.Router) {
	rt.Authed(msc3814("PUT", "/dehydrated_device"), s.putDehydratedDevice)
	rt.Authed(msc3814("GET", "/dehydrated_device"), s.getDehydratedDevice)
	rt.Authed(msc3814("DELETE", "/dehydrated_device"), s.deleteDehydratedDevice)
	rt.Authed(msc3814("POST", "/dehydrated_device/{deviceId}/events"), s.postDehydratedDeviceEvents)
}

// dehydratedDeviceRequest is the body of PUT /dehydrated_device.
type dehydratedDeviceRequest struct {
	DeviceID                 *string                    `json:"device_id"`
	DeviceData               json.RawMessage            `json:"device_data"`
	InitialDeviceDisplayName *string                    `json:"initial_device_display_name"`
	DeviceKeys               json.RawMessage            `json:"device_keys"`
	OneTimeKeys              map[string]json.RawMessage `json:"one_time_keys"`
	FallbackKeys             map[string]json.RawMessage `json:"fallback_keys"`
}

// validDeviceID reports whether id can name a device: not empty, bounded,
// UTF-8 without control characters. (MSC3814 makes it the device's
// curve25519 key in unpadded base64, which clients choose.)
func validDeviceID(id string) bool {
	if id == "" || len(id) > maxDeviceIDLen || !utf8.ValidString(id) {
		return false
	}
	return !strings.ContainsFunc(id, unicode.IsControl)
}

// checkDeviceData validates device_data: a bounded JSON object with a
// string algorithm; the rest is opaque to the server.
func checkDeviceData(raw json.RawMessage) error {
	if len(raw) == 0 || string(raw) == "null" {
		return httpapi.MissingParam("missing device_data")
	}
	if len(raw) > maxDehydratedDataBytes {
		return httpapi.TooLarge("device_data exceeds %d bytes", maxDehydratedDataBytes)
	}
	var obj map[string]json.RawMessage
	if err := json.Unmarshal(raw, &obj); err != nil || obj == nil {
		return httpapi.BadJSON("device_data must be a JSON object")
	}
	var alg string
	if err := json.Unmarshal(obj["algorithm"], &alg); err != nil {
		return httpapi.BadJSON("device_data.algorithm must be a string")
	}
	if alg == "" || len(alg) > 255 {
		return httpapi.InvalidParam("invalid device_data.algorithm")
	}
	return nil
}

// putDehydratedDevice serves PUT /_matrix/client/unstable/org.matrix.msc3814.v1/dehydrated_device.
// It creates the user's dehydrated device with its keys, checked as
// /keys/upload checks them, replacing (and deleting with its keys and
// to-device queue) any previous one.
func (s *Service) putDehydratedDevice(r *http.Request) (any, error) {
	ctx := r.Context()
	req := httpapi.RequesterFrom(ctx)
	var body dehydratedDeviceRequest
	if err := decode(r, &body); err != nil {
		return nil, err
	}
	if body.DeviceID == nil {
		return nil, httpapi.MissingParam("missing device_id")
	}
	deviceID := *body.DeviceID
	if !validDeviceID(deviceID) {
		return nil, httpapi.InvalidParam("invalid device_id")
	}
	if err := checkDeviceData(body.DeviceData); err != nil {
		return nil, err
	}
	var displayName string
	if body.InitialDeviceDisplayName != nil {
		displayName = *body.InitialDeviceDisplayName
		if len(displayName) > maxDisplayNameLen {
			return nil, httpapi.InvalidParam("initial_device_display_name too long")
		}
	}
	// MSC3814 makes device_keys required, so that every dehydrated device
	// can be encrypted to.
	if len(body.DeviceKeys) == 0 || string(body.DeviceKeys) == "null" {
		return nil, httpapi.MissingParam("missing device_keys")
	}
	if len(body.OneTimeKeys) > maxKeysPerUpload {
		return nil, httpapi.InvalidParam("at most %d one-time keys per upload", maxKeysPerUpload)
	}
	if len(body.FallbackKeys) > len(oneTimeKeyAlgorithms) {
		return nil, httpapi.InvalidParam("at most one fallback key per algorithm")
	}
	// The keys are checked as if the dehydrated device uploaded them.
	dev := &httpapi.Requester{UserID: req.UserID, DeviceID: deviceID}
	ed, err := checkDeviceKeys(dev, body.DeviceKeys)
	if err != nil {
		return nil, err
	}
	// The flag is covered by the device's signature, so the server cannot
	// add it: it must be there for /keys/query to mark the device.
	var flag struct {
		Dehydrated *bool `json:"dehydrated"`
	}
	if json.Unmarshal(body.DeviceKeys, &flag) != nil || flag.Dehydrated == nil || !*flag.Dehydrated {
		return nil, httpapi.InvalidParam(`device_keys of a dehydrated device must contain "dehydrated": true`)
	}
	otks, err := checkOneTimeKeys(dev, body.OneTimeKeys, ed, false)
	if err != nil {
		return nil, err
	}
	fbks, err := checkOneTimeKeys(dev, body.FallbackKeys, ed, true)
	if err != nil {
		return nil, err
	}
	now := s.now().UnixMilli()
	err = s.db.WithTx(ctx, func(tx *storage.Tx) error {
		if _, err := tx.LockUser(ctx, req.UserID); err != nil {
			return err
		}
		old, err := tx.DehydratedDevice(ctx, req.UserID)
		switch {
		case err == nil:
			if err := s.deleteDehydrated(ctx, tx, old); err != nil {
				return err
			}
		case !errors.Is(err, storage.ErrNotFound):
			return err
		}
		// A device ID in use by another device would hand that device's
		// keys and messages over.
		if inUse, err := tx.DeviceExists(ctx, req.UserID, deviceID); err != nil {
			return err
		} else if inUse {
			return httpapi.InvalidParam("device_id is already used by another device")
		}
		if err := tx.UpsertDevice(ctx, storage.Device{UserID: req.UserID, DeviceID: deviceID, DisplayName: displayName, CreatedTS: now}); err != nil {
			return err
		}
		if err := tx.PutDehydratedDevice(ctx, storage.DehydratedDevice{UserID: req.UserID, DeviceID: deviceID, DeviceData: body.DeviceData, CreatedTS: now}); err != nil {
			return err
		}
		if _, err := tx.PutDeviceKeys(ctx, req.UserID, deviceID, body.DeviceKeys, ed, now); err != nil {
			return err
		}
		for _, k := range otks {
			if err := tx.AddOneTimeKey(ctx, req.UserID, deviceID, k.algorithm, k.keyID, k.json); err != nil {
				return err
			}
		}
		for _, k := range fbks {
			if err := tx.PutFallbackKey(ctx, req.UserID, deviceID, k.algorithm, k.keyID, k.json); err != nil {
				return err
			}
		}
		return s.deviceListChanged(ctx, tx, req.UserID)
	})
	if err != nil {
		return nil, err
	}
	return map[string]string{"device_id": deviceID}, nil
}

// deleteDehydrated deletes a dehydrated device with its keys, its
// to-device queue and its mark, inside tx. The caller records the
// device-list change.
func (s *Service) deleteDehydrated(ctx context.Context, tx *storage.Tx, d storage.DehydratedDevice) error {
	if err := tx.DeleteDevice(ctx, d.UserID, d.DeviceID); err != nil {
		return err
	}
	return tx.DeleteDeviceE2EE(ctx, d.UserID, d.DeviceID)
}

// getDehydratedDevice serves GET /_matrix/client/unstable/org.matrix.msc3814.v1/dehydrated_device.
func (s *Service) getDehydratedDevice(r *http.Request) (any, error) {
	req := httpapi.RequesterFrom(r.Context())
	d, err := s.db.DehydratedDevice(r.Context(), req.UserID)
	if errors.Is(err, storage.ErrNotFound) {
		return nil, httpapi.NotFound("no dehydrated device")
	}
	if err != nil {
		return nil, err
	}
	return map[string]any{"device_id": d.DeviceID, "device_data": d.DeviceData}, nil
}

// deleteDehydratedDevice serves DELETE /_matrix/client/unstable/org.matrix.msc3814.v1/dehydrated_device.
// Unlike DELETE /devices/{deviceId}, it needs no user-interactive
// authentication.
func (s *Service) deleteDehydratedDevice(r *http.Request) (any, error) {
	ctx := r.Context()
	req := httpapi.RequesterFrom(ctx)
	var deviceID string
	err := s.db.WithTx(ctx, func(tx *storage.Tx) error {
		if _, err := tx.LockUser(ctx, req.UserID); err != nil {
			return err
		}
		d, err := tx.DehydratedDevice(ctx, req.UserID)
		if errors.Is(err, storage.ErrNotFound) {
			return httpapi.NotFound("no dehydrated device")
		}
		if err != nil {
			return err
		}
		deviceID = d.DeviceID
		if err := s.deleteDehydrated(ctx, tx, d); err != nil {
			return err
		}
		return s.deviceListChanged(ctx, tx, req.UserID)
	})
	if err != nil {
		return nil, err
	}
	return map[string]string{"device_id": deviceID}, nil
}

// postDehydratedDeviceEvents serves POST /_matrix/client/unstable/org.matrix.msc3814.v1/dehydrated_device/{deviceId}/events.
// It pages through the to-device messages queued for the caller's
// dehydrated device, oldest first. As MSC3814 asks, paging deletes
// nothing: an interrupted rehydration can start over; the messages go
// with the device when it is deleted or replaced.
func (s *Service) postDehydratedDeviceEvents(r *http.Request) (any, error) {
	ctx := r.Context()
	req := httpapi.RequesterFrom(ctx)
	var body struct {
		NextBatch *string `json:"next_batch"`
	}
	if err := decode(r, &body); err != nil {
		return nil, err
	}
	var since int64
	if body.NextBatch != nil {
		n, err := strconv.ParseInt(strings.TrimPrefix(*body.NextBatch, dehydratedTokenPrefix), 10, 64)
		if !strings.HasPrefix(*body.NextBatch, dehydratedTokenPrefix) || err != nil || n < 0 {
			return nil, httpapi.InvalidParam("invalid next_batch")
		}
		since = n
	}
	d, err := s.db.DehydratedDevice(ctx, req.UserID)
	if errors.Is(err, storage.ErrNotFound) {
		return nil, httpapi.Forbidden("you have no dehydrated device")
	}
	if err != nil {
		return nil, err
	}
	if d.DeviceID != r.PathValue("deviceId") {
		return nil, httpapi.Forbidden("you may only read the messages of your own dehydrated device")
	}
	upTo, err := s.db.StreamPos(ctx, "to_device")
	if err != nil {
		return nil, err
	}
	msgs, err := s.db.ToDeviceMessagesBetween(ctx, req.UserID, d.DeviceID, since, upTo, maxDehydratedEvents)
	if err != nil {
		return nil, err
	}
	evs := make([]map[string]any, 0, len(msgs))
	next := since
	for _, m := range msgs {
		evs = append(evs, map[string]any{"sender": m.Sender, "type": m.Type, "content": m.Content})
		next = m.StreamPos
	}
	return map[string]any{"events": evs, "next_batch": dehydratedTokenPrefix + strconv.FormatInt(next, 10)}, nil
}
