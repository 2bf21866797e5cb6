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
