// Package syncapi serves GET /sync: initial and incremental syncs, long
// polling, filters and lazy-loaded members. A sync only reads rooms the user
// has a membership in, and an incremental sync reads only what changed
// between its two positions.
package syncapi

import (
	"fmt"
	"strconv"
	"strings"
)

// Token is a position in every stream a sync reads. Its text form
// "s<events>_<account_data>_<receipts>_<typing>_<to_device>_<device_lists>"
// stays valid across restarts because every position but typing's is
// stored in the database.
type Token struct {
	Events      int64
	AccountData int64
	Receipts    int64
	Typing      int64
	ToDevice    int64
	DeviceLists int64
}

func (t Token) String() string {
	return fmt.Sprintf("s%d_%d_%d_%d_%d_%d", t.Events, t.AccountData, t.Receipts, t.Typing, t.ToDevice, t.DeviceLists)
}

// ParseToken parses a token produced by String. Trailing fields may be
// absent (older tokens) and count as zero.
func ParseToken(s string) (Token, error) {
	if !strings.HasPrefix(s, "s") {
		return Token{}, fmt.Errorf("bad token")
	}
	parts := strings.Split(s[1:], "_")
	if len(parts) == 0 || len(parts) > 6 {
		return Token{}, fmt.Errorf("bad token")
	}
	var v [6]int64
	for i, p := range parts {
		n, err := strconv.ParseInt(p, 10, 64)
		if err != nil || n < 0 {
			return Token{}, fmt.Errorf("bad token")
		}
		v[i] = n
	}
	return Token{v[0], v[1], v[2], v[3], v[4], v[5]}, nil
}
