-- Directory words of each room's joined members: for every joined
-- membership, the member's user_directory_words, keyed by room. A search
-- scoped to the searcher's rooms (the default) is then a range scan of its
-- rooms' matching words, whose cost follows the matches and not the
-- members of the rooms (probing each member's words was about 1 µs per
-- member on SQLite and 5 µs on PostgreSQL: milliseconds in a 1,000-member
-- room). Kept equal to
--   memberships (membership = 'join') JOIN user_directory_words ON user_id
-- by triggers on both tables, created with the backfill by the migration's
-- Go step (storage.roomMemberWordsStep: their syntax differs by dialect).
CREATE TABLE room_member_words (
    user_id  TEXT NOT NULL,
    room_id  TEXT NOT NULL,
    word     TEXT {{binary}} NOT NULL,
    PRIMARY KEY (user_id, room_id, word)
);
CREATE INDEX room_member_words_search ON room_member_words (room_id, word, user_id);
