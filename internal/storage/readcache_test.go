package storage

import (
	"testing"
	"time"
)

// A read that began before an invalidation must not be kept: it may have
// read the rows as they were before the write.
func TestReadCacheDropsReadsOverlappingAWrite(t *testing.T) {
	c := newReadCache[string, int](time.Minute, 10)
	now := time.Now()
	epoch := c.begin()
	c.invalidate("k") // a write of k commits while the read runs
	c.put("k", 1, epoch, now)
	if _, ok := c.get("k", now); ok {
		t.Fatal("a read overlapping an invalidation was kept")
	}
	epoch = c.begin()
	c.put("k", 2, epoch, now)
	if v, ok := c.get("k", now); !ok || v != 2 {
		t.Fatalf("got %d, %v; want 2", v, ok)
	}
	if _, ok := c.get("k", now.Add(2*time.Minute)); ok {
		t.Error("an entry older than maxAge was used")
	}
	c.put("other", 3, c.begin(), now)
	c.invalidate("k")
	if _, ok := c.get("other", now); !ok {
		t.Error("invalidating one key dropped another")
	}
	c.invalidateAll()
	if _, ok := c.get("other", now); ok {
		t.Error("invalidateAll kept an entry")
	}
	for i := range 25 { // bounded
		c.put(string(rune('a'+i)), i, c.begin(), now)
	}
	if len(c.entries) > 10 {
		t.Errorf("%d entries, bound 10", len(c.entries))
	}
}
