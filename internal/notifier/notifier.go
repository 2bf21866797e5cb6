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

	// members caches the users with a membership in a room, keyed by the
	// room's state group when they were read. Every use first reads the
	// room's current state group from the database (one primary-key
	// look-up) and re-reads the members when it moved, so the cache stays
	// right whichever process changed the room.
	membersMu sync.Mutex
	members   map[string]roomMembers
	cached    int // user IDs held in members
}

type roomMembers struct {
	stateGroup int64
	users      []string
}

// Room member lists are cached only for rooms at least this big (smaller
// ones are as cheap to read as to validate), and for at most
// maxCachedMembers user IDs in all.
const (
	minCachedRoom    = 32
	maxCachedMembers = 1 << 19
)

// New returns a notifier that resolves room members through db.
func New(db *storage.DB) *Notifier {
	return &Notifier{db: db, waiters: map[string]map[chan struct{}]struct{}{}, done: make(chan struct{}),
		members: map[string]roomMembers{}}
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
	n.mu.Lock()
	idle := len(n.waiters) == 0
	n.mu.Unlock()
	if idle {
		return // nobody is waiting: a sync that starts later reads the database
	}
	users, err := n.roomUsers(context.Background(), roomID)
	if err != nil {
		return
	}
	n.WakeUsers(users...)
}

// roomUsers returns the users with a membership in the room, from the
// cache when the room's state has not changed since they were read.
func (n *Notifier) roomUsers(ctx context.Context, roomID string) ([]string, error) {
	// The state group is read before the members: members read later are
	// at least as new as the group they are filed under, so a stale list
	// is never served.
	group, err := n.db.RoomStateGroup(ctx, roomID)
	if err != nil {
		return nil, err
	}
	n.membersMu.Lock()
	c, ok := n.members[roomID]
	n.membersMu.Unlock()
	if ok && c.stateGroup == group {
		return c.users, nil
	}
	ms, err := n.db.RoomMembers(ctx, roomID, "")
	if err != nil {
		return nil, err
	}
	users := make([]string, 0, len(ms))
	for _, m := range ms {
		users = append(users, m.UserID)
	}
	n.membersMu.Lock()
	defer n.membersMu.Unlock()
	if old, ok := n.members[roomID]; ok {
		n.cached -= len(old.users)
		delete(n.members, roomID)
	}
	if len(users) >= minCachedRoom && len(users) <= maxCachedMembers {
		for id, old := range n.members {
			if n.cached+len(users) <= maxCachedMembers {
				break
			}
			n.cached -= len(old.users)
			delete(n.members, id)
		}
		n.members[roomID] = roomMembers{stateGroup: group, users: users}
		n.cached += len(users)
	}
	return users, nil
}

// RoomEvent implements rooms.Notifier.
func (n *Notifier) RoomEvent(roomID string, _ int64, ev *storage.Event) {
	n.WakeRoom(roomID)
	if ev != nil && ev.Type == "m.room.member" && ev.StateKey != nil {
		n.WakeUsers(*ev.StateKey)
	}
}
