-- The tamper-evident audit log: one row per sensitive act, numbered without
-- gaps, each carrying the keyed hash of the one before it (internal/audit).
CREATE TABLE audit_log (
    seq        BIGINT PRIMARY KEY,
    ts         BIGINT NOT NULL,
    actor      TEXT NOT NULL,
    action     TEXT NOT NULL,
    target     TEXT NOT NULL,
    ip         TEXT NOT NULL,
    details    TEXT NOT NULL,
    prev_hash  TEXT NOT NULL,
    hash       TEXT NOT NULL
);
CREATE INDEX audit_log_actor ON audit_log (actor, seq);
CREATE INDEX audit_log_action ON audit_log (action, seq);

-- The chain's head, one row, locked by each append so that several
-- processes sharing one PostgreSQL database extend a single chain.
CREATE TABLE audit_head (
    id    INTEGER PRIMARY KEY,
    seq   BIGINT NOT NULL,
    hash  TEXT NOT NULL
);
INSERT INTO audit_head (id, seq, hash) VALUES (1, 0, '');
