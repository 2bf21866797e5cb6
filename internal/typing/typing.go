// Package typing keeps who is typing in which room. Typing notifications
// are ephemeral and high-churn, so they live in memory with their own stream
// position; a later multi-process deployment routes them through one writer.
package typing

import (
	"sort"
	"sync"
	"time"
)

// Waker is told when a room's typing set changes.
type Waker interface{ WakeRoom(roomID string) }

// Tracker holds typing state.
type Tracker struct {
	mu    sync.Mutex
	pos   int64
	rooms map[string]*roomTyping
	waker Waker
	now   func() time.Time
}

type roomTyping struct {
	users map[string]time.Time // user → expiry
	pos   int64
}

// New returns an empty tracker.
func New(w Waker) *Tracker {
	return &Tracker{rooms: map[string]*roomTyping{}, waker: w, now: time.Now}
}

// MaxTimeout bounds a typing notification's lifetime.
const MaxTimeout = 2 * time.Minute

// Set marks userID as typing (for timeout) or not in roomID.
func (t *Tracker) Set(roomID, userID string, typing bool, timeout time.Duration) {
	if timeout <= 0 || timeout > MaxTimeout {
		timeout = MaxTimeout
	}
	t.mu.Lock()
	rt := t.rooms[roomID]
	if rt == nil {
		rt = &roomTyping{users: map[string]time.Time{}}
		t.rooms[roomID] = rt
	}
	_, was := rt.users[userID]
	if typing {
		rt.users[userID] = t.now().Add(timeout)
	} else {
		delete(rt.users, userID)
	}
	changed := was != typing
	if changed {
		t.pos++
		rt.pos = t.pos
	}
	t.mu.Unlock()
	if changed && t.waker != nil {
		t.waker.WakeRoom(roomID)
	}
	if typing {
		time.AfterFunc(timeout+10*time.Millisecond, func() { t.expire(roomID) })
	}
}

func (t *Tracker) expire(roomID string) {
	t.mu.Lock()
	rt := t.rooms[roomID]
	changed := false
	if rt != nil {
		now := t.now()
		for u, exp := range rt.users {
			if !now.Before(exp) {
				delete(rt.users, u)
				changed = true
			}
		}
		if changed {
			t.pos++
			rt.pos = t.pos
		}
	}
	t.mu.Unlock()
	if changed && t.waker != nil {
		t.waker.WakeRoom(roomID)
	}
}

// Position returns the typing stream position.
func (t *Tracker) Position() int64 {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.pos
}

// Room returns the users typing in a room and the position of its last
// change. A position past the stream (after a restart) counts as changed.
func (t *Tracker) Room(roomID string) (users []string, pos int64) {
	t.mu.Lock()
	defer t.mu.Unlock()
	rt := t.rooms[roomID]
	if rt == nil {
		return nil, 0
	}
	now := t.now()
	for u, exp := range rt.users {
		if now.Before(exp) {
			users = append(users, u)
		}
	}
	sort.Strings(users)
	return users, rt.pos
}
