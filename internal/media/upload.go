package media

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"mime"
	"net/http"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/rempart-hs/rempart/internal/httpapi"
	"github.com/rempart-hs/rempart/internal/storage"
)

// cannotOverwrite is the spec's 409 for a second upload to a created ID.
func cannotOverwrite() *httpapi.Error {
	return &httpapi.Error{Status: http.StatusConflict, Code: "M_CANNOT_OVERWRITE_MEDIA", Message: "media already uploaded"}
}

// upload serves POST /_matrix/media/v3/upload.
func (s *Service) upload(r *http.Request) (any, error) {
	req := httpapi.RequesterFrom(r.Context())
	if err := s.allowUpload(req.UserID); err != nil {
		return nil, err
	}
	m := storage.Media{MediaID: newMediaID(), UserID: req.UserID}
	err := s.receive(r, &m, func(tx *storage.Tx) error { return tx.InsertMedia(r.Context(), m) })
	if err != nil {
		return nil, err
	}
	return map[string]string{"content_uri": s.mxc(m.MediaID)}, nil
}

// create serves POST /_matrix/media/v1/create: a media ID whose content
// comes later, within media.unused_expiry, with at most
// media.max_pending_uploads such IDs per user.
func (s *Service) create(r *http.Request) (any, error) {
	req := httpapi.RequesterFrom(r.Context())
	if err := s.allowUpload(req.UserID); err != nil {
		return nil, err
	}
	now := time.Now()
	m := storage.Media{MediaID: newMediaID(), UserID: req.UserID, CreatedTS: now.UnixMilli(),
		ExpiresTS: now.Add(s.cfg.Media.UnusedExpiry).UnixMilli()}
	err := s.db.WithTx(r.Context(), func(tx *storage.Tx) error {
		n, err := tx.CountPendingMedia(r.Context(), req.UserID, m.CreatedTS)
		if err != nil {
			return err
		}
		if n >= s.cfg.Media.MaxPendingUploads {
			return httpapi.LimitExceeded("too many pending uploads; upload or wait for them to expire").With("retry_after_ms", int64(60000))
		}
		return tx.InsertMedia(r.Context(), m)
	})
	if err != nil {
		return nil, err
	}
	return map[string]any{"content_uri": s.mxc(m.MediaID), "unused_expires_at": m.ExpiresTS}, nil
}

// uploadToMXC serves PUT /_matrix/media/v3/upload/{serverName}/{mediaId}.
func (s *Service) uploadToMXC(r *http.Request) (any, error) {
	req := httpapi.RequesterFrom(r.Context())
	serverName, mediaID := r.PathValue("serverName"), r.PathValue("mediaId")
	if err := s.localMediaID(serverName, mediaID); err != nil {
		return nil, err
	}
	// Checked before the body is read, and again when it is recorded.
	check := func(m *storage.Media, err error) error {
		if errors.Is(err, storage.ErrNotFound) {
			return httpapi.NotFound("unknown media ID")
		}
		if err != nil {
			return err
		}
		if m.UserID != req.UserID {
			return httpapi.Forbidden("this media ID was created by another user")
		}
		if !m.Pending() {
			return cannotOverwrite()
		}
		if m.ExpiresTS <= time.Now().UnixMilli() {
			return httpapi.NotFound("media ID expired")
		}
		return nil
	}
	if err := check(s.db.GetMedia(r.Context(), mediaID)); err != nil {
		return nil, err
	}
	if err := s.allowUpload(req.UserID); err != nil {
		return nil, err
	}
	m := storage.Media{MediaID: mediaID, UserID: req.UserID}
	err := s.receive(r, &m, func(tx *storage.Tx) error {
		if err := check(tx.GetMedia(r.Context(), mediaID)); err != nil {
			return err
		}
		ok, err := tx.CompletePendingMedia(r.Context(), m)
		if err == nil && !ok {
			err = cannotOverwrite()
		}
		return err
	})
	if err != nil {
		return nil, err
	}
	return map[string]any{}, nil
}

// receive reads an upload body into the store: bounded in size and time,
// hashed, scanned, checked against the user's quota, then recorded by
// record (in the same transaction as the quota check) and moved into
// place. It fills m's content fields. On any failure nothing is left on
// disk or in the database.
func (s *Service) receive(r *http.Request, m *storage.Media, record func(tx *storage.Tx) error) error {
	ctx := r.Context()
	ctype, err := uploadContentType(r.Header.Get("Content-Type"))
	if err != nil {
		return err
	}
	filename := r.URL.Query().Get("filename")
	if err := checkFilename(filename); err != nil {
		return err
	}
	max := s.cfg.Media.MaxUploadSize
	if r.ContentLength > max {
		return httpapi.TooLarge("upload is larger than the %d bytes allowed", max)
	}
	if w, ok := ctx.Value(responseWriterKey{}).(http.ResponseWriter); ok {
		_ = http.NewResponseController(w).SetReadDeadline(time.Now().Add(s.cfg.Media.UploadTimeout))
	}
	tmp, err := s.store.NewTemp()
	if err != nil {
		return err
	}
	defer tmp.Discard()
	hash, err := tmp.Fill(r.Body, max)
	var mbe *http.MaxBytesError
	switch {
	case errors.Is(err, ErrTooLarge) || errors.As(err, &mbe):
		return httpapi.TooLarge("upload is larger than the %d bytes allowed", max)
	case errors.Is(err, io.ErrUnexpectedEOF):
		return httpapi.Unknown("request body ended before its Content-Length")
	case err != nil:
		slog.DebugContext(ctx, "media: upload body read failed", "err", err)
		return httpapi.Unknown("could not read the upload body")
	}
	if tmp.Size() == 0 {
		return httpapi.Unknown("empty upload: content must not be zero bytes")
	}
	if err := s.scanUpload(ctx, m.UserID, hash, tmp); err != nil {
		return err
	}
	now := time.Now().UnixMilli()
	m.ContentHash, m.Size, m.ContentType, m.Filename, m.UploadedTS = hash, tmp.Size(), ctype, filename, now
	if m.CreatedTS == 0 {
		m.CreatedTS = now
	}
	return s.store.Commit(tmp, hash, func() error {
		return s.db.WithTx(ctx, func(tx *storage.Tx) error {
			if q := s.cfg.Media.UserQuota; q > 0 {
				used, err := tx.MediaUsage(ctx, m.UserID)
				if err != nil {
					return err
				}
				if used+m.Size > q {
					return httpapi.Forbidden("media quota exceeded: %d of %d bytes used", used, q)
				}
			}
			return record(tx)
		})
	})
}

// scanUpload runs the antivirus over a received upload. An infected upload
// is refused with 403 M_FORBIDDEN and audited; when the scanner cannot be
// reached the upload is refused (unless media.antivirus.fail_open).
func (s *Service) scanUpload(ctx context.Context, userID, hash string, tmp *Temp) error {
	if s.clamd == nil {
		return nil
	}
	v, err := s.scanCached(ctx, hash, func() (io.Reader, error) { return tmp.Reader() })
	if err != nil {
		if s.cfg.Media.Antivirus.FailOpen {
			slog.WarnContext(ctx, "media: antivirus unavailable, upload accepted unscanned (fail_open)", "err", err)
			return nil
		}
		slog.ErrorContext(ctx, "media: antivirus unavailable, upload refused", "err", err)
		return &httpapi.Error{Status: http.StatusServiceUnavailable, Code: "M_UNKNOWN", Message: "the antivirus scanner is unavailable; upload refused"}
	}
	if !v.Clean {
		s.auditInfected(ctx, userID, hash, v.Signature, "upload")
		return httpapi.Forbidden("upload refused: the antivirus found %s", v.Signature).With("reason", "MCS_MEDIA_NOT_CLEAN")
	}
	return nil
}

// scanCached returns the verdict for content identified by key, from the
// cache or by scanning open()'s reader (and caching the result).
func (s *Service) scanCached(ctx context.Context, key string, open func() (io.Reader, error)) (Verdict, error) {
	if clean, info, err := s.db.GetMediaScan(ctx, key); err == nil {
		return Verdict{Clean: clean, Signature: info}, nil
	} else if !errors.Is(err, storage.ErrNotFound) {
		return Verdict{}, err
	}
	rd, err := open()
	if err != nil {
		return Verdict{}, err
	}
	v, err := s.clamd.Scan(ctx, rd)
	if err != nil {
		return Verdict{}, err
	}
	err = s.db.WithTx(ctx, func(tx *storage.Tx) error {
		return tx.PutMediaScan(ctx, key, v.Clean, v.Signature, time.Now().UnixMilli())
	})
	if err != nil {
		slog.WarnContext(ctx, "media: cache scan verdict", "err", err)
	}
	return v, nil
}

// uploadContentType normalises the declared Content-Type. It is stored as
// given (bounded) and only ever served if it is on the safe list.
func uploadContentType(h string) (string, error) {
	if h == "" {
		return "application/octet-stream", nil
	}
	if len(h) > 255 {
		return "", httpapi.InvalidParam("Content-Type is too long")
	}
	mt, params, err := mime.ParseMediaType(h)
	if err != nil || !strings.Contains(mt, "/") {
		return "", httpapi.InvalidParam("Content-Type %q is not a media type", h)
	}
	if cs, ok := params["charset"]; ok && mt == "text/plain" {
		return mime.FormatMediaType(mt, map[string]string{"charset": strings.ToLower(cs)}), nil
	}
	return mt, nil
}

// checkFilename bounds an upload's filename: valid UTF-8 (any script), at
// most 255 bytes, no control characters and no path separators. It is only
// ever used in Content-Disposition, never on the filesystem.
func checkFilename(name string) error {
	if name == "" {
		return nil
	}
	if len(name) > 255 || !utf8.ValidString(name) {
		return httpapi.InvalidParam("filename must be valid UTF-8 of at most 255 bytes")
	}
	for _, c := range name {
		if unicode.IsControl(c) || c == '/' || c == '\\' || c == unicode.ReplacementChar {
			return httpapi.InvalidParam("filename must not contain control characters or path separators")
		}
	}
	if name == "." || name == ".." {
		return httpapi.InvalidParam("filename %q is not allowed", name)
	}
	return nil
}

type responseWriterKey struct{}

// withWriter makes the response writer reachable from the request context
// (uploads extend their read deadline through it).
func withWriter(h httpapi.HandlerFunc) httpapi.RawHandler {
	return func(w http.ResponseWriter, r *http.Request) error {
		r = r.WithContext(context.WithValue(r.Context(), responseWriterKey{}, w))
		v, err := h(r)
		if err != nil {
			return err
		}
		httpapi.WriteJSON(w, http.StatusOK, v)
		return nil
	}
}
