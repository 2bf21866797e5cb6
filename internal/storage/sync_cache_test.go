package storage_test

import (
	"context"
	"slices"
	"testing"
	"time"

	"github.com/rempart-hs/rempart/internal/storage"
)

// A user's memberships and a device's key counts are kept in memory for
// /sync (storage/sync_cache.go): each write that changes them must be seen
// by the next read, even right after a read that filled the cache.
func TestSyncCachesSeeEveryWrite(t *testing.T) {
	db, _ := openTestDB(t)
	ctx := context.Background()
	write := func(f func(tx *storage.Tx) error) { t.Helper(); mustTx(t, db, f) }
	batchRooms(t, db, "!a:t", "!b:t")
	n := 0
	member := func(room, user, membership string) {
		t.Helper()
		n++
		write(func(tx *storage.Tx) error {
			r, err := tx.LockRoom(ctx, room)
			if err != nil {
				return err
			}
			_, err = tx.AppendEvent(ctx, &r, storage.NewEvent{Event: storage.Event{EventID: "$m" + string(rune('a'+n)), RoomID: room,
				Type: "m.room.member", StateKey: &user, Sender: user, OriginServerTS: time.Now().UnixMilli(), Depth: r.Depth + 1,
				JSON: []byte(`{}`)}, Membership: membership})
			return err
		})
	}
	rooms := func(what string, want ...string) {
		t.Helper()
		for range 2 { // the second answer comes from memory
			ms, err := db.SyncMemberships(ctx, "@u:t")
			if err != nil {
				t.Fatal(err)
			}
			var got []string
			for _, m := range ms {
				got = append(got, m.RoomID+" "+m.Membership)
			}
			slices.Sort(got)
			if !slices.Equal(got, want) {
				t.Errorf("%s: memberships %q, want %q", what, got, want)
				return
			}
			ms[0].RoomID = "changed by the caller"
		}
	}
	member("!a:t", "@u:t", "join")
	rooms("after a join", "!a:t join")
	member("!b:t", "@u:t", "invite")
	rooms("after an invite", "!a:t join", "!b:t invite")
	member("!b:t", "@u:t", "join")
	rooms("after accepting", "!a:t join", "!b:t join")
	member("!b:t", "@u:t", "leave")
	rooms("after leaving", "!a:t join", "!b:t leave")
	write(func(tx *storage.Tx) error { return tx.ForgetRoom(ctx, "!b:t", "@u:t") })
	rooms("after forgetting", "!a:t join")

	counts := func(what string, wantOTK int, wantFallback ...string) {
		t.Helper()
		for range 2 {
			c, fb, err := db.DeviceKeyCounts(ctx, "@u:t", "DEV")
			if err != nil {
				t.Fatal(err)
			}
			if c["signed_curve25519"] != wantOTK || !slices.Equal(fb, wantFallback) {
				t.Errorf("%s: %d one-time keys, fallback %q; want %d, %q", what, c["signed_curve25519"], fb, wantOTK, wantFallback)
				return
			}
			c["signed_curve25519"] = 99
		}
	}
	write(func(tx *storage.Tx) error {
		return tx.UpsertDevice(ctx, storage.Device{UserID: "@u:t", DeviceID: "DEV", CreatedTS: 1})
	})
	counts("before any upload", 0)
	write(func(tx *storage.Tx) error {
		for _, id := range []string{"signed_curve25519:A", "signed_curve25519:B"} {
			if err := tx.AddOneTimeKey(ctx, "@u:t", "DEV", "signed_curve25519", id, []byte(`{"key":"`+id+`"}`)); err != nil {
				return err
			}
		}
		return nil
	})
	counts("after an upload", 2)
	write(func(tx *storage.Tx) error {
		return tx.PutFallbackKey(ctx, "@u:t", "DEV", "signed_curve25519", "signed_curve25519:F", []byte(`{"key":"F"}`))
	})
	counts("after a fallback key", 2, "signed_curve25519")
	claim := func() {
		t.Helper()
		write(func(tx *storage.Tx) error {
			_, _, err := tx.ClaimOneTimeKey(ctx, "@u:t", "DEV", "signed_curve25519")
			return err
		})
	}
	claim()
	counts("after a claim", 1, "signed_curve25519")
	claim()
	claim() // the fallback key
	counts("after the fallback key was claimed", 0)
	write(func(tx *storage.Tx) error {
		if err := tx.AddOneTimeKey(ctx, "@u:t", "DEV", "signed_curve25519", "signed_curve25519:C", []byte(`{"key":"C"}`)); err != nil {
			return err
		}
		return tx.DeleteDeviceE2EE(ctx, "@u:t", "DEV")
	})
	counts("after the device's keys were deleted", 0)
}
