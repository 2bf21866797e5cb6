-- Core schema: accounts, devices, tokens, rooms, events, state, streams.
-- {{serial}}, {{blob}} and {{bool}} are replaced per backend (see migrate.go).

CREATE TABLE users (
    user_id        TEXT PRIMARY KEY,
    localpart      TEXT NOT NULL UNIQUE,
    password_hash  TEXT NOT NULL DEFAULT '',
    is_admin       {{bool}} NOT NULL DEFAULT 0,
    is_guest       {{bool}} NOT NULL DEFAULT 0,
    deactivated    {{bool}} NOT NULL DEFAULT 0,
    created_ts     BIGINT NOT NULL,
    displayname    TEXT,
    avatar_url     TEXT
);

CREATE TABLE devices (
    user_id       TEXT NOT NULL,
    device_id     TEXT NOT NULL,
    display_name  TEXT,
    created_ts    BIGINT NOT NULL,
    last_seen_ts  BIGINT,
    last_seen_ip  TEXT,
    PRIMARY KEY (user_id, device_id)
);

-- Access tokens are stored only as SHA-256 hashes.
CREATE TABLE access_tokens (
    token_hash   TEXT PRIMARY KEY,
    user_id      TEXT NOT NULL,
    device_id    TEXT NOT NULL,
    created_ts   BIGINT NOT NULL,
    expires_ts   BIGINT
);
CREATE INDEX access_tokens_device ON access_tokens (user_id, device_id);

CREATE TABLE registration_tokens (
    token         TEXT PRIMARY KEY,
    uses_allowed  INTEGER,
    pending       INTEGER NOT NULL DEFAULT 0,
    completed     INTEGER NOT NULL DEFAULT 0,
    expiry_ts     BIGINT
);

-- Nonces for the shared-secret registration API (one use each).
CREATE TABLE registration_nonces (
    nonce       TEXT PRIMARY KEY,
    created_ts  BIGINT NOT NULL
);

-- User-interactive authentication sessions.
CREATE TABLE uia_sessions (
    session_id   TEXT PRIMARY KEY,
    user_id      TEXT NOT NULL DEFAULT '',
    created_ts   BIGINT NOT NULL,
    completed    TEXT NOT NULL DEFAULT '[]',
    params       TEXT NOT NULL DEFAULT '{}'
);

-- Named counters for the non-event streams (account_data, receipts, …).
CREATE TABLE stream_positions (
    name  TEXT PRIMARY KEY,
    pos   BIGINT NOT NULL
);
INSERT INTO stream_positions (name, pos) VALUES ('account_data', 0), ('receipts', 0), ('to_device', 0), ('device_lists', 0), ('presence', 0);

CREATE TABLE rooms (
    room_id          TEXT PRIMARY KEY,
    room_version     TEXT NOT NULL,
    creator          TEXT NOT NULL,
    created_ts       BIGINT NOT NULL,
    visibility       TEXT NOT NULL DEFAULT 'private',
    latest_event_id  TEXT NOT NULL DEFAULT '',
    depth            BIGINT NOT NULL DEFAULT 0,
    state_group      BIGINT NOT NULL DEFAULT 0
);
CREATE INDEX rooms_visibility ON rooms (visibility);

-- Every event of every room, in stream order. state_group_before is the
-- room state before the event (state_group of the room after the previous event).
CREATE TABLE events (
    stream_pos          {{serial}},
    event_id            TEXT NOT NULL UNIQUE,
    room_id             TEXT NOT NULL,
    type                TEXT NOT NULL,
    state_key           TEXT,
    sender              TEXT NOT NULL,
    origin_server_ts    BIGINT NOT NULL,
    depth               BIGINT NOT NULL,
    json                TEXT NOT NULL,
    unsigned            TEXT NOT NULL DEFAULT '{}',
    state_group_before  BIGINT NOT NULL,
    state_group_after   BIGINT NOT NULL,
    redacted_by         TEXT,
    rel_type            TEXT,
    relates_to          TEXT,
    txn_device          TEXT,
    txn_id              TEXT
);
CREATE INDEX events_room_stream ON events (room_id, stream_pos);
CREATE INDEX events_state ON events (type, state_key, stream_pos);
CREATE INDEX events_relates_to ON events (relates_to, rel_type);

-- Transaction-ID idempotency for PUT endpoints, scoped per device.
CREATE TABLE txn_ids (
    user_id     TEXT NOT NULL,
    device_id   TEXT NOT NULL,
    scope       TEXT NOT NULL,
    txn_id      TEXT NOT NULL,
    result      TEXT NOT NULL,
    created_ts  BIGINT NOT NULL,
    PRIMARY KEY (user_id, device_id, scope, txn_id)
);

-- State groups: a room state is a chain of deltas ending in a full snapshot.
CREATE TABLE state_groups (
    group_id     {{serial}},
    room_id      TEXT NOT NULL,
    prev_group   BIGINT,
    chain_len    INTEGER NOT NULL
);
CREATE TABLE state_group_entries (
    group_id   BIGINT NOT NULL,
    type       TEXT NOT NULL,
    state_key  TEXT NOT NULL,
    event_id   TEXT NOT NULL,
    PRIMARY KEY (group_id, type, state_key)
);

CREATE TABLE current_state (
    room_id     TEXT NOT NULL,
    type        TEXT NOT NULL,
    state_key   TEXT NOT NULL,
    event_id    TEXT NOT NULL,
    stream_pos  BIGINT NOT NULL,
    PRIMARY KEY (room_id, type, state_key)
);

-- Current membership of each user in each room (derived from current_state).
CREATE TABLE memberships (
    room_id     TEXT NOT NULL,
    user_id     TEXT NOT NULL,
    membership  TEXT NOT NULL,
    event_id    TEXT NOT NULL,
    stream_pos  BIGINT NOT NULL,
    forgotten   {{bool}} NOT NULL DEFAULT 0,
    PRIMARY KEY (room_id, user_id)
);
CREATE INDEX memberships_user ON memberships (user_id, membership);

CREATE TABLE room_aliases (
    alias       TEXT PRIMARY KEY,
    room_id     TEXT NOT NULL,
    creator     TEXT NOT NULL,
    created_ts  BIGINT NOT NULL
);
CREATE INDEX room_aliases_room ON room_aliases (room_id);

CREATE TABLE account_data (
    user_id     TEXT NOT NULL,
    room_id     TEXT NOT NULL,
    type        TEXT NOT NULL,
    content     TEXT NOT NULL,
    stream_pos  BIGINT NOT NULL,
    PRIMARY KEY (user_id, room_id, type)
);
CREATE INDEX account_data_stream ON account_data (user_id, stream_pos);

CREATE TABLE receipts (
    room_id       TEXT NOT NULL,
    receipt_type  TEXT NOT NULL,
    user_id       TEXT NOT NULL,
    thread_id     TEXT NOT NULL,
    event_id      TEXT NOT NULL,
    ts            BIGINT NOT NULL,
    stream_pos    BIGINT NOT NULL,
    PRIMARY KEY (room_id, receipt_type, user_id, thread_id)
);
CREATE INDEX receipts_stream ON receipts (room_id, stream_pos);

CREATE TABLE filters (
    filter_id   {{serial}},
    user_id     TEXT NOT NULL,
    json        TEXT NOT NULL
);

CREATE TABLE event_reports (
    report_id   {{serial}},
    room_id     TEXT NOT NULL,
    event_id    TEXT NOT NULL,
    user_id     TEXT NOT NULL,
    reason      TEXT,
    score       INTEGER,
    created_ts  BIGINT NOT NULL
);
