// Package media is the content repository: authenticated uploads and
// downloads, thumbnails, quotas, and antivirus scanning.
//
// Security decisions live here, in one place each: no media byte is served
// without an access token (the legacy unauthenticated endpoints answer 404
// unless the operator turns them on); everything stored is scanned first
// when an antivirus is configured; served content carries a safe-listed
// Content-Type and headers that keep a browser from running it (see
// safeHeaders); uploads are bounded in size, rate and per-user quota;
// thumbnailing never decodes more than a configured pixel count and runs in
// a bounded worker pool.
package media

import (
	"context"
	"crypto/rand"
	"log/slog"
	"net/http"
	"regexp"
	"strings"
	"sync"
	"time"

	"golang.org/x/sync/singleflight"
	"golang.org/x/time/rate"

	"github.com/rempart-hs/rempart/internal/audit"
	"github.com/rempart-hs/rempart/internal/config"
	"github.com/rempart-hs/rempart/internal/httpapi"
	"github.com/rempart-hs/rempart/internal/storage"
)

// Service serves the media endpoints.
type Service struct {
	cfg   *config.Config
	db    *storage.DB
	store *Store
	clamd *Clamd // nil: no antivirus
	audit *audit.Log

	scanner *contentScanner // nil: content-scanner API off
	preview *previewer      // nil: URL previews off

	thumbSlots chan struct{}
	thumbGroup singleflight.Group

	rateMu  sync.Mutex
	rates   map[string]*userRate
	rateGC  time.Time
	stop    chan struct{}
	stopped sync.WaitGroup
	closeMu sync.Once
}

type userRate struct {
	lim  *rate.Limiter
	seen time.Time
}

// New returns the media service: it opens the media root and, when
// configured, the antivirus client and the content scanner's key. Refused
// infected content is recorded in log.
func New(cfg *config.Config, db *storage.DB, log *audit.Log) (*Service, error) {
	st, err := OpenStore(cfg.MediaPath())
	if err != nil {
		return nil, err
	}
	s := &Service{
		cfg: cfg, db: db, store: st, audit: log,
		thumbSlots: make(chan struct{}, cfg.Media.Thumbnails.Workers),
		rates:      map[string]*userRate{},
		stop:       make(chan struct{}),
	}
	if a := cfg.Media.Antivirus; a.Clamd != "" {
		if s.clamd, err = NewClamd(a.Clamd, a.Timeout); err != nil {
			return nil, err
		}
	}
	if cfg.Media.ContentScanner.Enabled {
		if s.scanner, err = newContentScanner(cfg.ContentScannerKeyPath()); err != nil {
			return nil, err
		}
	}
	if cfg.Media.PreviewURL.Enabled {
		s.preview = newPreviewer(cfg.Media.PreviewURL)
	}
	s.stopped.Add(1)
	go s.janitor()
	return s, nil
}

// Close stops background work.
func (s *Service) Close() {
	s.closeMu.Do(func() {
		close(s.stop)
		s.stopped.Wait()
	})
}

// janitor expires created media IDs whose upload never came.
func (s *Service) janitor() {
	defer s.stopped.Done()
	t := time.NewTicker(time.Minute)
	defer t.Stop()
	for {
		select {
		case <-s.stop:
			return
		case <-t.C:
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			err := s.db.WithTx(ctx, func(tx *storage.Tx) error {
				_, err := tx.DeleteExpiredPendingMedia(ctx, time.Now().UnixMilli())
				return err
			})
			cancel()
			if err != nil {
				slog.Warn("media: expire pending uploads", "err", err)
			}
		}
	}
}

// Register adds the media endpoints to the router.
func (s *Service) Register(rt *httpapi.Router) {
	rt.AuthedRaw("POST /_matrix/media/v3/upload", withWriter(s.upload))
	rt.Authed("POST /_matrix/media/v1/create", s.create)
	rt.AuthedRaw("PUT /_matrix/media/v3/upload/{serverName}/{mediaId}", withWriter(s.uploadToMXC))

	rt.AuthedRaw("GET /_matrix/client/v1/media/download/{serverName}/{mediaId}", s.download)
	rt.AuthedRaw("GET /_matrix/client/v1/media/download/{serverName}/{mediaId}/{fileName}", s.download)
	rt.AuthedRaw("GET /_matrix/client/v1/media/thumbnail/{serverName}/{mediaId}", s.thumbnail)
	rt.Authed("GET /_matrix/client/v1/media/config", s.config)
	rt.Authed("GET /_matrix/media/v3/config", s.config)

	for _, v := range []string{"v3", "r0"} {
		base := "GET /_matrix/media/" + v
		rt.PublicRaw(base+"/download/{serverName}/{mediaId}", s.legacy(s.download))
		rt.PublicRaw(base+"/download/{serverName}/{mediaId}/{fileName}", s.legacy(s.download))
		rt.PublicRaw(base+"/thumbnail/{serverName}/{mediaId}", s.legacy(s.thumbnail))
	}
	if s.preview != nil {
		rt.Authed("GET /_matrix/client/v1/media/preview_url", s.previewURL)
		rt.Authed("GET /_matrix/media/v3/preview_url", s.previewURL)
	}
	if s.scanner != nil {
		s.registerScanner(rt)
	}
}

// BodyLimit is the request body limit for upload endpoints: the maximum
// upload size (plus one byte, so that an oversized body is recognised as
// such), where every other request gets limits.max_request_bytes. It
// returns 0 for requests that are not uploads.
func (s *Service) BodyLimit(r *http.Request) int64 {
	p := r.URL.Path
	if (r.Method == http.MethodPost && p == "/_matrix/media/v3/upload") ||
		(r.Method == http.MethodPut && strings.HasPrefix(p, "/_matrix/media/v3/upload/")) {
		return s.cfg.Media.MaxUploadSize + 1
	}
	return 0
}

// config serves GET /_matrix/client/v1/media/config (and the legacy
// /_matrix/media/v3/config).
func (s *Service) config(r *http.Request) (any, error) {
	return map[string]any{"m.upload.size": s.cfg.Media.MaxUploadSize}, nil
}

// legacy wraps a handler of the deprecated unauthenticated endpoints: they
// answer 404 M_NOT_FOUND unless media.legacy_unauthenticated is on.
func (s *Service) legacy(h httpapi.RawHandler) httpapi.RawHandler {
	return func(w http.ResponseWriter, r *http.Request) error {
		if !s.cfg.Media.LegacyUnauthenticated {
			return httpapi.NotFound("unauthenticated media endpoints are disabled; use /_matrix/client/v1/media")
		}
		return h(w, r)
	}
}

// allowUpload applies the per-user upload rate.
func (s *Service) allowUpload(userID string) error {
	per := s.cfg.Media.UploadsPerMinute
	if per == 0 {
		return nil
	}
	now := time.Now()
	s.rateMu.Lock()
	defer s.rateMu.Unlock()
	if now.Sub(s.rateGC) > time.Minute {
		for k, b := range s.rates {
			if now.Sub(b.seen) > 10*time.Minute {
				delete(s.rates, k)
			}
		}
		s.rateGC = now
	}
	b := s.rates[userID]
	if b == nil {
		b = &userRate{lim: rate.NewLimiter(rate.Limit(float64(per)/60), per)}
		s.rates[userID] = b
	}
	b.seen = now
	if !b.lim.AllowN(now, 1) {
		return httpapi.LimitExceeded("too many uploads").With("retry_after_ms", int64(60000/per))
	}
	return nil
}

var mediaIDRe = regexp.MustCompile(`^[A-Za-z0-9_-]{1,255}$`)

const idAlphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789"

// newMediaID returns 24 random characters (143 bits).
func newMediaID() string {
	var b [24]byte
	_, _ = rand.Read(b[:])
	for i := range b {
		b[i] = idAlphabet[int(b[i])%len(idAlphabet)]
	}
	return string(b[:])
}

// localMediaID checks that a request names local media with a well-formed
// ID. Anything else (remote servers, path tricks) is 404 M_NOT_FOUND.
func (s *Service) localMediaID(serverName, mediaID string) error {
	if serverName != s.cfg.ServerName || !mediaIDRe.MatchString(mediaID) {
		return httpapi.NotFound("media not found")
	}
	return nil
}

func (s *Service) mxc(mediaID string) string { return "mxc://" + s.cfg.ServerName + "/" + mediaID }
