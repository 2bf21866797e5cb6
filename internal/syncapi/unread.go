package syncapi

import "context"

// unread returns a room's unread notification counts for the user: the
// notifications push rules decided when each event was stored (table
// event_push_actions) after the user's read receipts. With byThread, the
// room counts cover the main timeline only and each thread with unread
// notifications gets its own counts, as the spec's
// unread_thread_notifications filter option asks.
func (s *Service) unread(ctx context.Context, roomID, userID string, byThread bool) (*Unread, map[string]*Unread, error) {
	counts, err := s.db.UnreadCounts(ctx, roomID, userID)
	if err != nil {
		return nil, nil, err
	}
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
	return room, threads, nil
}
