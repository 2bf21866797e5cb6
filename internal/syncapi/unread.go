package syncapi

import "github.com/rempart-hs/rempart/internal/storage"

// unreadCounts turns a room's unread notification counts by thread (the
// notifications push rules decided when each event was stored, tables
// event_push_staged and event_push_actions, after the user's read
// receipts) into the sync
// fields. With byThread, the room counts cover the main timeline only and
// each thread with unread notifications gets its own counts, as the spec's
// unread_thread_notifications filter option asks.
func unreadCounts(counts map[string]storage.NotificationCounts, byThread bool) (*Unread, map[string]*Unread) {
	room := &Unread{}
	var threads map[string]*Unread
	for t, c := range counts {
		if byThread && t != "main" {
			if threads == nil {
				threads = map[string]*Unread{}
			}
			threads[t] = &Unread{NotificationCount: c.Notifications, HighlightCount: c.Highlights}
			continue
		}
		room.NotificationCount += c.Notifications
		room.HighlightCount += c.Highlights
	}
	return room, threads
}
