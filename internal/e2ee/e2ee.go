// Package e2ee stores and routes end-to-end encryption material: device
// keys, one-time and fallback keys, cross-signing keys and signatures,
// to-device messages, server-side key backups and dehydrated devices
// (MSC3814). The server never sees plaintext; it checks every signature it
// can check before storing a key, so that a key it serves is one its owner
// really published.
package e2ee

import (
	"context"
	"log/slog"
	"net/http"
	"strings"
	"time"

	"github.com/rempart-hs/rempart/internal/auth"
	"github.com/rempart-hs/rempart/internal/httpapi"
	"github.com/rempart-hs/rempart/internal/notifier"
	"github.com/rempart-hs/rempart/internal/storage"
)

// Service serves the end-to-end encryption endpoints.
type Service struct {
	db       *storage.DB
	notifier *notifier.Notifier
	auth     *auth.Service
	now      func() time.Time
}

// New returns the service; a is used for user-interactive authentication.
func New(db *storage.DB, n *notifier.Notifier, a *auth.Service) *Service {
	return &Service{db: db, notifier: n, auth: a, now: time.Now}
}

func v3(method, path string) string { return method + " /_matrix/client/v3" + path }

// Register adds the endpoints to the router.
func (s *Service) Register(rt *httpapi.Router) {
	rt.Authed(v3("POST", "/keys/upload"), s.postKeysUpload)
	rt.Authed(v3("POST", "/keys/query"), s.postKeysQuery)
	rt.Authed(v3("POST", "/keys/claim"), s.postKeysClaim)
	rt.Authed(v3("GET", "/keys/changes"), s.getKeysChanges)
	rt.Authed(v3("POST", "/keys/device_signing/upload"), s.postDeviceSigningUpload)
	rt.Authed(v3("POST", "/keys/signatures/upload"), s.postSignaturesUpload)
	rt.Authed(v3("PUT", "/sendToDevice/{eventType}/{txnId}"), s.putSendToDevice)
	s.routesBackup(rt)
	s.routesDehydrated(rt)
}

// DeviceDeleted removes a deleted device's keys and to-device queue inside
// the deleting transaction, and tells the users who share a room with its
// owner that the device list changed.
func (s *Service) DeviceDeleted(ctx context.Context, tx *storage.Tx, userID, deviceID string) error {
	if err := tx.DeleteDeviceE2EE(ctx, userID, deviceID); err != nil {
		return err
	}
	return s.deviceListChanged(ctx, tx, userID)
}

// deviceListChanged records a change of userID's devices or keys and, once
// the transaction commits, wakes the syncs that must learn about it.
func (s *Service) deviceListChanged(ctx context.Context, tx *storage.Tx, userID string) error {
	if _, err := tx.AddDeviceListChange(ctx, userID); err != nil {
		return err
	}
	tx.AfterCommit(func() { s.wakeSharers(userID) })
	return nil
}

// wakeSharers wakes userID and every user who shares a room with them.
func (s *Service) wakeSharers(userID string) {
	users, err := s.db.UsersSharingRooms(context.Background(), userID)
	if err != nil {
		slog.Warn("e2ee: list users sharing rooms", "err", err)
	}
	s.notifier.WakeUsers(append(users, userID)...)
}

// serverOf returns the server name part of a user ID.
func serverOf(userID string) string {
	_, srv, _ := strings.Cut(userID, ":")
	return srv
}

// isLocal reports whether userID is on the same server as the requester.
func isLocal(req *httpapi.Requester, userID string) bool {
	return strings.HasPrefix(userID, "@") && serverOf(userID) == serverOf(req.UserID)
}

// invalidSignature is the spec's M_INVALID_SIGNATURE error.
func invalidSignature(format string, args ...any) *httpapi.Error {
	e := httpapi.BadJSON(format, args...)
	e.Code = "M_INVALID_SIGNATURE"
	return e
}

// decode reads a JSON body into v.
func decode(r *http.Request, v any) error { return httpapi.DecodeJSON(r, v) }
