// Package e2ee stores and routes end-to-end encryption material: device
// keys, one-time and fallback keys, cross-signing keys and signatures,
// to-device messages and server-side key backups. The server never sees
// plaintext.
package e2ee

import (
	"context"

	"github.com/rempart-hs/rempart/internal/httpapi"
	"github.com/rempart-hs/rempart/internal/notifier"
	"github.com/rempart-hs/rempart/internal/storage"
	"github.com/rempart-hs/rempart/internal/syncapi"
)

// Service serves the end-to-end encryption endpoints.
type Service struct {
	db       *storage.DB
	notifier *notifier.Notifier
}

// New returns the service.
func New(db *storage.DB, n *notifier.Notifier) *Service { return &Service{db: db, notifier: n} }

// Register adds the endpoints to the router.
func (s *Service) Register(rt *httpapi.Router) {}

// DeviceDeleted removes a deleted device's keys and to-device queue inside
// the deleting transaction.
func (s *Service) DeviceDeleted(ctx context.Context, tx *storage.Tx, userID, deviceID string) error {
	return nil
}

// Positions implements syncapi.Extension.
func (s *Service) Positions(ctx context.Context, now *syncapi.Token) error { return nil }

// Fill implements syncapi.Extension.
func (s *Service) Fill(ctx context.Context, req *httpapi.Requester, since *syncapi.Token, now syncapi.Token, resp *syncapi.Response) error {
	return nil
}
