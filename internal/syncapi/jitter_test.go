package syncapi

import (
	"testing"
	"time"
)

// Long-poll timeouts of a second or more end up to a fifth early, at
// random, so that long-polls started together do not keep timing out
// together; shorter ones are kept as asked.
func TestLongPollTimeoutJitter(t *testing.T) {
	if got := jitter(500 * time.Millisecond); got != 500*time.Millisecond {
		t.Errorf("jitter(500ms) = %v, want it unchanged", got)
	}
	seen := map[time.Duration]bool{}
	for range 1000 {
		got := jitter(30 * time.Second)
		if got <= 24*time.Second || got > 30*time.Second {
			t.Fatalf("jitter(30s) = %v, want within (24s, 30s]", got)
		}
		seen[got.Truncate(time.Second)] = true
	}
	if len(seen) < 5 {
		t.Errorf("jitter(30s) spread over %d distinct seconds in 1,000 draws, want all six", len(seen))
	}
}
