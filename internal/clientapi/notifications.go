package clientapi

import (
	"encoding/json"
	"net/http"
	"strconv"

	"github.com/rempart-hs/rempart/internal/httpapi"
	"github.com/rempart-hs/rempart/internal/rooms"
	"github.com/rempart-hs/rempart/internal/storage"
)

const (
	defaultNotificationsLimit = 20
	maxNotificationsLimit     = 100
)

func (a *API) routesNotifications(rt *httpapi.Router) {
	rt.Authed(v3("GET", "/notifications"), a.getNotifications)
}

type notificationJSON struct {
	Actions json.RawMessage   `json:"actions"`
	Event   rooms.ClientEvent `json:"event"`
	Read    bool              `json:"read"`
	RoomID  string            `json:"room_id"`
	TS      int64             `json:"ts"`
}

// getNotifications serves GET /_matrix/client/v3/notifications: the events
// the user was notified about, newest first, as push rules decided when
// each event was stored.
func (a *API) getNotifications(r *http.Request) (any, error) {
	ctx := r.Context()
	req := httpapi.RequesterFrom(ctx)
	q := r.URL.Query()
	var before int64
	if from := q.Get("from"); from != "" {
		n, err := strconv.ParseInt(from, 10, 64)
		if err != nil || n <= 0 {
			return nil, httpapi.InvalidParam("invalid from token")
		}
		before = n
	}
	limit, err := httpapi.QueryInt(r, "limit", defaultNotificationsLimit)
	if err != nil {
		return nil, err
	}
	if limit <= 0 {
		return nil, httpapi.InvalidParam("limit must be positive")
	}
	limit = min(limit, maxNotificationsLimit)
	only := q.Get("only")
	if only != "" && only != "highlight" {
		return nil, httpapi.InvalidParam("only must be highlight")
	}
	ns, err := a.DB.Notifications(ctx, req.UserID, before, only == "highlight", int(limit))
	if err != nil {
		return nil, err
	}
	reads := map[string]storage.ReadPositions{}
	viewer := rooms.Viewer{UserID: req.UserID, DeviceID: req.DeviceID}
	out := make([]notificationJSON, 0, len(ns))
	for i := range ns {
		n := &ns[i]
		rp, ok := reads[n.RoomID]
		if !ok {
			if rp, err = a.DB.UserReadPositions(ctx, n.RoomID, req.UserID); err != nil {
				return nil, err
			}
			reads[n.RoomID] = rp
		}
		out = append(out, notificationJSON{Actions: n.Actions, Event: rooms.Format(&n.Event, viewer, false, nil),
			Read: n.StreamPos <= rp.Of(n.ThreadID), RoomID: n.RoomID, TS: n.TS})
	}
	resp := map[string]any{"notifications": out}
	if len(ns) == int(limit) {
		resp["next_token"] = strconv.FormatInt(ns[len(ns)-1].StreamPos, 10)
	}
	return resp, nil
}
