-- Content repository: local media metadata. The bytes live on the
-- filesystem under the media root, named by their SHA-256 (identical
-- uploads are stored once); these tables say which media ID points at
-- which content, who uploaded it and whether it is quarantined.

-- One row per local media ID. content_hash is NULL while an ID created
-- with POST /_matrix/media/v1/create waits for its upload (until
-- expires_ts).
CREATE TABLE media (
    media_id      TEXT PRIMARY KEY,
    user_id       TEXT NOT NULL,
    content_hash  TEXT,
    size          BIGINT NOT NULL DEFAULT 0,
    content_type  TEXT NOT NULL DEFAULT '',
    filename      TEXT NOT NULL DEFAULT '',
    created_ts    BIGINT NOT NULL,
    uploaded_ts   BIGINT,
    expires_ts    BIGINT,
    quarantined   {{bool}} NOT NULL DEFAULT 0
);
CREATE INDEX media_user ON media (user_id);
CREATE INDEX media_hash ON media (content_hash);

-- Cached thumbnails, by source content and requested shape; the thumbnail
-- bytes are themselves stored by hash.
CREATE TABLE media_thumbnails (
    source_hash   TEXT NOT NULL,
    width         INTEGER NOT NULL,
    height        INTEGER NOT NULL,
    method        TEXT NOT NULL,
    animated      {{bool}} NOT NULL,
    thumb_hash    TEXT NOT NULL,
    content_type  TEXT NOT NULL,
    size          BIGINT NOT NULL,
    PRIMARY KEY (source_hash, width, height, method, animated)
);
CREATE INDEX media_thumbnails_thumb ON media_thumbnails (thumb_hash);

-- Antivirus verdicts, by scan key: the content hash for stored media, a
-- hash of content and decryption key for encrypted attachments.
CREATE TABLE media_scans (
    scan_key    TEXT PRIMARY KEY,
    clean       {{bool}} NOT NULL,
    info        TEXT NOT NULL,
    scanned_ts  BIGINT NOT NULL
);
