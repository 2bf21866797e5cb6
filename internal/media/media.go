// Package media is the content repository: authenticated uploads and
// downloads, thumbnails, quotas, and antivirus scanning.
package media

import (
	"github.com/rempart-hs/rempart/internal/config"
	"github.com/rempart-hs/rempart/internal/httpapi"
	"github.com/rempart-hs/rempart/internal/storage"
)

// Service serves the media endpoints.
type Service struct {
	cfg *config.Config
	db  *storage.DB
}

// New returns the media service.
func New(cfg *config.Config, db *storage.DB) (*Service, error) {
	return &Service{cfg: cfg, db: db}, nil
}

// Register adds the media endpoints to the router.
func (s *Service) Register(rt *httpapi.Router) {}

// Close releases background workers.
func (s *Service) Close() {}
