package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
)

// storedSet is what --state keeps between runs: the accounts (with their
// access tokens) and rooms a run built, so that a later run against the
// same database measures at once instead of registering 300,000 users
// again, or extends the data set to larger sizes.
type storedSet struct {
	URL        string       `json:"url"`
	Prefix     string       `json:"prefix"`
	Users      []*user      `json:"users"`
	BigRooms   []storedRoom `json:"big_rooms"`
	SmallRooms []storedRoom `json:"small_rooms"`
}

// storedRoom is a room in the state file, members as indexes into Users.
type storedRoom struct {
	ID      string `json:"id"`
	Members []int  `json:"members"`
}

// loadState fills b's users and rooms from the --state file, if it exists.
// The file must have been written by a run with the same --prefix against
// the same database: its tokens and room IDs are only valid there.
func (b *bench) loadState() error {
	if b.o.StatePath == "" {
		return nil
	}
	data, err := os.ReadFile(b.o.StatePath)
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return err
	}
	var s storedSet
	if err := json.Unmarshal(data, &s); err != nil {
		return fmt.Errorf("state %s: %w", b.o.StatePath, err)
	}
	if s.Prefix != b.o.Prefix {
		return fmt.Errorf("state %s was built with --prefix %q, not %q", b.o.StatePath, s.Prefix, b.o.Prefix)
	}
	rooms := func(in []storedRoom) ([]*room, error) {
		out := make([]*room, 0, len(in))
		for _, r := range in {
			ms := make([]*user, len(r.Members))
			for j, k := range r.Members {
				if k < 0 || k >= len(s.Users) {
					return nil, fmt.Errorf("state %s: room %s: member %d out of range", b.o.StatePath, r.ID, k)
				}
				ms[j] = s.Users[k]
			}
			out = append(out, &room{ID: r.ID, Members: ms})
		}
		return out, nil
	}
	if b.bigRooms, err = rooms(s.BigRooms); err != nil {
		return err
	}
	if b.smallRooms, err = rooms(s.SmallRooms); err != nil {
		return err
	}
	b.users = s.Users
	b.saved = [3]int{len(b.users), len(b.bigRooms), len(b.smallRooms)}
	b.logf("state %s: %d users, %d big rooms, %d small rooms", b.o.StatePath, len(b.users), len(b.bigRooms), len(b.smallRooms))
	return nil
}

// saveState writes b's users and rooms to the --state file when they
// changed since it was read or written.
func (b *bench) saveState() error {
	now := [3]int{len(b.users), len(b.bigRooms), len(b.smallRooms)}
	if b.o.StatePath == "" || now == b.saved {
		return nil
	}
	idx := make(map[*user]int, len(b.users))
	for i, u := range b.users {
		idx[u] = i
	}
	rooms := func(in []*room) []storedRoom {
		out := make([]storedRoom, 0, len(in))
		for _, r := range in {
			sr := storedRoom{ID: r.ID}
			for _, m := range r.Members {
				if k, ok := idx[m]; ok {
					sr.Members = append(sr.Members, k)
				}
			}
			out = append(out, sr)
		}
		return out
	}
	data, err := json.Marshal(storedSet{URL: b.o.URL, Prefix: b.o.Prefix, Users: b.users,
		BigRooms: rooms(b.bigRooms), SmallRooms: rooms(b.smallRooms)})
	if err != nil {
		return err
	}
	tmp := b.o.StatePath + ".tmp"
	if err := os.MkdirAll(filepath.Dir(b.o.StatePath), 0o700); err != nil {
		return err
	}
	if err := os.WriteFile(tmp, data, 0o600); err != nil {
		return err
	}
	if err := os.Rename(tmp, b.o.StatePath); err != nil {
		return err
	}
	b.saved = now
	return nil
}
