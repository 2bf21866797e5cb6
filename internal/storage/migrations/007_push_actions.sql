-- What push rules decided for each local user and event that notifies them,
-- written when the event is stored: the source of unread notification
-- counts in /sync and of GET /notifications.
CREATE TABLE event_push_actions (
    user_id     TEXT NOT NULL,
    room_id     TEXT NOT NULL,
    event_id    TEXT NOT NULL,
    stream_pos  BIGINT NOT NULL,
    thread_id   TEXT NOT NULL,
    highlight   {{bool}} NOT NULL,
    actions     TEXT NOT NULL,
    ts          BIGINT NOT NULL,
    PRIMARY KEY (user_id, room_id, stream_pos)
);
CREATE INDEX event_push_actions_user_pos ON event_push_actions (user_id, stream_pos);
CREATE INDEX event_push_actions_event ON event_push_actions (event_id);
