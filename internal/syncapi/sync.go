package syncapi

import (
	"context"
	"encoding/json"
	"errors"
	"math/rand/v2"
	"net/http"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/rempart-hs/rempart/internal/filter"
	"github.com/rempart-hs/rempart/internal/httpapi"
	"github.com/rempart-hs/rempart/internal/notifier"
	"github.com/rempart-hs/rempart/internal/rooms"
	"github.com/rempart-hs/rempart/internal/storage"
	"github.com/rempart-hs/rempart/internal/typing"
)

// Extension adds fields to a sync response (to-device messages, device
// lists, one-time key counts). Extensions are called after rooms are built;
// the positions of their streams are in the token (read with the others).
type Extension interface {
	// Fill adds the extension's stream data in the window: a long-poll
	// whose answer has nothing in any stream goes on waiting.
	Fill(ctx context.Context, w *Window, resp *Response) error
	// Finish adds what every answer carries (key counts) to an answer
	// about to be sent.
	Finish(ctx context.Context, w *Window, resp *Response) error
}

// Window is the span of one sync, as its extensions see it, with what the
// sync read that they also need.
type Window struct {
	Requester *httpapi.Requester
	Since     *Token // nil for an initial sync
	Now       Token
	// OwnMembership holds the syncer's own m.room.member events in
	// (Since.Events, Now.Events], oldest first (incremental syncs only).
	OwnMembership []storage.Event
	// Active lists the rooms the syncer is joined to that have events in
	// the window (incremental syncs only), and StateChanges their state
	// events in the window, oldest first: a membership change in a room
	// the syncer shares with others is among them.
	Active       []string
	StateChanges map[string][]storage.Event
}

// Service serves /sync.
type Service struct {
	db         *storage.DB
	engine     *rooms.Engine
	notifier   *notifier.Notifier
	typing     *typing.Tracker
	extensions []Extension
	filters    filterCache
	// MaxTimeout caps the client's long-poll timeout.
	MaxTimeout time.Duration
}

// New returns a sync service.
func New(db *storage.DB, engine *rooms.Engine, n *notifier.Notifier, t *typing.Tracker) *Service {
	return &Service{db: db, engine: engine, notifier: n, typing: t, MaxTimeout: 5 * time.Minute}
}

// AddExtension registers an extension.
func (s *Service) AddExtension(e Extension) { s.extensions = append(s.extensions, e) }

// Response is a /sync response body.
type Response struct {
	NextBatch                    string         `json:"next_batch"`
	Rooms                        *Rooms         `json:"rooms,omitempty"`
	AccountData                  *EventList     `json:"account_data,omitempty"`
	Presence                     *EventList     `json:"presence,omitempty"`
	ToDevice                     *EventList     `json:"to_device,omitempty"`
	DeviceLists                  *DeviceLists   `json:"device_lists,omitempty"`
	DeviceOneTimeKeysCount       map[string]int `json:"device_one_time_keys_count,omitempty"`
	DeviceUnusedFallbackKeyTypes []string       `json:"device_unused_fallback_key_types"` // [] when none: clients read presence as support
}

// DeviceLists lists users whose devices changed.
type DeviceLists struct {
	Changed []string `json:"changed,omitempty"`
	Left    []string `json:"left,omitempty"`
}

// EventList is {"events": [...]}.
type EventList struct {
	Events []any `json:"events"`
}

// Rooms holds the per-membership room maps.
type Rooms struct {
	Join   map[string]*JoinedRoom  `json:"join,omitempty"`
	Invite map[string]*InvitedRoom `json:"invite,omitempty"`
	Leave  map[string]*LeftRoom    `json:"leave,omitempty"`
	Knock  map[string]*KnockedRoom `json:"knock,omitempty"`
}

// KnockedRoom is a room the user knocked on.
type KnockedRoom struct {
	KnockState EventList `json:"knock_state"`
}

// Timeline is a room's timeline section.
type Timeline struct {
	Events    []rooms.ClientEvent `json:"events"`
	Limited   bool                `json:"limited"`
	PrevBatch string              `json:"prev_batch,omitempty"`
}

// StateList is a room's state section.
type StateList struct {
	Events []rooms.ClientEvent `json:"events"`
}

// Summary is a joined room's summary.
type Summary struct {
	Heroes             []string `json:"m.heroes,omitempty"`
	JoinedMemberCount  *int     `json:"m.joined_member_count,omitempty"`
	InvitedMemberCount *int     `json:"m.invited_member_count,omitempty"`
}

// Unread holds notification counts.
type Unread struct {
	NotificationCount int `json:"notification_count"`
	HighlightCount    int `json:"highlight_count"`
}

// JoinedRoom is a room the user is joined to.
type JoinedRoom struct {
	Summary             *Summary  `json:"summary,omitempty"`
	State               StateList `json:"state"`
	Timeline            Timeline  `json:"timeline"`
	Ephemeral           EventList `json:"ephemeral"`
	AccountData         EventList `json:"account_data"`
	UnreadNotifications *Unread   `json:"unread_notifications,omitempty"`
	// UnreadThreadNotifications holds per-thread counts when the filter
	// asks for them (unread_thread_notifications).
	UnreadThreadNotifications map[string]*Unread `json:"unread_thread_notifications,omitempty"`
}

// InvitedRoom is a room the user is invited to.
type InvitedRoom struct {
	InviteState EventList `json:"invite_state"`
}

// LeftRoom is a room the user left or was removed from.
type LeftRoom struct {
	State       StateList `json:"state"`
	Timeline    Timeline  `json:"timeline"`
	AccountData EventList `json:"account_data"`
}

// StrippedEvent is a stripped state event (invite_state).
type StrippedEvent struct {
	Content  json.RawMessage `json:"content"`
	Sender   string          `json:"sender"`
	StateKey string          `json:"state_key"`
	Type     string          `json:"type"`
}

func (r *Response) empty() bool {
	return r.Rooms == nil && r.AccountData == nil && r.Presence == nil && r.ToDevice == nil && r.DeviceLists == nil
}

// CurrentToken returns the position of every stream now.
func (s *Service) CurrentToken(ctx context.Context) (Token, error) {
	p, err := s.db.CurrentStreamPositions(ctx)
	if err != nil {
		return Token{}, err
	}
	return Token{Events: p.Events, AccountData: p.AccountData, Receipts: p.Receipts, Typing: s.typing.Position(),
		ToDevice: p.ToDevice, DeviceLists: p.DeviceLists}, nil
}

// LoadFilter resolves a filter query parameter: an ID of a stored filter or
// an inline JSON definition. Parsed filters are kept (see filterCache): a
// client long-polling sends the same filter with every request.
func (s *Service) LoadFilter(ctx context.Context, userID, param string) (*filter.Filter, error) {
	if param == "" {
		return &filter.Filter{}, nil
	}
	inline := strings.HasPrefix(strings.TrimSpace(param), "{")
	key := userID + "\x00" + param
	if inline {
		key = param
	}
	if f := s.filters.get(key); f != nil {
		return f, nil
	}
	var def []byte
	if inline {
		def = []byte(param)
	} else {
		id, err := strconv.ParseInt(param, 10, 64)
		if err != nil {
			return nil, httpapi.InvalidParam("filter must be a filter ID or a JSON object")
		}
		if def, err = s.db.GetFilter(ctx, userID, id); errors.Is(err, storage.ErrNotFound) {
			return nil, httpapi.NotFound("unknown filter")
		} else if err != nil {
			return nil, err
		}
	}
	f, err := filter.Parse(def)
	if err != nil {
		return nil, err
	}
	s.filters.put(key, f)
	return f, nil
}

// filterCache holds parsed sync filters: inline ones by their text, stored
// ones by user and ID. Both are immutable (a stored filter is never
// changed or deleted, and its ID never reused), so an entry needs no
// validation, whichever process stored the filter. The filters are shared
// and must not be modified.
type filterCache struct {
	mu sync.Mutex
	m  map[string]*filter.Filter
}

// Bounds of the filter cache: entries (it is emptied when full) and the
// length of an inline filter worth keeping.
const (
	maxCachedFilters   = 4096
	maxCachedFilterLen = 4096
)

func (c *filterCache) get(key string) *filter.Filter {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.m[key]
}

func (c *filterCache) put(key string, f *filter.Filter) {
	if len(key) > maxCachedFilterLen {
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.m == nil || len(c.m) >= maxCachedFilters {
		c.m = make(map[string]*filter.Filter)
	}
	c.m[key] = f
}

// Handle serves GET /_matrix/client/v3/sync.
func (s *Service) Handle(r *http.Request) (any, error) {
	ctx := r.Context()
	req := httpapi.RequesterFrom(ctx)
	q := r.URL.Query()
	var since *Token
	if v := q.Get("since"); v != "" {
		t, err := ParseToken(v)
		if err != nil {
			return nil, httpapi.InvalidParam("invalid since token")
		}
		since = &t
	}
	timeoutMS, err := httpapi.QueryInt(r, "timeout", 0)
	if err != nil {
		return nil, err
	}
	if timeoutMS < 0 {
		timeoutMS = 0
	}
	timeout := jitter(min(time.Duration(timeoutMS)*time.Millisecond, s.MaxTimeout))
	switch sp := q.Get("set_presence"); sp {
	case "", "online", "offline", "unavailable":
	default:
		return nil, httpapi.InvalidParam("set_presence must be online, offline or unavailable")
	}
	fullState := q.Get("full_state") == "true"
	f, err := s.LoadFilter(ctx, req.UserID, q.Get("filter"))
	if err != nil {
		return nil, err
	}
	// Listen before reading positions so no wake-up is missed.
	wake, cancel := s.notifier.Listen(req.UserID)
	defer cancel()
	deadline := time.Now().Add(timeout)
	for {
		now, err := s.CurrentToken(ctx)
		if err != nil {
			return nil, err
		}
		if since != nil && now.Events < since.Events {
			// A token from the future (e.g. another database): clamp.
			now.Events = max(now.Events, since.Events)
		}
		// When no stream has moved since the client's position, the
		// answer is empty (nothing is read for it): wait at once, the
		// usual case of a long-poll that just got its previous answer.
		unmoved := since != nil && !fullState && now == *since
		resp, w := &Response{NextBatch: now.String()}, &Window{Requester: req, Since: since, Now: now}
		if !unmoved {
			if resp, w, err = s.build(ctx, req, since, now, f, fullState); err != nil {
				return nil, err
			}
		}
		if since == nil || fullState || !resp.empty() || !time.Now().Before(deadline) {
			for _, e := range s.extensions {
				if err := e.Finish(ctx, w, resp); err != nil {
					return nil, err
				}
			}
			return resp, nil
		}
		wait := time.Until(deadline)
		if wait <= 0 {
			continue // the time is up: answer
		}
		timer := time.NewTimer(wait)
		select {
		case <-wake:
		case <-timer.C:
		case <-ctx.Done():
			timer.Stop()
			return nil, ctx.Err()
		case <-s.notifier.Done():
			deadline = time.Now() // shutting down: answer now
		}
		timer.Stop()
	}
}

// jitter shortens a long-poll's timeout by up to a fifth, at random.
// Clients poll again as soon as they get an answer, so long-polls that
// started together (thousands of clients reconnecting after a restart or a
// network cut, or woken by one message) would otherwise all time out
// together, again and again: in the load benchmark, 5,000 empty answers
// and 5,000 new polls within a second stalled the server for two seconds
// every thirty. The spec lets the server answer before the timeout.
func jitter(timeout time.Duration) time.Duration {
	if timeout < time.Second {
		return timeout
	}
	return timeout - rand.N(timeout/5)
}

// build assembles the answer of a sync between since (nil: initial) and
// now, and the window its extensions filled.
func (s *Service) build(ctx context.Context, req *httpapi.Requester, since *Token, now Token, f *filter.Filter, fullState bool) (*Response, *Window, error) {
	resp := &Response{NextBatch: now.String()}
	w := &Window{Requester: req, Since: since, Now: now}
	viewer := rooms.Viewer{UserID: req.UserID, DeviceID: req.DeviceID}
	memberships, err := s.db.SyncMemberships(ctx, req.UserID)
	if err != nil {
		return nil, nil, err
	}
	var fromEv int64
	if since != nil {
		fromEv = since.Events
	}
	// Own membership changes in the window, per room (incremental only).
	changed := map[string][]storage.Event{}
	if since != nil {
		evs, err := s.db.MembershipChanges(ctx, req.UserID, since.Events, now.Events)
		if err != nil {
			return nil, nil, err
		}
		for _, ev := range evs {
			changed[ev.RoomID] = append(changed[ev.RoomID], ev)
		}
		w.OwnMembership = evs
	}
	var joined []string
	for _, m := range memberships {
		if m.Membership == "join" {
			joined = append(joined, m.RoomID)
		}
	}
	var active map[string]bool
	if since != nil {
		if active, err = s.db.RoomsWithEventsBetween(ctx, joined, since.Events, now.Events); err != nil {
			return nil, nil, err
		}
		for _, roomID := range joined {
			if active[roomID] {
				w.Active = append(w.Active, roomID)
			}
		}
		if fullState {
			active = nil // every room is listed in full
		}
	}
	var ephemeral map[string][]any
	if ephemeral, err = s.ephemeral(ctx, req.UserID, joined, since, now, f); err != nil {
		return nil, nil, err
	}
	roomAD := map[string][]any{}
	{
		var adFrom int64
		if since != nil && !fullState {
			adFrom = since.AccountData
		}
		ads, err := s.db.AccountDataSince(ctx, req.UserID, adFrom, now.AccountData) // nothing read when the stream has not moved
		if err != nil {
			return nil, nil, err
		}
		var global []any
		for _, a := range ads {
			ev := map[string]any{"type": a.Type, "content": a.Content}
			if a.RoomID == "" {
				if f.AccountData.Allows(a.Type, "") {
					global = append(global, ev)
				}
			} else if f.Room.AccountData.Allows(a.Type, "") {
				roomAD[a.RoomID] = append(roomAD[a.RoomID], ev)
			}
		}
		if len(global) > 0 {
			resp.AccountData = &EventList{Events: global}
		}
	}
	rs := &Rooms{}
	// The joined rooms to list, first, so that what each of them needs is
	// read for all of them at once.
	type joinedPlan struct {
		roomID                 string
		full, fresh, hasEvents bool
	}
	var plans []joinedPlan
	var withEvents, fullRooms, built []string
	for _, m := range memberships {
		if m.Membership != "join" || !filter.AllowsRoom(f.Room.Rooms, f.Room.NotRooms, m.RoomID) {
			continue
		}
		// fresh: the client knows nothing of the room yet (initial
		// sync, or joined in this window): its timeline is the room's
		// latest events. full: the state section is complete.
		fresh := since == nil || joinedInWindow(changed[m.RoomID])
		full := fresh || fullState
		if !full && !active[m.RoomID] && ephemeral[m.RoomID] == nil && roomAD[m.RoomID] == nil {
			continue
		}
		p := joinedPlan{roomID: m.RoomID, full: full, fresh: fresh, hasEvents: active[m.RoomID] || full}
		plans = append(plans, p)
		built = append(built, m.RoomID)
		// A room the user was joined to all through the window (joined
		// now, no membership change of its own since the window began)
		// shows every event in the window: no visibility to read.
		if p.hasEvents && (fresh || len(changed[m.RoomID]) > 0) {
			withEvents = append(withEvents, m.RoomID)
		}
		if full {
			fullRooms = append(fullRooms, m.RoomID)
		}
	}
	var batch roomBatch
	if len(withEvents) > 0 {
		if batch.vis, err = s.engine.NewVisibilities(ctx, withEvents, req.UserID); err != nil {
			return nil, nil, err
		}
	}
	if len(fullRooms) > 0 {
		if batch.summaries, err = s.summaries(ctx, fullRooms, req.UserID); err != nil {
			return nil, nil, err
		}
	}
	if len(built) > 0 {
		if batch.unread, err = s.db.UnreadCountsRooms(ctx, built, req.UserID); err != nil {
			return nil, nil, err
		}
	}
	// Timelines first: the state of a full room is the state before its
	// timeline, read below for all rooms at once where possible.
	tls := make([]timelinePart, len(plans))
	views := make([]eventView, len(plans))
	var pages []storage.TimelinePageReq
	for i, p := range plans {
		if !p.hasEvents {
			continue
		}
		views[i] = joinedView{}
		if vis, ok := batch.vis[p.roomID]; ok {
			views[i] = vis
		}
		tlFrom := fromEv
		if p.fresh {
			tlFrom = 0
		}
		pages = append(pages, storage.TimelinePageReq{RoomID: p.roomID, From: tlFrom, To: views[i].VisibleUpTo(now.Events)})
	}
	// The first page of every timeline at once when there are several
	// (an initial sync: a statement per 50 rooms, not one per room).
	var firstPages map[string][]storage.Event
	if len(pages) > 1 {
		if firstPages, err = s.db.TimelinePages(ctx, pages, timelinePage(&f.Room.Timeline)); err != nil {
			return nil, nil, err
		}
	}
	for i, p := range plans {
		if !p.hasEvents {
			continue
		}
		tls[i].read = true
		tlFrom := fromEv
		if p.fresh {
			tlFrom = 0
		}
		first, ok := firstPages[p.roomID]
		if tls[i].events, tls[i].limited, err = s.timelineFrom(ctx, viewer, p.roomID, tlFrom, now.Events, &f.Room.Timeline, views[i], first, ok); err != nil {
			return nil, nil, err
		}
	}
	// Which timeline events have children to bundle (edits, threads),
	// for all rooms at once rather than a query per room.
	var read []storage.Event
	for i := range tls {
		read = append(read, tls[i].events...)
	}
	if len(read) > 0 {
		if batch.relations, err = s.engine.CheckRelationTargets(ctx, read); err != nil {
			return nil, nil, err
		}
	}
	// The state changes of all active rooms at once (the state sections
	// and the device-list changes are built from them), with, for lazy
	// loading, the current member events of the timelines' senders.
	if len(w.Active) > 0 {
		var pairs []storage.RoomUser
		if f.Room.State.LazyLoadMembers {
			for i, p := range plans {
				if p.full {
					continue // stateBeforeTimelines reads those
				}
				seen := map[string]bool{}
				for _, ev := range tls[i].events {
					if !seen[ev.Sender] {
						seen[ev.Sender] = true
						pairs = append(pairs, storage.RoomUser{RoomID: p.roomID, UserID: ev.Sender})
					}
				}
			}
		}
		var members []storage.Event
		if w.StateChanges, members, err = s.db.StateChangesAndMembers(ctx, w.Active, since.Events, now.Events, pairs); err != nil {
			return nil, nil, err
		}
		if pairs != nil {
			batch.members = map[string]map[string]*storage.Event{}
			for _, p := range pairs {
				if batch.members[p.RoomID] == nil {
					batch.members[p.RoomID] = map[string]*storage.Event{}
				}
			}
			for i := range members {
				batch.members[members[i].RoomID][*members[i].StateKey] = &members[i]
			}
		}
	}
	var stateRooms []string
	stateTLs := map[string][]storage.Event{}
	for i, p := range plans {
		if p.full && len(tls[i].events) > 0 {
			stateRooms = append(stateRooms, p.roomID)
			stateTLs[p.roomID] = tls[i].events
		}
	}
	if len(stateRooms) > 0 {
		if batch.state, err = s.stateBeforeTimelines(ctx, stateRooms, stateTLs, req.UserID, f.Room.State.LazyLoadMembers); err != nil {
			return nil, nil, err
		}
	}
	for i, p := range plans {
		jr, err := s.joinedRoom(ctx, req, viewer, p.roomID, fromEv, now, f, p.full, tls[i], &batch, w.StateChanges[p.roomID])
		if err != nil {
			return nil, nil, err
		}
		if evs := ephemeral[p.roomID]; evs != nil {
			jr.Ephemeral.Events = evs
		}
		if ads := roomAD[p.roomID]; ads != nil {
			jr.AccountData.Events = ads
		}
		if rs.Join == nil {
			rs.Join = map[string]*JoinedRoom{}
		}
		rs.Join[p.roomID] = jr
	}
	for _, m := range memberships {
		if !filter.AllowsRoom(f.Room.Rooms, f.Room.NotRooms, m.RoomID) {
			continue
		}
		switch m.Membership {
		case "invite":
			if since != nil && !fullState && len(changed[m.RoomID]) == 0 {
				continue
			}
			ir, err := s.invitedRoom(ctx, m)
			if err != nil {
				return nil, nil, err
			}
			if rs.Invite == nil {
				rs.Invite = map[string]*InvitedRoom{}
			}
			rs.Invite[m.RoomID] = ir
		case "knock":
			if since != nil && !fullState && len(changed[m.RoomID]) == 0 {
				continue
			}
			evs, err := s.InviteState(ctx, m.RoomID, m.UserID)
			if err != nil {
				return nil, nil, err
			}
			if rs.Knock == nil {
				rs.Knock = map[string]*KnockedRoom{}
			}
			rs.Knock[m.RoomID] = &KnockedRoom{KnockState: EventList{Events: evs}}
		case "leave", "ban":
			inWindow := since != nil && len(changed[m.RoomID]) > 0
			if !inWindow && !f.Room.IncludeLeave {
				continue
			}
			if !inWindow && since != nil && !fullState {
				continue
			}
			// A rejected invite or a leave of a room never joined in the
			// window still appears, so clients drop the room.
			lr, err := s.leftRoom(ctx, req, viewer, m, fromEv, f)
			if err != nil {
				return nil, nil, err
			}
			if rs.Leave == nil {
				rs.Leave = map[string]*LeftRoom{}
			}
			rs.Leave[m.RoomID] = lr
		}
	}
	if rs.Join != nil || rs.Invite != nil || rs.Leave != nil || rs.Knock != nil {
		resp.Rooms = rs
	}
	for _, e := range s.extensions {
		if err := e.Fill(ctx, w, resp); err != nil {
			return nil, nil, err
		}
	}
	return resp, w, nil
}

// joinedInWindow reports whether the user's own membership events in a
// sync window (oldest first) make a joined room new to the client: they
// were not joined before the window, or left and joined again within it.
func joinedInWindow(chs []storage.Event) bool {
	if len(chs) == 0 {
		return false
	}
	if membershipBefore(&chs[0]) != "join" {
		return true
	}
	for i := range chs {
		if rooms.Membership(&chs[i]) != "join" {
			return true
		}
	}
	return false
}

// membershipBefore returns the membership a member event replaced.
func membershipBefore(ev *storage.Event) string {
	var u struct {
		PrevContent struct {
			Membership string `json:"membership"`
		} `json:"prev_content"`
	}
	_ = json.Unmarshal(ev.Unsigned, &u)
	return u.PrevContent.Membership
}

func reverse(evs []storage.Event) {
	for i, j := 0, len(evs)-1; i < j; i, j = i+1, j-1 {
		evs[i], evs[j] = evs[j], evs[i]
	}
}

// maxTimelineScan bounds how many events one room's timeline reads while
// skipping events the filter or history visibility hide; the timeline is
// then limited, and prev_batch lets the client read further.
const maxTimelineScan = 1000

// eventView decides which events of a room the syncing user may see.
type eventView interface {
	CanSee(ev *storage.Event) bool
	// VisibleUpTo returns the highest stream position the user may read.
	VisibleUpTo(limit int64) int64
}

// joinedView is the view of a user who was joined to the room all through
// the positions read: the history visibility rules show every event sent
// while the user is joined.
type joinedView struct{}

func (joinedView) CanSee(*storage.Event) bool    { return true }
func (joinedView) VisibleUpTo(limit int64) int64 { return limit }

// timeline loads the newest events of a room in (from, to] that the user
// may see and the filter accepts, oldest first, and whether older ones
// remain in the range (limited).
// vis is the user's view of the room, loaded when nil.
func (s *Service) timeline(ctx context.Context, viewer rooms.Viewer, roomID string, from, to int64, f *filter.RoomEventFilter, vis eventView) ([]storage.Event, bool, error) {
	return s.timelineFrom(ctx, viewer, roomID, from, to, f, vis, nil, false)
}

// timelinePage is how many events a timeline's page reads: one more than
// the limit, to know whether older ones remain.
func timelinePage(f *filter.RoomEventFilter) int { return f.LimitOr(10, 100) + 1 }

// timelineFrom is timeline with, when havePage, its first page read
// beforehand (storage.TimelinePages, up to vis.VisibleUpTo(to)).
func (s *Service) timelineFrom(ctx context.Context, viewer rooms.Viewer, roomID string, from, to int64, f *filter.RoomEventFilter, vis eventView, firstPage []storage.Event, havePage bool) ([]storage.Event, bool, error) {
	limit := f.LimitOr(10, 100)
	if vis == nil {
		v, err := s.engine.NewVisibility(ctx, roomID, viewer.UserID)
		if err != nil {
			return nil, false, err
		}
		vis = v
	}
	to = vis.VisibleUpTo(to)
	var out []storage.Event
	limited := false
	page := timelinePage(f)
	cursor, scanned := to, 0
scan:
	for {
		batch := firstPage
		if !havePage {
			var err error
			if batch, err = s.db.TimelinePage(ctx, roomID, from, cursor, page); err != nil {
				return nil, false, err
			}
		}
		havePage = false
		for i := range batch {
			if len(out) == limit {
				limited = true // an older event remains
				break scan
			}
			cursor = batch[i].StreamPos - 1
			if vis.CanSee(&batch[i]) && f.AllowsEvent(&batch[i]) {
				out = append(out, batch[i])
			}
		}
		scanned += len(batch)
		if len(batch) < page {
			break // the range is exhausted
		}
		if scanned >= maxTimelineScan {
			limited = true
			break
		}
	}
	reverse(out)
	return out, limited, nil
}

// formatAll formats evs for viewer with their bundled aggregations;
// known, when not nil, holds relation targets read beforehand.
func (s *Service) formatAll(ctx context.Context, evs []storage.Event, viewer rooms.Viewer, known *rooms.RelationTargets) ([]rooms.ClientEvent, error) {
	out := make([]rooms.ClientEvent, 0, len(evs))
	var redactionIDs []string
	for i := range evs {
		if evs[i].RedactedBy != "" {
			redactionIDs = append(redactionIDs, evs[i].RedactedBy)
		}
	}
	redactions := map[string]*storage.Event{}
	if len(redactionIDs) > 0 {
		rs, err := s.db.GetEvents(ctx, redactionIDs)
		if err != nil {
			return nil, err
		}
		for i := range rs {
			redactions[rs[i].EventID] = &rs[i]
		}
	}
	for i := range evs {
		out = append(out, rooms.Format(&evs[i], viewer, false, redactions[evs[i].RedactedBy]))
	}
	if err := s.engine.BundleAggregationsKnown(ctx, viewer, evs, out, known); err != nil {
		return nil, err
	}
	return out, nil
}

// stateAt returns the full room state before an event (or the current
// state when ev is nil). When members is not nil (lazy-loaded members),
// the member events of other users may be left out: they are not read.
func (s *Service) stateAt(ctx context.Context, roomID string, ev *storage.Event, members []string) ([]storage.Event, error) {
	if ev == nil {
		return s.db.CurrentState(ctx, roomID, nil)
	}
	var ids map[storage.StateKeyTuple]string
	var err error
	if members != nil {
		ids, err = s.db.StateGroupIDsLazy(ctx, ev.StateGroupBefore, members)
	} else {
		ids, err = s.db.StateGroupIDs(ctx, ev.StateGroupBefore)
	}
	if err != nil {
		return nil, err
	}
	list := make([]string, 0, len(ids))
	for _, id := range ids {
		list = append(list, id)
	}
	return s.db.GetEvents(ctx, list)
}

// lazyMembers filters state for lazy loading: member events are kept only
// for timeline senders and the user.
func lazyMembers(state []storage.Event, timeline []storage.Event, self string) []storage.Event {
	need := map[string]bool{self: true}
	for i := range timeline {
		need[timeline[i].Sender] = true
	}
	out := state[:0:0]
	for _, ev := range state {
		if ev.Type == "m.room.member" && ev.StateKey != nil && !need[*ev.StateKey] {
			continue
		}
		out = append(out, ev)
	}
	return out
}

// joinedRoom builds a joined room's section. full asks for the complete
// state before the timeline (otherwise only what changed since from);
// fresh reads the timeline from the room's start rather than from from
// (full_state alone keeps the timeline bounded by since, as the spec says).
// batch holds what was read for all the sync's rooms at once.
// changes holds the room's state events in the window (incremental syncs).
func (s *Service) joinedRoom(ctx context.Context, req *httpapi.Requester, viewer rooms.Viewer, roomID string, from int64, now Token, f *filter.Filter, full bool, tlp timelinePart, batch *roomBatch, changes []storage.Event) (*JoinedRoom, error) {
	jr := &JoinedRoom{State: StateList{Events: []rooms.ClientEvent{}}, Timeline: Timeline{Events: []rooms.ClientEvent{}},
		Ephemeral: EventList{Events: []any{}}, AccountData: EventList{Events: []any{}}}
	tl, limited := tlp.events, tlp.limited
	hasEvents := tlp.read
	var state []storage.Event
	var err error
	prefetched, havePrefetched := batch.state[roomID]
	switch {
	case full && havePrefetched:
		state = prefetched
	case full:
		var first *storage.Event
		if len(tl) > 0 {
			first = &tl[0]
		}
		var members []string
		if f.Room.State.LazyLoadMembers {
			// Only the members lazyMembers keeps below are read.
			members = append(members, req.UserID)
			for i := range tl {
				if !slices.Contains(members, tl[i].Sender) {
					members = append(members, tl[i].Sender)
				}
			}
		}
		if state, err = s.stateAt(ctx, roomID, first, members); err != nil {
			return nil, err
		}
	case hasEvents:
		state = stateDelta(changes, now.Events, tl)
	}
	// The summary is sent when the member list may have changed: with
	// full state, or a member event in the window (the member events lazy
	// loading adds below are not changes).
	memberChange := full
	for _, evs := range [][]storage.Event{tl, state} {
		for i := range evs {
			if evs[i].Type == "m.room.member" {
				memberChange = true
			}
		}
	}
	if f.Room.State.LazyLoadMembers {
		state = lazyMembers(state, tl, req.UserID)
		if !full && len(tl) > 0 {
			// Make sure the client knows every timeline sender.
			have := map[string]bool{}
			for _, ev := range state {
				if ev.Type == "m.room.member" && ev.StateKey != nil {
					have[*ev.StateKey] = true
				}
			}
			for _, ev := range tl {
				if ev.Type == "m.room.member" && ev.StateKey != nil {
					have[*ev.StateKey] = true
				}
			}
			var keys []storage.StateKeyTuple
			read, haveRead := batch.members[roomID]
			for _, ev := range tl {
				if !have[ev.Sender] {
					have[ev.Sender] = true
					if haveRead {
						// Read with the window's state changes, unless
						// it is one of them (then it is in state).
						if m := read[ev.Sender]; m != nil {
							state = append(state, *m)
						}
						continue
					}
					keys = append(keys, storage.StateKeyTuple{Type: "m.room.member", StateKey: ev.Sender})
				}
			}
			if len(keys) > 0 {
				extra, err := s.db.CurrentState(ctx, roomID, keys)
				if err != nil {
					return nil, err
				}
				state = append(state, extra...)
			}
		}
	}
	// Never repeat in state what the timeline carries.
	inTimeline := map[string]bool{}
	for _, ev := range tl {
		inTimeline[ev.EventID] = true
	}
	kept := state[:0:0]
	for _, ev := range state {
		if !inTimeline[ev.EventID] && f.Room.State.AllowsEvent(&ev) {
			kept = append(kept, ev)
		}
	}
	sort.Slice(kept, func(i, j int) bool { return kept[i].StreamPos < kept[j].StreamPos })
	if jr.State.Events, err = s.formatAll(ctx, kept, viewer, batch.relations); err != nil {
		return nil, err
	}
	if jr.Timeline.Events, err = s.formatAll(ctx, tl, viewer, batch.relations); err != nil {
		return nil, err
	}
	jr.Timeline.Limited = limited
	prev := now
	if len(tl) > 0 {
		prev.Events = tl[0].StreamPos - 1
	}
	jr.Timeline.PrevBatch = prev.String()
	if memberChange {
		if sum, ok := batch.summaries[roomID]; ok {
			jr.Summary = sum
		} else {
			sums, err := s.summaries(ctx, []string{roomID}, req.UserID)
			if err != nil {
				return nil, err
			}
			jr.Summary = sums[roomID]
		}
	}
	counts := batch.unread[roomID] // the batch covers every room built
	if batch.unread == nil {
		if counts, err = s.db.UnreadCounts(ctx, roomID, req.UserID); err != nil {
			return nil, err
		}
	}
	jr.UnreadNotifications, jr.UnreadThreadNotifications = unreadCounts(counts, f.Room.Timeline.UnreadThreadNotifications)
	return jr, nil
}

// stateDelta is the state section of an incremental sync: for each piece
// of state that changed in (from, to], its value at the start of the
// timeline (the spec's "updates between since and the start of the
// timeline", whether the timeline was limited or filtered), and its final
// value when that is not in the timeline (a state event the timeline
// filter hid), so that the client's state ends up right. changes are the
// room's state events in (from, to], oldest first.
func stateDelta(changes []storage.Event, to int64, tl []storage.Event) []storage.Event {
	tlStart := to + 1
	if len(tl) > 0 {
		tlStart = tl[0].StreamPos
	}
	inTimeline := make(map[string]bool, len(tl))
	for i := range tl {
		inTimeline[tl[i].EventID] = true
	}
	atStart := map[storage.StateKeyTuple]storage.Event{}
	atEnd := map[storage.StateKeyTuple]storage.Event{}
	for _, ev := range changes { // oldest first
		k := storage.StateKeyTuple{Type: ev.Type, StateKey: *ev.StateKey}
		if ev.StreamPos < tlStart {
			atStart[k] = ev
		}
		atEnd[k] = ev
	}
	var out []storage.Event
	for k, ev := range atEnd {
		start, ok := atStart[k]
		if ok {
			out = append(out, start)
		}
		if (!ok || start.EventID != ev.EventID) && !inTimeline[ev.EventID] {
			out = append(out, ev)
		}
	}
	return out
}

// roomBatch holds what a sync reads for all its joined rooms at once.
type roomBatch struct {
	vis       map[string]*rooms.Visibility // rooms whose timeline needs the user's visibility (others: joinedView)
	summaries map[string]*Summary          // rooms listed with full state
	unread    map[string]map[string]storage.NotificationCounts
	// state holds the state before the timeline of full rooms whose state
	// has not changed since their timeline started (others are absent).
	state map[string][]storage.Event
	// members holds, for lazy loading, the current member events (before
	// the window) of the timeline senders of the rooms listed with a state
	// delta, by room and user; a room is present when they were read.
	members map[string]map[string]*storage.Event
	// relations holds which timeline events have children to bundle.
	relations *rooms.RelationTargets
}

// timelinePart is a joined room's timeline as read for a sync.
type timelinePart struct {
	events  []storage.Event
	limited bool
	read    bool // the timeline was read (the room has events to show)
}

// stateBeforeTimelines reads, for rooms listed with full state, the state
// before the first event of each room's timeline (firsts), for all the
// rooms at once. It reads the current state, which is that state unless a
// state event came at or after the timeline's start: a room where one of
// the state events read is that recent is left out of the answer, for
// stateAt to resolve from its state group. With lazy members, only the
// member events of the timeline's senders and of self are read (the
// others would be dropped by lazyMembers).
func (s *Service) stateBeforeTimelines(ctx context.Context, roomIDs []string, tls map[string][]storage.Event, self string, lazy bool) (map[string][]storage.Event, error) {
	evs, err := s.db.CurrentStateRooms(ctx, roomIDs, !lazy)
	if err != nil {
		return nil, err
	}
	if lazy {
		var pairs []storage.RoomUser
		for _, roomID := range roomIDs {
			need := map[string]bool{self: true}
			pairs = append(pairs, storage.RoomUser{RoomID: roomID, UserID: self})
			for _, ev := range tls[roomID] {
				if !need[ev.Sender] {
					need[ev.Sender] = true
					pairs = append(pairs, storage.RoomUser{RoomID: roomID, UserID: ev.Sender})
				}
			}
		}
		members, err := s.db.CurrentMemberEvents(ctx, pairs)
		if err != nil {
			return nil, err
		}
		evs = append(evs, members...)
	}
	out := make(map[string][]storage.Event, len(roomIDs))
	stale := map[string]bool{}
	for _, ev := range evs {
		if ev.StreamPos >= tls[ev.RoomID][0].StreamPos {
			stale[ev.RoomID] = true
		}
		out[ev.RoomID] = append(out[ev.RoomID], ev)
	}
	for roomID := range stale {
		delete(out, roomID)
	}
	return out, nil
}

// summaries returns the summary of each room: member counts and, for
// rooms with neither a name nor a canonical alias, up to five heroes.
func (s *Service) summaries(ctx context.Context, roomIDs []string, self string) (map[string]*Summary, error) {
	counts, err := s.db.MemberCounts(ctx, roomIDs)
	if err != nil {
		return nil, err
	}
	// Heroes only matter for rooms without a name or canonical alias.
	named, err := s.db.RoomsWithState(ctx, roomIDs, []storage.StateKeyTuple{{Type: "m.room.name"}, {Type: "m.room.canonical_alias"}})
	if err != nil {
		return nil, err
	}
	out := make(map[string]*Summary, len(roomIDs))
	for _, roomID := range roomIDs {
		joined, invited := counts[roomID]["join"], counts[roomID]["invite"]
		sum := &Summary{JoinedMemberCount: &joined, InvitedMemberCount: &invited}
		if !named[roomID] {
			if sum.Heroes, err = s.db.RoomHeroes(ctx, roomID, self, 5); err != nil {
				return nil, err
			}
		}
		out[roomID] = sum
	}
	return out, nil
}

var strippedTypes = []storage.StateKeyTuple{
	{Type: "m.room.create"}, {Type: "m.room.join_rules"}, {Type: "m.room.name"}, {Type: "m.room.avatar"},
	{Type: "m.room.canonical_alias"}, {Type: "m.room.encryption"}, {Type: "m.room.topic"},
}

// InviteState returns the stripped state shown to an invitee.
func (s *Service) InviteState(ctx context.Context, roomID, userID string) ([]any, error) {
	keys := append(append([]storage.StateKeyTuple{}, strippedTypes...), storage.StateKeyTuple{Type: "m.room.member", StateKey: userID})
	evs, err := s.db.CurrentState(ctx, roomID, keys)
	if err != nil {
		return nil, err
	}
	var inviter string
	for i := range evs {
		if evs[i].Type == "m.room.member" {
			inviter = evs[i].Sender
		}
	}
	if inviter != "" && inviter != userID {
		more, err := s.db.CurrentState(ctx, roomID, []storage.StateKeyTuple{{Type: "m.room.member", StateKey: inviter}})
		if err != nil {
			return nil, err
		}
		evs = append(evs, more...)
	}
	out := make([]any, 0, len(evs))
	for i := range evs {
		var p struct {
			Content json.RawMessage `json:"content"`
		}
		_ = json.Unmarshal(evs[i].JSON, &p)
		out = append(out, StrippedEvent{Content: p.Content, Sender: evs[i].Sender, StateKey: *evs[i].StateKey, Type: evs[i].Type})
	}
	return out, nil
}

func (s *Service) invitedRoom(ctx context.Context, m storage.Membership) (*InvitedRoom, error) {
	evs, err := s.InviteState(ctx, m.RoomID, m.UserID)
	if err != nil {
		return nil, err
	}
	return &InvitedRoom{InviteState: EventList{Events: evs}}, nil
}

func (s *Service) leftRoom(ctx context.Context, req *httpapi.Requester, viewer rooms.Viewer, m storage.Membership, from int64, f *filter.Filter) (*LeftRoom, error) {
	lr := &LeftRoom{State: StateList{Events: []rooms.ClientEvent{}}, Timeline: Timeline{Events: []rooms.ClientEvent{}}, AccountData: EventList{Events: []any{}}}
	tl, limited, err := s.timeline(ctx, viewer, m.RoomID, from, m.StreamPos, &f.Room.Timeline, nil)
	if err != nil {
		return nil, err
	}
	var state []storage.Event
	if len(tl) > 0 && (from == 0 || limited) {
		if state, err = s.stateAt(ctx, m.RoomID, &tl[0], nil); err != nil {
			return nil, err
		}
	}
	if f.Room.State.LazyLoadMembers {
		state = lazyMembers(state, tl, req.UserID)
	}
	if lr.State.Events, err = s.formatAll(ctx, state, viewer, nil); err != nil {
		return nil, err
	}
	if lr.Timeline.Events, err = s.formatAll(ctx, tl, viewer, nil); err != nil {
		return nil, err
	}
	lr.Timeline.Limited = limited
	prev := Token{Events: m.StreamPos}
	if len(tl) > 0 {
		prev.Events = tl[0].StreamPos - 1
	}
	lr.Timeline.PrevBatch = prev.String()
	return lr, nil
}

// ephemeral returns typing and receipt EDUs per joined room.
func (s *Service) ephemeral(ctx context.Context, self string, joined []string, since *Token, now Token, f *filter.Filter) (map[string][]any, error) {
	out := map[string][]any{}
	var rcFrom int64
	if since != nil {
		rcFrom = since.Receipts
	}
	rcs, err := s.db.ReceiptsSince(ctx, joined, rcFrom, now.Receipts)
	if err != nil {
		return nil, err
	}
	// m.receipt content: {event_id: {type: {user: {ts, thread_id?}}}}
	byRoom := map[string]map[string]map[string]map[string]any{}
	for _, r := range rcs {
		if r.Type == "m.read.private" && r.UserID != self {
			continue // private receipts are only ever shown to their owner
		}
		room := byRoom[r.RoomID]
		if room == nil {
			room = map[string]map[string]map[string]any{}
			byRoom[r.RoomID] = room
		}
		if room[r.EventID] == nil {
			room[r.EventID] = map[string]map[string]any{}
		}
		if room[r.EventID][r.Type] == nil {
			room[r.EventID][r.Type] = map[string]any{}
		}
		entry := map[string]any{"ts": r.TS}
		if r.ThreadID != "" {
			entry["thread_id"] = r.ThreadID
		}
		room[r.EventID][r.Type][r.UserID] = entry
	}
	for roomID, content := range byRoom {
		if f.Room.Ephemeral.Allows("m.receipt", "") && filter.AllowsRoom(f.Room.Ephemeral.Rooms, f.Room.Ephemeral.NotRooms, roomID) {
			out[roomID] = append(out[roomID], map[string]any{"type": "m.receipt", "content": content})
		}
	}
	for _, roomID := range joined {
		users, pos := s.typing.Room(roomID)
		changed := pos > 0 && (since == nil && len(users) > 0 || since != nil && (pos > since.Typing || since.Typing > now.Typing))
		if changed && f.Room.Ephemeral.Allows("m.typing", "") && filter.AllowsRoom(f.Room.Ephemeral.Rooms, f.Room.Ephemeral.NotRooms, roomID) {
			if users == nil {
				users = []string{}
			}
			out[roomID] = append(out[roomID], map[string]any{"type": "m.typing", "content": map[string]any{"user_ids": users}})
		}
	}
	return out, nil
}
