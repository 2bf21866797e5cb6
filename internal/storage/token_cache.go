package storage

import (
	"context"
	"time"
)

// Access tokens are looked up on every authenticated request. A lookup
// reads the token and its user from the database, which on SQLite costs
// the reader a page-cache miss after every commit (a commit empties the
// readers' page caches): during a send benchmark it was a tenth of the
// server's CPU, more than building and signing the event. Owners found are
// therefore kept in a readCache.
//
// Revocation stays immediate: every change that can make a token invalid
// (deleting a token or a device, deactivating an account, changing admin
// rights) drops every kept owner after its commit. Cached owners carry
// their expiry, checked by the caller on every request as before. Only a
// change made by another process sharing the database (there is none
// today: the command line creates accounts and registration tokens, and
// revokes nothing) would go unseen, for at most tokenCacheMaxAge.
const (
	tokenCacheMaxAge = 10 * time.Second
	// tokenCacheMax bounds the entries (about 200 bytes each).
	tokenCacheMax = 50_000
)

// tokensChanged is called in a transaction that may make a token invalid:
// once it commits, no owner read before is used again.
func (tx *Tx) tokensChanged() {
	tx.AfterCommit(tx.db.tokens.invalidateAll)
}

// LookupAccessToken returns the owner of the token with this SHA-256 hash
// (ErrNotFound when there is none). Answers may come from memory; see
// above for why they are never staler than the last revocation.
func (db *DB) LookupAccessToken(ctx context.Context, hash string) (TokenOwner, error) {
	now := time.Now()
	if t, ok := db.tokens.get(hash, now); ok {
		return t, nil
	}
	epoch := db.tokens.begin()
	t, err := db.lookupAccessToken(ctx, hash)
	if err == nil {
		db.tokens.put(hash, t, epoch, now)
	}
	return t, err
}
