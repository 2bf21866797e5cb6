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
// most once per interval per device. The first request of a device that
// this process has not seen yet is recorded at once; later updates are
// collected and written together, in one transaction per flush, so that
// thousands of syncing devices do not each cost a write on the request
// path. It is an httpapi.Hook; Close writes what is pending.
type LastSeen struct {
	db       *storage.DB
	interval time.Duration
	mu       sync.Mutex
	last     map[string]time.Time
	pending  map[string]storage.DeviceTouch
	stop     chan struct{}
	stopped  chan struct{}
	once     sync.Once
}

// lastSeenFlushEvery is how often pending updates are written.
const lastSeenFlushEvery = 5 * time.Second

// NewLastSeen returns the hook and starts its writer.
func NewLastSeen(db *storage.DB, interval time.Duration) *LastSeen {
	l := &LastSeen{db: db, interval: interval, last: map[string]time.Time{}, pending: map[string]storage.DeviceTouch{},
		stop: make(chan struct{}), stopped: make(chan struct{})}
	go l.run()
	return l
}

// BeforeRequest implements httpapi.Hook.
func (l *LastSeen) BeforeRequest(r *http.Request, _ string, req *httpapi.Requester) error {
	if req == nil {
		return nil
	}
	key := req.UserID + "|" + req.DeviceID
	now := time.Now()
	ip, _, err := net.SplitHostPort(r.RemoteAddr)
	if err != nil {
		ip = r.RemoteAddr
	}
	touch := storage.DeviceTouch{UserID: req.UserID, DeviceID: req.DeviceID, IP: ip, TS: now.UnixMilli()}
	l.mu.Lock()
	prev, seen := l.last[key]
	if seen && now.Sub(prev) < l.interval {
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
	if seen {
		l.pending[key] = touch
		l.mu.Unlock()
		return nil
	}
	l.mu.Unlock()
	ctx, cancel := context.WithTimeout(context.WithoutCancel(r.Context()), 5*time.Second)
	defer cancel()
	if err := l.db.TouchDevices(ctx, []storage.DeviceTouch{touch}); err != nil {
		slog.Warn("record device last seen", "err", err)
	}
	return nil
}

func (l *LastSeen) run() {
	defer close(l.stopped)
	t := time.NewTicker(lastSeenFlushEvery)
	defer t.Stop()
	for {
		select {
		case <-t.C:
			l.flush()
		case <-l.stop:
			l.flush()
			return
		}
	}
}

func (l *LastSeen) flush() {
	l.mu.Lock()
	if len(l.pending) == 0 {
		l.mu.Unlock()
		return
	}
	batch := make([]storage.DeviceTouch, 0, len(l.pending))
	for _, t := range l.pending {
		batch = append(batch, t)
	}
	l.pending = map[string]storage.DeviceTouch{}
	l.mu.Unlock()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := l.db.TouchDevices(ctx, batch); err != nil {
		slog.Warn("record device last seen", "devices", len(batch), "err", err)
	}
}

// Close writes the pending updates and stops the writer; call it before
// closing the database.
func (l *LastSeen) Close() {
	l.once.Do(func() { close(l.stop) })
	<-l.stopped
}
