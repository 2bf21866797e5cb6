-- Indexes for /sync reads.
-- A room's history of one piece of state (history visibility, a user's
-- membership: rooms.NewVisibility via StateHistory). Without it the query
-- planner used events_state (type, state_key, stream_pos) and read that
-- state of every room on the server. Partial, so that appending a
-- message (no state key) does not add an entry.
CREATE INDEX events_room_state ON events (room_id, type, state_key, stream_pos) WHERE state_key IS NOT NULL;

-- The rooms of a user with the membership fields a sync needs, read from
-- the index alone (SyncMemberships) on every sync.
CREATE INDEX memberships_user_sync ON memberships (user_id, forgotten, room_id, membership, stream_pos);
