package media

import (
	"context"
	"errors"
	"mime"
	"net/http"
	"strconv"
	"time"

	"github.com/rempart-hs/rempart/internal/httpapi"
	"github.com/rempart-hs/rempart/internal/storage"
)

// safeTypes are the only Content-Types media is ever served with; anything
// else is served as application/octet-stream.
var safeTypes = map[string]bool{
	"image/jpeg": true, "image/png": true, "image/gif": true, "image/webp": true,
	"image/apng": true, "image/avif": true,
	"audio/mp4": true, "audio/webm": true, "audio/aac": true, "audio/mpeg": true,
	"audio/ogg": true, "audio/wave": true, "audio/wav": true, "audio/x-wav": true,
	"audio/x-pn-wav": true, "audio/flac": true, "audio/x-flac": true, "audio/opus": true,
	"video/mp4": true, "video/webm": true, "video/ogg": true, "video/quicktime": true,
	"application/pdf": true,
	"text/plain":      true,
}

// inlineTypes may be served with Content-Disposition: inline (the spec's
// list for serving inline content, within the safe list: PDF, which a
// browser would render with its own viewer, is an attachment).
var inlineTypes = map[string]bool{
	"image/jpeg": true, "image/png": true, "image/gif": true, "image/webp": true,
	"image/apng": true, "image/avif": true,
	"audio/mp4": true, "audio/webm": true, "audio/aac": true, "audio/mpeg": true,
	"audio/ogg": true, "audio/wave": true, "audio/wav": true, "audio/x-wav": true,
	"audio/x-pn-wav": true, "audio/flac": true, "audio/x-flac": true,
	"video/mp4": true, "video/webm": true, "video/ogg": true, "video/quicktime": true,
	"text/plain": true,
}

// servedType is the Content-Type media is served with.
func servedType(stored string) string {
	mt, params, err := mime.ParseMediaType(stored)
	if err != nil || !safeTypes[mt] {
		return "application/octet-stream"
	}
	if mt == "text/plain" {
		if cs := params["charset"]; cs == "utf-8" || cs == "us-ascii" {
			return "text/plain; charset=" + cs
		}
	}
	return mt
}

// disposition is the Content-Disposition for a served type and filename.
func disposition(served, filename string) string {
	kind := "attachment"
	if mt, _, _ := mime.ParseMediaType(served); inlineTypes[mt] {
		kind = "inline"
	}
	if filename == "" {
		return kind
	}
	if d := mime.FormatMediaType(kind, map[string]string{"filename": filename}); d != "" {
		return d
	}
	return kind
}

// mediaCSP keeps a browser that opens media directly from running anything
// in it: no scripts, no plugins, no forms, and a sandboxed origin.
const mediaCSP = "sandbox; default-src 'none'; script-src 'none'; style-src 'unsafe-inline'; media-src 'self'; object-src 'none'; form-action 'none'; base-uri 'none'"

// safeHeaders sets the headers every media response carries.
func safeHeaders(h http.Header, contentType, disp string) {
	h.Set("Content-Type", contentType)
	h.Set("Content-Disposition", disp)
	h.Set("Content-Security-Policy", mediaCSP)
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("Cross-Origin-Resource-Policy", "cross-origin")
	h.Set("Referrer-Policy", "no-referrer")
	h.Set("Cache-Control", "private, max-age=86400")
}

// maxWait bounds timeout_ms on downloads of media not yet uploaded.
const maxWait = 60 * time.Second

// lookup finds servable local media: not quarantined, and uploaded (a
// pending ID is waited for, up to timeout_ms, then 504
// M_NOT_YET_UPLOADED).
func (s *Service) lookup(r *http.Request) (*storage.Media, error) {
	serverName, mediaID := r.PathValue("serverName"), r.PathValue("mediaId")
	if err := s.localMediaID(serverName, mediaID); err != nil {
		return nil, err
	}
	wait := 20 * time.Second
	if v := r.URL.Query().Get("timeout_ms"); v != "" {
		ms, err := strconv.ParseInt(v, 10, 64)
		if err != nil || ms < 0 {
			return nil, httpapi.InvalidParam("timeout_ms must be a non-negative integer")
		}
		wait = min(time.Duration(ms)*time.Millisecond, maxWait)
	}
	deadline := time.Now().Add(wait)
	for {
		m, err := s.db.GetMedia(r.Context(), mediaID)
		if errors.Is(err, storage.ErrNotFound) {
			return nil, httpapi.NotFound("media not found")
		}
		if err != nil {
			return nil, err
		}
		if m.Quarantined {
			return nil, httpapi.NotFound("media not found")
		}
		if !m.Pending() {
			return m, nil
		}
		if m.ExpiresTS <= time.Now().UnixMilli() {
			return nil, httpapi.NotFound("media not found")
		}
		if !time.Now().Before(deadline) {
			return nil, &httpapi.Error{Status: http.StatusGatewayTimeout, Code: "M_NOT_YET_UPLOADED", Message: "content has not yet been uploaded"}
		}
		if err := sleepCtx(r.Context(), min(250*time.Millisecond, time.Until(deadline))); err != nil {
			return nil, err
		}
	}
}

func sleepCtx(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}

// download serves GET /_matrix/client/v1/media/download/{serverName}/{mediaId}[/{fileName}]
// (and, when enabled, the legacy /_matrix/media/v3/download). Range
// requests are honoured (audio and video seeking).
func (s *Service) download(w http.ResponseWriter, r *http.Request) error {
	m, err := s.lookup(r)
	if err != nil {
		return err
	}
	name := m.Filename
	if fn := r.PathValue("fileName"); fn != "" {
		if err := checkFilename(fn); err != nil {
			return err
		}
		name = fn
	}
	return s.serveContent(w, r, m.ContentHash, servedType(m.ContentType), name)
}

// serveContent writes stored content with the safe headers.
func (s *Service) serveContent(w http.ResponseWriter, r *http.Request, hash, contentType, filename string) error {
	f, err := s.store.Open(hash)
	if err != nil {
		return err
	}
	defer f.Close()
	safeHeaders(w.Header(), contentType, disposition(contentType, filename))
	w.Header().Set("ETag", `"`+hash+`"`)
	http.ServeContent(w, r, "", time.Time{}, f)
	return nil
}
