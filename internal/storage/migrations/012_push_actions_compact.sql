-- event_push_actions holds one row per notified member and event: a
-- message to a room of a thousand members writes a thousand rows in the
-- send's transaction. Make each row cheaper to write:
--  - the event ID and timestamp are the event's, found from stream_pos
--    (GET /notifications joins events), so they are not repeated per row;
--  - the rows live in their primary key (WITHOUT ROWID on SQLite): one
--    B-tree less per row;
--  - no index on event_id: a redaction deletes its event's rows through
--    the primary key (the room's members, room, stream position);
--  - no index on (user_id, stream_pos): GET /notifications reads the
--    newest rows of each of the user's rooms through the primary key.
--    Both indexes, like the primary key, were written at a random place
--    (a page of its own) per member for every message.
CREATE TABLE event_push_actions_compact (
    user_id     TEXT NOT NULL,
    room_id     TEXT NOT NULL,
    stream_pos  BIGINT NOT NULL,
    thread_id   TEXT NOT NULL,
    highlight   {{bool}} NOT NULL,
    actions     TEXT NOT NULL,
    PRIMARY KEY (user_id, room_id, stream_pos)
) {{without_rowid}};
INSERT INTO event_push_actions_compact (user_id, room_id, stream_pos, thread_id, highlight, actions)
    SELECT user_id, room_id, stream_pos, thread_id, highlight, actions FROM event_push_actions;
DROP TABLE event_push_actions;
ALTER TABLE event_push_actions_compact RENAME TO event_push_actions;
