package storage_test

import (
	"context"
	"fmt"
	"testing"

	"github.com/rempart-hs/rempart/internal/storage"
)

// A flush of device sightings: more than one statement's worth on
// PostgreSQL, a device seen twice in the batch (the newer sighting wins,
// whatever its place), a sighting older than the stored one (ignored).
func TestTouchDevicesInBulk(t *testing.T) {
	db, _ := openTestDB(t)
	ctx := context.Background()
	const n = 2500
	if err := db.WithTx(ctx, func(tx *storage.Tx) error {
		if err := tx.CreateUser(ctx, storage.User{UserID: "@d:t", Localpart: "d", CreatedTS: 1}); err != nil {
			return err
		}
		for i := range n {
			if err := tx.UpsertDevice(ctx, storage.Device{UserID: "@d:t", DeviceID: fmt.Sprintf("D%d", i), CreatedTS: 1}); err != nil {
				return err
			}
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	if err := db.TouchDevices(ctx, []storage.DeviceTouch{{UserID: "@d:t", DeviceID: "D7", IP: "192.0.2.7", TS: 5000}}); err != nil {
		t.Fatal(err)
	}
	var touches []storage.DeviceTouch
	for i := range n {
		touches = append(touches, storage.DeviceTouch{UserID: "@d:t", DeviceID: fmt.Sprintf("D%d", i), IP: "192.0.2.1", TS: 2000})
	}
	touches = append(touches, storage.DeviceTouch{UserID: "@d:t", DeviceID: "D1", IP: "192.0.2.9", TS: 3000})
	touches = append([]storage.DeviceTouch{{UserID: "@d:t", DeviceID: "D2", IP: "192.0.2.8", TS: 2500}}, touches...)
	if err := db.TouchDevices(ctx, touches); err != nil {
		t.Fatal(err)
	}
	for id, want := range map[string]struct {
		ts int64
		ip string
	}{"D0": {2000, "192.0.2.1"}, "D1": {3000, "192.0.2.9"}, "D2": {2500, "192.0.2.8"}, "D7": {5000, "192.0.2.7"},
		fmt.Sprintf("D%d", n-1): {2000, "192.0.2.1"}} {
		d, err := db.GetDevice(ctx, "@d:t", id)
		if err != nil {
			t.Fatal(err)
		}
		if d.LastSeenTS != want.ts || d.LastSeenIP != want.ip {
			t.Errorf("%s: last seen %d from %s, want %d from %s", id, d.LastSeenTS, d.LastSeenIP, want.ts, want.ip)
		}
	}
}
