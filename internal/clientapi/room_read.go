package clientapi

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"sort"

	"github.com/rempart-hs/rempart/internal/filter"
	"github.com/rempart-hs/rempart/internal/httpapi"
	"github.com/rempart-hs/rempart/internal/rooms"
	"github.com/rempart-hs/rempart/internal/storage"
	"github.com/rempart-hs/rempart/internal/syncapi"
)

func (a *API) routesRoomRead(rt *httpapi.Router) {
	rt.Authed(v3("GET", "/rooms/{roomId}/state"), a.getRoomState)
	rt.Authed(v3("GET", "/rooms/{roomId}/state/{eventType}"), a.getStateEvent)
	rt.Authed(v3("GET", "/rooms/{roomId}/state/{eventType}/{stateKey...}"), a.getStateEvent)
	rt.Authed(v3("GET", "/rooms/{roomId}/messages"), a.getMessages)
	rt.Authed(v3("GET", "/rooms/{roomId}/context/{eventId}"), a.getContext)
	rt.Authed(v3("GET", "/rooms/{roomId}/event/{eventId}"), a.getEvent)
	rt.Authed(v3("GET", "/rooms/{roomId}/members"), a.getMembers)
	rt.Authed(v3("GET", "/rooms/{roomId}/joined_members"), a.getJoinedMembers)
}

// roomView is what a user may see of a room: its visibility checker and
// the highest stream position they may read.
type roomView struct {
	vis   *rooms.Visibility
	upTo  int64
	still bool // currently joined
}

// viewRoom checks that the user is or was joined to the room and returns
// their view of it. Users who never were get M_FORBIDDEN.
func (a *API) viewRoom(ctx context.Context, roomID, userID string) (*roomView, error) {
	m, err := a.requireMemberOrFormer(ctx, roomID, userID)
	if err != nil {
		return nil, err
	}
	vis, err := a.Rooms.NewVisibility(ctx, roomID, userID)
	if err != nil {
		return nil, err
	}
	max, err := a.DB.MaxStreamPos(ctx)
	if err != nil {
		return nil, err
	}
	// Only members and former members read the room: an invitee or a
	// knocker sees its stripped state in /sync, nothing more. A former
	// member reads up to the end of their last stay.
	until, ever, still := vis.JoinedUntil()
	if !ever {
		return nil, httpapi.Forbidden("you are not a member of this room")
	}
	v := &roomView{vis: vis, upTo: max, still: still && m.Membership == "join"}
	if !v.still {
		v.upTo = min(until, m.StreamPos)
		if until == 0 {
			v.upTo = m.StreamPos
		}
	}
	return v, nil
}

// stateAtPos returns the room state after the last event at or before pos.
func (a *API) stateAtPos(ctx context.Context, roomID string, pos int64, current bool) ([]storage.Event, error) {
	if current {
		return a.DB.CurrentState(ctx, roomID, nil)
	}
	last, err := a.DB.LastEventBefore(ctx, roomID, pos)
	if errors.Is(err, storage.ErrNotFound) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	ids, err := a.DB.StateGroupIDs(ctx, last.StateGroupAfter)
	if err != nil {
		return nil, err
	}
	list := make([]string, 0, len(ids))
	for _, id := range ids {
		list = append(list, id)
	}
	return a.DB.GetEvents(ctx, list)
}

func (a *API) format(evs []storage.Event, req *httpapi.Requester, withRoom bool) []rooms.ClientEvent {
	out := make([]rooms.ClientEvent, 0, len(evs))
	for i := range evs {
		out = append(out, rooms.Format(&evs[i], rooms.Viewer{UserID: req.UserID, DeviceID: req.DeviceID}, withRoom, nil))
	}
	return out
}

// getRoomState serves GET /_matrix/client/v3/rooms/{roomId}/state.
func (a *API) getRoomState(r *http.Request) (any, error) {
	req := httpapi.RequesterFrom(r.Context())
	roomID, err := pathRoomID(r)
	if err != nil {
		return nil, err
	}
	v, err := a.viewRoom(r.Context(), roomID, req.UserID)
	if err != nil {
		return nil, err
	}
	evs, err := a.stateAtPos(r.Context(), roomID, v.upTo, v.still)
	if err != nil {
		return nil, err
	}
	sort.Slice(evs, func(i, j int) bool { return evs[i].StreamPos < evs[j].StreamPos })
	return a.format(evs, req, true), nil
}

// getStateEvent serves GET /_matrix/client/v3/rooms/{roomId}/state/{eventType}/{stateKey}.
func (a *API) getStateEvent(r *http.Request) (any, error) {
	req := httpapi.RequesterFrom(r.Context())
	roomID, err := pathRoomID(r)
	if err != nil {
		return nil, err
	}
	evType, stateKey := r.PathValue("eventType"), r.PathValue("stateKey")
	v, err := a.viewRoom(r.Context(), roomID, req.UserID)
	if err != nil {
		return nil, err
	}
	var found *storage.Event
	if v.still {
		evs, err := a.DB.CurrentState(r.Context(), roomID, []storage.StateKeyTuple{{Type: evType, StateKey: stateKey}})
		if err != nil {
			return nil, err
		}
		if len(evs) > 0 {
			found = &evs[0]
		}
	} else {
		evs, err := a.stateAtPos(r.Context(), roomID, v.upTo, false)
		if err != nil {
			return nil, err
		}
		for i := range evs {
			if evs[i].Type == evType && evs[i].StateKey != nil && *evs[i].StateKey == stateKey {
				found = &evs[i]
			}
		}
	}
	if found == nil {
		return nil, httpapi.NotFound("state event not found")
	}
	ce := rooms.Format(found, rooms.Viewer{UserID: req.UserID, DeviceID: req.DeviceID}, true, nil)
	if r.URL.Query().Get("format") == "event" {
		return ce, nil
	}
	return ce.Content, nil
}

// parseRoomFilter reads the optional filter query parameter of /messages
// and /context.
func parseRoomFilter(r *http.Request) (*filter.RoomEventFilter, error) {
	f := &filter.RoomEventFilter{}
	if s := r.URL.Query().Get("filter"); s != "" {
		if err := httpapi.DecodeJSONBytes([]byte(s), f); err != nil {
			return nil, httpapi.InvalidParam("invalid filter: %v", err)
		}
	}
	return f, nil
}

// getMessages serves GET /_matrix/client/v3/rooms/{roomId}/messages.
func (a *API) getMessages(r *http.Request) (any, error) {
	ctx := r.Context()
	req := httpapi.RequesterFrom(ctx)
	roomID, err := pathRoomID(r)
	if err != nil {
		return nil, err
	}
	q := r.URL.Query()
	dir := q.Get("dir")
	if dir != "b" && dir != "f" {
		return nil, httpapi.InvalidParam("dir must be b or f")
	}
	limit, err := httpapi.QueryInt(r, "limit", 10)
	if err != nil {
		return nil, err
	}
	if limit < 0 {
		return nil, httpapi.InvalidParam("limit must not be negative")
	}
	limit = min(limit, 1000)
	f, err := parseRoomFilter(r)
	if err != nil {
		return nil, err
	}
	v, err := a.viewRoom(ctx, roomID, req.UserID)
	if err != nil {
		return nil, err
	}
	var from int64
	if s := q.Get("from"); s != "" {
		t, err := syncapi.ParseToken(s)
		if err != nil {
			return nil, httpapi.InvalidParam("invalid from token")
		}
		from = t.Events
	} else if dir == "b" {
		from = v.upTo
	}
	// The stream range (lo, hi] to read, newest first for dir=b.
	lo, hi := from, v.upTo
	if dir == "b" {
		lo, hi = 0, min(from, v.upTo)
	}
	if s := q.Get("to"); s != "" {
		t, err := syncapi.ParseToken(s)
		if err != nil {
			return nil, httpapi.InvalidParam("invalid to token")
		}
		if dir == "b" {
			lo = max(lo, t.Events)
		} else {
			hi = min(hi, t.Events)
		}
	}
	chunk, cursor, more, err := a.paginate(ctx, roomID, lo, hi, dir == "b", int(limit), func(ev *storage.Event) bool {
		return v.vis.CanSee(ev) && f.AllowsEvent(ev)
	})
	if err != nil {
		return nil, err
	}
	resp := map[string]any{"chunk": a.formatWithRedactions(ctx, chunk, req, true), "start": syncapi.Token{Events: from}.String()}
	if more {
		resp["end"] = syncapi.Token{Events: cursor}.String()
	}
	if f.LazyLoadMembers && len(chunk) > 0 {
		senders := map[string]bool{}
		for _, ev := range chunk {
			senders[ev.Sender] = true
		}
		// Members as of what the user may see: the current state, or the
		// state when they left.
		state, err := a.stateAtPos(ctx, roomID, v.upTo, v.still)
		if err != nil {
			return nil, err
		}
		var members []storage.Event
		for _, ev := range state {
			if ev.Type == "m.room.member" && ev.StateKey != nil && senders[*ev.StateKey] {
				members = append(members, ev)
			}
		}
		resp["state"] = a.format(members, req, true)
	}
	return resp, nil
}

// maxPaginationScan bounds how many events one /messages request reads
// while skipping events the user may not see; the response then carries an
// end token to continue from.
const maxPaginationScan = 2000

// paginate reads the events of a room in the stream range (lo, hi], newest
// first when backwards, keeping those keep accepts, until limit are kept or
// the range is exhausted. It returns the kept events, the cursor (the
// position to continue from: the last event read) and whether events may
// remain in the range past it.
func (a *API) paginate(ctx context.Context, roomID string, lo, hi int64, backwards bool, limit int, keep func(*storage.Event) bool) (out []storage.Event, cursor int64, more bool, err error) {
	cursor = lo
	if backwards {
		cursor = hi
	}
	page := limit + 1
	for scanned := 0; ; {
		var batch []storage.Event
		if backwards {
			batch, err = a.DB.RoomEvents(ctx, roomID, lo, cursor, page, true)
		} else {
			batch, err = a.DB.RoomEvents(ctx, roomID, cursor, hi, page, false)
		}
		if err != nil {
			return nil, 0, false, err
		}
		for i := range batch {
			if len(out) == limit {
				return out, cursor, true, nil // an event remains unread
			}
			ev := &batch[i]
			if backwards {
				cursor = ev.StreamPos - 1
			} else {
				cursor = ev.StreamPos
			}
			if keep(ev) {
				out = append(out, *ev)
			}
		}
		scanned += len(batch)
		if len(batch) < page {
			return out, cursor, false, nil // the range is exhausted
		}
		if scanned >= maxPaginationScan {
			return out, cursor, true, nil
		}
	}
}

// formatWithRedactions formats events, attaching redacted_because and
// bundled aggregations.
func (a *API) formatWithRedactions(ctx context.Context, evs []storage.Event, req *httpapi.Requester, withRoom bool) []rooms.ClientEvent {
	var ids []string
	for i := range evs {
		if evs[i].RedactedBy != "" {
			ids = append(ids, evs[i].RedactedBy)
		}
	}
	red := map[string]*storage.Event{}
	if len(ids) > 0 {
		if rs, err := a.DB.GetEvents(ctx, ids); err == nil {
			for i := range rs {
				red[rs[i].EventID] = &rs[i]
			}
		}
	}
	out := make([]rooms.ClientEvent, 0, len(evs))
	for i := range evs {
		out = append(out, rooms.Format(&evs[i], rooms.Viewer{UserID: req.UserID, DeviceID: req.DeviceID}, withRoom, red[evs[i].RedactedBy]))
	}
	// Bundled aggregations (edits, threads); best effort like redactions.
	_ = a.Rooms.BundleAggregations(ctx, rooms.Viewer{UserID: req.UserID, DeviceID: req.DeviceID}, evs, out)
	return out
}

// visibleEvent loads an event the user may see, or M_NOT_FOUND.
func (a *API) visibleEvent(ctx context.Context, v *roomView, roomID, eventID string) (*storage.Event, error) {
	ev, err := a.DB.GetEvent(ctx, eventID)
	if errors.Is(err, storage.ErrNotFound) || (err == nil && (ev.RoomID != roomID || ev.StreamPos > v.upTo || !v.vis.CanSee(&ev))) {
		return nil, httpapi.NotFound("event not found")
	}
	if err != nil {
		return nil, err
	}
	return &ev, nil
}

// getEvent serves GET /_matrix/client/v3/rooms/{roomId}/event/{eventId}.
func (a *API) getEvent(r *http.Request) (any, error) {
	req := httpapi.RequesterFrom(r.Context())
	roomID, err := pathRoomID(r)
	if err != nil {
		return nil, err
	}
	v, err := a.viewRoom(r.Context(), roomID, req.UserID)
	if err != nil {
		if httpapi.ErrIs(err, "M_FORBIDDEN") {
			return nil, httpapi.NotFound("event not found")
		}
		return nil, err
	}
	ev, err := a.visibleEvent(r.Context(), v, roomID, r.PathValue("eventId"))
	if err != nil {
		return nil, err
	}
	return a.formatWithRedactions(r.Context(), []storage.Event{*ev}, req, true)[0], nil
}

// getContext serves GET /_matrix/client/v3/rooms/{roomId}/context/{eventId}.
func (a *API) getContext(r *http.Request) (any, error) {
	ctx := r.Context()
	req := httpapi.RequesterFrom(ctx)
	roomID, err := pathRoomID(r)
	if err != nil {
		return nil, err
	}
	limit, err := httpapi.QueryInt(r, "limit", 10)
	if err != nil {
		return nil, err
	}
	if limit < 0 {
		return nil, httpapi.InvalidParam("limit must not be negative")
	}
	limit = min(limit, 100)
	f, err := parseRoomFilter(r)
	if err != nil {
		return nil, err
	}
	v, err := a.viewRoom(ctx, roomID, req.UserID)
	if err != nil {
		return nil, err
	}
	ev, err := a.visibleEvent(ctx, v, roomID, r.PathValue("eventId"))
	if err != nil {
		return nil, err
	}
	nBefore := limit / 2
	nAfter := limit - nBefore
	keep := func(e *storage.Event) bool { return v.vis.CanSee(e) && f.AllowsEvent(e) }
	before, startPos, _, err := a.paginate(ctx, roomID, 0, ev.StreamPos-1, true, int(nBefore), keep)
	if err != nil {
		return nil, err
	}
	after, endPos, _, err := a.paginate(ctx, roomID, ev.StreamPos, v.upTo, false, int(nAfter), keep)
	if err != nil {
		return nil, err
	}
	start := syncapi.Token{Events: startPos}
	end := syncapi.Token{Events: endPos}
	last := ev
	if len(after) > 0 {
		last = &after[len(after)-1]
	}
	state, err := a.stateAtPos(ctx, roomID, last.StreamPos, false)
	if err != nil {
		return nil, err
	}
	if f.LazyLoadMembers {
		need := map[string]bool{ev.Sender: true}
		for _, e := range append(append([]storage.Event{}, before...), after...) {
			need[e.Sender] = true
		}
		kept := state[:0:0]
		for _, s := range state {
			if s.Type != "m.room.member" || need[*s.StateKey] {
				kept = append(kept, s)
			}
		}
		state = kept
	}
	return map[string]any{
		"event":         a.formatWithRedactions(ctx, []storage.Event{*ev}, req, true)[0],
		"events_before": a.formatWithRedactions(ctx, before, req, true),
		"events_after":  a.formatWithRedactions(ctx, after, req, true),
		"start":         start.String(),
		"end":           end.String(),
		"state":         a.format(state, req, true),
	}, nil
}

// getMembers serves GET /_matrix/client/v3/rooms/{roomId}/members.
func (a *API) getMembers(r *http.Request) (any, error) {
	ctx := r.Context()
	req := httpapi.RequesterFrom(ctx)
	roomID, err := pathRoomID(r)
	if err != nil {
		return nil, err
	}
	v, err := a.viewRoom(ctx, roomID, req.UserID)
	if err != nil {
		return nil, err
	}
	q := r.URL.Query()
	upTo, current := v.upTo, v.still
	if at := q.Get("at"); at != "" {
		t, err := syncapi.ParseToken(at)
		if err != nil {
			return nil, httpapi.InvalidParam("invalid at token")
		}
		if t.Events < upTo {
			upTo, current = t.Events, false
		}
	}
	state, err := a.stateAtPos(ctx, roomID, upTo, current)
	if err != nil {
		return nil, err
	}
	want, notWant := q.Get("membership"), q.Get("not_membership")
	var members []storage.Event
	for i := range state {
		if state[i].Type != "m.room.member" {
			continue
		}
		m := rooms.Membership(&state[i])
		if (want != "" && m != want) || (notWant != "" && m == notWant) {
			continue
		}
		members = append(members, state[i])
	}
	sort.Slice(members, func(i, j int) bool { return *members[i].StateKey < *members[j].StateKey })
	return map[string]any{"chunk": a.format(members, req, true)}, nil
}

// getJoinedMembers serves GET /_matrix/client/v3/rooms/{roomId}/joined_members.
func (a *API) getJoinedMembers(r *http.Request) (any, error) {
	ctx := r.Context()
	req := httpapi.RequesterFrom(ctx)
	roomID, err := pathRoomID(r)
	if err != nil {
		return nil, err
	}
	if err := a.requireJoined(ctx, roomID, req.UserID); err != nil {
		return nil, err
	}
	evs, err := a.DB.CurrentStateOfType(ctx, roomID, "m.room.member")
	if err != nil {
		return nil, err
	}
	type member struct {
		DisplayName *string `json:"display_name,omitempty"`
		AvatarURL   *string `json:"avatar_url,omitempty"`
	}
	joined := map[string]member{}
	for i := range evs {
		if rooms.Membership(&evs[i]) != "join" {
			continue
		}
		var c struct {
			Content struct {
				DisplayName *string `json:"displayname"`
				AvatarURL   *string `json:"avatar_url"`
			} `json:"content"`
		}
		_ = json.Unmarshal(evs[i].JSON, &c)
		joined[*evs[i].StateKey] = member{DisplayName: c.Content.DisplayName, AvatarURL: c.Content.AvatarURL}
	}
	return map[string]any{"joined": joined}, nil
}
