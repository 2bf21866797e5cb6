-- End-to-end encryption: device keys, one-time and fallback keys,
-- cross-signing keys and signatures, device-list changes, to-device
-- messages and server-side key backups. The server stores only public keys,
-- signatures and ciphertext.

-- The identity keys of each device, as uploaded and self-signed.
CREATE TABLE e2e_device_keys (
    user_id    TEXT NOT NULL,
    device_id  TEXT NOT NULL,
    key_json   TEXT NOT NULL,
    ed25519    TEXT NOT NULL,
    ts         BIGINT NOT NULL,
    PRIMARY KEY (user_id, device_id)
);

-- One-time keys; claiming one deletes it. key_id is "algorithm:id".
CREATE TABLE e2e_one_time_keys (
    id         {{serial}},
    user_id    TEXT NOT NULL,
    device_id  TEXT NOT NULL,
    algorithm  TEXT NOT NULL,
    key_id     TEXT NOT NULL,
    key_json   TEXT NOT NULL,
    UNIQUE (user_id, device_id, key_id)
);
CREATE INDEX e2e_one_time_keys_claim ON e2e_one_time_keys (user_id, device_id, algorithm, id);

-- One fallback key per device and algorithm, handed out when no one-time
-- key is left.
CREATE TABLE e2e_fallback_keys (
    user_id    TEXT NOT NULL,
    device_id  TEXT NOT NULL,
    algorithm  TEXT NOT NULL,
    key_id     TEXT NOT NULL,
    key_json   TEXT NOT NULL,
    used       {{bool}} NOT NULL DEFAULT 0,
    PRIMARY KEY (user_id, device_id, algorithm)
);

-- Cross-signing keys: key_type is master, self_signing or user_signing.
CREATE TABLE e2e_cross_signing_keys (
    user_id     TEXT NOT NULL,
    key_type    TEXT NOT NULL,
    public_key  TEXT NOT NULL,
    key_json    TEXT NOT NULL,
    ts          BIGINT NOT NULL,
    PRIMARY KEY (user_id, key_type)
);

-- Signatures uploaded through /keys/signatures/upload, merged into the
-- signed key when it is queried. target_key_id is a device ID or the
-- public key of a cross-signing key.
CREATE TABLE e2e_signatures (
    target_user_id  TEXT NOT NULL,
    target_key_id   TEXT NOT NULL,
    signer_user_id  TEXT NOT NULL,
    signer_key_id   TEXT NOT NULL,
    signature       TEXT NOT NULL,
    PRIMARY KEY (target_user_id, target_key_id, signer_user_id, signer_key_id)
);

-- Users whose devices or keys changed, in device_lists stream order.
CREATE TABLE e2e_device_list_changes (
    stream_pos  BIGINT PRIMARY KEY,
    user_id     TEXT NOT NULL
);
CREATE INDEX e2e_device_list_changes_user ON e2e_device_list_changes (user_id, stream_pos);

-- Queued to-device messages, deleted once the device acknowledges them
-- with a later sync token.
CREATE TABLE e2e_to_device (
    stream_pos  BIGINT PRIMARY KEY,
    user_id     TEXT NOT NULL,
    device_id   TEXT NOT NULL,
    sender      TEXT NOT NULL,
    type        TEXT NOT NULL,
    content     TEXT NOT NULL
);
CREATE INDEX e2e_to_device_device ON e2e_to_device (user_id, device_id, stream_pos);

-- Server-side key backup versions; deleted versions keep their number.
CREATE TABLE e2e_backup_versions (
    user_id    TEXT NOT NULL,
    version    BIGINT NOT NULL,
    algorithm  TEXT NOT NULL,
    auth_data  TEXT NOT NULL,
    etag       BIGINT NOT NULL DEFAULT 0,
    deleted    {{bool}} NOT NULL DEFAULT 0,
    PRIMARY KEY (user_id, version)
);

-- Encrypted room keys in a backup version.
CREATE TABLE e2e_backup_sessions (
    user_id              TEXT NOT NULL,
    version              BIGINT NOT NULL,
    room_id              TEXT NOT NULL,
    session_id           TEXT NOT NULL,
    first_message_index  BIGINT NOT NULL,
    forwarded_count      BIGINT NOT NULL,
    is_verified          {{bool}} NOT NULL,
    session_data         TEXT NOT NULL,
    PRIMARY KEY (user_id, version, room_id, session_id)
);
