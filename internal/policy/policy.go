// Package policy holds Rempart's authorisation policy: who may do what to
// whom beyond the Matrix spec's own rules. Every such decision is made here,
// in one place per concern, not in handlers.
package policy

import (
	"context"

	"github.com/rempart-hs/rempart/internal/config"
	"github.com/rempart-hs/rempart/internal/httpapi"
	"github.com/rempart-hs/rempart/internal/rooms"
	"github.com/rempart-hs/rempart/internal/storage"
)

// Policy implements rooms.Policy.
type Policy struct {
	db  *storage.DB
	cfg *config.Config
}

// New returns the policy for a configuration.
func New(db *storage.DB, cfg *config.Config) *Policy { return &Policy{db: db, cfg: cfg} }

// CheckSend is called before any event is built. Today it enforces that
// only local users send events through the client API; external-user
// confinement and encryption rules come with their issues.
func (p *Policy) CheckSend(ctx context.Context, req *rooms.SendRequest) error {
	if req.Sender == "" {
		return httpapi.Forbidden("anonymous events are not allowed")
	}
	if err := p.checkEncryption(ctx, req); err != nil {
		return err
	}
	return nil
}
