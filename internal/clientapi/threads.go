package clientapi

import (
	"math"
	"net/http"

	"github.com/rempart-hs/rempart/internal/httpapi"
	"github.com/rempart-hs/rempart/internal/storage"
	"github.com/rempart-hs/rempart/internal/syncapi"
)

func (a *API) routesThreads(rt *httpapi.Router) {
	rt.Authed(v1("GET", "/rooms/{roomId}/threads"), a.getThreads)
}

// Bounds of the threads list.
const (
	threadsDefaultLimit = 20
	threadsMaxLimit     = 100
)

// getThreads serves GET /_matrix/client/v1/rooms/{roomId}/threads: the
// thread roots the user may see, ordered by their latest reply, newest
// first, each with its bundled aggregations.
func (a *API) getThreads(r *http.Request) (any, error) {
	ctx := r.Context()
	req := httpapi.RequesterFrom(ctx)
	roomID, err := pathRoomID(r)
	if err != nil {
		return nil, err
	}
	q := r.URL.Query()
	participant := ""
	switch q.Get("include") {
	case "", "all":
	case "participated":
		participant = req.UserID
	default:
		return nil, httpapi.InvalidParam("include must be all or participated")
	}
	limit, err := httpapi.QueryInt(r, "limit", threadsDefaultLimit)
	if err != nil {
		return nil, err
	}
	if limit < 1 {
		return nil, httpapi.InvalidParam("limit must be greater than zero")
	}
	limit = min(limit, threadsMaxLimit)
	before := int64(math.MaxInt64)
	from, err := queryToken(r, "from")
	if err != nil {
		return nil, err
	}
	if from != nil {
		before = from.Events
	}
	v, err := a.viewRoom(ctx, roomID, req.UserID)
	if err != nil {
		return nil, err
	}
	roots, err := a.DB.ThreadRoots(ctx, roomID, participant, v.upTo, before, int(limit)+1)
	if err != nil {
		return nil, err
	}
	more := len(roots) > int(limit)
	if more {
		roots = roots[:limit]
	}
	ids := make([]string, 0, len(roots))
	for _, t := range roots {
		ids = append(ids, t.RootID)
	}
	evs, err := a.DB.GetEvents(ctx, ids)
	if err != nil {
		return nil, err
	}
	byID := map[string]storage.Event{}
	for _, ev := range evs {
		byID[ev.EventID] = ev
	}
	chunk := make([]storage.Event, 0, len(roots))
	for _, t := range roots {
		if ev, ok := byID[t.RootID]; ok && ev.RoomID == roomID && ev.StreamPos <= v.upTo && v.vis.CanSee(&ev) {
			chunk = append(chunk, ev)
		}
	}
	resp := map[string]any{"chunk": a.formatBundled(ctx, chunk, req)}
	if more {
		resp["next_batch"] = syncapi.Token{Events: roots[len(roots)-1].Latest}.String()
	}
	return resp, nil
}
