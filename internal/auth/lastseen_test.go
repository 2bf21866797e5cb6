package auth

import (
	"context"
	"net/http/httptest"
	"path/filepath"
	"testing"
	"time"

	"github.com/rempart-hs/rempart/internal/httpapi"
	"github.com/rempart-hs/rempart/internal/storage"
)

// A device's first request is recorded at once; later sightings are
// written by the background flush (here: by Close), never moving the
// recorded time back.
func TestLastSeenRecordsFirstAtOnceThenBatches(t *testing.T) {
	ctx := context.Background()
	db, err := storage.Open(ctx, filepath.Join(t.TempDir(), "r.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	const user, dev = "@alice:example.org", "DEV"
	if err := db.WithTx(ctx, func(tx *storage.Tx) error {
		if err := tx.CreateUser(ctx, storage.User{UserID: user, Localpart: "alice", CreatedTS: 1}); err != nil {
			return err
		}
		return tx.UpsertDevice(ctx, storage.Device{UserID: user, DeviceID: dev, CreatedTS: 1})
	}); err != nil {
		t.Fatal(err)
	}
	l := NewLastSeen(db, 10*time.Millisecond)
	req := &httpapi.Requester{UserID: user, DeviceID: dev}
	r := httptest.NewRequest("GET", "/_matrix/client/v3/sync", nil)
	r.RemoteAddr = "192.0.2.1:4000"
	if err := l.BeforeRequest(r, "", req); err != nil {
		t.Fatal(err)
	}
	d, err := db.GetDevice(ctx, user, dev)
	if err != nil {
		t.Fatal(err)
	}
	if d.LastSeenTS == 0 || d.LastSeenIP != "192.0.2.1" {
		t.Fatalf("first sighting not recorded at once: %+v", d)
	}
	first := d.LastSeenTS

	time.Sleep(20 * time.Millisecond)
	r.RemoteAddr = "192.0.2.2:4000"
	if err := l.BeforeRequest(r, "", req); err != nil {
		t.Fatal(err)
	}
	if d, _ = db.GetDevice(ctx, user, dev); d.LastSeenIP != "192.0.2.1" {
		t.Fatalf("a later sighting was written on the request path: %+v", d)
	}
	l.Close()
	d, err = db.GetDevice(ctx, user, dev)
	if err != nil {
		t.Fatal(err)
	}
	if d.LastSeenIP != "192.0.2.2" || d.LastSeenTS <= first {
		t.Fatalf("pending sighting not flushed on Close: %+v (first at %d)", d, first)
	}
	// An older sighting does not move the time back.
	if err := db.TouchDevices(ctx, []storage.DeviceTouch{{UserID: user, DeviceID: dev, IP: "192.0.2.3", TS: first - 1000}}); err != nil {
		t.Fatal(err)
	}
	if d2, _ := db.GetDevice(ctx, user, dev); d2.LastSeenTS != d.LastSeenTS || d2.LastSeenIP != "192.0.2.2" {
		t.Fatalf("an older sighting overwrote a newer one: %+v", d2)
	}
}
