-- events_relates_to (relates_to, rel_type) lost to events_room_stream
-- (room_id, stream_pos) for Relations' lookup of one event's relations
-- (relates_to = ? AND room_id = ? AND stream_pos in a window): without
-- statistics, SQLite weighs an equality on one column against an equality
-- and a range as a tie, and took the room's window, which for a /relations
-- call is the room's whole history. With the room and the position in it,
-- this index matches the lookup on three columns and wins by rule.
-- Partial: most events relate to none, and every message wrote an entry.
DROP INDEX events_relates_to;
CREATE INDEX events_relates_to ON events (relates_to, room_id, stream_pos) WHERE relates_to IS NOT NULL;
