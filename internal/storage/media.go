package storage

import (
	"context"
	"database/sql"
	"fmt"
)

// Media is one local media ID of the content repository.
type Media struct {
	MediaID     string
	UserID      string
	ContentHash string // "" while the upload is pending
	Size        int64
	ContentType string
	Filename    string
	CreatedTS   int64
	UploadedTS  int64 // 0 while pending
	ExpiresTS   int64 // pending IDs only
	Quarantined bool
}

// Pending reports whether the media ID was created but not yet uploaded.
func (m *Media) Pending() bool { return m.ContentHash == "" }

const mediaCols = `media_id, user_id, content_hash, size, content_type, filename, created_ts, uploaded_ts, expires_ts, quarantined`

type rowScanner interface{ Scan(dest ...any) error }

func scanMedia(r rowScanner) (*Media, error) {
	var m Media
	var hash sql.NullString
	var up, exp sql.NullInt64
	var q int
	if err := r.Scan(&m.MediaID, &m.UserID, &hash, &m.Size, &m.ContentType, &m.Filename, &m.CreatedTS, &up, &exp, &q); err != nil {
		return nil, notFound(err)
	}
	m.ContentHash, m.UploadedTS, m.ExpiresTS, m.Quarantined = hash.String, up.Int64, exp.Int64, q != 0
	return &m, nil
}

func nullStr(s string) any {
	if s == "" {
		return nil
	}
	return s
}

func nullInt(v int64) any {
	if v == 0 {
		return nil
	}
	return v
}

// InsertMedia records a media ID (uploaded, or pending when ContentHash is
// empty).
func (tx *Tx) InsertMedia(ctx context.Context, m Media) error {
	_, err := tx.exec(ctx, `INSERT INTO media (`+mediaCols+`) VALUES (?,?,?,?,?,?,?,?,?,?)`,
		m.MediaID, m.UserID, nullStr(m.ContentHash), m.Size, m.ContentType, m.Filename, m.CreatedTS,
		nullInt(m.UploadedTS), nullInt(m.ExpiresTS), b2i(m.Quarantined))
	return err
}

// CompletePendingMedia fills in a pending media ID with its content. It
// reports false when the ID is no longer pending.
func (tx *Tx) CompletePendingMedia(ctx context.Context, m Media) (bool, error) {
	res, err := tx.exec(ctx, `UPDATE media SET content_hash = ?, size = ?, content_type = ?, filename = ?, uploaded_ts = ?, expires_ts = NULL
		WHERE media_id = ? AND content_hash IS NULL`, m.ContentHash, m.Size, m.ContentType, m.Filename, m.UploadedTS, m.MediaID)
	if err != nil {
		return false, err
	}
	n, err := res.RowsAffected()
	return n == 1, err
}

// GetMedia returns a media ID's record or ErrNotFound.
func (db *DB) GetMedia(ctx context.Context, mediaID string) (*Media, error) {
	return scanMedia(db.queryRow(ctx, `SELECT `+mediaCols+` FROM media WHERE media_id = ?`, mediaID))
}

// GetMedia returns a media ID's record inside the transaction.
func (tx *Tx) GetMedia(ctx context.Context, mediaID string) (*Media, error) {
	return scanMedia(tx.queryRow(ctx, `SELECT `+mediaCols+` FROM media WHERE media_id = ?`, mediaID))
}

// MediaUsage returns the bytes stored by a user's media IDs.
func (tx *Tx) MediaUsage(ctx context.Context, userID string) (int64, error) {
	var n sql.NullInt64
	err := tx.queryRow(ctx, `SELECT SUM(size) FROM media WHERE user_id = ?`, userID).Scan(&n)
	return n.Int64, err
}

// CountPendingMedia counts a user's created, not yet uploaded and not yet
// expired media IDs.
func (tx *Tx) CountPendingMedia(ctx context.Context, userID string, now int64) (int, error) {
	var n int
	err := tx.queryRow(ctx, `SELECT COUNT(*) FROM media WHERE user_id = ? AND content_hash IS NULL AND expires_ts > ?`, userID, now).Scan(&n)
	return n, err
}

// DeleteExpiredPendingMedia removes created media IDs whose upload never
// came before they expired.
func (tx *Tx) DeleteExpiredPendingMedia(ctx context.Context, now int64) (int64, error) {
	res, err := tx.exec(ctx, `DELETE FROM media WHERE content_hash IS NULL AND expires_ts <= ?`, now)
	if err != nil {
		return 0, err
	}
	return res.RowsAffected()
}

// DeleteMedia removes a media ID and returns its content hash ("" when it
// was pending), or ErrNotFound.
func (tx *Tx) DeleteMedia(ctx context.Context, mediaID string) (string, error) {
	m, err := tx.GetMedia(ctx, mediaID)
	if err != nil {
		return "", err
	}
	if _, err := tx.exec(ctx, `DELETE FROM media WHERE media_id = ?`, mediaID); err != nil {
		return "", err
	}
	return m.ContentHash, nil
}

// MediaHashInUse reports whether any media ID or cached thumbnail still
// points at the content hash.
func (tx *Tx) MediaHashInUse(ctx context.Context, hash string) (bool, error) {
	var n int
	err := tx.queryRow(ctx, `SELECT (SELECT COUNT(*) FROM media WHERE content_hash = ?) + (SELECT COUNT(*) FROM media_thumbnails WHERE thumb_hash = ?)`, hash, hash).Scan(&n)
	return n > 0, err
}

// DeleteMediaThumbnails forgets the cached thumbnails of a source and
// returns their content hashes.
func (tx *Tx) DeleteMediaThumbnails(ctx context.Context, sourceHash string) ([]string, error) {
	rows, err := tx.query(ctx, `SELECT thumb_hash FROM media_thumbnails WHERE source_hash = ?`, sourceHash)
	if err != nil {
		return nil, err
	}
	var out []string
	for rows.Next() {
		var h string
		if err := rows.Scan(&h); err != nil {
			rows.Close()
			return nil, err
		}
		out = append(out, h)
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return nil, err
	}
	_, err = tx.exec(ctx, `DELETE FROM media_thumbnails WHERE source_hash = ?`, sourceHash)
	return out, err
}

// SetMediaQuarantined sets or clears the quarantine flag of a media ID. It
// reports false when the ID does not exist.
func (tx *Tx) SetMediaQuarantined(ctx context.Context, mediaID string, q bool) (bool, error) {
	res, err := tx.exec(ctx, `UPDATE media SET quarantined = ? WHERE media_id = ?`, b2i(q), mediaID)
	if err != nil {
		return false, err
	}
	n, err := res.RowsAffected()
	return n == 1, err
}

// MediaIDsByUser lists the media IDs a user uploaded or created.
func (db *DB) MediaIDsByUser(ctx context.Context, userID string) ([]string, error) {
	rows, err := db.query(ctx, `SELECT media_id FROM media WHERE user_id = ? ORDER BY created_ts`, userID)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []string
	for rows.Next() {
		var id string
		if err := rows.Scan(&id); err != nil {
			return nil, err
		}
		out = append(out, id)
	}
	return out, rows.Err()
}

// EachRoomEventJSON calls fn with the JSON of every event of a room, in
// stream order (used to find the media a room references).
func (db *DB) EachRoomEventJSON(ctx context.Context, roomID string, fn func(js string) error) error {
	rows, err := db.query(ctx, `SELECT json FROM events WHERE room_id = ? ORDER BY stream_pos`, roomID)
	if err != nil {
		return err
	}
	defer rows.Close()
	for rows.Next() {
		var js string
		if err := rows.Scan(&js); err != nil {
			return err
		}
		if err := fn(js); err != nil {
			return err
		}
	}
	return rows.Err()
}

// MediaThumbnail is a cached thumbnail.
type MediaThumbnail struct {
	SourceHash  string
	Width       int
	Height      int
	Method      string
	Animated    bool
	ThumbHash   string
	ContentType string
	Size        int64
}

// GetMediaThumbnail returns a cached thumbnail or ErrNotFound.
func (db *DB) GetMediaThumbnail(ctx context.Context, sourceHash string, w, h int, method string, animated bool) (*MediaThumbnail, error) {
	t := MediaThumbnail{SourceHash: sourceHash, Width: w, Height: h, Method: method, Animated: animated}
	err := db.queryRow(ctx, `SELECT thumb_hash, content_type, size FROM media_thumbnails WHERE source_hash = ? AND width = ? AND height = ? AND method = ? AND animated = ?`,
		sourceHash, w, h, method, b2i(animated)).Scan(&t.ThumbHash, &t.ContentType, &t.Size)
	if err != nil {
		return nil, notFound(err)
	}
	return &t, nil
}

// PutMediaThumbnail records a generated thumbnail (first writer wins).
func (tx *Tx) PutMediaThumbnail(ctx context.Context, t MediaThumbnail) error {
	_, err := tx.exec(ctx, `INSERT INTO media_thumbnails (source_hash, width, height, method, animated, thumb_hash, content_type, size)
		VALUES (?,?,?,?,?,?,?,?) ON CONFLICT (source_hash, width, height, method, animated) DO NOTHING`,
		t.SourceHash, t.Width, t.Height, t.Method, b2i(t.Animated), t.ThumbHash, t.ContentType, t.Size)
	return err
}

// GetMediaScan returns a cached antivirus verdict or ErrNotFound.
func (db *DB) GetMediaScan(ctx context.Context, key string) (clean bool, info string, err error) {
	var c int
	if err := db.queryRow(ctx, `SELECT clean, info FROM media_scans WHERE scan_key = ?`, key).Scan(&c, &info); err != nil {
		return false, "", notFound(err)
	}
	return c != 0, info, nil
}

// PutMediaScan records an antivirus verdict.
func (tx *Tx) PutMediaScan(ctx context.Context, key string, clean bool, info string, ts int64) error {
	_, err := tx.exec(ctx, `INSERT INTO media_scans (scan_key, clean, info, scanned_ts) VALUES (?,?,?,?)
		ON CONFLICT (scan_key) DO UPDATE SET clean = excluded.clean, info = excluded.info, scanned_ts = excluded.scanned_ts`,
		key, b2i(clean), info, ts)
	if err != nil {
		return fmt.Errorf("record scan: %w", err)
	}
	return nil
}
