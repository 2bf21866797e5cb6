-- txn_ids records one transaction ID per PUT with one (a message send,
-- a to-device send, a redaction…), claimed in the send's transaction.
--  - On SQLite the rows live in their primary key (WITHOUT ROWID): one
--    B-tree written per send instead of a table and its key's index.
--  - The records are kept for a day (see txnRetention): the index by age
--    lets the pruner delete the expired ones a chunk at a time. Its new
--    entries are appended at its end, a page shared by a whole batch.
CREATE TABLE txn_ids_compact (
    user_id     TEXT NOT NULL,
    device_id   TEXT NOT NULL,
    scope       TEXT NOT NULL,
    txn_id      TEXT NOT NULL,
    result      TEXT NOT NULL,
    created_ts  BIGINT NOT NULL,
    PRIMARY KEY (user_id, device_id, scope, txn_id)
) {{without_rowid}};
INSERT INTO txn_ids_compact (user_id, device_id, scope, txn_id, result, created_ts)
    SELECT user_id, device_id, scope, txn_id, result, created_ts FROM txn_ids;
DROP TABLE txn_ids;
ALTER TABLE txn_ids_compact RENAME TO txn_ids;
CREATE INDEX txn_ids_created ON txn_ids (created_ts);
