-- Profile fields beyond displayname/avatar_url (v1.16 extensible
-- profiles), presence (stored only when presence is enabled), and room and
-- user reports (event reports live in event_reports, 001_core.sql).

-- value is the field's JSON value.
CREATE TABLE profile_fields (
    user_id  TEXT NOT NULL,
    field    TEXT NOT NULL,
    value    TEXT NOT NULL,
    PRIMARY KEY (user_id, field)
);

CREATE TABLE presence (
    user_id         TEXT PRIMARY KEY,
    state           TEXT NOT NULL,
    status_msg      TEXT,
    last_active_ts  BIGINT NOT NULL,
    stream_pos      BIGINT NOT NULL
);
CREATE INDEX presence_stream ON presence (stream_pos);

CREATE TABLE room_reports (
    report_id   {{serial}},
    room_id     TEXT NOT NULL,
    user_id     TEXT NOT NULL,
    reason      TEXT NOT NULL,
    created_ts  BIGINT NOT NULL
);

CREATE TABLE user_reports (
    report_id       {{serial}},
    target_user_id  TEXT NOT NULL,
    user_id         TEXT NOT NULL,
    reason          TEXT NOT NULL,
    created_ts      BIGINT NOT NULL
);
