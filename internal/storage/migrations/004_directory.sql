-- User directory and relations.
-- Directory search matches word prefixes of lower(localpart) and
-- lower(displayname); this index serves prefix look-ups of display names
-- (a scoped search starts from the searcher's memberships instead).
CREATE INDEX users_directory_displayname ON users (lower(displayname));

-- Thread listing: a room's events by relation type, in stream order.
CREATE INDEX events_room_rel ON events (room_id, rel_type, stream_pos);
