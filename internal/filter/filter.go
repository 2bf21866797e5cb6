// Package filter implements the Client-Server API's event filters, used by
// /sync, /messages and /context.
package filter

import (
	"encoding/json"
	"strings"

	"github.com/rempart-hs/rempart/internal/httpapi"
	"github.com/rempart-hs/rempart/internal/storage"
)

// Filter is a sync filter.
type Filter struct {
	EventFields []string    `json:"event_fields,omitempty"`
	EventFormat string      `json:"event_format,omitempty"`
	Presence    EventFilter `json:"presence"`
	AccountData EventFilter `json:"account_data"`
	Room        RoomFilter  `json:"room"`
}

// EventFilter selects events by type and sender.
type EventFilter struct {
	Limit      *int     `json:"limit,omitempty"`
	Types      []string `json:"types,omitempty"`
	NotTypes   []string `json:"not_types,omitempty"`
	Senders    []string `json:"senders,omitempty"`
	NotSenders []string `json:"not_senders,omitempty"`
}

// RoomEventFilter adds room and content criteria.
type RoomEventFilter struct {
	EventFilter
	Rooms                     []string `json:"rooms,omitempty"`
	NotRooms                  []string `json:"not_rooms,omitempty"`
	ContainsURL               *bool    `json:"contains_url,omitempty"`
	LazyLoadMembers           bool     `json:"lazy_load_members,omitempty"`
	IncludeRedundantMembers   bool     `json:"include_redundant_members,omitempty"`
	UnreadThreadNotifications bool     `json:"unread_thread_notifications,omitempty"`
}

// RoomFilter selects rooms and what is returned for them.
type RoomFilter struct {
	Rooms        []string        `json:"rooms,omitempty"`
	NotRooms     []string        `json:"not_rooms,omitempty"`
	IncludeLeave bool            `json:"include_leave,omitempty"`
	Timeline     RoomEventFilter `json:"timeline"`
	State        RoomEventFilter `json:"state"`
	Ephemeral    RoomEventFilter `json:"ephemeral"`
	AccountData  RoomEventFilter `json:"account_data"`
}

// Parse decodes and validates a filter definition.
func Parse(b []byte) (*Filter, error) {
	var f Filter
	if err := httpapi.DecodeJSONBytes(b, &f); err != nil {
		return nil, err
	}
	if err := f.Validate(); err != nil {
		return nil, err
	}
	return &f, nil
}

// Validate checks value ranges.
func (f *Filter) Validate() error {
	switch f.EventFormat {
	case "", "client", "federation":
	default:
		return httpapi.BadJSON("event_format must be client or federation")
	}
	for _, l := range []*int{f.Presence.Limit, f.AccountData.Limit, f.Room.Timeline.Limit, f.Room.State.Limit, f.Room.Ephemeral.Limit, f.Room.AccountData.Limit} {
		if l != nil && *l < 0 {
			return httpapi.BadJSON("limit must not be negative")
		}
	}
	return nil
}

// matchPattern matches a type or sender against a pattern where '*' is a
// wildcard for any sequence of characters.
func matchPattern(pattern, s string) bool {
	if !strings.Contains(pattern, "*") {
		return pattern == s
	}
	parts := strings.Split(pattern, "*")
	if !strings.HasPrefix(s, parts[0]) {
		return false
	}
	s = s[len(parts[0]):]
	for i := 1; i < len(parts)-1; i++ {
		idx := strings.Index(s, parts[i])
		if idx < 0 {
			return false
		}
		s = s[idx+len(parts[i]):]
	}
	return strings.HasSuffix(s, parts[len(parts)-1])
}

func matchAny(patterns []string, s string) bool {
	for _, p := range patterns {
		if matchPattern(p, s) {
			return true
		}
	}
	return false
}

// Allows reports whether an event of this type and sender passes.
func (f *EventFilter) Allows(evType, sender string) bool {
	if matchAny(f.NotTypes, evType) || (f.NotSenders != nil && matchAny(f.NotSenders, sender)) {
		return false
	}
	if f.Types != nil && !matchAny(f.Types, evType) {
		return false
	}
	if f.Senders != nil && !matchAny(f.Senders, sender) {
		return false
	}
	return true
}

// AllowsRoom reports whether a room passes rooms/not_rooms.
func AllowsRoom(rooms, notRooms []string, roomID string) bool {
	for _, r := range notRooms {
		if r == roomID {
			return false
		}
	}
	if rooms == nil {
		return true
	}
	for _, r := range rooms {
		if r == roomID {
			return true
		}
	}
	return false
}

// AllowsEvent applies a room event filter to a stored event.
func (f *RoomEventFilter) AllowsEvent(ev *storage.Event) bool {
	if !f.Allows(ev.Type, ev.Sender) || !AllowsRoom(f.Rooms, f.NotRooms, ev.RoomID) {
		return false
	}
	if f.ContainsURL != nil {
		var c struct {
			Content struct {
				URL json.RawMessage `json:"url"`
			} `json:"content"`
		}
		_ = json.Unmarshal(ev.JSON, &c)
		has := len(c.Content.URL) > 0 && c.Content.URL[0] == '"'
		if has != *f.ContainsURL {
			return false
		}
	}
	return true
}

// LimitOr returns the filter's limit or def, capped at max.
func (f *EventFilter) LimitOr(def, max int) int {
	if f.Limit == nil {
		return def
	}
	if *f.Limit > max {
		return max
	}
	return *f.Limit
}
