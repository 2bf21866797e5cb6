package storage

import (
	"context"
	"database/sql"
	"strings"
	"sync"
)

// maxCachedStmts bounds the statement cache; queries beyond it (built with
// a variable number of placeholders, say) are prepared each time as before.
const maxCachedStmts = 512

// cacheable reports whether q is worth caching: queries built with long
// placeholder lists (IN (?,?,…) of a varying length) would fill the cache
// with one entry per length.
func cacheable(q string) bool {
	return strings.Count(q, "?") <= 24
}

// stmtCache holds statements prepared on the SQLite writer, keyed by their
// SQL text. Preparing (sqlite3_prepare_v2) was a fifth of the send path's
// CPU when every statement was prepared again for each use.
type stmtCache struct {
	mu     sync.Mutex
	stmts  map[string]*sql.Stmt
	closed bool
}

// get returns the cached statement for q, or nil. A miss cannot prepare
// at once: the transaction asking holds the writer's only connection, which
// DB.PrepareContext would wait for. The caller runs q unprepared and hands
// its misses to prepare once the transaction has ended.
func (c *stmtCache) get(q string) *sql.Stmt {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.stmts[q]
}

// prepare prepares and caches the queries in qs that are not cached yet.
func (c *stmtCache) prepare(pool *sql.DB, qs []string) {
	for _, q := range qs {
		c.mu.Lock()
		_, have := c.stmts[q]
		full := c.closed || len(c.stmts) >= maxCachedStmts
		c.mu.Unlock()
		if have || full {
			continue
		}
		st, err := pool.PrepareContext(context.Background(), q)
		if err != nil {
			continue // it keeps running unprepared, reporting its own errors
		}
		c.mu.Lock()
		if _, have := c.stmts[q]; have || c.closed {
			_ = st.Close()
		} else {
			if c.stmts == nil {
				c.stmts = map[string]*sql.Stmt{}
			}
			c.stmts[q] = st
		}
		c.mu.Unlock()
	}
}

func (c *stmtCache) close() {
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, st := range c.stmts {
		_ = st.Close()
	}
	c.stmts, c.closed = nil, true
}
