package storage

import (
	"sync"
	"time"
)

// readCache keeps the answers of a read that requests repeat far more
// often than the data changes (who owns an access token, a user's
// memberships, a device's key counts), so that, say, every woken /sync
// does not read them again.
//
// Every write that changes an answer invalidates its key once the write
// has committed (Tx.AfterCommit). A read that began before an
// invalidation may have read the old rows, so reads note the cache's
// epoch before going to the database and their answer is kept only if no
// invalidation happened since (put). An entry also expires after maxAge:
// this process is the database's only writer today, and the bound is what
// a write by another process sharing the database would wait at most.
type readCache[K comparable, V any] struct {
	maxAge time.Duration
	max    int // past it, the cache starts over

	mu      sync.RWMutex
	epoch   uint64
	entries map[K]cached[V]
}

type cached[V any] struct {
	v  V
	at time.Time
}

func newReadCache[K comparable, V any](maxAge time.Duration, max int) *readCache[K, V] {
	return &readCache[K, V]{maxAge: maxAge, max: max}
}

// begin returns the epoch to pass to put, read before the database is.
func (c *readCache[K, V]) begin() uint64 {
	c.mu.RLock()
	defer c.mu.RUnlock()
	return c.epoch
}

func (c *readCache[K, V]) get(k K, now time.Time) (V, bool) {
	c.mu.RLock()
	e, ok := c.entries[k]
	c.mu.RUnlock()
	if !ok || now.Sub(e.at) > c.maxAge || now.Before(e.at) {
		var zero V
		return zero, false
	}
	return e.v, true
}

// put keeps v, read from the database after begin returned epoch, unless
// something was invalidated since.
func (c *readCache[K, V]) put(k K, v V, epoch uint64, now time.Time) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if epoch != c.epoch {
		return
	}
	if c.entries == nil || len(c.entries) >= c.max {
		c.entries = make(map[K]cached[V])
	}
	c.entries[k] = cached[V]{v: v, at: now}
}

// invalidate drops the keys' answers, and every read in flight.
func (c *readCache[K, V]) invalidate(keys ...K) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.epoch++
	for _, k := range keys {
		delete(c.entries, k)
	}
}

// invalidateAll drops every answer.
func (c *readCache[K, V]) invalidateAll() {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.epoch++
	c.entries = nil
}
