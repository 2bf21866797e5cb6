package config

import "fmt"

// UserDirectory configures user directory search (POST
// /_matrix/client/v3/user_directory/search). The defaults follow the threat
// model (T1): a user finds only people they share a room with, short
// queries find nobody, and results are capped.
type UserDirectory struct {
	// SearchAllUsers lets every local user find every other active local
	// user. Off by default: searches only cover users who share a joined
	// room with the searcher.
	SearchAllUsers bool `yaml:"search_all_users"`
	// MinSearchLength is the shortest search term, in characters, that
	// returns results; shorter terms return an empty result (not an error).
	MinSearchLength int `yaml:"min_search_length"`
	// MaxResults caps the number of results of one search, whatever limit
	// the client asks for (at most 50).
	MaxResults int `yaml:"max_results"`
}

func (u *UserDirectory) validate() error {
	if u.MinSearchLength < 1 || u.MinSearchLength > 64 {
		return &Error{"user_directory.min_search_length", "must be between 1 and 64"}
	}
	if u.MaxResults < 1 || u.MaxResults > 50 {
		return &Error{"user_directory.max_results", fmt.Sprintf("%d is not between 1 and 50", u.MaxResults)}
	}
	return nil
}

func defaultUserDirectory() UserDirectory {
	return UserDirectory{SearchAllUsers: false, MinSearchLength: 3, MaxResults: 50}
}

// RoomDirectory configures the published room directory (GET and POST
// /_matrix/client/v3/publicRooms) and room aliases.
type RoomDirectory struct {
	// PublicRoomsWithoutAuth lets clients without an access token list
	// the published rooms with GET /publicRooms, as the spec allows. Off by
	// default (threat model T2): the listing needs a logged-in user and
	// anonymous requests get 401 M_MISSING_TOKEN.
	PublicRoomsWithoutAuth bool `yaml:"public_rooms_without_auth"`
}

func (d *RoomDirectory) validate() error { return nil }

func defaultRoomDirectory() RoomDirectory { return RoomDirectory{} }
