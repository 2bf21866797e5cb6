package rooms

import (
	"context"
	"encoding/json"
	"errors"
	"slices"
	"strings"

	gmsl "github.com/matrix-org/gomatrixserverlib"
	"github.com/matrix-org/gomatrixserverlib/spec"

	"github.com/rempart-hs/rempart/internal/auth"
	"github.com/rempart-hs/rempart/internal/httpapi"
	"github.com/rempart-hs/rempart/internal/storage"
)

// StateEvent is an initial state event of a createRoom request.
type StateEvent struct {
	Type     string          `json:"type"`
	StateKey string          `json:"state_key"`
	Content  json.RawMessage `json:"content"`
}

// CreateRequest is a createRoom request, already validated for types.
type CreateRequest struct {
	Creator                   string
	Visibility                string          `json:"visibility"`
	RoomAliasName             string          `json:"room_alias_name"`
	Name                      *string         `json:"name"`
	Topic                     *string         `json:"topic"`
	Invite                    []string        `json:"invite"`
	RoomVersion               string          `json:"room_version"`
	CreationContent           json.RawMessage `json:"creation_content"`
	InitialState              []StateEvent    `json:"initial_state"`
	Preset                    string          `json:"preset"`
	IsDirect                  bool            `json:"is_direct"`
	PowerLevelContentOverride json.RawMessage `json:"power_level_content_override"`
}

// Create makes a new room and its initial state in one transaction and
// returns its ID.
func (e *Engine) Create(ctx context.Context, req CreateRequest) (string, error) {
	if req.RoomVersion == "" {
		req.RoomVersion = e.defaultVersion
	}
	if _, ok := SupportedVersions[req.RoomVersion]; !ok {
		return "", httpapi.UnsupportedRoomVersion("room version %q is not supported", req.RoomVersion)
	}
	verImpl := gmsl.MustGetRoomVersion(gmsl.RoomVersion(req.RoomVersion))
	switch req.Visibility {
	case "", "private", "public":
	default:
		return "", httpapi.InvalidParam("visibility must be public or private")
	}
	if req.Preset == "" {
		if req.Visibility == "public" {
			req.Preset = "public_chat"
		} else {
			req.Preset = "private_chat"
		}
	}
	joinRule, histVis, guest := "", "shared", "can_join"
	trustedPrivate := false
	switch req.Preset {
	case "private_chat":
		joinRule = "invite"
	case "trusted_private_chat":
		joinRule, trustedPrivate = "invite", true
	case "public_chat":
		joinRule, guest = "public", "forbidden"
	default:
		return "", httpapi.BadJSON("unknown preset %q", req.Preset)
	}
	for _, inv := range req.Invite {
		if _, err := spec.NewUserID(inv, true); err != nil {
			return "", httpapi.InvalidParam("invalid user ID in invite: %q", inv)
		}
	}
	var alias string
	if req.RoomAliasName != "" {
		if strings.ContainsAny(req.RoomAliasName, ":# \t\n") {
			return "", httpapi.InvalidParam("room_alias_name may not contain ':', '#' or whitespace")
		}
		alias = "#" + req.RoomAliasName + ":" + string(e.serverName)
		if _, _, err := e.db.ResolveAlias(ctx, alias); err == nil {
			return "", httpapi.RoomInUse("room alias already taken")
		}
	}

	// Creation content.
	createContent := map[string]any{}
	if len(req.CreationContent) > 0 && string(req.CreationContent) != "null" {
		if err := json.Unmarshal(req.CreationContent, &createContent); err != nil {
			return "", httpapi.BadJSON("creation_content must be an object")
		}
	}
	createContent["room_version"] = req.RoomVersion
	if verImpl.CreatorInCreateEvent() { // up to v10; v11 drops the field
		createContent["creator"] = req.Creator
	} else {
		delete(createContent, "creator")
	}
	if verImpl.PrivilegedCreators() && trustedPrivate {
		// In v12, trusted_private_chat makes invitees additional creators.
		var extra []string
		for _, inv := range req.Invite {
			if inv != req.Creator {
				extra = append(extra, inv)
			}
		}
		if len(extra) > 0 {
			createContent["additional_creators"] = extra
		}
	}

	// Power levels.
	users := map[string]any{}
	if !verImpl.PrivilegedCreators() {
		users[req.Creator] = 100
		if trustedPrivate {
			for _, inv := range req.Invite {
				users[inv] = 100
			}
		}
	}
	pl := map[string]any{
		"users":          users,
		"users_default":  0,
		"events":         map[string]any{"m.room.name": 50, "m.room.power_levels": 100, "m.room.history_visibility": 100, "m.room.canonical_alias": 50, "m.room.avatar": 50, "m.room.tombstone": 100, "m.room.server_acl": 100, "m.room.encryption": 100},
		"events_default": 0,
		"state_default":  50,
		"ban":            50,
		"kick":           50,
		"redact":         50,
		"invite":         0,
		"notifications":  map[string]any{"room": 50},
	}
	if verImpl.PrivilegedCreators() {
		pl["events"].(map[string]any)["m.room.tombstone"] = 150
	}
	if req.Preset == "public_chat" {
		pl["invite"] = 0
	}
	if len(req.PowerLevelContentOverride) > 0 && string(req.PowerLevelContentOverride) != "null" {
		var override map[string]any
		if err := json.Unmarshal(req.PowerLevelContentOverride, &override); err != nil {
			return "", httpapi.BadJSON("power_level_content_override must be an object")
		}
		for k, v := range override {
			pl[k] = v
		}
	}

	events := []SendRequest{}
	add := func(typ, stateKey string, content any) error {
		b, err := json.Marshal(content)
		if err != nil {
			return err
		}
		sk := stateKey
		events = append(events, SendRequest{Sender: req.Creator, Type: typ, StateKey: &sk, Content: b})
		return nil
	}
	_ = add(spec.MRoomCreate, "", createContent)
	// is_direct marks the invites, not the creator's own join.
	memberContent, err := e.memberContent(ctx, req.Creator, "join", "", false)
	if err != nil {
		return "", err
	}
	_ = add(spec.MRoomMember, req.Creator, memberContent)
	if err := add(spec.MRoomPowerLevels, "", pl); err != nil {
		return "", httpapi.BadJSON("invalid power levels")
	}
	if alias != "" {
		_ = add("m.room.canonical_alias", "", map[string]any{"alias": alias})
	}
	_ = add(spec.MRoomJoinRules, "", map[string]any{"join_rule": joinRule})
	_ = add(spec.MRoomHistoryVisibility, "", map[string]any{"history_visibility": histVis})
	if guest != "" {
		_ = add("m.room.guest_access", "", map[string]any{"guest_access": guest})
	}
	for _, st := range req.InitialState {
		if st.Type == "" {
			return "", httpapi.BadJSON("initial_state event without type")
		}
		if st.Type == spec.MRoomCreate || st.Type == spec.MRoomMember {
			continue
		}
		if len(st.Content) == 0 || st.Content[0] != '{' {
			return "", httpapi.BadJSON("initial_state content must be an object")
		}
		sk := st.StateKey
		events = append(events, SendRequest{Sender: req.Creator, Type: st.Type, StateKey: &sk, Content: st.Content})
	}
	if req.Name != nil {
		_ = add("m.room.name", "", map[string]any{"name": *req.Name})
	}
	if req.Topic != nil {
		_ = add("m.room.topic", "", map[string]any{"topic": *req.Topic, "m.topic": map[string]any{"m.text": []map[string]string{{"body": *req.Topic, "mimetype": "text/plain"}}}})
	}
	for _, inv := range req.Invite {
		if inv == req.Creator {
			continue
		}
		c := map[string]any{"membership": "invite"}
		if req.IsDirect {
			c["is_direct"] = true
		}
		if p, err := e.db.GetUser(ctx, inv); err == nil {
			if p.DisplayName != "" {
				c["displayname"] = p.DisplayName
			}
			if p.AvatarURL != "" {
				c["avatar_url"] = p.AvatarURL
			}
		}
		_ = add(spec.MRoomMember, inv, c)
	}

	// The events are built, signed and authorised before the transaction,
	// on the state they make one after the other: nobody else can write to
	// a room that does not exist yet. The transaction then only stores
	// them; on PostgreSQL it holds the event-order lock, which every
	// transaction appending events waits for, from its first event to its
	// commit.
	base := storage.Room{RoomVersion: req.RoomVersion, Creator: req.Creator, CreatedTS: e.now().UnixMilli(), Visibility: "private"}
	if req.Visibility == "public" {
		base.Visibility = "public"
	}
	if !verImpl.DomainlessRoomIDs() {
		base.RoomID = "!" + auth.RandomString(18) + ":" + string(e.serverName)
	}
	built, err := e.buildCreation(verImpl, base, events)
	if err != nil {
		return "", err
	}
	base.RoomID = built[0].RoomID
	var appended []*storage.Event
	err = e.db.WithTx(ctx, func(tx *storage.Tx) error {
		appended = appended[:0]
		room := base
		if err := tx.CreateRoom(ctx, room); err != nil {
			return err
		}
		for _, ev := range built {
			stored, err := e.storeInTx(ctx, tx, &room, ev, nil)
			if err != nil {
				return err
			}
			appended = append(appended, stored)
		}
		if alias != "" {
			if err := tx.AddAlias(ctx, alias, room.RoomID, req.Creator, e.now().UnixMilli()); err != nil {
				if errors.Is(err, storage.ErrRoomExists) {
					return httpapi.RoomInUse("room alias already taken")
				}
				return err
			}
		}
		return nil
	})
	if err != nil {
		return "", err
	}
	roomID := base.RoomID
	if e.notifier != nil {
		for _, ev := range appended {
			e.notifier.RoomEvent(roomID, ev.StreamPos, ev)
		}
	}
	return roomID, nil
}

// buildCreation builds, signs and authorises a new room's events in order,
// each on the state the ones before it made. room is the room's row before
// its first event (its ID is empty in room version 12, where the create
// event gives it). An event after the create event that is refused makes
// the request's initial state invalid.
func (e *Engine) buildCreation(verImpl gmsl.IRoomVersion, room storage.Room, events []SendRequest) ([]storage.NewEvent, error) {
	state := map[storage.StateKeyTuple]gmsl.PDU{}
	lookup := func(keys []storage.StateKeyTuple) ([]gmsl.PDU, error) {
		var pdus []gmsl.PDU
		for _, k := range keys {
			if p, ok := state[k]; ok && !slices.Contains(pdus, p) {
				pdus = append(pdus, p)
			}
		}
		return pdus, nil
	}
	built := make([]storage.NewEvent, 0, len(events))
	for i, req := range events {
		req.RoomID = room.RoomID
		ev, pdu, err := e.buildInitial(verImpl, &room, req, lookup)
		if err != nil {
			var me *httpapi.Error
			if errors.As(err, &me) && i > 0 {
				return nil, httpapi.InvalidRoomState("initial state event %s rejected: %s", req.Type, me.Message)
			}
			return nil, err
		}
		state[storage.StateKeyTuple{Type: req.Type, StateKey: *req.StateKey}] = pdu
		room.RoomID, room.LatestEventID, room.Depth = ev.RoomID, ev.EventID, ev.Depth
		built = append(built, ev)
	}
	return built, nil
}

// buildInitial builds one of buildCreation's events (all are state
// events), the first being the create event.
func (e *Engine) buildInitial(verImpl gmsl.IRoomVersion, room *storage.Room, req SendRequest, state stateLookup) (storage.NewEvent, gmsl.PDU, error) {
	if req.Type == spec.MRoomRedaction {
		// A redaction needs an event to redact, and a new room has none.
		return storage.NewEvent{}, nil, httpapi.NotFound("event to redact not found")
	}
	if (req.Type == spec.MRoomCreate) != (room.LatestEventID == "") {
		return storage.NewEvent{}, nil, httpapi.Forbidden("a room's first event, and only it, is its create event")
	}
	pdu, authEvents, prev, err := e.buildOn(verImpl, room, req, state)
	if err != nil {
		return storage.NewEvent{}, nil, err
	}
	if req.Type == spec.MRoomCreate {
		if err := authEvents.AddEvent(pdu); err != nil {
			return storage.NewEvent{}, nil, err
		}
	}
	if err := gmsl.Allowed(pdu, authEvents, userIDForSender); err != nil {
		return storage.NewEvent{}, nil, httpapi.Forbidden("%s", authMessage(err))
	}
	return eventRow(pdu, req, prev), pdu, nil
}

// memberContent builds m.room.member content for a local user, with their
// profile.
func (e *Engine) memberContent(ctx context.Context, userID, membership, reason string, isDirect bool) (map[string]any, error) {
	c := map[string]any{"membership": membership}
	if membership == "join" || membership == "invite" || membership == "knock" {
		u, err := e.db.GetUser(ctx, userID)
		if err == nil {
			if u.DisplayName != "" {
				c["displayname"] = u.DisplayName
			}
			if u.AvatarURL != "" {
				c["avatar_url"] = u.AvatarURL
			}
		} else if !errors.Is(err, storage.ErrNotFound) {
			return nil, err
		}
	}
	if reason != "" {
		c["reason"] = reason
	}
	if isDirect {
		c["is_direct"] = true
	}
	return c, nil
}
