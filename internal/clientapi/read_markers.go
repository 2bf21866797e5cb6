package clientapi

import (
	"encoding/json"
	"net/http"

	"github.com/rempart-hs/rempart/internal/httpapi"
	"github.com/rempart-hs/rempart/internal/storage"
)

func (a *API) routesReadMarkers(rt *httpapi.Router) {
	rt.Authed(v3("POST", "/rooms/{roomId}/read_markers"), a.postReadMarkers)
}

// postReadMarkers serves POST /_matrix/client/v3/rooms/{roomId}/read_markers.
// Each of m.fully_read, m.read and m.read.private is optional; all given
// events are checked before anything is stored.
func (a *API) postReadMarkers(r *http.Request) (any, error) {
	ctx := r.Context()
	req := httpapi.RequesterFrom(ctx)
	roomID, err := pathRoomID(r)
	if err != nil {
		return nil, err
	}
	var body map[string]json.RawMessage
	if err := httpapi.DecodeJSON(r, &body); err != nil {
		return nil, err
	}
	if err := a.requireJoined(ctx, roomID, req.UserID); err != nil {
		return nil, err
	}
	type marker struct {
		typ string
		ev  *storage.Event
	}
	var todo []marker
	for _, typ := range []string{markerFullyRead, receiptRead, receiptReadPrivate} {
		raw, ok := body[typ]
		if !ok || string(raw) == "null" {
			continue
		}
		var id string
		if err := json.Unmarshal(raw, &id); err != nil {
			return nil, httpapi.BadJSON("%s must be an event ID", typ)
		}
		ev, err := a.receiptTarget(ctx, roomID, req.UserID, id)
		if err != nil {
			return nil, err
		}
		todo = append(todo, marker{typ, ev})
	}
	for _, m := range todo {
		if err := a.setReceipt(ctx, req.UserID, roomID, m.typ, "", m.ev); err != nil {
			return nil, err
		}
	}
	return struct{}{}, nil
}
