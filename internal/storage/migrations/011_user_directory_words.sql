-- User directory search index: for each active local user, every suffix of
-- the lower-cased localpart that starts a word (after '.', '_', '-', '='),
-- and of the lower-cased display name that starts a word (after a space).
-- A search term matches a user when it is a prefix of one of their words,
-- which is a range scan here instead of a scan of every user. Written in Go
-- (storage.indexDirectoryUser), backfilled by the migration's Go step.
-- Compared bytewise, so that prefix ranges mean the same on both backends.
CREATE TABLE user_directory_words (
    user_id  TEXT NOT NULL,
    word     TEXT {{binary}} NOT NULL,
    PRIMARY KEY (user_id, word)
);
CREATE INDEX user_directory_words_word ON user_directory_words (word, user_id);

-- The joined members of a room without reading the table (directory
-- search walks the searcher's rooms' members).
CREATE INDEX memberships_room_joined ON memberships (room_id, membership, user_id);
