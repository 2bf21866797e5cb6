package rooms

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"

	gmsl "github.com/matrix-org/gomatrixserverlib"
	"github.com/matrix-org/gomatrixserverlib/spec"

	"github.com/rempart-hs/rempart/internal/httpapi"
	"github.com/rempart-hs/rempart/internal/storage"
)

// upgradeCopiedState are the state types an upgrade carries to the new
// room (the spec's list, plus the room's other non-membership state that
// clients expect to survive such as pinned events).
var upgradeCopiedState = map[string]bool{
	"m.room.server_acl": true, "m.room.encryption": true, "m.room.name": true, "m.room.avatar": true,
	"m.room.topic": true, "m.room.guest_access": true, "m.room.history_visibility": true,
	spec.MRoomJoinRules: true, "m.room.pinned_events": true, "m.room.canonical_alias": true,
}

// UpgradeRequest is a room upgrade (POST /rooms/{roomId}/upgrade).
type UpgradeRequest struct {
	RoomID             string
	Sender             string
	NewVersion         string
	AdditionalCreators []string
}

// Upgrade replaces a room by a new one of another version: the new room's
// create event names its predecessor, the relevant state (and bans) is
// copied, local aliases move, the old room gets an m.room.tombstone and
// power levels that stop ordinary members from talking or inviting. The
// sender must be allowed to send the tombstone. It returns the new room's ID.
func (e *Engine) Upgrade(ctx context.Context, req UpgradeRequest) (string, error) {
	if _, ok := SupportedVersions[req.NewVersion]; !ok {
		return "", httpapi.UnsupportedRoomVersion("room version %q is not supported", req.NewVersion)
	}
	for _, u := range req.AdditionalCreators {
		if _, err := spec.NewUserID(u, true); err != nil {
			return "", httpapi.InvalidParam("invalid user ID in additional_creators: %q", u)
		}
	}
	old, err := e.db.GetRoom(ctx, req.RoomID)
	if errors.Is(err, storage.ErrNotFound) {
		return "", httpapi.NotFound("unknown room")
	}
	if err != nil {
		return "", err
	}
	oldImpl, err := gmsl.GetRoomVersion(gmsl.RoomVersion(old.RoomVersion))
	if err != nil {
		return "", fmt.Errorf("room %s has unknown version %s", old.RoomID, old.RoomVersion)
	}
	newImpl := gmsl.MustGetRoomVersion(gmsl.RoomVersion(req.NewVersion))
	if m, err := e.db.GetMembership(ctx, req.RoomID, req.Sender); err != nil || m.Membership != spec.Join {
		return "", httpapi.Forbidden("you are not joined to this room")
	}
	state, err := e.db.CurrentState(ctx, req.RoomID, nil)
	if err != nil {
		return "", err
	}
	var createEv, plEv gmsl.PDU
	var createContent map[string]any
	plContent := map[string]any{}
	var initial []StateEvent
	var banned []string
	for i := range state {
		ev := &state[i]
		var f struct {
			Content json.RawMessage `json:"content"`
		}
		_ = json.Unmarshal(ev.JSON, &f)
		switch {
		case ev.Type == spec.MRoomCreate:
			if createEv, err = oldImpl.NewEventFromTrustedJSON(ev.JSON, ev.RedactedBy != ""); err != nil {
				return "", err
			}
			_ = json.Unmarshal(f.Content, &createContent)
		case ev.Type == spec.MRoomPowerLevels:
			if plEv, err = oldImpl.NewEventFromTrustedJSON(ev.JSON, ev.RedactedBy != ""); err != nil {
				return "", err
			}
			_ = json.Unmarshal(f.Content, &plContent)
		case ev.Type == spec.MRoomMember:
			if Membership(ev) == spec.Ban {
				banned = append(banned, *ev.StateKey)
			}
		case upgradeCopiedState[ev.Type] && *ev.StateKey == "":
			initial = append(initial, StateEvent{Type: ev.Type, Content: f.Content})
		}
	}
	pl := gmsl.PowerLevelContent{}
	pl.Defaults()
	if plEv != nil {
		if p, err := gmsl.NewPowerLevelContentFromEvent(plEv); err == nil {
			pl = p
		}
	}
	level := userLevel(oldImpl, createEv, pl, req.Sender)
	if level < pl.EventLevel("m.room.tombstone", true) {
		return "", httpapi.Forbidden("you may not upgrade this room")
	}

	// The new room: its create event points back at the old one.
	creation := map[string]any{"predecessor": map[string]any{"room_id": old.RoomID, "event_id": old.LatestEventID}}
	for _, k := range []string{"type", "m.federate"} {
		if v, ok := createContent[k]; ok {
			creation[k] = v
		}
	}
	if newImpl.PrivilegedCreators() && len(req.AdditionalCreators) > 0 {
		creation["additional_creators"] = req.AdditionalCreators
	}
	// Power levels: the old ones, with creators of a v12 room taken out of
	// users (they outrank everyone) and the upgrader made able to send the
	// copied state; the old levels are restored last if that changed them.
	users, _ := plContent["users"].(map[string]any)
	if users == nil {
		users = map[string]any{}
	}
	oldUsers := startUsersWithout(users, "")
	startUsers := map[string]any{}
	for k, v := range users {
		startUsers[k] = v
	}
	restore := false
	if newImpl.PrivilegedCreators() {
		delete(startUsers, req.Sender)
		for _, u := range req.AdditionalCreators {
			delete(startUsers, u)
		}
		users = startUsers
	} else {
		if level >= 100 {
			users[req.Sender] = 100 // a v12 creator's unbounded power becomes 100
		} else {
			restore = true
		}
		startUsers[req.Sender] = 100
	}
	startPL := map[string]any{}
	for k, v := range plContent {
		startPL[k] = v
	}
	startPL["users"] = startUsers
	plContent["users"] = users
	override, _ := json.Marshal(startPL)
	if restore {
		b, _ := json.Marshal(plContent)
		initial = append(initial, StateEvent{Type: spec.MRoomPowerLevels, Content: b})
	}
	cc, _ := json.Marshal(creation)
	newID, err := e.Create(ctx, CreateRequest{
		Creator: req.Sender, RoomVersion: req.NewVersion, Preset: "private_chat",
		CreationContent: cc, PowerLevelContentOverride: override, InitialState: initial,
	})
	if err != nil {
		return "", err
	}
	for _, u := range banned {
		if _, err := e.ChangeMembership(ctx, MembershipRequest{RoomID: newID, Sender: req.Sender, Target: u, Membership: spec.Ban}); err != nil {
			return "", err
		}
	}

	// Local aliases move to the new room.
	aliases, err := e.db.RoomAliases(ctx, old.RoomID)
	if err != nil {
		return "", err
	}
	if len(aliases) > 0 {
		err = e.db.WithTx(ctx, func(tx *storage.Tx) error {
			for _, al := range aliases {
				_, creator, err := e.db.ResolveAlias(ctx, al)
				if err != nil {
					return err
				}
				if err := tx.DeleteAlias(ctx, al); err != nil {
					return err
				}
				if err := tx.AddAlias(ctx, al, newID, creator, e.now().UnixMilli()); err != nil {
					return err
				}
			}
			return nil
		})
		if err != nil {
			return "", err
		}
	}

	// The old room: tombstone, then restricted power levels and no
	// canonical alias.
	tomb, _ := json.Marshal(map[string]string{"body": "This room has been replaced", "replacement_room": newID})
	empty := ""
	if _, err := e.Send(ctx, SendRequest{RoomID: old.RoomID, Sender: req.Sender, Type: "m.room.tombstone", StateKey: &empty, Content: tomb}); err != nil {
		return "", err
	}
	oldPL := map[string]any{}
	for k, v := range plContent {
		oldPL[k] = v
	}
	oldPL["users"] = oldUsers
	restricted := max(int64(50), pl.UsersDefault+1)
	oldPL["events_default"], oldPL["invite"] = restricted, restricted
	if b, err := json.Marshal(oldPL); err == nil {
		if _, err := e.Send(ctx, SendRequest{RoomID: old.RoomID, Sender: req.Sender, Type: spec.MRoomPowerLevels, StateKey: &empty, Content: b}); err != nil && !httpapi.ErrIs(err, "M_FORBIDDEN") {
			return "", err
		}
	}
	if len(aliases) > 0 {
		if _, err := e.Send(ctx, SendRequest{RoomID: old.RoomID, Sender: req.Sender, Type: "m.room.canonical_alias", StateKey: &empty, Content: json.RawMessage("{}")}); err != nil && !httpapi.ErrIs(err, "M_FORBIDDEN") {
			return "", err
		}
	}
	return newID, nil
}

// startUsersWithout copies a power levels users map without one user
// ("" to copy it whole).
func startUsersWithout(users map[string]any, userID string) map[string]any {
	out := make(map[string]any, len(users))
	for k, v := range users {
		if k != userID {
			out[k] = v
		}
	}
	return out
}
