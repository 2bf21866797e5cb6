package media

import (
	"bytes"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"mime"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"time"

	"maunium.net/go/mautrix/crypto/attachment"
	"maunium.net/go/mautrix/crypto/backup"

	"github.com/rempart-hs/rempart/internal/httpapi"
	"github.com/rempart-hs/rempart/internal/storage"
)

// contentScanner implements the matrix-content-scanner API that clients
// such as Element and Tchap use to have attachments scanned
// (/_matrix/media_proxy/unstable/…). Request bodies may be encrypted to the
// scanner's Curve25519 key with Olm's PkEncryption (the scheme of
// m.megolm_backup.v1.curve25519-aes-sha2); encrypted attachments are
// decrypted in memory only, scanned and forgotten.
type contentScanner struct {
	key *backup.MegolmBackupKey
}

// newContentScanner loads the scanner's key, generating it when missing.
func newContentScanner(path string) (*contentScanner, error) {
	b, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		k, err := backup.NewMegolmBackupKey()
		if err != nil {
			return nil, err
		}
		if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
			return nil, fmt.Errorf("content scanner key: %w", err)
		}
		enc := base64.RawStdEncoding.EncodeToString(k.Bytes())
		if err := os.WriteFile(path, []byte(enc+"\n"), 0o600); err != nil {
			return nil, fmt.Errorf("content scanner key: %w", err)
		}
		return &contentScanner{key: k}, nil
	}
	if err != nil {
		return nil, fmt.Errorf("content scanner key: %w", err)
	}
	raw, err := base64.RawStdEncoding.DecodeString(strings.TrimSpace(string(b)))
	if err != nil {
		return nil, fmt.Errorf("content scanner key %s: %w", path, err)
	}
	k, err := backup.MegolmBackupKeyFromBytes(raw)
	if err != nil {
		return nil, fmt.Errorf("content scanner key %s: %w", path, err)
	}
	return &contentScanner{key: k}, nil
}

func (c *contentScanner) publicKey() string {
	return base64.RawStdEncoding.EncodeToString(c.key.PublicKey().Bytes())
}

// mcsError is an error of the content-scanner API: {"reason", "info"}.
// The Matrix errcode and error fields are included as well.
type mcsError struct {
	status       int
	reason, info string
}

func (e *mcsError) Error() string { return e.reason + ": " + e.info }

func mcsErr(status int, reason, format string, args ...any) *mcsError {
	return &mcsError{status: status, reason: reason, info: fmt.Sprintf(format, args...)}
}

// mcs adapts a scanner handler: every error is written in the scanner
// API's format.
func mcs(h httpapi.RawHandler) httpapi.RawHandler {
	return func(w http.ResponseWriter, r *http.Request) error {
		err := h(w, r)
		if err == nil {
			return nil
		}
		var me *mcsError
		var he *httpapi.Error
		switch {
		case errors.As(err, &me):
		case errors.As(err, &he):
			me = &mcsError{status: he.Status, reason: he.Code, info: he.Message}
		default:
			slog.ErrorContext(r.Context(), "content scanner: internal error", "err", err)
			me = &mcsError{status: http.StatusInternalServerError, reason: "M_UNKNOWN", info: "internal error"}
		}
		httpapi.WriteJSON(w, me.status, map[string]string{"reason": me.reason, "info": me.info, "errcode": me.reason, "error": me.info})
		return nil
	}
}

func (s *Service) registerScanner(rt *httpapi.Router) {
	const base = "/_matrix/media_proxy/unstable"
	rt.Public("GET "+base+"/public_key", s.scannerPublicKey)
	rt.AuthedRaw("POST "+base+"/scan_encrypted", mcs(s.scanEncrypted))
	rt.AuthedRaw("POST "+base+"/download_encrypted", mcs(s.downloadEncrypted))
	rt.AuthedRaw("GET "+base+"/scan/{serverName}/{mediaId}", mcs(s.scanPlain))
	rt.AuthedRaw("GET "+base+"/download/{serverName}/{mediaId}", mcs(s.downloadScanned))
	rt.AuthedRaw("GET "+base+"/thumbnail/{serverName}/{mediaId}", mcs(s.thumbnailScanned))
}

// scannerPublicKey serves GET /_matrix/media_proxy/unstable/public_key.
func (s *Service) scannerPublicKey(r *http.Request) (any, error) {
	return map[string]string{"public_key": s.scanner.publicKey()}, nil
}

// scanResult is the body of the scan endpoints.
type scanResult struct {
	Clean bool   `json:"clean"`
	Info  string `json:"info"`
}

func resultOf(v Verdict) scanResult {
	if v.Clean {
		return scanResult{Clean: true, Info: "File is clean"}
	}
	return scanResult{Clean: false, Info: "File is not clean: " + v.Signature}
}

// scanPlain serves GET /_matrix/media_proxy/unstable/scan/{serverName}/{mediaId}.
func (s *Service) scanPlain(w http.ResponseWriter, r *http.Request) error {
	m, v, err := s.scanStored(r)
	if err != nil {
		return err
	}
	if !v.Clean {
		s.auditInfected(r.Context(), httpapi.RequesterFrom(r.Context()).UserID, m.ContentHash, v.Signature, "scan")
	}
	httpapi.WriteJSON(w, http.StatusOK, resultOf(v))
	return nil
}

// downloadScanned serves GET /_matrix/media_proxy/unstable/download/{serverName}/{mediaId}.
func (s *Service) downloadScanned(w http.ResponseWriter, r *http.Request) error {
	m, v, err := s.scanStored(r)
	if err != nil {
		return err
	}
	if !v.Clean {
		s.auditInfected(r.Context(), httpapi.RequesterFrom(r.Context()).UserID, m.ContentHash, v.Signature, "download")
		return mcsErr(http.StatusForbidden, "MCS_MEDIA_NOT_CLEAN", "file is not clean: %s", v.Signature)
	}
	return s.serveContent(w, r, m.ContentHash, servedType(m.ContentType), m.Filename)
}

// thumbnailScanned serves GET /_matrix/media_proxy/unstable/thumbnail/{serverName}/{mediaId}.
func (s *Service) thumbnailScanned(w http.ResponseWriter, r *http.Request) error {
	_, v, err := s.scanStored(r)
	if err != nil {
		return err
	}
	if !v.Clean {
		return mcsErr(http.StatusForbidden, "MCS_MEDIA_NOT_CLEAN", "file is not clean: %s", v.Signature)
	}
	return s.thumbnail(w, r)
}

// scanStored finds the requested media and its (cached) verdict.
func (s *Service) scanStored(r *http.Request) (*storage.Media, Verdict, error) {
	m, err := s.lookup(r)
	if err != nil {
		return nil, Verdict{}, err
	}
	v, err := s.scanCached(r.Context(), m.ContentHash, func() (io.Reader, error) { return s.store.Open(m.ContentHash) })
	if err != nil {
		return nil, Verdict{}, scannerDown(err)
	}
	return m, v, nil
}

func scannerDown(err error) error {
	if errors.Is(err, ErrScannerUnavailable) {
		slog.Error("content scanner: antivirus unavailable", "err", err)
		return mcsErr(http.StatusServiceUnavailable, "M_UNKNOWN", "the antivirus scanner is unavailable")
	}
	return err
}

// scanEncrypted serves POST /_matrix/media_proxy/unstable/scan_encrypted.
func (s *Service) scanEncrypted(w http.ResponseWriter, r *http.Request) error {
	_, v, err := s.scanAttachment(r)
	if err != nil {
		return err
	}
	httpapi.WriteJSON(w, http.StatusOK, resultOf(v))
	return nil
}

// downloadEncrypted serves POST /_matrix/media_proxy/unstable/download_encrypted:
// the encrypted file, if its decrypted content is clean.
func (s *Service) downloadEncrypted(w http.ResponseWriter, r *http.Request) error {
	m, v, err := s.scanAttachment(r)
	if err != nil {
		return err
	}
	if !v.Clean {
		return mcsErr(http.StatusForbidden, "MCS_MEDIA_NOT_CLEAN", "file is not clean: %s", v.Signature)
	}
	return s.serveContent(w, r, m.ContentHash, "application/octet-stream", m.Filename)
}

// scanFile is the EncryptedFile of an m.file/m.image message: the
// attachment's URL and its AES-CTR key, IV and SHA-256.
type scanFile struct {
	attachment.EncryptedFile
	URL string `json:"url"`
}

// scanAttachment decodes a scan_encrypted/download_encrypted body
// (decrypting encrypted_body when present), decrypts the attachment in
// memory, checks its type and scans it.
func (s *Service) scanAttachment(r *http.Request) (*storage.Media, Verdict, error) {
	ctx := r.Context()
	raw, err := io.ReadAll(io.LimitReader(r.Body, 64<<10+1))
	if err != nil || len(raw) > 64<<10 {
		return nil, Verdict{}, mcsErr(http.StatusBadRequest, "MCS_MALFORMED_JSON", "request body missing or too large")
	}
	var body struct {
		EncryptedBody json.RawMessage `json:"encrypted_body"`
		File          *scanFile       `json:"file"`
	}
	if err := json.Unmarshal(raw, &body); err != nil {
		return nil, Verdict{}, mcsErr(http.StatusBadRequest, "MCS_MALFORMED_JSON", "request body is not a valid request")
	}
	if len(body.EncryptedBody) > 0 && string(body.EncryptedBody) != "null" {
		var enc backup.EncryptedSessionData[json.RawMessage]
		if err := json.Unmarshal(body.EncryptedBody, &enc); err != nil || enc.Ephemeral.PublicKey == nil {
			return nil, Verdict{}, mcsErr(http.StatusForbidden, "MCS_BAD_DECRYPTION", "encrypted_body is malformed; fetch the public key and retry")
		}
		plain, err := enc.Decrypt(s.scanner.key)
		if err != nil {
			var se *json.SyntaxError
			if errors.As(err, &se) {
				return nil, Verdict{}, mcsErr(http.StatusBadRequest, "MCS_MALFORMED_JSON", "decrypted body is not valid JSON")
			}
			return nil, Verdict{}, mcsErr(http.StatusForbidden, "MCS_BAD_DECRYPTION", "encrypted_body could not be decrypted; fetch the public key and retry")
		}
		var inner struct {
			File *scanFile `json:"file"`
		}
		if err := json.Unmarshal(*plain, &inner); err != nil {
			return nil, Verdict{}, mcsErr(http.StatusBadRequest, "MCS_MALFORMED_JSON", "decrypted body is not a valid request")
		}
		body.File = inner.File
	}
	f := body.File
	if f == nil || f.URL == "" {
		return nil, Verdict{}, mcsErr(http.StatusBadRequest, "MCS_MALFORMED_JSON", "file with url, key, iv and hashes is required")
	}
	serverName, mediaID, ok := strings.Cut(strings.TrimPrefix(f.URL, "mxc://"), "/")
	if !ok || !strings.HasPrefix(f.URL, "mxc://") {
		return nil, Verdict{}, mcsErr(http.StatusBadRequest, "MCS_MALFORMED_JSON", "file.url is not an mxc:// URI")
	}
	if f.Key.Algorithm != "A256CTR" || f.Key.KeyType != "oct" {
		return nil, Verdict{}, mcsErr(http.StatusForbidden, "MCS_BAD_DECRYPTION", "unsupported attachment key (want A256CTR)")
	}
	f.InitVector = strings.TrimRight(f.InitVector, "=")
	f.Hashes.SHA256 = strings.TrimRight(f.Hashes.SHA256, "=")
	f.Key.Key = strings.TrimRight(f.Key.Key, "=")
	if err := f.PrepareForDecryption(); err != nil {
		return nil, Verdict{}, mcsErr(http.StatusForbidden, "MCS_BAD_DECRYPTION", "attachment key, iv or hash is malformed")
	}
	r.SetPathValue("serverName", serverName)
	r.SetPathValue("mediaId", mediaID)
	m, err := s.lookup(r)
	if err != nil {
		return nil, Verdict{}, err
	}
	userID := httpapi.RequesterFrom(ctx).UserID
	kh := sha256.Sum256([]byte("rempart-encrypted-scan\x00" + m.ContentHash + "\x00" + f.Key.Key + "\x00" + f.InitVector))
	scanKey := "enc:" + hex.EncodeToString(kh[:])
	if clean, info, err := s.db.GetMediaScan(ctx, scanKey); err == nil {
		if !clean {
			s.auditInfected(ctx, userID, m.ContentHash, info, "scan_encrypted")
		}
		return m, Verdict{Clean: clean, Signature: info}, nil
	}

	// Bounded: the attachment is held in memory, decrypted in place.
	select {
	case s.thumbSlots <- struct{}{}:
	case <-ctx.Done():
		return nil, Verdict{}, ctx.Err()
	}
	defer func() { <-s.thumbSlots }()
	fh, err := s.store.Open(m.ContentHash)
	if err != nil {
		return nil, Verdict{}, err
	}
	data, err := io.ReadAll(io.LimitReader(fh, s.cfg.Media.MaxUploadSize))
	fh.Close()
	if err != nil {
		return nil, Verdict{}, err
	}
	defer clear(data)
	if err := f.DecryptInPlace(data); err != nil {
		return nil, Verdict{}, mcsErr(http.StatusForbidden, "MCS_BAD_DECRYPTION", "the attachment could not be decrypted with the given key (hash mismatch)")
	}
	if allowed := s.cfg.Media.ContentScanner.AllowedMimeTypes; len(allowed) > 0 {
		detected, _, _ := mime.ParseMediaType(http.DetectContentType(data))
		ok := false
		for _, a := range allowed {
			ok = ok || strings.EqualFold(a, detected)
		}
		if !ok {
			return nil, Verdict{}, mcsErr(http.StatusForbidden, "MCS_MIME_TYPE_FORBIDDEN", "content type %s is not allowed", detected)
		}
	}
	v, err := s.clamd.Scan(ctx, bytes.NewReader(data))
	if err != nil {
		return nil, Verdict{}, scannerDown(err)
	}
	if err := s.db.WithTx(ctx, func(tx *storage.Tx) error {
		return tx.PutMediaScan(ctx, scanKey, v.Clean, v.Signature, time.Now().UnixMilli())
	}); err != nil {
		slog.WarnContext(ctx, "content scanner: cache verdict", "err", err)
	}
	if !v.Clean {
		s.auditInfected(ctx, userID, m.ContentHash, v.Signature, "scan_encrypted")
	}
	return m, v, nil
}
