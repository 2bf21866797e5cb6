package clientapi

import (
	"net/http"

	"github.com/rempart-hs/rempart/internal/httpapi"
	"github.com/rempart-hs/rempart/internal/rooms"
)

func (a *API) routesRoomCreate(rt *httpapi.Router) {
	rt.Authed(v3("POST", "/createRoom"), a.postCreateRoom)
	rt.Authed(v3("POST", "/rooms/{roomId}/upgrade"), a.postUpgradeRoom)
}

// postCreateRoom serves POST /_matrix/client/v3/createRoom.
func (a *API) postCreateRoom(r *http.Request) (any, error) {
	req := httpapi.RequesterFrom(r.Context())
	if req.IsGuest {
		return nil, httpapi.GuestAccessForbidden("guests may not create rooms")
	}
	var body rooms.CreateRequest
	if err := httpapi.DecodeJSON(r, &body); err != nil {
		return nil, err
	}
	body.Creator = req.UserID
	roomID, err := a.Rooms.Create(r.Context(), body)
	if err != nil {
		return nil, err
	}
	return map[string]string{"room_id": roomID}, nil
}

type upgradeRequest struct {
	NewVersion         string   `json:"new_version"`
	AdditionalCreators []string `json:"additional_creators"`
}

// postUpgradeRoom serves POST /_matrix/client/v3/rooms/{roomId}/upgrade.
func (a *API) postUpgradeRoom(r *http.Request) (any, error) {
	req := httpapi.RequesterFrom(r.Context())
	roomID, err := pathRoomID(r)
	if err != nil {
		return nil, err
	}
	var body upgradeRequest
	if err := httpapi.DecodeJSON(r, &body); err != nil {
		return nil, err
	}
	if body.NewVersion == "" {
		return nil, httpapi.MissingParam("missing new_version")
	}
	if len(body.AdditionalCreators) > 100 {
		return nil, httpapi.InvalidParam("too many additional_creators")
	}
	if req.IsGuest {
		return nil, httpapi.GuestAccessForbidden("guests may not upgrade rooms")
	}
	newID, err := a.Rooms.Upgrade(r.Context(), rooms.UpgradeRequest{RoomID: roomID, Sender: req.UserID, NewVersion: body.NewVersion, AdditionalCreators: body.AdditionalCreators})
	if err != nil {
		return nil, err
	}
	return map[string]string{"replacement_room": newID}, nil
}
