package clientapi

import (
	"context"
	"net/http"

	"github.com/rempart-hs/rempart/internal/httpapi"
	"github.com/rempart-hs/rempart/internal/rooms"
	"github.com/rempart-hs/rempart/internal/storage"
	"github.com/rempart-hs/rempart/internal/syncapi"
)

func (a *API) routesRelations(rt *httpapi.Router) {
	rt.Authed(v1("GET", "/rooms/{roomId}/relations/{eventId}"), a.getRelations)
	rt.Authed(v1("GET", "/rooms/{roomId}/relations/{eventId}/{relType}"), a.getRelations)
	rt.Authed(v1("GET", "/rooms/{roomId}/relations/{eventId}/{relType}/{eventType}"), a.getRelations)
}

// Bounds of the relations API.
const (
	relationsDefaultLimit = 5
	relationsMaxLimit     = 100
	// relationsRecurseDepth is how many relation hops recurse=true follows
	// (the spec asks for at least 3).
	relationsRecurseDepth = 3
	// pageScanBatches bounds the batches one page may scan past events the
	// user may not see.
	pageScanBatches = 20
)

// queryToken parses an optional pagination token query parameter.
func queryToken(r *http.Request, name string) (*syncapi.Token, error) {
	s := r.URL.Query().Get(name)
	if s == "" {
		return nil, nil
	}
	t, err := syncapi.ParseToken(s)
	if err != nil {
		return nil, httpapi.InvalidParam("invalid %s token", name)
	}
	return &t, nil
}

// getRelations serves GET /_matrix/client/v1/rooms/{roomId}/relations/{eventId}[/{relType}[/{eventType}]].
func (a *API) getRelations(r *http.Request) (any, error) {
	ctx := r.Context()
	req := httpapi.RequesterFrom(ctx)
	roomID, err := pathRoomID(r)
	if err != nil {
		return nil, err
	}
	q := r.URL.Query()
	dir := q.Get("dir")
	switch dir {
	case "":
		dir = "b"
	case "b", "f":
	default:
		return nil, httpapi.InvalidParam("dir must be b or f")
	}
	limit, err := httpapi.QueryInt(r, "limit", relationsDefaultLimit)
	if err != nil {
		return nil, err
	}
	if limit < 0 {
		return nil, httpapi.InvalidParam("limit must not be negative")
	}
	limit = min(limit, relationsMaxLimit)
	depth := 1
	recurse, hasRecurse := q["recurse"]
	if hasRecurse {
		switch recurse[0] {
		case "true":
			depth = relationsRecurseDepth
		case "false":
		default:
			return nil, httpapi.InvalidParam("recurse must be true or false")
		}
	}
	from, err := queryToken(r, "from")
	if err != nil {
		return nil, err
	}
	to, err := queryToken(r, "to")
	if err != nil {
		return nil, err
	}
	relType, evType := r.PathValue("relType"), r.PathValue("eventType")
	if len(relType) > 255 || len(evType) > 255 {
		return nil, httpapi.InvalidParam("relation or event type too long")
	}
	v, err := a.viewRoom(ctx, roomID, req.UserID)
	if err != nil {
		if httpapi.ErrIs(err, "M_FORBIDDEN") {
			return nil, httpapi.NotFound("event not found")
		}
		return nil, err
	}
	parent, err := a.visibleEvent(ctx, v, roomID, r.PathValue("eventId"))
	if err != nil {
		return nil, err
	}
	rq := storage.RelationQuery{RoomID: roomID, EventID: parent.EventID, RelType: relType, EventType: evType, Depth: depth, Backwards: dir == "b"}
	if rq.Backwards {
		rq.To = v.upTo
		if from != nil {
			rq.To = min(from.Events, v.upTo)
		}
		if to != nil {
			rq.From = to.Events
		}
	} else {
		rq.To = v.upTo
		if from != nil {
			rq.From = from.Events
		}
		if to != nil {
			rq.To = min(to.Events, v.upTo)
		}
	}
	chunk, next, err := a.pageVisible(ctx, v, rq, int(limit))
	if err != nil {
		return nil, err
	}
	resp := map[string]any{"chunk": a.formatBundled(ctx, chunk, req)}
	if next != nil {
		resp["next_batch"] = next.String()
	}
	if from != nil {
		resp["prev_batch"] = q.Get("from")
	}
	if hasRecurse {
		resp["recursion_depth"] = depth
	}
	return resp, nil
}

// pageVisible reads up to limit child events the user may see, scanning
// in batches from rq's bound in its direction. It returns the next-page
// token when more events may follow.
func (a *API) pageVisible(ctx context.Context, v *roomView, rq storage.RelationQuery, limit int) ([]storage.Event, *syncapi.Token, error) {
	var chunk []storage.Event
	if limit == 0 || rq.From >= rq.To {
		return chunk, nil, nil
	}
	rq.Limit = limit + 1
	exhausted := false
	for batch := 0; batch < pageScanBatches && len(chunk) <= limit; batch++ {
		evs, err := a.DB.RelatedEvents(ctx, rq)
		if err != nil {
			return nil, nil, err
		}
		for i := range evs {
			if rq.Backwards {
				rq.To = evs[i].StreamPos - 1
			} else {
				rq.From = evs[i].StreamPos
			}
			if v.vis.CanSee(&evs[i]) {
				chunk = append(chunk, evs[i])
				if len(chunk) > limit {
					break
				}
			}
		}
		if len(evs) < rq.Limit || rq.From >= rq.To {
			exhausted = len(chunk) <= limit
			break
		}
	}
	if len(chunk) > limit {
		chunk = chunk[:limit]
		last := chunk[limit-1].StreamPos
		next := syncapi.Token{Events: last}
		if rq.Backwards {
			next.Events = last - 1
		}
		return chunk, &next, nil
	}
	if exhausted {
		return chunk, nil, nil
	}
	// The scan budget ran out: continue from where it stopped.
	next := syncapi.Token{Events: rq.From}
	if rq.Backwards {
		next.Events = rq.To
	}
	return chunk, &next, nil
}

// formatBundled formats events with redacted_because and bundled
// aggregations.
func (a *API) formatBundled(ctx context.Context, evs []storage.Event, req *httpapi.Requester) []rooms.ClientEvent {
	return a.formatWithRedactions(ctx, evs, req, true)
}
