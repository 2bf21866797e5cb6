-- events_room_rel serves one query, the thread list of a room
-- (room_id = ? AND rel_type = 'm.thread'), yet every event wrote an entry
-- in it, a page of the room's own per message: most events have no
-- relation. Keep only the events that have one.
DROP INDEX events_room_rel;
CREATE INDEX events_room_rel ON events (room_id, rel_type, stream_pos) WHERE rel_type IS NOT NULL;
