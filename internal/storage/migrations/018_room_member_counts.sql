-- Each room's member count by membership, kept by triggers on memberships
-- (created, with the backfill, by the migration's Go step
-- storage.roomMemberCountsStep: their syntax differs by dialect). A room's
-- summary (m.joined_member_count, m.invited_member_count), which /sync
-- gives each member after a membership change in the room, counted the
-- room's memberships: 2.6 ms in a room of 10,000 on SQLite, paid by every
-- syncing member at each join or leave.
CREATE TABLE room_member_counts (
    room_id     TEXT NOT NULL,
    membership  TEXT NOT NULL,
    n           BIGINT NOT NULL,
    PRIMARY KEY (room_id, membership)
);
