package e2ee

import (
	"context"
	"encoding/json"
	"errors"
	"sort"

	"github.com/rempart-hs/rempart/internal/rooms"
	"github.com/rempart-hs/rempart/internal/storage"
	"github.com/rempart-hs/rempart/internal/syncapi"
)

// maxToDevicePerSync bounds the to-device messages in one sync response;
// the rest follow in the next one.
const maxToDevicePerSync = 100

// Fill implements syncapi.Extension: it adds the device's to-device
// messages (deleting those acknowledged by since) and the device-list
// changes of users sharing a room with the syncer.
func (s *Service) Fill(ctx context.Context, w *syncapi.Window, resp *syncapi.Response) error {
	if !toDeviceUnmoved(w) {
		if err := s.fillToDevice(ctx, w, resp); err != nil {
			return err
		}
	}
	if w.Since != nil {
		// The member events in the window of the rooms the syncer is
		// joined to (those rooms have events in the window).
		var members []storage.Event
		for _, roomID := range w.Active {
			for _, ev := range w.StateChanges[roomID] {
				if ev.Type == "m.room.member" {
					members = append(members, ev)
				}
			}
		}
		changed, left, err := s.deviceListDelta(ctx, w.Requester.UserID, *w.Since, w.Now, w.OwnMembership, members)
		if err != nil {
			return err
		}
		if len(changed) > 0 || len(left) > 0 {
			resp.DeviceLists = &syncapi.DeviceLists{Changed: changed, Left: left}
		}
	}
	return nil
}

// Finish implements syncapi.Extension: it adds the device's one-time key
// counts and unused fallback key types, which every answer carries.
func (s *Service) Finish(ctx context.Context, w *syncapi.Window, resp *syncapi.Response) error {
	if toDeviceUnmoved(w) && w.Since.ToDevice > 0 {
		// Fill read nothing: the messages the client acknowledged are
		// deleted here, once per answer.
		if err := s.fillToDevice(ctx, w, resp); err != nil {
			return err
		}
	}
	counts, fb, err := s.db.DeviceKeyCounts(ctx, w.Requester.UserID, w.Requester.DeviceID)
	if err != nil {
		return err
	}
	if _, ok := counts["signed_curve25519"]; !ok {
		counts["signed_curve25519"] = 0
	}
	resp.DeviceOneTimeKeysCount = counts
	if fb == nil {
		fb = []string{}
	}
	resp.DeviceUnusedFallbackKeyTypes = fb
	return nil
}

// fillToDevice delivers queued to-device messages. Messages up to the
// since token were received by the client (it would not send that token
// otherwise) and are deleted; the first read finds them with the new ones.
func (s *Service) fillToDevice(ctx context.Context, w *syncapi.Window, resp *syncapi.Response) error {
	req, now := w.Requester, w.Now
	if req.DeviceID == "" {
		return nil
	}
	var acked int64
	if w.Since != nil {
		acked = min(w.Since.ToDevice, now.ToDevice)
	}
	msgs, err := s.db.ToDeviceMessages(ctx, req.UserID, req.DeviceID, now.ToDevice, maxToDevicePerSync+1)
	if err != nil {
		return err
	}
	if n := ackedPrefix(msgs, acked); n > 0 {
		if err := s.db.WithTx(ctx, func(tx *storage.Tx) error {
			return tx.DeleteToDeviceUpTo(ctx, req.UserID, req.DeviceID, acked)
		}); err != nil {
			return err
		}
		if len(msgs) > maxToDevicePerSync {
			// The read may have stopped before the newest: read past
			// the acknowledged ones.
			if msgs, err = s.db.ToDeviceMessagesBetween(ctx, req.UserID, req.DeviceID, acked, now.ToDevice, maxToDevicePerSync+1); err != nil {
				return err
			}
		} else {
			msgs = msgs[n:]
		}
	}
	if len(msgs) == 0 {
		return nil
	}
	if len(msgs) > maxToDevicePerSync {
		msgs = msgs[:maxToDevicePerSync]
		// Resume after the last delivered message.
		next := now
		next.ToDevice = msgs[len(msgs)-1].StreamPos
		resp.NextBatch = next.String()
	}
	evs := make([]any, 0, len(msgs))
	for _, m := range msgs {
		evs = append(evs, map[string]any{"sender": m.Sender, "type": m.Type, "content": m.Content})
	}
	resp.ToDevice = &syncapi.EventList{Events: evs}
	return nil
}

// toDeviceUnmoved reports whether the to-device stream has not moved
// since the client's position: then the device has no new message (the
// stream's positions are allocated in commit order, and the messages up
// to its position were delivered), and a long-poll woken by something
// else need not read its queue.
func toDeviceUnmoved(w *syncapi.Window) bool {
	return w.Since != nil && w.Now.ToDevice <= w.Since.ToDevice
}

// ackedPrefix returns how many of msgs (in stream order) have stream
// positions up to acked.
func ackedPrefix(msgs []storage.ToDeviceMessage, acked int64) int {
	n := 0
	for n < len(msgs) && msgs[n].StreamPos <= acked {
		n++
	}
	return n
}

// deviceListDelta computes, between two sync positions, the users whose
// device lists the syncer must re-fetch (changed: their devices or keys
// changed, or they newly share a room with the syncer) and those it may
// stop tracking (left: they no longer share any room).
//
// Its reads follow what changed in the window: the device-list changes,
// the syncer's own membership changes (and the members of the rooms it
// joined or left) and the membership changes in its rooms; whether a user
// shares a room with the syncer is looked up only for the users named by
// those changes.
//
// own holds the syncer's own m.room.member events in the window, and
// members the m.room.member events in the window of the rooms the syncer
// is joined to now, both oldest first.
func (s *Service) deviceListDelta(ctx context.Context, userID string, from, to syncapi.Token, own, members []storage.Event) (changed, left []string, err error) {
	if to.DeviceLists <= from.DeviceLists && to.Events <= from.Events {
		return nil, nil, nil
	}
	changedSet := map[string]bool{}
	leftSet := map[string]bool{}
	if to.DeviceLists > from.DeviceLists {
		users, err := s.db.DeviceListChangesSharing(ctx, userID, from.DeviceLists, to.DeviceLists)
		if err != nil {
			return nil, nil, err
		}
		for _, u := range users {
			changedSet[u] = true
		}
	}
	if to.Events > from.Events {
		// Users who may now share a room (changed if they do) and users who
		// may no longer share one (left if they do not).
		mayShare := map[string]bool{}
		mayLeave := map[string]bool{}
		// Rooms the syncer joined or left in the window.
		roomChange := map[string]string{}
		for i := range own {
			before, after := membershipBefore(&own[i]), rooms.Membership(&own[i])
			switch {
			case after == "join" && before != "join":
				roomChange[own[i].RoomID] = "join"
			case after != "join" && before == "join":
				roomChange[own[i].RoomID] = "leave"
			}
		}
		for roomID, ch := range roomChange {
			m, err := s.db.GetMembership(ctx, roomID, userID)
			if err != nil && !errors.Is(err, storage.ErrNotFound) {
				return nil, nil, err
			}
			joined := err == nil && m.Membership == "join"
			if ch == "join" && !joined || ch == "leave" && joined {
				continue // joined and left again (or the reverse) within the window
			}
			members, err := s.db.RoomMembers(ctx, roomID, "")
			if err != nil {
				return nil, nil, err
			}
			for _, m := range members {
				switch {
				case ch == "join" && (m.Membership == "join" || m.Membership == "invite"):
					changedSet[m.UserID] = true
				case ch == "leave":
					mayLeave[m.UserID] = true
				}
			}
		}
		evs := members
		for i := range evs {
			if evs[i].StateKey == nil || *evs[i].StateKey == userID {
				continue
			}
			target := *evs[i].StateKey
			before, after := membershipBefore(&evs[i]), rooms.Membership(&evs[i])
			wasIn := before == "join" || before == "invite"
			isIn := after == "join" || after == "invite"
			switch {
			case isIn && !wasIn || after == "join" && before != "join":
				mayShare[target] = true
			case wasIn && !isIn:
				mayLeave[target] = true
			}
		}
		candidates := make([]string, 0, len(mayShare)+len(mayLeave))
		for u := range mayShare {
			candidates = append(candidates, u)
		}
		for u := range mayLeave {
			if !mayShare[u] {
				candidates = append(candidates, u)
			}
		}
		sharing, err := s.db.SharingAmong(ctx, userID, candidates)
		if err != nil {
			return nil, nil, err
		}
		sharing[userID] = true
		for u := range mayShare {
			if sharing[u] {
				changedSet[u] = true
			}
		}
		for u := range mayLeave {
			if !sharing[u] {
				leftSet[u] = true
			}
		}
	}
	delete(leftSet, userID)
	for u := range changedSet {
		delete(leftSet, u)
		changed = append(changed, u)
	}
	for u := range leftSet {
		left = append(left, u)
	}
	sort.Strings(changed)
	sort.Strings(left)
	return changed, left, nil
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
