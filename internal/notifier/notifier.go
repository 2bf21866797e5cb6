// Package notifier wakes long-polling /sync requests when something they
// may care about happens. It only carries wake-ups: every sync re-reads its
// data from the database, so a PostgreSQL LISTEN/NOTIFY implementation can
// replace this in-process one without changing correctness.
package notifier

import (
	"context"
	"sync"

	"github.com/rempart-hs/rempart/internal/storage"
)

// Notifier tracks waiting syncs per user.
type Notifier struct {
	db      *storage.DB
	mu      sync.Mutex
	waiters map[string]map[chan struct{}]struct{}
	done    chan struct{}
	closed  bool
}

// New returns a notifier that resolves room members through db.
func New(db *storage.DB) *Notifier {
	return &Notifier{db: db, waiters: map[string]map[chan struct{}]struct{}{}, done: make(chan struct{})}
}

// Listen registers interest in userID's updates. The returned channel
// receives a value on the next wake-up; cancel must be called when done.
func (n *Notifier) Listen(userID string) (ch <-chan struct{}, cancel func()) {
	c := make(chan struct{}, 1)
	n.mu.Lock()
	set := n.waiters[userID]
	if set == nil {
		set = map[chan struct{}]struct{}{}
		n.waiters[userID] = set
	}
	set[c] = struct{}{}
	n.mu.Unlock()
	return c, func() {
		n.mu.Lock()
		delete(n.waiters[userID], c)
		if len(n.waiters[userID]) == 0 {
			delete(n.waiters, userID)
		}
		n.mu.Unlock()
	}
}

// Done is closed when the server shuts down, releasing all long-polls.
func (n *Notifier) Done() <-chan struct{} { return n.done }

// Shutdown releases every waiting sync.
func (n *Notifier) Shutdown() {
	n.mu.Lock()
	defer n.mu.Unlock()
	if !n.closed {
		n.closed = true
		close(n.done)
	}
}

// WakeUsers wakes the syncs of the given users.
func (n *Notifier) WakeUsers(userIDs ...string) {
	n.mu.Lock()
	defer n.mu.Unlock()
	for _, u := range userIDs {
		for c := range n.waiters[u] {
			select {
			case c <- struct{}{}:
			default:
			}
		}
	}
}

// WakeRoom wakes the syncs of every user with a membership in the room.
func (n *Notifier) WakeRoom(roomID string) {
	ms, err := n.db.RoomMembers(context.Background(), roomID, "")
	if err != nil {
		return
	}
	users := make([]string, 0, len(ms))
	for _, m := range ms {
		users = append(users, m.UserID)
	}
	n.WakeUsers(users...)
}

// RoomEvent implements rooms.Notifier.
func (n *Notifier) RoomEvent(roomID string, _ int64, ev *storage.Event) {
	n.WakeRoom(roomID)
	if ev != nil && ev.Type == "m.room.member" && ev.StateKey != nil {
		n.WakeUsers(*ev.StateKey)
	}
}
