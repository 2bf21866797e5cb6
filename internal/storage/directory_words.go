package storage

import (
	"context"
	"strings"
	"unicode"
	"unicode/utf8"
)

// maxDirectoryWordBytes bounds one indexed word (and the part of a search
// term compared against the index): a longer term matches every user whose
// word shares its first maxDirectoryWordBytes bytes.
const maxDirectoryWordBytes = 128

// directoryWords returns the words a user is found by in the user
// directory: each suffix of the lower-cased localpart that starts a word
// (the localpart itself, and what follows '.', '_', '-' or '='), and each
// suffix of the lower-cased display name that starts a word (after
// white space). A search term matches when it is a prefix of one of them.
func directoryWords(localpart, displayName string) []string {
	seen := map[string]bool{}
	var out []string
	add := func(w string) {
		if len(w) > maxDirectoryWordBytes {
			w = truncateUTF8(w, maxDirectoryWordBytes)
		}
		if w != "" && !seen[w] {
			seen[w] = true
			out = append(out, w)
		}
	}
	lp := strings.ToLower(localpart)
	add(lp)
	for i := 0; i < len(lp); i++ {
		if strings.IndexByte("._-=", lp[i]) >= 0 {
			add(lp[i+1:])
		}
	}
	dn := strings.ToLower(strings.TrimSpace(displayName))
	prevSpace := true
	for i, r := range dn {
		space := unicode.IsSpace(r)
		if !space && prevSpace {
			add(dn[i:])
		}
		prevSpace = space
	}
	return out
}

// directoryTermRange is the range of indexed words a search term is a
// prefix of: lo <= word < hi, compared bytewise.
func directoryTermRange(term string) (lo, hi string) {
	if len(term) > maxDirectoryWordBytes {
		term = truncateUTF8(term, maxDirectoryWordBytes)
	}
	return term, term + string(utf8.MaxRune)
}

func truncateUTF8(s string, n int) string {
	for n > 0 && !utf8.RuneStart(s[n]) {
		n--
	}
	return s[:n]
}

// indexDirectoryUser replaces the user's directory words.
func (tx *Tx) indexDirectoryUser(ctx context.Context, userID, localpart, displayName string) error {
	if err := tx.unindexDirectoryUser(ctx, userID); err != nil {
		return err
	}
	for _, w := range directoryWords(localpart, displayName) {
		if _, err := tx.exec(ctx, `INSERT INTO user_directory_words (user_id, word) VALUES (?, ?)`, userID, w); err != nil {
			return err
		}
	}
	return nil
}

// unindexDirectoryUser removes the user from directory search.
func (tx *Tx) unindexDirectoryUser(ctx context.Context, userID string) error {
	_, err := tx.exec(ctx, `DELETE FROM user_directory_words WHERE user_id = ?`, userID)
	return err
}

// reindexUserDirectory rebuilds the directory words of every active,
// non-guest account (migration 011's Go step).
func reindexUserDirectory(ctx context.Context, tx *Tx) error {
	rows, err := tx.query(ctx, `SELECT user_id, localpart, displayname FROM users WHERE deactivated = 0 AND is_guest = 0`)
	if err != nil {
		return err
	}
	type u struct{ id, lp, dn string }
	var users []u
	for rows.Next() {
		var x u
		var dn *string
		if err := rows.Scan(&x.id, &x.lp, &dn); err != nil {
			rows.Close()
			return err
		}
		if dn != nil {
			x.dn = *dn
		}
		users = append(users, x)
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return err
	}
	for _, x := range users {
		if err := tx.indexDirectoryUser(ctx, x.id, x.lp, x.dn); err != nil {
			return err
		}
	}
	return nil
}

// roomMemberWordsTriggers keep room_member_words equal to the joined
// memberships joined with user_directory_words (migration 013): a join
// copies the member's words into the room, a leave (or any other
// membership) removes them, and a word added to or removed from a user is
// added to or removed from each room the user is joined to. On PostgreSQL
// a membership change takes a share lock on the member's users row: a
// profile change (SetProfile, DeactivateUser) updates that row before it
// rewrites the words, so the two wait for each other and neither copies
// words or memberships that the other is replacing.
var roomMemberWordsTriggers = map[Dialect][]string{
	SQLite: {
		`CREATE TRIGGER room_member_words_join AFTER INSERT ON memberships WHEN NEW.membership = 'join' BEGIN
			INSERT OR IGNORE INTO room_member_words (user_id, room_id, word)
			SELECT w.user_id, NEW.room_id, w.word FROM user_directory_words w WHERE w.user_id = NEW.user_id;
		END`,
		`CREATE TRIGGER room_member_words_rejoin AFTER UPDATE OF membership ON memberships
		WHEN NEW.membership = 'join' AND OLD.membership <> 'join' BEGIN
			INSERT OR IGNORE INTO room_member_words (user_id, room_id, word)
			SELECT w.user_id, NEW.room_id, w.word FROM user_directory_words w WHERE w.user_id = NEW.user_id;
		END`,
		`CREATE TRIGGER room_member_words_leave AFTER UPDATE OF membership ON memberships
		WHEN OLD.membership = 'join' AND NEW.membership <> 'join' BEGIN
			DELETE FROM room_member_words WHERE user_id = OLD.user_id AND room_id = OLD.room_id;
		END`,
		`CREATE TRIGGER room_member_words_gone AFTER DELETE ON memberships WHEN OLD.membership = 'join' BEGIN
			DELETE FROM room_member_words WHERE user_id = OLD.user_id AND room_id = OLD.room_id;
		END`,
		`CREATE TRIGGER room_member_words_word_added AFTER INSERT ON user_directory_words BEGIN
			INSERT OR IGNORE INTO room_member_words (user_id, room_id, word)
			SELECT NEW.user_id, m.room_id, NEW.word FROM memberships m WHERE m.user_id = NEW.user_id AND m.membership = 'join';
		END`,
		`CREATE TRIGGER room_member_words_word_removed AFTER DELETE ON user_directory_words BEGIN
			DELETE FROM room_member_words WHERE user_id = OLD.user_id AND word = OLD.word;
		END`,
	},
	Postgres: {
		`CREATE FUNCTION room_member_words_membership() RETURNS trigger LANGUAGE plpgsql AS $$
		DECLARE
			was_joined boolean := false;
			is_joined boolean := false;
		BEGIN
			IF TG_OP <> 'INSERT' THEN
				was_joined := OLD.membership = 'join';
			END IF;
			IF TG_OP <> 'DELETE' THEN
				is_joined := NEW.membership = 'join';
			END IF;
			IF was_joined AND NOT is_joined THEN
				DELETE FROM room_member_words WHERE user_id = OLD.user_id AND room_id = OLD.room_id;
			ELSIF is_joined AND NOT was_joined THEN
				PERFORM 1 FROM users WHERE user_id = NEW.user_id FOR SHARE;
				INSERT INTO room_member_words (user_id, room_id, word)
				SELECT w.user_id, NEW.room_id, w.word FROM user_directory_words w WHERE w.user_id = NEW.user_id
				ON CONFLICT DO NOTHING;
			END IF;
			RETURN NULL;
		END $$`,
		`CREATE TRIGGER room_member_words_membership AFTER INSERT OR DELETE OR UPDATE OF membership ON memberships
		FOR EACH ROW EXECUTE FUNCTION room_member_words_membership()`,
		`CREATE FUNCTION room_member_words_word() RETURNS trigger LANGUAGE plpgsql AS $$
		BEGIN
			IF TG_OP = 'INSERT' THEN
				INSERT INTO room_member_words (user_id, room_id, word)
				SELECT NEW.user_id, m.room_id, NEW.word FROM memberships m WHERE m.user_id = NEW.user_id AND m.membership = 'join'
				ON CONFLICT DO NOTHING;
			ELSE
				DELETE FROM room_member_words WHERE user_id = OLD.user_id AND word = OLD.word;
			END IF;
			RETURN NULL;
		END $$`,
		`CREATE TRIGGER room_member_words_word AFTER INSERT OR DELETE ON user_directory_words
		FOR EACH ROW EXECUTE FUNCTION room_member_words_word()`,
	},
}

// roomMemberWordsStep fills room_member_words from the current joined
// memberships and creates the triggers that keep it so (migration 013).
func roomMemberWordsStep(ctx context.Context, tx *Tx) error {
	if _, err := tx.tx.ExecContext(ctx, `INSERT INTO room_member_words (user_id, room_id, word)
		SELECT w.user_id, m.room_id, w.word FROM memberships m JOIN user_directory_words w ON w.user_id = m.user_id
		WHERE m.membership = 'join'`); err != nil {
		return err
	}
	for _, q := range roomMemberWordsTriggers[tx.db.dialect] {
		if _, err := tx.tx.ExecContext(ctx, q); err != nil {
			return err
		}
	}
	return nil
}
