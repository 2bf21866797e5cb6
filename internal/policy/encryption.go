package policy

import (
	"context"
	"encoding/json"
	"errors"

	"github.com/rempart-hs/rempart/internal/httpapi"
	"github.com/rempart-hs/rempart/internal/rooms"
	"github.com/rempart-hs/rempart/internal/storage"
)

// checkEncryption keeps encrypted rooms encrypted: once a room has an
// m.room.encryption state event with an algorithm, a new one must keep
// that algorithm (no removal, no downgrade), and the event cannot be
// redacted (redaction would strip its algorithm).
func (p *Policy) checkEncryption(ctx context.Context, req *rooms.SendRequest) error {
	switch req.Type {
	case "m.room.encryption":
		if req.StateKey == nil || *req.StateKey != "" {
			return nil
		}
		cur, err := p.db.CurrentState(ctx, req.RoomID, []storage.StateKeyTuple{{Type: "m.room.encryption", StateKey: ""}})
		if err != nil || len(cur) == 0 {
			return err
		}
		alg := rooms.ContentField(&cur[0], "algorithm")
		if alg == "" {
			return nil
		}
		var c struct {
			Algorithm any `json:"algorithm"`
		}
		_ = json.Unmarshal(req.Content, &c)
		if s, _ := c.Algorithm.(string); s != alg {
			return httpapi.Forbidden("this room is encrypted: encryption cannot be removed or changed")
		}
	case "m.room.redaction":
		target := req.Redacts
		if target == "" {
			var c struct {
				Redacts string `json:"redacts"`
			}
			_ = json.Unmarshal(req.Content, &c)
			target = c.Redacts
		}
		if target == "" {
			return nil
		}
		ev, err := p.db.GetEvent(ctx, target)
		if errors.Is(err, storage.ErrNotFound) {
			return nil
		}
		if err != nil {
			return err
		}
		if ev.RoomID == req.RoomID && ev.Type == "m.room.encryption" && ev.StateKey != nil && *ev.StateKey == "" {
			return httpapi.Forbidden("the encryption settings of a room cannot be redacted")
		}
	}
	return nil
}
