package rooms

import (
	"context"
	"encoding/json"

	"github.com/rempart-hs/rempart/internal/storage"
)

// Visibility decides which events of one room a user may see, following the
// spec's history visibility rules. It is built from the room's membership
// history of that user and its m.room.history_visibility history, so
// checking an event costs no query.
type Visibility struct {
	userID     string
	membership []posValue // the user's membership after each change
	histVis    []posValue
}

type posValue struct {
	pos   int64
	value string
}

// NewVisibility loads what is needed to check userID's view of roomID.
func (e *Engine) NewVisibility(ctx context.Context, roomID, userID string) (*Visibility, error) {
	v := &Visibility{userID: userID}
	uid := userID
	mem, err := e.db.StateHistory(ctx, roomID, "m.room.member", &uid)
	if err != nil {
		return nil, err
	}
	for i := range mem {
		v.membership = append(v.membership, posValue{mem[i].StreamPos, Membership(&mem[i])})
	}
	empty := ""
	hv, err := e.db.StateHistory(ctx, roomID, "m.room.history_visibility", &empty)
	if err != nil {
		return nil, err
	}
	for i := range hv {
		v.histVis = append(v.histVis, posValue{hv[i].StreamPos, historyVisibility(&hv[i])})
	}
	return v, nil
}

// NewVisibilities is NewVisibility for several rooms, with two queries
// per 500 rooms: the user's membership histories in the rooms and the
// rooms' history visibility histories.
func (e *Engine) NewVisibilities(ctx context.Context, roomIDs []string, userID string) (map[string]*Visibility, error) {
	out := make(map[string]*Visibility, len(roomIDs))
	for _, id := range roomIDs {
		out[id] = &Visibility{userID: userID}
	}
	mem, err := e.db.StateHistoryRooms(ctx, roomIDs, "m.room.member", userID)
	if err != nil {
		return nil, err
	}
	for i := range mem {
		if v := out[mem[i].RoomID]; v != nil {
			v.membership = append(v.membership, posValue{mem[i].StreamPos, Membership(&mem[i])})
		}
	}
	hv, err := e.db.StateHistoryRooms(ctx, roomIDs, "m.room.history_visibility", "")
	if err != nil {
		return nil, err
	}
	for i := range hv {
		if v := out[hv[i].RoomID]; v != nil {
			v.histVis = append(v.histVis, posValue{hv[i].StreamPos, historyVisibility(&hv[i])})
		}
	}
	return out, nil
}

func historyVisibility(ev *storage.Event) string {
	var c struct {
		Content struct {
			HV string `json:"history_visibility"`
		} `json:"content"`
	}
	_ = json.Unmarshal(ev.JSON, &c)
	return c.Content.HV
}

// valueBefore returns the value in effect just before pos ("" if none).
func valueBefore(vals []posValue, pos int64) string {
	out := ""
	for _, pv := range vals {
		if pv.pos >= pos {
			break
		}
		out = pv.value
	}
	return out
}

// CanSee reports whether the user may see the event.
func (v *Visibility) CanSee(ev *storage.Event) bool {
	hv := valueBefore(v.histVis, ev.StreamPos)
	if hv == "" {
		hv = "shared"
	}
	if hv == "world_readable" {
		return true
	}
	// The user's own membership events are always visible to them.
	if ev.Type == "m.room.member" && ev.StateKey != nil && *ev.StateKey == v.userID {
		return true
	}
	at := valueBefore(v.membership, ev.StreamPos)
	switch hv {
	case "joined":
		return at == "join"
	case "invited":
		return at == "join" || at == "invite"
	default: // shared
		if at == "join" {
			return true
		}
		// Visible if the user joined at any point after the event, up to
		// their current membership.
		for _, pv := range v.membership {
			if pv.pos > ev.StreamPos && pv.value == "join" {
				return true
			}
		}
		return false
	}
}

// MembershipAt returns the user's membership just after stream position pos.
func (v *Visibility) MembershipAt(pos int64) string { return valueBefore(v.membership, pos+1) }

// Filter keeps the events the user may see.
func (v *Visibility) Filter(evs []storage.Event) []storage.Event {
	out := evs[:0:0]
	for i := range evs {
		if v.CanSee(&evs[i]) {
			out = append(out, evs[i])
		}
	}
	return out
}

// VisibleUpTo returns the highest stream position the user may read: the
// position of their leave/ban if they are no longer joined, or limit.
func (v *Visibility) VisibleUpTo(limit int64) int64 {
	if len(v.membership) == 0 {
		return limit
	}
	last := v.membership[len(v.membership)-1]
	if last.value == "join" {
		return limit
	}
	if last.pos < limit {
		return last.pos
	}
	return limit
}

// JoinedUntil describes the user's last stay in the room: whether they
// ever joined, and if they are no longer joined, the stream position of
// the event that ended their last stay (their leave, kick or ban). A user
// who was only ever invited, or only knocked, has never joined.
func (v *Visibility) JoinedUntil() (pos int64, everJoined, stillJoined bool) {
	last := -1
	for i, pv := range v.membership {
		if pv.value == "join" {
			last = i
		}
	}
	switch {
	case last < 0:
		return 0, false, false
	case last == len(v.membership)-1:
		return 0, true, true
	default:
		return v.membership[last+1].pos, true, false
	}
}
