package clientapi

import (
	"encoding/json"
	"net/http"
	"strings"

	"github.com/rempart-hs/rempart/internal/httpapi"
	"github.com/rempart-hs/rempart/internal/rooms"
)

func (a *API) routesSend(rt *httpapi.Router) {
	rt.Authed(v3("PUT", "/rooms/{roomId}/send/{eventType}/{txnId}"), a.putSend)
	rt.Authed(v3("PUT", "/rooms/{roomId}/state/{eventType}"), a.putState)
	rt.Authed(v3("PUT", "/rooms/{roomId}/state/{eventType}/{stateKey...}"), a.putState)
	rt.Authed(v3("PUT", "/rooms/{roomId}/redact/{eventId}/{txnId}"), a.putRedact)
}

// readContent reads an event content body: a JSON object within the
// event size limit.
func readContent(r *http.Request) (json.RawMessage, error) {
	b, err := httpapi.ReadBody(r, rooms.MaxEventBytes)
	if err != nil {
		return nil, err
	}
	var obj map[string]json.RawMessage
	if err := httpapi.DecodeJSONBytes(b, &obj); err != nil {
		return nil, err
	}
	if len(strings.TrimSpace(string(b))) == 0 {
		b = []byte("{}")
	}
	return b, nil
}

// validTxnID bounds a client transaction ID, which is stored.
func validTxnID(id string) error {
	if id == "" || len(id) > 255 {
		return httpapi.InvalidParam("invalid transaction ID")
	}
	return nil
}

func validEventType(t string) error {
	if t == "" || len(t) > 255 {
		return httpapi.InvalidParam("invalid event type")
	}
	return nil
}

// putSend serves PUT /_matrix/client/v3/rooms/{roomId}/send/{eventType}/{txnId}.
func (a *API) putSend(r *http.Request) (any, error) {
	req := httpapi.RequesterFrom(r.Context())
	roomID, err := pathRoomID(r)
	if err != nil {
		return nil, err
	}
	evType := r.PathValue("eventType")
	if err := validEventType(evType); err != nil {
		return nil, err
	}
	txnID := r.PathValue("txnId")
	if err := validTxnID(txnID); err != nil {
		return nil, err
	}
	content, err := readContent(r)
	if err != nil {
		return nil, err
	}
	sent, err := a.Rooms.Send(r.Context(), rooms.SendRequest{
		RoomID: roomID, Sender: req.UserID, Type: evType, Content: content,
		TxnDevice: req.DeviceID, TxnID: txnID,
	})
	if err != nil {
		return nil, err
	}
	return map[string]string{"event_id": sent.EventID}, nil
}

// putState serves PUT /_matrix/client/v3/rooms/{roomId}/state/{eventType}/{stateKey}.
func (a *API) putState(r *http.Request) (any, error) {
	req := httpapi.RequesterFrom(r.Context())
	roomID, err := pathRoomID(r)
	if err != nil {
		return nil, err
	}
	evType := r.PathValue("eventType")
	if err := validEventType(evType); err != nil {
		return nil, err
	}
	stateKey := r.PathValue("stateKey")
	content, err := readContent(r)
	if err != nil {
		return nil, err
	}
	if evType == "m.room.member" {
		var c struct {
			Membership string `json:"membership"`
		}
		if json.Unmarshal(content, &c) != nil || c.Membership == "" {
			return nil, httpapi.BadJSON("m.room.member content needs a membership")
		}
	}
	if evType == "m.room.canonical_alias" {
		if err := a.checkCanonicalAlias(r, roomID, content); err != nil {
			return nil, err
		}
	}
	sent, err := a.Rooms.Send(r.Context(), rooms.SendRequest{RoomID: roomID, Sender: req.UserID, Type: evType, StateKey: &stateKey, Content: content})
	if err != nil {
		return nil, err
	}
	return map[string]string{"event_id": sent.EventID}, nil
}

// checkCanonicalAlias refuses canonical aliases that do not point at the
// room (M_BAD_ALIAS), as the spec requires for local aliases.
func (a *API) checkCanonicalAlias(r *http.Request, roomID string, content json.RawMessage) error {
	var c struct {
		Alias      *string  `json:"alias"`
		AltAliases []string `json:"alt_aliases"`
	}
	if err := json.Unmarshal(content, &c); err != nil {
		return httpapi.BadJSON("invalid m.room.canonical_alias content")
	}
	check := append([]string{}, c.AltAliases...)
	if c.Alias != nil && *c.Alias != "" {
		check = append(check, *c.Alias)
	}
	for _, al := range check {
		if !strings.HasPrefix(al, "#") || !strings.Contains(al, ":") {
			return httpapi.InvalidParam("invalid alias %q", al)
		}
		if !strings.HasSuffix(al, ":"+a.Config.ServerName) {
			continue
		}
		target, _, err := a.DB.ResolveAlias(r.Context(), al)
		if err != nil || target != roomID {
			return &httpapi.Error{Status: http.StatusBadRequest, Code: "M_BAD_ALIAS", Message: "alias " + al + " does not point to this room"}
		}
	}
	return nil
}

// putRedact serves PUT /_matrix/client/v3/rooms/{roomId}/redact/{eventId}/{txnId}.
func (a *API) putRedact(r *http.Request) (any, error) {
	req := httpapi.RequesterFrom(r.Context())
	roomID, err := pathRoomID(r)
	if err != nil {
		return nil, err
	}
	target := r.PathValue("eventId")
	if err := validTxnID(r.PathValue("txnId")); err != nil {
		return nil, err
	}
	var body struct {
		Reason *string `json:"reason"`
	}
	b, err := httpapi.ReadBody(r, rooms.MaxEventBytes)
	if err != nil {
		return nil, err
	}
	if err := httpapi.DecodeJSONBytes(b, &body); err != nil {
		return nil, err
	}
	room, err := a.DB.GetRoom(r.Context(), roomID)
	if err != nil {
		return nil, httpapi.NotFound("unknown room")
	}
	content := map[string]any{}
	if body.Reason != nil {
		content["reason"] = *body.Reason
	}
	sr := rooms.SendRequest{RoomID: roomID, Sender: req.UserID, Type: "m.room.redaction", TxnDevice: req.DeviceID, TxnID: r.PathValue("txnId"), TxnScope: "redact"}
	if room.RoomVersion == "10" {
		sr.Redacts = target
	} else {
		content["redacts"] = target
	}
	sr.Content, _ = json.Marshal(content)
	sent, err := a.Rooms.Send(r.Context(), sr)
	if err != nil {
		return nil, err
	}
	return map[string]string{"event_id": sent.EventID}, nil
}
