package storage

import (
	"context"
	"sync"
	"time"
)

// Access tokens are looked up on every authenticated request. A lookup
// reads the token and its user from the database, which on SQLite costs
// the reader a page-cache miss after every commit (a commit empties the
// readers' page caches): during a send benchmark it was a tenth of the
// server's CPU, more than building and signing the event. Owners found are
// therefore kept in memory for a short while.
//
// Revocation stays immediate: every change that can make a token invalid
// (deleting a token or a device, deactivating an account, changing admin
// rights) moves tokenGen after its commit, and an entry read under an
// older generation is not used. Cached owners carry their expiry, checked
// by the caller on every request as before. Only a change made by another
// process sharing the database (there is none today: the command line
// creates accounts and registration tokens, and revokes nothing) would go
// unseen, for at most tokenCacheMaxAge.
const (
	tokenCacheMaxAge = 10 * time.Second
	// tokenCacheMax bounds the entries (about 200 bytes each); past it
	// the cache starts over.
	tokenCacheMax = 50_000
)

type tokenCache struct {
	mu      sync.RWMutex
	entries map[string]cachedToken
}

type cachedToken struct {
	owner TokenOwner
	gen   uint64
	at    time.Time
}

func (c *tokenCache) get(hash string, gen uint64, now time.Time) (TokenOwner, bool) {
	c.mu.RLock()
	e, ok := c.entries[hash]
	c.mu.RUnlock()
	if !ok || e.gen != gen || now.Sub(e.at) > tokenCacheMaxAge || now.Before(e.at) {
		return TokenOwner{}, false
	}
	return e.owner, true
}

func (c *tokenCache) put(hash string, t TokenOwner, gen uint64, at time.Time) {
	c.mu.Lock()
	if c.entries == nil || len(c.entries) >= tokenCacheMax {
		c.entries = make(map[string]cachedToken)
	}
	c.entries[hash] = cachedToken{owner: t, gen: gen, at: at}
	c.mu.Unlock()
}

// tokensChanged is called in a transaction that may make a token invalid:
// once it commits, no owner read before is used again.
func (tx *Tx) tokensChanged() {
	tx.AfterCommit(func() { tx.db.tokenGen.Add(1) })
}

// LookupAccessToken returns the owner of the token with this SHA-256 hash
// (ErrNotFound when there is none). Answers may come from memory; see
// tokenCache for why they are never staler than the last revocation.
func (db *DB) LookupAccessToken(ctx context.Context, hash string) (TokenOwner, error) {
	// The generation is read before the database: a revocation that
	// commits after this read moves it, so what this lookup read is
	// stored under a generation that is already past.
	gen := db.tokenGen.Load()
	now := time.Now()
	if t, ok := db.tokens.get(hash, gen, now); ok {
		return t, nil
	}
	t, err := db.lookupAccessToken(ctx, hash)
	if err == nil {
		db.tokens.put(hash, t, gen, now)
	}
	return t, err
}
