package storage_test

import (
	"context"
	"errors"
	"testing"

	"github.com/rempart-hs/rempart/internal/storage"
)

// Owners of access tokens are kept in memory (storage/token_cache.go):
// every way of revoking a token or changing what authenticating needs of
// its account must be seen by the very next lookup, even one right after
// a lookup that filled the cache.
func TestTokenLookupSeesEveryRevocation(t *testing.T) {
	db, _ := openTestDB(t)
	ctx := context.Background()
	write := func(f func(tx *storage.Tx) error) { t.Helper(); mustTx(t, db, f) }
	newSession := func(user, device, hash string) {
		t.Helper()
		write(func(tx *storage.Tx) error {
			if err := tx.UpsertDevice(ctx, storage.Device{UserID: user, DeviceID: device, CreatedTS: 1}); err != nil {
				return err
			}
			return tx.InsertAccessToken(ctx, hash, storage.AccessToken{UserID: user, DeviceID: device, CreatedTS: 1})
		})
		// Twice: the second answer comes from memory.
		for range 2 {
			if _, err := db.LookupAccessToken(ctx, hash); err != nil {
				t.Fatalf("lookup of %s: %v", hash, err)
			}
		}
	}
	gone := func(what, hash string) {
		t.Helper()
		if _, err := db.LookupAccessToken(ctx, hash); !errors.Is(err, storage.ErrNotFound) {
			t.Errorf("after %s: lookup gave %v, want ErrNotFound", what, err)
		}
	}
	for _, u := range []string{"@ann:t", "@bob:t"} {
		write(func(tx *storage.Tx) error {
			return tx.CreateUser(ctx, storage.User{UserID: u, Localpart: u[1:4], CreatedTS: 1})
		})
	}

	newSession("@ann:t", "D1", "h1")
	write(func(tx *storage.Tx) error { return tx.DeleteAccessToken(ctx, "h1") })
	gone("logout", "h1")

	newSession("@ann:t", "D2", "h2")
	write(func(tx *storage.Tx) error { return tx.DeleteDeviceTokens(ctx, "@ann:t", "D2") })
	gone("re-login on the device", "h2")

	newSession("@ann:t", "D3", "h3")
	write(func(tx *storage.Tx) error { return tx.DeleteDevice(ctx, "@ann:t", "D3") })
	gone("device deletion", "h3")

	newSession("@ann:t", "D4", "h4")
	newSession("@ann:t", "D5", "h5")
	write(func(tx *storage.Tx) error { _, err := tx.DeleteDevicesExcept(ctx, "@ann:t", "D5"); return err })
	gone("logout of the other devices", "h4")
	if _, err := db.LookupAccessToken(ctx, "h5"); err != nil {
		t.Errorf("the kept device's token: %v", err)
	}

	newSession("@bob:t", "D1", "b1")
	write(func(tx *storage.Tx) error { return tx.SetAdmin(ctx, "@bob:t", true) })
	if o, err := db.LookupAccessToken(ctx, "b1"); err != nil || !o.IsAdmin {
		t.Errorf("after granting admin rights: %+v, %v; want an admin", o, err)
	}
	write(func(tx *storage.Tx) error { return tx.SetAdmin(ctx, "@bob:t", false) })
	if o, err := db.LookupAccessToken(ctx, "b1"); err != nil || o.IsAdmin {
		t.Errorf("after removing admin rights: %+v, %v; want no admin", o, err)
	}
	write(func(tx *storage.Tx) error { return tx.DeactivateUser(ctx, "@bob:t") })
	gone("deactivation", "b1")

	// A transaction that revokes and then fails revokes nothing.
	newSession("@ann:t", "D6", "h6")
	fail := errors.New("rolled back")
	if err := db.WithTx(ctx, func(tx *storage.Tx) error {
		if err := tx.DeleteAccessToken(ctx, "h6"); err != nil {
			return err
		}
		return fail
	}); !errors.Is(err, fail) {
		t.Fatal(err)
	}
	if _, err := db.LookupAccessToken(ctx, "h6"); err != nil {
		t.Errorf("after a rolled-back logout: %v", err)
	}
}
