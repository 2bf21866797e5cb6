-- Push actions are written in two steps. event_push_actions is keyed by
-- user: each notified member's rows sit on a page of their own, so a
-- message dirtied one page per recipient in its commit, about half of the
-- pages an ordinary send wrote on SQLite. A send now adds its rows here,
-- keyed by room first, where one message's rows (and the room's next
-- messages' rows) share a page; once a few thousand rows are waiting, the
-- committer moves them into event_push_actions, a chunk per transaction
-- in that table's key order, so that a member's page is written once per
-- move rather than once per message. Reads take both tables: a row is in
-- exactly one of them, moved atomically (see storage/push_staged.go).
-- PostgreSQL, which logs rows rather than pages, writes straight to
-- event_push_actions and leaves this table empty.
CREATE TABLE event_push_staged (
    room_id     TEXT NOT NULL,
    user_id     TEXT NOT NULL,
    stream_pos  BIGINT NOT NULL,
    thread_id   TEXT NOT NULL,
    highlight   {{bool}} NOT NULL,
    actions     TEXT NOT NULL,
    PRIMARY KEY (room_id, user_id, stream_pos)
) {{without_rowid}};
