package clientapi

import (
	"net/http"

	"github.com/rempart-hs/rempart/internal/httpapi"
	"github.com/rempart-hs/rempart/internal/rooms"
)

func (a *API) routesRoomCreate(rt *httpapi.Router) {
	rt.Authed(v3("POST", "/createRoom"), a.postCreateRoom)
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
