// Package guard protects the server from abuse: request rate limits per
// account and per IP today, harvesting detection in later issues. It plugs
// into every request as an httpapi.Hook.
package guard

import (
	"net/http"
	"sync"
	"time"

	"golang.org/x/time/rate"

	"github.com/rempart-hs/rempart/internal/config"
	"github.com/rempart-hs/rempart/internal/httpapi"
)

// RateLimiter is a token bucket per account and per client IP.
type RateLimiter struct {
	cfg     config.RateLimits
	mu      sync.Mutex
	buckets map[string]*bucket
	login   map[string]*bucket
	lastGC  time.Time
}

type bucket struct {
	lim  *rate.Limiter
	seen time.Time
}

// NewRateLimiter returns a limiter for the configuration.
func NewRateLimiter(cfg config.RateLimits) *RateLimiter {
	return &RateLimiter{cfg: cfg, buckets: map[string]*bucket{}, login: map[string]*bucket{}, lastGC: time.Now()}
}

// loginRoutes are counted against the stricter login budget.
var loginRoutes = map[string]bool{
	"/_matrix/client/v3/login":    true,
	"/_matrix/client/v3/register": true,
}

// BeforeRequest implements httpapi.Hook.
func (l *RateLimiter) BeforeRequest(r *http.Request, route string, req *httpapi.Requester) error {
	if !l.cfg.Enabled {
		return nil
	}
	ip := httpapi.ClientIP(r)
	now := time.Now()
	l.mu.Lock()
	defer l.mu.Unlock()
	l.gc(now)
	if loginRoutes[route] && r.Method == http.MethodPost && l.cfg.LoginPerMinute > 0 {
		if !l.take(l.login, "ip:"+ip, rate.Limit(float64(l.cfg.LoginPerMinute)/60), l.cfg.LoginPerMinute, now) {
			return limited(60000 / l.cfg.LoginPerMinute)
		}
	}
	key := "ip:" + ip
	if req != nil {
		key = "user:" + req.UserID
	}
	if !l.take(l.buckets, key, rate.Limit(l.cfg.PerSecond), l.cfg.Burst, now) {
		return limited(int(1000 / max(l.cfg.PerSecond, 0.001)))
	}
	return nil
}

func (l *RateLimiter) take(m map[string]*bucket, key string, r rate.Limit, burst int, now time.Time) bool {
	b := m[key]
	if b == nil {
		b = &bucket{lim: rate.NewLimiter(r, burst)}
		m[key] = b
	}
	b.seen = now
	return b.lim.AllowN(now, 1)
}

// gc drops buckets idle for ten minutes, at most once a minute.
func (l *RateLimiter) gc(now time.Time) {
	if now.Sub(l.lastGC) < time.Minute {
		return
	}
	l.lastGC = now
	for _, m := range []map[string]*bucket{l.buckets, l.login} {
		for k, b := range m {
			if now.Sub(b.seen) > 10*time.Minute {
				delete(m, k)
			}
		}
	}
}

func limited(retryMS int) error {
	return httpapi.LimitExceeded("too many requests").With("retry_after_ms", int64(max(retryMS, 1)))
}
