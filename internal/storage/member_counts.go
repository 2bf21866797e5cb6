package storage

import "context"

// Room member counts (migration 018): room_member_counts holds, for each
// room and membership, how many memberships rows have it. Triggers on
// memberships keep it so whatever statement writes a membership (the room
// engine's, PostgreSQL's one-statement state append), so reads of a room's
// counts cost one row per membership rather than one per member.
var roomMemberCountsTriggers = map[Dialect][]string{
	SQLite: {
		`CREATE TRIGGER room_member_counts_insert AFTER INSERT ON memberships BEGIN
			INSERT INTO room_member_counts (room_id, membership, n) VALUES (NEW.room_id, NEW.membership, 1)
			ON CONFLICT (room_id, membership) DO UPDATE SET n = n + 1;
		END`,
		`CREATE TRIGGER room_member_counts_update AFTER UPDATE OF membership ON memberships
		WHEN NEW.membership <> OLD.membership BEGIN
			UPDATE room_member_counts SET n = n - 1 WHERE room_id = OLD.room_id AND membership = OLD.membership;
			INSERT INTO room_member_counts (room_id, membership, n) VALUES (NEW.room_id, NEW.membership, 1)
			ON CONFLICT (room_id, membership) DO UPDATE SET n = n + 1;
		END`,
		`CREATE TRIGGER room_member_counts_delete AFTER DELETE ON memberships BEGIN
			UPDATE room_member_counts SET n = n - 1 WHERE room_id = OLD.room_id AND membership = OLD.membership;
		END`,
	},
	Postgres: {
		`CREATE FUNCTION room_member_counts_membership() RETURNS trigger LANGUAGE plpgsql AS $$
		BEGIN
			IF TG_OP = 'UPDATE' AND NEW.membership = OLD.membership THEN
				RETURN NULL;
			END IF;
			IF TG_OP <> 'INSERT' THEN
				UPDATE room_member_counts SET n = n - 1 WHERE room_id = OLD.room_id AND membership = OLD.membership;
			END IF;
			IF TG_OP <> 'DELETE' THEN
				INSERT INTO room_member_counts (room_id, membership, n) VALUES (NEW.room_id, NEW.membership, 1)
				ON CONFLICT (room_id, membership) DO UPDATE SET n = room_member_counts.n + 1;
			END IF;
			RETURN NULL;
		END $$`,
		`CREATE TRIGGER room_member_counts_membership AFTER INSERT OR DELETE OR UPDATE OF membership ON memberships
		FOR EACH ROW EXECUTE FUNCTION room_member_counts_membership()`,
	},
}

// roomMemberCountsStep fills room_member_counts from the memberships and
// creates the triggers that keep it so (migration 018).
func roomMemberCountsStep(ctx context.Context, tx *Tx) error {
	if _, err := tx.tx.ExecContext(ctx, `INSERT INTO room_member_counts (room_id, membership, n)
		SELECT room_id, membership, COUNT(*) FROM memberships GROUP BY room_id, membership`); err != nil {
		return err
	}
	for _, q := range roomMemberCountsTriggers[tx.db.dialect] {
		if _, err := tx.tx.ExecContext(ctx, q); err != nil {
			return err
		}
	}
	return nil
}

// MemberCounts returns, for each of the rooms, its member counts by
// membership ("join", "invite", "leave", "ban", "knock").
func (db *DB) MemberCounts(ctx context.Context, roomIDs []string) (map[string]map[string]int, error) {
	out := map[string]map[string]int{}
	err := chunks(roomIDs, func(part []string) error {
		rows, err := db.query(ctx, `SELECT room_id, membership, n FROM room_member_counts WHERE room_id IN (`+placeholders(len(part))+`) AND n > 0`,
			stringArgs(part)...)
		if err != nil {
			return err
		}
		defer rows.Close()
		for rows.Next() {
			var room, m string
			var n int
			if err := rows.Scan(&room, &m, &n); err != nil {
				return err
			}
			if out[room] == nil {
				out[room] = map[string]int{}
			}
			out[room][m] = n
		}
		return rows.Err()
	})
	return out, err
}
