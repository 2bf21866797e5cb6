package clientapi

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"sort"
	"strconv"
	"strings"
	"unicode/utf8"

	"github.com/matrix-org/gomatrixserverlib/spec"
	"github.com/tidwall/gjson"

	"github.com/rempart-hs/rempart/internal/httpapi"
	"github.com/rempart-hs/rempart/internal/storage"
)

func (a *API) routesDirectory(rt *httpapi.Router) {
	rt.Authed(v3("PUT", "/directory/room/{roomAlias}"), a.putRoomAlias)
	rt.Public(v3("GET", "/directory/room/{roomAlias}"), a.getRoomAlias)
	rt.Authed(v3("DELETE", "/directory/room/{roomAlias}"), a.deleteRoomAlias)
	rt.Authed(v3("GET", "/rooms/{roomId}/aliases"), a.getRoomAliases)
	rt.Public(v3("GET", "/directory/list/room/{roomId}"), a.getRoomVisibility)
	rt.Authed(v3("PUT", "/directory/list/room/{roomId}"), a.putRoomVisibility)
	rt.Public(v3("GET", "/publicRooms"), a.getPublicRooms)
	rt.Authed(v3("POST", "/publicRooms"), a.postPublicRooms)
}

// roomAlias is a parsed room alias.
type roomAlias struct {
	Full   string
	Domain string
}

// parseRoomAlias checks the appendix grammar: "#localpart:domain", a
// non-empty localpart without ':' or NUL, a valid server name, at most
// 255 bytes in all.
func parseRoomAlias(s string) (roomAlias, error) {
	bad := httpapi.InvalidParam("room alias invalid")
	if len(s) > 255 || !utf8.ValidString(s) || !strings.HasPrefix(s, "#") {
		return roomAlias{}, bad
	}
	local, domain, ok := strings.Cut(s[1:], ":")
	if !ok || local == "" || strings.ContainsRune(local, 0) {
		return roomAlias{}, bad
	}
	if _, _, valid := spec.ParseAndValidateServerName(spec.ServerName(domain)); !valid {
		return roomAlias{}, bad
	}
	return roomAlias{Full: s, Domain: domain}, nil
}

// putRoomAlias serves PUT /_matrix/client/v3/directory/room/{roomAlias}.
// Only aliases on this server can be created, by users joined to the room.
func (a *API) putRoomAlias(r *http.Request) (any, error) {
	ctx := r.Context()
	req := httpapi.RequesterFrom(ctx)
	alias, err := parseRoomAlias(r.PathValue("roomAlias"))
	if err != nil {
		return nil, err
	}
	var body struct {
		RoomID *string `json:"room_id"`
	}
	if err := httpapi.DecodeJSON(r, &body); err != nil {
		return nil, err
	}
	if body.RoomID == nil {
		return nil, httpapi.BadJSON("missing room_id")
	}
	if !strings.HasPrefix(*body.RoomID, "!") || len(*body.RoomID) > 255 {
		return nil, httpapi.InvalidParam("invalid room ID")
	}
	if alias.Domain != a.Config.ServerName {
		return nil, httpapi.InvalidParam("room aliases can only be created on this server (%s)", a.Config.ServerName)
	}
	if req.IsGuest {
		return nil, httpapi.GuestAccessForbidden("guests may not create room aliases")
	}
	if _, err := a.DB.GetRoom(ctx, *body.RoomID); errors.Is(err, storage.ErrNotFound) {
		return nil, httpapi.NotFound("room not found")
	} else if err != nil {
		return nil, err
	}
	if err := a.requireJoined(ctx, *body.RoomID, req.UserID); err != nil {
		return nil, err
	}
	err = a.DB.WithTx(ctx, func(tx *storage.Tx) error {
		return tx.AddAlias(ctx, alias.Full, *body.RoomID, req.UserID, a.now().UnixMilli())
	})
	if errors.Is(err, storage.ErrRoomExists) {
		return nil, &httpapi.Error{Status: http.StatusConflict, Code: "M_UNKNOWN", Message: "room alias " + alias.Full + " already exists"}
	}
	if err != nil {
		return nil, err
	}
	return struct{}{}, nil
}

// getRoomAlias serves GET /_matrix/client/v3/directory/room/{roomAlias}.
// Without federation, aliases of other servers are not found.
func (a *API) getRoomAlias(r *http.Request) (any, error) {
	alias, err := parseRoomAlias(r.PathValue("roomAlias"))
	if err != nil {
		return nil, err
	}
	notFound := httpapi.NotFound("room alias %s not found", alias.Full)
	if alias.Domain != a.Config.ServerName {
		return nil, notFound
	}
	roomID, _, err := a.DB.ResolveAlias(r.Context(), alias.Full)
	if errors.Is(err, storage.ErrNotFound) {
		return nil, notFound
	}
	if err != nil {
		return nil, err
	}
	return map[string]any{"room_id": roomID, "servers": []string{a.Config.ServerName}}, nil
}

// deleteRoomAlias serves DELETE /_matrix/client/v3/directory/room/{roomAlias}.
// The alias's creator, server admins and room members with the power to
// change the room's canonical alias may delete it.
func (a *API) deleteRoomAlias(r *http.Request) (any, error) {
	ctx := r.Context()
	req := httpapi.RequesterFrom(ctx)
	alias, err := parseRoomAlias(r.PathValue("roomAlias"))
	if err != nil {
		return nil, err
	}
	notFound := httpapi.NotFound("room alias %s not found", alias.Full)
	if alias.Domain != a.Config.ServerName {
		return nil, notFound
	}
	roomID, creator, err := a.DB.ResolveAlias(ctx, alias.Full)
	if errors.Is(err, storage.ErrNotFound) {
		return nil, notFound
	}
	if err != nil {
		return nil, err
	}
	if creator != req.UserID {
		ok, err := a.Policy.MayManageRoomDirectory(ctx, roomID, req.UserID, req.IsAdmin)
		if err != nil {
			return nil, err
		}
		if !ok {
			return nil, httpapi.Forbidden("you may not delete this alias")
		}
	}
	if err := a.DB.WithTx(ctx, func(tx *storage.Tx) error { return tx.DeleteAlias(ctx, alias.Full) }); err != nil {
		return nil, err
	}
	return struct{}{}, nil
}

// getRoomAliases serves GET /_matrix/client/v3/rooms/{roomId}/aliases.
// Joined members may list a room's local aliases; anyone may when the
// room's history is world-readable.
func (a *API) getRoomAliases(r *http.Request) (any, error) {
	ctx := r.Context()
	req := httpapi.RequesterFrom(ctx)
	roomID, err := pathRoomID(r)
	if err != nil {
		return nil, err
	}
	if err := a.requireJoined(ctx, roomID, req.UserID); err != nil {
		if !httpapi.ErrIs(err, "M_FORBIDDEN") {
			return nil, err
		}
		hv, herr := a.DB.CurrentState(ctx, roomID, []storage.StateKeyTuple{{Type: "m.room.history_visibility"}})
		if herr != nil {
			return nil, herr
		}
		if len(hv) == 0 || stateString(hv[0].JSON, "history_visibility") != "world_readable" {
			return nil, err
		}
	}
	aliases, err := a.DB.RoomAliases(ctx, roomID)
	if err != nil {
		return nil, err
	}
	if aliases == nil {
		aliases = []string{}
	}
	return map[string]any{"aliases": aliases}, nil
}

// getRoomVisibility serves GET /_matrix/client/v3/directory/list/room/{roomId}.
func (a *API) getRoomVisibility(r *http.Request) (any, error) {
	roomID, err := pathRoomID(r)
	if err != nil {
		return nil, err
	}
	room, err := a.DB.GetRoom(r.Context(), roomID)
	if errors.Is(err, storage.ErrNotFound) {
		return nil, httpapi.NotFound("room not found")
	}
	if err != nil {
		return nil, err
	}
	vis := room.Visibility
	if vis != "public" {
		vis = "private"
	}
	return map[string]string{"visibility": vis}, nil
}

// putRoomVisibility serves PUT /_matrix/client/v3/directory/list/room/{roomId}.
// Only joined members with the power to change the room's canonical alias
// (and server admins) may publish or unpublish a room.
func (a *API) putRoomVisibility(r *http.Request) (any, error) {
	ctx := r.Context()
	req := httpapi.RequesterFrom(ctx)
	roomID, err := pathRoomID(r)
	if err != nil {
		return nil, err
	}
	var body struct {
		Visibility *string `json:"visibility"`
	}
	if err := httpapi.DecodeJSON(r, &body); err != nil {
		return nil, err
	}
	vis := "public"
	if body.Visibility != nil {
		vis = *body.Visibility
	}
	if vis != "public" && vis != "private" {
		return nil, httpapi.InvalidParam("visibility must be public or private")
	}
	if _, err := a.DB.GetRoom(ctx, roomID); errors.Is(err, storage.ErrNotFound) {
		return nil, httpapi.NotFound("room not found")
	} else if err != nil {
		return nil, err
	}
	if req.IsGuest {
		return nil, httpapi.GuestAccessForbidden("guests may not publish rooms")
	}
	ok, err := a.Policy.MayManageRoomDirectory(ctx, roomID, req.UserID, req.IsAdmin)
	if err != nil {
		return nil, err
	}
	if !ok {
		return nil, httpapi.Forbidden("you may not change this room's visibility in the directory")
	}
	if err := a.DB.WithTx(ctx, func(tx *storage.Tx) error { return tx.SetRoomVisibility(ctx, roomID, vis) }); err != nil {
		return nil, err
	}
	return struct{}{}, nil
}

// Bounds of the published room directory.
const (
	publicRoomsDefaultLimit = 100
	publicRoomsMaxLimit     = 500
	maxGenericSearchTerm    = 256
)

// publicRoomsQuery is a published room directory request.
type publicRoomsQuery struct {
	Limit  int64
	Since  string
	Server string
	Filter struct {
		GenericSearchTerm string             `json:"generic_search_term"`
		RoomTypes         *[]json.RawMessage `json:"room_types"`
	}
	IncludeAllNetworks    bool
	ThirdPartyInstanceID  string
	hasThirdPartyInstance bool
}

// publishedRoomChunk is one entry of the published room directory.
type publishedRoomChunk struct {
	RoomID           string `json:"room_id"`
	Name             string `json:"name,omitempty"`
	Topic            string `json:"topic,omitempty"`
	AvatarURL        string `json:"avatar_url,omitempty"`
	CanonicalAlias   string `json:"canonical_alias,omitempty"`
	NumJoinedMembers int    `json:"num_joined_members"`
	WorldReadable    bool   `json:"world_readable"`
	GuestCanJoin     bool   `json:"guest_can_join"`
	JoinRule         string `json:"join_rule,omitempty"`
	RoomType         string `json:"room_type,omitempty"`
}

// getPublicRooms serves GET /_matrix/client/v3/publicRooms. Anonymous
// access needs room_directory.public_rooms_without_auth (threat model T2).
func (a *API) getPublicRooms(r *http.Request) (any, error) {
	if httpapi.RequesterFrom(r.Context()) == nil && !a.Config.RoomDirectory.PublicRoomsWithoutAuth {
		if httpapi.AccessToken(r) != "" {
			return nil, httpapi.UnknownToken("unknown access token")
		}
		return nil, httpapi.MissingToken("the room directory needs an access token")
	}
	var q publicRoomsQuery
	var err error
	if q.Limit, err = httpapi.QueryInt(r, "limit", 0); err != nil {
		return nil, err
	}
	q.Since = r.URL.Query().Get("since")
	q.Server = r.URL.Query().Get("server")
	return a.publicRooms(r.Context(), q)
}

// postPublicRooms serves POST /_matrix/client/v3/publicRooms.
func (a *API) postPublicRooms(r *http.Request) (any, error) {
	var body struct {
		Limit                *int64  `json:"limit"`
		Since                *string `json:"since"`
		IncludeAllNetworks   bool    `json:"include_all_networks"`
		ThirdPartyInstanceID *string `json:"third_party_instance_id"`
	}
	var raw map[string]json.RawMessage
	b, err := httpapi.ReadBody(r, httpapi.MaxBodyBytes)
	if err != nil {
		return nil, err
	}
	if err := httpapi.DecodeJSONBytes(b, &raw); err != nil {
		return nil, err
	}
	if err := httpapi.DecodeJSONBytes(b, &body); err != nil {
		return nil, err
	}
	var q publicRoomsQuery
	if body.Limit != nil {
		q.Limit = *body.Limit
	}
	if body.Since != nil {
		q.Since = *body.Since
	}
	if f, ok := raw["filter"]; ok && string(f) != "null" {
		if err := json.Unmarshal(f, &q.Filter); err != nil {
			return nil, httpapi.BadJSON("filter must be an object with a string generic_search_term and a room_types list")
		}
	}
	q.IncludeAllNetworks = body.IncludeAllNetworks
	if body.ThirdPartyInstanceID != nil {
		q.ThirdPartyInstanceID, q.hasThirdPartyInstance = *body.ThirdPartyInstanceID, true
	}
	q.Server = r.URL.Query().Get("server")
	return a.publicRooms(r.Context(), q)
}

// publicRooms lists the published rooms matching q: largest rooms first,
// then by room ID, paginated by offset tokens ("o<offset>").
func (a *API) publicRooms(ctx context.Context, q publicRoomsQuery) (any, error) {
	if q.Server != "" && q.Server != a.Config.ServerName {
		if _, _, ok := spec.ParseAndValidateServerName(spec.ServerName(q.Server)); !ok {
			return nil, httpapi.InvalidParam("invalid server name")
		}
		return nil, httpapi.InvalidParam("this server does not query other servers' room directories")
	}
	if q.Limit < 0 {
		return nil, httpapi.InvalidParam("limit must not be negative")
	}
	limit := int(min(q.Limit, publicRoomsMaxLimit))
	if limit == 0 {
		limit = publicRoomsDefaultLimit
	}
	if q.IncludeAllNetworks && q.hasThirdPartyInstance {
		return nil, httpapi.InvalidParam("third_party_instance_id cannot be used with include_all_networks")
	}
	offset := 0
	if q.Since != "" {
		n, err := strconv.Atoi(strings.TrimPrefix(q.Since, "o"))
		if !strings.HasPrefix(q.Since, "o") || err != nil || n < 0 {
			return nil, httpapi.InvalidParam("invalid since token")
		}
		offset = n
	}
	term := strings.ToLower(strings.TrimSpace(q.Filter.GenericSearchTerm))
	if len(term) > maxGenericSearchTerm {
		return nil, httpapi.InvalidParam("generic_search_term is too long")
	}
	var wantTypes map[string]bool
	wantUntyped := false
	if q.Filter.RoomTypes != nil && len(*q.Filter.RoomTypes) > 0 { // an empty list filters nothing
		wantTypes = map[string]bool{}
		for _, rt := range *q.Filter.RoomTypes {
			if string(rt) == "null" {
				wantUntyped = true
				continue
			}
			var s string
			if err := json.Unmarshal(rt, &s); err != nil {
				return nil, httpapi.BadJSON("room_types entries must be strings or null")
			}
			wantTypes[s] = true
		}
	}
	resp := map[string]any{"chunk": []publishedRoomChunk{}, "total_room_count_estimate": 0}
	if q.hasThirdPartyInstance {
		return resp, nil // no application service networks on this server
	}
	rooms, err := a.DB.PublishedRooms(ctx)
	if err != nil {
		return nil, err
	}
	var all []publishedRoomChunk
	for _, pr := range rooms {
		c := directoryChunk(pr)
		if wantTypes != nil && !(c.RoomType == "" && wantUntyped || c.RoomType != "" && wantTypes[c.RoomType]) {
			continue
		}
		if term != "" && !strings.Contains(strings.ToLower(c.Name), term) && !strings.Contains(strings.ToLower(c.Topic), term) &&
			!strings.Contains(strings.ToLower(c.CanonicalAlias), term) {
			continue
		}
		all = append(all, c)
	}
	sort.Slice(all, func(i, j int) bool {
		if all[i].NumJoinedMembers != all[j].NumJoinedMembers {
			return all[i].NumJoinedMembers > all[j].NumJoinedMembers
		}
		return all[i].RoomID < all[j].RoomID
	})
	resp["total_room_count_estimate"] = len(all)
	if offset < len(all) {
		end := min(offset+limit, len(all))
		resp["chunk"] = all[offset:end]
		if end < len(all) {
			resp["next_batch"] = "o" + strconv.Itoa(end)
		}
	}
	if offset > 0 {
		resp["prev_batch"] = "o" + strconv.Itoa(max(0, offset-limit))
	}
	return resp, nil
}

// directoryChunk builds a directory entry from a room's state.
func directoryChunk(pr storage.PublishedRoom) publishedRoomChunk {
	c := publishedRoomChunk{RoomID: pr.RoomID, NumJoinedMembers: pr.JoinedMembers}
	get := func(typ, key string) string { return contentString(pr.State[typ], key) }
	c.Name = get("m.room.name", "name")
	c.Topic = plainTopic(pr.State["m.room.topic"])
	c.AvatarURL = get("m.room.avatar", "url")
	if al := get("m.room.canonical_alias", "alias"); strings.HasPrefix(al, "#") {
		c.CanonicalAlias = al
	}
	c.WorldReadable = get("m.room.history_visibility", "history_visibility") == "world_readable"
	c.GuestCanJoin = get("m.room.guest_access", "guest_access") == "can_join"
	c.JoinRule = get("m.room.join_rules", "join_rule")
	c.RoomType = get("m.room.create", "type")
	return c
}

// contentString returns a string field of an event content ("" if absent
// or not a string). gjson reads the one field without decoding the rest:
// GET /publicRooms reads eight fields of every published room.
func contentString(content json.RawMessage, key string) string {
	if r := gjson.GetBytes(content, gjson.Escape(key)); r.Type == gjson.String {
		return r.Str
	}
	return ""
}

// stateString returns a string field of a stored event's content.
func stateString(eventJSON []byte, key string) string {
	var ev struct {
		Content json.RawMessage `json:"content"`
	}
	_ = json.Unmarshal(eventJSON, &ev)
	return contentString(ev.Content, key)
}

// plainTopic returns the text/plain topic of m.room.topic content: the
// m.topic text/plain representation (a representation without a mimetype
// is text/plain), else the topic field.
func plainTopic(content json.RawMessage) string {
	for _, t := range gjson.GetBytes(content, `m\.topic.m\.text`).Array() {
		mime, body := t.Get("mimetype"), t.Get("body")
		if (!mime.Exists() || mime.Str == "" || mime.Str == "text/plain") && body.Type == gjson.String {
			return body.Str
		}
	}
	return contentString(content, "topic")
}
