package clientapi

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"strings"

	"github.com/rempart-hs/rempart/internal/httpapi"
	"github.com/rempart-hs/rempart/internal/rooms"
	"github.com/rempart-hs/rempart/internal/storage"
)

func (a *API) routesMembership(rt *httpapi.Router) {
	rt.Authed(v3("POST", "/rooms/{roomId}/join"), a.postJoinRoom)
	rt.Authed(v3("POST", "/join/{roomIdOrAlias}"), a.postJoin)
	rt.Authed(v3("POST", "/knock/{roomIdOrAlias}"), a.postKnock)
	rt.Authed(v3("POST", "/rooms/{roomId}/leave"), a.postMembership("leave", false))
	rt.Authed(v3("POST", "/rooms/{roomId}/invite"), a.postMembership("invite", true))
	rt.Authed(v3("POST", "/rooms/{roomId}/kick"), a.postMembership("leave", true))
	rt.Authed(v3("POST", "/rooms/{roomId}/ban"), a.postMembership("ban", true))
	rt.Authed(v3("POST", "/rooms/{roomId}/unban"), a.postUnban)
	rt.Authed(v3("POST", "/rooms/{roomId}/forget"), a.postForget)
	rt.Authed(v3("GET", "/joined_rooms"), a.getJoinedRooms)
}

type joinRequest struct {
	Reason string `json:"reason"`
}

// postJoinRoom serves POST /_matrix/client/v3/rooms/{roomId}/join.
func (a *API) postJoinRoom(r *http.Request) (any, error) {
	roomID, err := pathRoomID(r)
	if err != nil {
		return nil, err
	}
	return a.join(r, roomID)
}

// postJoin serves POST /_matrix/client/v3/join/{roomIdOrAlias}.
func (a *API) postJoin(r *http.Request) (any, error) {
	roomID, err := a.pathRoomIDOrAlias(r)
	if err != nil {
		return nil, err
	}
	return a.join(r, roomID)
}

// pathRoomIDOrAlias resolves a {roomIdOrAlias} path parameter to a room ID.
func (a *API) pathRoomIDOrAlias(r *http.Request) (string, error) {
	target := r.PathValue("roomIdOrAlias")
	if len(target) > 255 {
		return "", httpapi.InvalidParam("room ID or alias too long")
	}
	switch {
	case strings.HasPrefix(target, "!"):
		return target, nil
	case strings.HasPrefix(target, "#"):
		roomID, _, err := a.DB.ResolveAlias(r.Context(), target)
		if errors.Is(err, storage.ErrNotFound) {
			return "", httpapi.NotFound("room alias %s not found", target)
		}
		return roomID, err
	default:
		return "", httpapi.InvalidParam("expected a room ID or alias")
	}
}

// postKnock serves POST /_matrix/client/v3/knock/{roomIdOrAlias}: a
// request to be invited into a room whose join rule is knock or
// knock_restricted.
func (a *API) postKnock(r *http.Request) (any, error) {
	req := httpapi.RequesterFrom(r.Context())
	roomID, err := a.pathRoomIDOrAlias(r)
	if err != nil {
		return nil, err
	}
	var body joinRequest
	if err := httpapi.DecodeJSON(r, &body); err != nil {
		return nil, err
	}
	if req.IsGuest {
		return nil, httpapi.GuestAccessForbidden("guests may not knock")
	}
	_, err = a.Rooms.ChangeMembership(r.Context(), rooms.MembershipRequest{RoomID: roomID, Sender: req.UserID, Target: req.UserID, Membership: "knock", Reason: body.Reason})
	if err != nil {
		return nil, err
	}
	return map[string]string{"room_id": roomID}, nil
}

func (a *API) join(r *http.Request, roomID string) (any, error) {
	req := httpapi.RequesterFrom(r.Context())
	var body joinRequest
	if err := httpapi.DecodeJSON(r, &body); err != nil {
		return nil, err
	}
	if req.IsGuest {
		if err := a.checkGuestAccess(r.Context(), roomID); err != nil {
			return nil, err
		}
	}
	_, err := a.Rooms.ChangeMembership(r.Context(), rooms.MembershipRequest{RoomID: roomID, Sender: req.UserID, Target: req.UserID, Membership: "join", Reason: body.Reason})
	if err != nil {
		return nil, err
	}
	return map[string]string{"room_id": roomID}, nil
}

// checkGuestAccess refuses guests in rooms without guest_access can_join.
func (a *API) checkGuestAccess(ctx context.Context, roomID string) error {
	evs, err := a.DB.CurrentState(ctx, roomID, []storage.StateKeyTuple{{Type: "m.room.guest_access"}})
	if err != nil {
		return err
	}
	if len(evs) == 0 || rooms.ContentField(&evs[0], "guest_access") != "can_join" {
		return httpapi.GuestAccessForbidden("guests may not join this room")
	}
	return nil
}

type membershipBody struct {
	UserID string `json:"user_id"`
	Reason string `json:"reason"`
}

// postMembership serves leave, invite, kick and ban: the membership to set,
// and whether the body names the target user.
func (a *API) postMembership(membership string, hasTarget bool) httpapi.HandlerFunc {
	return func(r *http.Request) (any, error) {
		req := httpapi.RequesterFrom(r.Context())
		roomID, err := pathRoomID(r)
		if err != nil {
			return nil, err
		}
		var body membershipBody
		if err := httpapi.DecodeJSON(r, &body); err != nil {
			return nil, err
		}
		target := req.UserID
		if hasTarget {
			if body.UserID == "" {
				return nil, httpapi.MissingParam("missing user_id")
			}
			target = body.UserID
		}
		if membership == "leave" && !hasTarget {
			// Leaving a room one is not in is an error; leaving twice is not.
			m, err := a.DB.GetMembership(r.Context(), roomID, req.UserID)
			if errors.Is(err, storage.ErrNotFound) {
				if _, rerr := a.DB.GetRoom(r.Context(), roomID); errors.Is(rerr, storage.ErrNotFound) {
					return nil, httpapi.NotFound("unknown room")
				}
				return nil, httpapi.Forbidden("you are not a member of this room")
			}
			if err != nil {
				return nil, err
			}
			if m.Membership == "leave" || m.Membership == "ban" {
				return struct{}{}, nil
			}
		}
		if membership == "invite" && req.IsGuest {
			return nil, httpapi.GuestAccessForbidden("guests may not invite")
		}
		if membership == "invite" {
			if m, err := a.DB.GetMembership(r.Context(), roomID, target); err == nil && m.Membership == "join" {
				return nil, httpapi.Forbidden("%s is already in the room", target)
			}
		}
		_, err = a.Rooms.ChangeMembership(r.Context(), rooms.MembershipRequest{RoomID: roomID, Sender: req.UserID, Target: target, Membership: membership, Reason: body.Reason})
		if err != nil {
			return nil, err
		}
		return struct{}{}, nil
	}
}

// postUnban serves POST /_matrix/client/v3/rooms/{roomId}/unban.
func (a *API) postUnban(r *http.Request) (any, error) {
	req := httpapi.RequesterFrom(r.Context())
	roomID, err := pathRoomID(r)
	if err != nil {
		return nil, err
	}
	var body membershipBody
	if err := httpapi.DecodeJSON(r, &body); err != nil {
		return nil, err
	}
	if body.UserID == "" {
		return nil, httpapi.MissingParam("missing user_id")
	}
	m, err := a.DB.GetMembership(r.Context(), roomID, body.UserID)
	if err != nil || m.Membership != "ban" {
		if err != nil && !errors.Is(err, storage.ErrNotFound) {
			return nil, err
		}
		return nil, httpapi.Forbidden("%s is not banned", body.UserID)
	}
	_, err = a.Rooms.ChangeMembership(r.Context(), rooms.MembershipRequest{RoomID: roomID, Sender: req.UserID, Target: body.UserID, Membership: "leave", Reason: body.Reason})
	if err != nil {
		return nil, err
	}
	return struct{}{}, nil
}

// postForget serves POST /_matrix/client/v3/rooms/{roomId}/forget.
func (a *API) postForget(r *http.Request) (any, error) {
	req := httpapi.RequesterFrom(r.Context())
	roomID, err := pathRoomID(r)
	if err != nil {
		return nil, err
	}
	m, err := a.DB.GetMembership(r.Context(), roomID, req.UserID)
	if errors.Is(err, storage.ErrNotFound) {
		return nil, httpapi.NotFound("you were never in this room")
	}
	if err != nil {
		return nil, err
	}
	if m.Membership == "join" || m.Membership == "invite" || m.Membership == "knock" {
		return nil, httpapi.Unknown("you must leave the room before forgetting it")
	}
	err = a.DB.WithTx(r.Context(), func(tx *storage.Tx) error { return tx.ForgetRoom(r.Context(), roomID, req.UserID) })
	return struct{}{}, err
}

// getJoinedRooms serves GET /_matrix/client/v3/joined_rooms.
func (a *API) getJoinedRooms(r *http.Request) (any, error) {
	req := httpapi.RequesterFrom(r.Context())
	ms, err := a.DB.UserMemberships(r.Context(), req.UserID)
	if err != nil {
		return nil, err
	}
	ids := []string{}
	for _, m := range ms {
		if m.Membership == "join" {
			ids = append(ids, m.RoomID)
		}
	}
	return map[string]any{"joined_rooms": ids}, nil
}

// leaveAllRooms makes a user leave (or reject invites to) every room.
func (a *API) leaveAllRooms(ctx context.Context, userID string) error {
	ms, err := a.DB.UserMemberships(ctx, userID)
	if err != nil {
		return err
	}
	for _, m := range ms {
		if m.Membership != "join" && m.Membership != "invite" && m.Membership != "knock" {
			continue
		}
		content, _ := json.Marshal(map[string]string{"membership": "leave"})
		uid := userID
		if _, err := a.Rooms.Send(ctx, rooms.SendRequest{RoomID: m.RoomID, Sender: userID, Type: "m.room.member", StateKey: &uid, Content: content}); err != nil {
			return err
		}
	}
	return nil
}
