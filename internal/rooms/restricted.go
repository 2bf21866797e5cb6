package rooms

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"sort"

	gmsl "github.com/matrix-org/gomatrixserverlib"
	"github.com/matrix-org/gomatrixserverlib/spec"

	"github.com/rempart-hs/rempart/internal/httpapi"
	"github.com/rempart-hs/rempart/internal/storage"
)

// joinRulesContent is the content of m.room.join_rules.
type joinRulesContent struct {
	JoinRule string `json:"join_rule"`
	Allow    []struct {
		Type   string `json:"type"`
		RoomID string `json:"room_id"`
	} `json:"allow"`
}

// JoinRule returns a room's current join rule ("invite" when unset, as
// the auth rules assume).
func (e *Engine) JoinRule(ctx context.Context, roomID string) (string, error) {
	jr, err := e.joinRules(ctx, roomID)
	return jr.JoinRule, err
}

func (e *Engine) joinRules(ctx context.Context, roomID string) (joinRulesContent, error) {
	jr := joinRulesContent{JoinRule: "invite"}
	evs, err := e.db.CurrentState(ctx, roomID, []storage.StateKeyTuple{{Type: spec.MRoomJoinRules}})
	if err != nil || len(evs) == 0 {
		return jr, err
	}
	var ev struct {
		Content joinRulesContent `json:"content"`
	}
	if json.Unmarshal(evs[0].JSON, &ev) == nil && ev.Content.JoinRule != "" {
		jr = ev.Content
	}
	return jr, nil
}

// errUnableToGrantJoin is the spec's answer when a user may join a
// restricted room but no member here can authorise it.
func errUnableToGrantJoin() *httpapi.Error {
	return &httpapi.Error{Status: http.StatusBadRequest, Code: "M_UNABLE_TO_GRANT_JOIN",
		Message: "no joined user of this server may invite you into this room"}
}

// restrictedJoinContent decides a join under a restricted or
// knock_restricted join rule (room versions 8 and later). A user already
// joined or invited needs nothing. Otherwise the user must be joined to one
// of the rooms the rule's allow list names, and the join event must name,
// in join_authorised_via_users_server, a joined local user with the power
// to invite; it returns that content key. Other join rules need nothing.
func (e *Engine) restrictedJoinContent(ctx context.Context, roomID, userID string) (map[string]any, error) {
	jr, err := e.joinRules(ctx, roomID)
	if err != nil {
		return nil, err
	}
	if jr.JoinRule != spec.Restricted && jr.JoinRule != spec.KnockRestricted {
		return nil, nil
	}
	if m, err := e.db.GetMembership(ctx, roomID, userID); err == nil && (m.Membership == spec.Join || m.Membership == spec.Invite) {
		return nil, nil
	} else if err != nil && !errors.Is(err, storage.ErrNotFound) {
		return nil, err
	}
	allowed := false
	for _, a := range jr.Allow {
		if a.Type != "m.room_membership" || a.RoomID == "" {
			continue
		}
		m, err := e.db.GetMembership(ctx, a.RoomID, userID)
		if err == nil && m.Membership == spec.Join {
			allowed = true
			break
		}
		if err != nil && !errors.Is(err, storage.ErrNotFound) {
			return nil, err
		}
	}
	if !allowed {
		return nil, httpapi.Forbidden("you are not a member of any room this room's join rule allows")
	}
	via, err := e.localInviter(ctx, roomID)
	if err != nil {
		return nil, err
	}
	if via == "" {
		return nil, errUnableToGrantJoin()
	}
	return map[string]any{"join_authorised_via_users_server": via}, nil
}

// localInviter returns a joined local user of the room with the power to
// invite, preferring the most powerful ("" if there is none).
func (e *Engine) localInviter(ctx context.Context, roomID string) (string, error) {
	room, err := e.db.GetRoom(ctx, roomID)
	if err != nil {
		return "", err
	}
	verImpl, err := gmsl.GetRoomVersion(gmsl.RoomVersion(room.RoomVersion))
	if err != nil {
		return "", fmt.Errorf("room %s has unknown version %s", roomID, room.RoomVersion)
	}
	state, err := e.db.CurrentState(ctx, roomID, []storage.StateKeyTuple{{Type: spec.MRoomCreate}, {Type: spec.MRoomPowerLevels}})
	if err != nil {
		return "", err
	}
	var createEv, plEv gmsl.PDU
	for i := range state {
		pdu, err := verImpl.NewEventFromTrustedJSON(state[i].JSON, state[i].RedactedBy != "")
		if err != nil {
			return "", fmt.Errorf("parse stored event %s: %w", state[i].EventID, err)
		}
		if state[i].Type == spec.MRoomCreate {
			createEv = pdu
		} else {
			plEv = pdu
		}
	}
	pl := gmsl.PowerLevelContent{}
	pl.Defaults()
	if plEv != nil {
		if p, err := gmsl.NewPowerLevelContentFromEvent(plEv); err == nil {
			pl = p
		}
	}
	members, err := e.db.RoomMembers(ctx, roomID, spec.Join)
	if err != nil {
		return "", err
	}
	type candidate struct {
		id    string
		level int64
	}
	var cands []candidate
	for _, m := range members {
		if uid, err := spec.NewUserID(m.UserID, true); err != nil || string(uid.Domain()) != string(e.serverName) {
			continue
		}
		if lvl := userLevel(verImpl, createEv, pl, m.UserID); lvl >= pl.Invite {
			cands = append(cands, candidate{m.UserID, lvl})
		}
	}
	if len(cands) == 0 {
		return "", nil
	}
	sort.Slice(cands, func(i, j int) bool {
		if cands[i].level != cands[j].level {
			return cands[i].level > cands[j].level
		}
		return cands[i].id < cands[j].id
	})
	return cands[0].id, nil
}
