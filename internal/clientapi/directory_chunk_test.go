package clientapi

import (
	"encoding/json"
	"fmt"
	"testing"

	"github.com/rempart-hs/rempart/internal/storage"
)

// publishedRoom is a published room with the directory state of a room
// made by Element: name, rich topic, alias, join rules, history visibility,
// guest access.
func publishedRoom(i int) storage.PublishedRoom {
	return storage.PublishedRoom{RoomID: fmt.Sprintf("!r%d:b", i), JoinedMembers: i, State: map[string]json.RawMessage{
		"m.room.create":             json.RawMessage(`{"room_version":"11","creator":"@a:b","type":"m.space"}`),
		"m.room.name":               json.RawMessage(fmt.Sprintf(`{"name":"Room \u00e9 %d"}`, i)),
		"m.room.topic":              json.RawMessage(`{"topic":"plain","m.topic":{"m.text":[{"mimetype":"text/html","body":"<b>rich</b>"},{"body":"rich"}]}}`),
		"m.room.avatar":             json.RawMessage(`{"url":"mxc://b/a"}`),
		"m.room.canonical_alias":    json.RawMessage(`{"alias":"#room:b"}`),
		"m.room.join_rules":         json.RawMessage(`{"join_rule":"public"}`),
		"m.room.history_visibility": json.RawMessage(`{"history_visibility":"world_readable"}`),
		"m.room.guest_access":       json.RawMessage(`{"guest_access":"can_join"}`),
	}}
}

// TestDirectoryChunk checks the fields GET /publicRooms takes from a
// published room's state, and how it treats odd content.
func TestDirectoryChunk(t *testing.T) {
	c := directoryChunk(publishedRoom(7))
	want := publishedRoomChunk{RoomID: "!r7:b", NumJoinedMembers: 7, Name: "Room é 7", Topic: "rich", AvatarURL: "mxc://b/a",
		CanonicalAlias: "#room:b", WorldReadable: true, GuestCanJoin: true, JoinRule: "public", RoomType: "m.space"}
	if fmt.Sprint(c) != fmt.Sprint(want) {
		t.Fatalf("chunk %+v, want %+v", c, want)
	}
	odd := storage.PublishedRoom{RoomID: "!odd:b", State: map[string]json.RawMessage{
		"m.room.name":            json.RawMessage(`{"name":5}`),                                   // not a string
		"m.room.topic":           json.RawMessage(`{"topic":"plain","m.topic":{"m.text":"bad"}}`), // no representations
		"m.room.canonical_alias": json.RawMessage(`{"alias":"room:b"}`),                           // not an alias
		"m.room.join_rules":      json.RawMessage(`{"join.rule":"public","join_rule":"invite"}`),  // a dotted key is another key
	}}
	c = directoryChunk(odd)
	if c.Name != "" || c.Topic != "plain" || c.CanonicalAlias != "" || c.JoinRule != "invite" {
		t.Fatalf("odd content gave %+v", c)
	}
}

// BenchmarkDirectoryChunks is what GET /publicRooms spends turning 1,000
// published rooms' state into its answer.
func BenchmarkDirectoryChunks(b *testing.B) {
	var prs []storage.PublishedRoom
	for i := range 1000 {
		prs = append(prs, publishedRoom(i))
	}
	for b.Loop() {
		for _, pr := range prs {
			_ = directoryChunk(pr)
		}
	}
}
