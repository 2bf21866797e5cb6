package auth

import (
	"context"
	"log/slog"
	"net"
	"net/http"
	"sync"
	"time"

	"github.com/rempart-hs/rempart/internal/httpapi"
	"github.com/rempart-hs/rempart/internal/storage"
)

// LastSeen records when and from which IP each device was last used, at
// most once per interval per device so that requests do not each cost a
// write. It is an httpapi.Hook.
type LastSeen struct {
	db       *storage.DB
	interval time.Duration
	mu       sync.Mutex
	last     map[string]time.Time
}

// NewLastSeen returns the hook.
func NewLastSeen(db *storage.DB, interval time.Duration) *LastSeen {
	return &LastSeen{db: db, interval: interval, last: map[string]time.Time{}}
}

// BeforeRequest implements httpapi.Hook.
func (l *LastSeen) BeforeRequest(r *http.Request, _ string, req *httpapi.Requester) error {
	if req == nil {
		return nil
	}
	key := req.UserID + "|" + req.DeviceID
	now := time.Now()
	l.mu.Lock()
	if now.Sub(l.last[key]) < l.interval {
		l.mu.Unlock()
		return nil
	}
	l.last[key] = now
	if len(l.last) > 100000 {
		for k, t := range l.last {
			if now.Sub(t) > l.interval {
				delete(l.last, k)
			}
		}
	}
	l.mu.Unlock()
	ip, _, err := net.SplitHostPort(r.RemoteAddr)
	if err != nil {
		ip = r.RemoteAddr
	}
	ctx, cancel := context.WithTimeout(context.WithoutCancel(r.Context()), 5*time.Second)
	defer cancel()
	if err := l.db.TouchDevice(ctx, req.UserID, req.DeviceID, ip, now.UnixMilli()); err != nil {
		slog.Warn("record device last seen", "err", err)
	}
	return nil
}
