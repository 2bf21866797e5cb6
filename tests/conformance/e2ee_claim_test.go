package conformance

import (
	"sync"
	"testing"
)

// 50 concurrent claims against 20 one-time keys hand out the 20 keys, each
// exactly once, and then the fallback key.
func TestKeysClaimConcurrent(t *testing.T) {
	e := newEnv(t)
	bob := e.register("ccbob")
	d := newCryptoDevice(bob)
	otks := d.oneTimeKeys(t, "C", 20)
	e.uploadKeys(d, map[string]any{"device_keys": d.deviceKeys(t), "one_time_keys": otks,
		"fallback_keys": map[string]any{"signed_curve25519:FALLBACK": d.signedKey(t, true)}})
	claimers := make([]user, 5)
	for i := range claimers {
		claimers[i] = e.register("ccalice")
	}

	const n = 50
	got := make([]string, n)
	errs := make([]string, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			r := e.raw("POST", keysClaim, claimers[i%len(claimers)].Token,
				map[string]any{"one_time_keys": map[string]any{bob.ID: map[string]any{bob.DeviceID: "signed_curve25519"}}})
			if r.Status != 200 {
				errs[i] = string(r.Body)
				return
			}
			var body map[string]any
			r.Decode(t, &body)
			for id := range path(body, "one_time_keys", bob.ID, bob.DeviceID).(map[string]any) {
				got[i] = id
			}
		}()
	}
	wg.Wait()
	seen := map[string]int{}
	for i := range n {
		if errs[i] != "" {
			t.Fatalf("claim %d failed: %s", i, errs[i])
		}
		seen[got[i]]++
	}
	distinct := 0
	for id, c := range seen {
		switch {
		case id == "signed_curve25519:FALLBACK":
			if c != n-len(otks) {
				t.Fatalf("fallback key handed out %d times, want %d", c, n-len(otks))
			}
		case otks[id] != nil:
			if c != 1 {
				t.Fatalf("one-time key %s handed out %d times", id, c)
			}
			distinct++
		default:
			t.Fatalf("unexpected key %q", id)
		}
	}
	if distinct != len(otks) {
		t.Fatalf("%d distinct one-time keys handed out, want %d", distinct, len(otks))
	}
}
