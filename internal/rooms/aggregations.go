package rooms

import (
	"context"
	"encoding/json"
	"errors"
	"math"

	"github.com/rempart-hs/rempart/internal/storage"
)

// BundleAggregations adds the spec's bundled aggregations of child events
// to formatted events (out[i] is evs[i] formatted for v): under
// unsigned["m.relations"], the most recent valid edit ("m.replace") and the
// thread summary ("m.thread": count, latest_event,
// current_user_participated). It costs one indexed query when no event of
// the batch has children. For a viewer who left the room, edits and
// threads newer than their leave are not shown.
func (e *Engine) BundleAggregations(ctx context.Context, v Viewer, evs []storage.Event, out []ClientEvent) error {
	return e.bundle(ctx, v, evs, out, true, nil)
}

// BundleAggregationsKnown is BundleAggregations with the relation targets
// of the events read beforehand (see CheckRelationTargets), for a caller
// bundling many batches of events, such as the rooms of a sync.
func (e *Engine) BundleAggregationsKnown(ctx context.Context, v Viewer, evs []storage.Event, out []ClientEvent, known *RelationTargets) error {
	return e.bundle(ctx, v, evs, out, true, known)
}

// RelationTargets records which events were checked for children
// (CheckRelationTargets) and which have some.
type RelationTargets struct {
	checked, targets map[string]bool
}

// relationCandidates returns the IDs of the events whose children bundle
// looks for: not state events, not edits.
func relationCandidates(evs []storage.Event) []string {
	ids := make([]string, 0, len(evs))
	for i := range evs {
		if evs[i].StateKey == nil && evs[i].RelType != "m.replace" {
			ids = append(ids, evs[i].EventID)
		}
	}
	return ids
}

// CheckRelationTargets reads, in one query per 500 events, which of evs
// have children that BundleAggregations would bundle.
func (e *Engine) CheckRelationTargets(ctx context.Context, evs []storage.Event) (*RelationTargets, error) {
	ids := relationCandidates(evs)
	targets, err := e.db.RelationTargets(ctx, ids)
	if err != nil {
		return nil, err
	}
	known := &RelationTargets{checked: make(map[string]bool, len(ids)), targets: targets}
	for _, id := range ids {
		known.checked[id] = true
	}
	return known, nil
}

// lookup answers from known when it checked every one of ids.
func (known *RelationTargets) lookup(ids []string) (map[string]bool, bool) {
	if known == nil {
		return nil, false
	}
	for _, id := range ids {
		if !known.checked[id] {
			return nil, false
		}
	}
	return known.targets, true
}

func (e *Engine) bundle(ctx context.Context, v Viewer, evs []storage.Event, out []ClientEvent, withThreads bool, known *RelationTargets) error {
	if len(evs) == 0 || len(evs) != len(out) {
		return nil
	}
	ids := relationCandidates(evs)
	if len(ids) == 0 {
		return nil
	}
	targets, ok := known.lookup(ids)
	if !ok {
		var err error
		if targets, err = e.db.RelationTargets(ctx, ids); err != nil {
			return err
		}
	}
	if len(targets) == 0 {
		return nil
	}
	// What the viewer may read of each room with children: all of it while
	// joined, up to their leave otherwise.
	upTo := map[string]int64{}
	var hit []string
	for i := range evs {
		ev := &evs[i]
		if !targets[ev.EventID] {
			continue
		}
		hit = append(hit, ev.EventID)
		if _, ok := upTo[ev.RoomID]; ok {
			continue
		}
		m, err := e.db.GetMembership(ctx, ev.RoomID, v.UserID)
		switch {
		case errors.Is(err, storage.ErrNotFound):
			upTo[ev.RoomID] = 0
		case err != nil:
			return err
		case m.Membership == "join":
			upTo[ev.RoomID] = math.MaxInt64
		default:
			upTo[ev.RoomID] = m.StreamPos
		}
	}
	edits, err := e.db.Replacements(ctx, hit, math.MaxInt64)
	if err != nil {
		return err
	}
	var threads map[string]storage.ThreadSummary
	latest := map[int64]*storage.Event{}
	if withThreads {
		if threads, err = e.db.ThreadSummaries(ctx, hit, v.UserID, math.MaxInt64); err != nil {
			return err
		}
		var positions []int64
		for _, s := range threads {
			positions = append(positions, s.Latest)
		}
		les, err := e.db.EventsAtPositions(ctx, positions)
		if err != nil {
			return err
		}
		for i := range les {
			latest[les[i].StreamPos] = &les[i]
		}
	}
	byTarget := map[string][]*storage.Event{}
	for i := range edits {
		byTarget[edits[i].RelatesTo] = append(byTarget[edits[i].RelatesTo], &edits[i])
	}
	for i := range evs {
		ev := &evs[i]
		if !targets[ev.EventID] {
			continue
		}
		bound := upTo[ev.RoomID]
		rel := map[string]any{}
		if ev.RedactedBy == "" {
			if edit := latestEdit(ev, byTarget[ev.EventID], bound); edit != nil {
				rel["m.replace"] = Format(edit, v, out[i].RoomID != "", nil)
			}
		}
		if s, ok := threads[ev.EventID]; ok && s.Latest <= bound {
			if le := latest[s.Latest]; le != nil {
				lce := []ClientEvent{Format(le, v, out[i].RoomID != "", nil)}
				// The latest event's own edits are bundled too (one level:
				// thread replies are never thread roots).
				if err := e.bundle(ctx, v, []storage.Event{*le}, lce, false, nil); err != nil {
					return err
				}
				rel["m.thread"] = map[string]any{
					"latest_event":              lce[0],
					"count":                     s.Count,
					"current_user_participated": s.Participated || ev.Sender == v.UserID,
				}
			}
		}
		if len(rel) > 0 {
			if out[i].Unsigned == nil {
				out[i].Unsigned = map[string]any{}
			}
			out[i].Unsigned["m.relations"] = rel
		}
	}
	return nil
}

// latestEdit picks the most recent valid replacement of orig: same sender
// and type, orig not a state event nor itself an edit, m.new_content
// present; latest by origin_server_ts, then by event ID.
func latestEdit(orig *storage.Event, cands []*storage.Event, bound int64) *storage.Event {
	var best *storage.Event
	for _, c := range cands {
		if c.StreamPos > bound || c.Sender != orig.Sender || c.Type != orig.Type || c.StateKey != nil || orig.StateKey != nil || orig.RelType == "m.replace" {
			continue
		}
		if c.Type != "m.room.encrypted" { // m.new_content is inside the ciphertext
			var body struct {
				Content struct {
					NewContent json.RawMessage `json:"m.new_content"`
				} `json:"content"`
			}
			if json.Unmarshal(c.JSON, &body) != nil || len(body.Content.NewContent) == 0 || body.Content.NewContent[0] != '{' {
				continue
			}
		}
		if best == nil || c.OriginServerTS > best.OriginServerTS || (c.OriginServerTS == best.OriginServerTS && c.EventID > best.EventID) {
			best = c
		}
	}
	return best
}
