package rooms

import (
	"context"
	"encoding/json"
	"errors"

	"github.com/matrix-org/gomatrixserverlib/spec"

	"github.com/rempart-hs/rempart/internal/httpapi"
	"github.com/rempart-hs/rempart/internal/storage"
)

// MembershipRequest changes a user's membership in a room.
type MembershipRequest struct {
	RoomID     string
	Sender     string
	Target     string
	Membership string // join, invite, leave, ban, knock
	Reason     string
	IsDirect   bool
	// Extra content keys from the client (e.g. for join: unsigned-safe keys).
	Extra map[string]any
}

// ChangeMembership sends the m.room.member event for a join, invite,
// leave, kick, ban, unban or knock. The spec's authorisation rules decide
// whether it is allowed; a join under a restricted join rule is first
// checked against the rule's allow list and authorised by a local member.
func (e *Engine) ChangeMembership(ctx context.Context, req MembershipRequest) (Sent, error) {
	if _, err := spec.NewUserID(req.Target, true); err != nil {
		return Sent{}, httpapi.InvalidParam("invalid user ID %q", req.Target)
	}
	if _, err := e.db.GetRoom(ctx, req.RoomID); errors.Is(err, storage.ErrNotFound) {
		if req.Membership == "join" {
			return Sent{}, httpapi.NotFound("no known servers for this room")
		}
		return Sent{}, httpapi.NotFound("unknown room")
	} else if err != nil {
		return Sent{}, err
	}
	if req.Membership == "invite" || req.Membership == "ban" || req.Membership == "leave" && req.Target != req.Sender {
		if _, err := e.db.GetUser(ctx, req.Target); err != nil && req.Membership == "invite" {
			if errors.Is(err, storage.ErrNotFound) {
				return Sent{}, httpapi.NotFound("unknown user %s", req.Target)
			}
			return Sent{}, err
		}
	}
	if req.Membership == "join" && req.Sender == req.Target {
		extra, err := e.restrictedJoinContent(ctx, req.RoomID, req.Target)
		if err != nil {
			return Sent{}, err
		}
		for k, v := range extra {
			if req.Extra == nil {
				req.Extra = map[string]any{}
			}
			req.Extra[k] = v
		}
	}
	content, err := e.memberContent(ctx, req.Target, req.Membership, req.Reason, req.IsDirect)
	if err != nil {
		return Sent{}, err
	}
	if req.Membership == "join" {
		for k, v := range req.Extra {
			if _, set := content[k]; !set {
				content[k] = v
			}
		}
	}
	b, _ := json.Marshal(content)
	target := req.Target
	return e.Send(ctx, SendRequest{RoomID: req.RoomID, Sender: req.Sender, Type: spec.MRoomMember, StateKey: &target, Content: b})
}
