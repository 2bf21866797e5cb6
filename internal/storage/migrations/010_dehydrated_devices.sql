-- Dehydrated devices (MSC3814): at most one per user. The device itself is
-- a row of devices (with no access token), so that its keys, one-time key
-- claims and to-device queue work like any device's; this table marks it
-- and holds the client's opaque, encrypted device_data.
CREATE TABLE dehydrated_devices (
    user_id      TEXT PRIMARY KEY,
    device_id    TEXT NOT NULL,
    device_data  TEXT NOT NULL,
    created_ts   BIGINT NOT NULL
);
