package rooms

import (
	"encoding/json"
	"time"

	"github.com/rempart-hs/rempart/internal/storage"
)

// ClientEvent is an event in the Client-Server API format.
type ClientEvent struct {
	Content        json.RawMessage `json:"content"`
	EventID        string          `json:"event_id"`
	OriginServerTS int64           `json:"origin_server_ts"`
	RoomID         string          `json:"room_id,omitempty"`
	Sender         string          `json:"sender"`
	StateKey       *string         `json:"state_key,omitempty"`
	Type           string          `json:"type"`
	Redacts        string          `json:"redacts,omitempty"`
	Unsigned       map[string]any  `json:"unsigned,omitempty"`
}

// Viewer identifies who an event is formatted for: transaction_id is only
// shown to the device that sent the event.
type Viewer struct {
	UserID   string
	DeviceID string
}

type pduFields struct {
	Content json.RawMessage `json:"content"`
	Redacts string          `json:"redacts"`
}

// Format converts a stored event to the client format. redaction, when the
// event was redacted, is the redaction event (for unsigned.redacted_because).
func Format(ev *storage.Event, v Viewer, withRoomID bool, redaction *storage.Event) ClientEvent {
	var f pduFields
	_ = json.Unmarshal(ev.JSON, &f)
	if len(f.Content) == 0 {
		f.Content = json.RawMessage("{}")
	}
	ce := ClientEvent{
		Content:        f.Content,
		EventID:        ev.EventID,
		OriginServerTS: ev.OriginServerTS,
		Sender:         ev.Sender,
		StateKey:       ev.StateKey,
		Type:           ev.Type,
		Redacts:        f.Redacts,
	}
	if ce.Type == "m.room.redaction" && ce.Redacts == "" {
		var c struct {
			Redacts string `json:"redacts"`
		}
		_ = json.Unmarshal(f.Content, &c)
		ce.Redacts = c.Redacts
	}
	if withRoomID {
		ce.RoomID = ev.RoomID
	}
	uns := map[string]any{}
	if len(ev.Unsigned) > 2 {
		_ = json.Unmarshal(ev.Unsigned, &uns)
	}
	age := time.Now().UnixMilli() - ev.OriginServerTS
	if age < 0 {
		age = 0
	}
	uns["age"] = age
	if ev.TxnID != "" && v.UserID == ev.Sender && v.DeviceID == ev.TxnDevice {
		uns["transaction_id"] = ev.TxnID
	}
	if ev.RedactedBy != "" {
		if redaction != nil {
			uns["redacted_because"] = Format(redaction, Viewer{}, withRoomID, nil)
		} else {
			uns["redacted_because"] = map[string]any{"event_id": ev.RedactedBy, "type": "m.room.redaction"}
		}
		delete(uns, "prev_content")
	}
	ce.Unsigned = uns
	return ce
}

// Membership returns content.membership of a member event.
func Membership(ev *storage.Event) string {
	var f struct {
		Content struct {
			Membership string `json:"membership"`
		} `json:"content"`
	}
	_ = json.Unmarshal(ev.JSON, &f)
	return f.Content.Membership
}

// ContentField returns a top-level string field of an event's content.
func ContentField(ev *storage.Event, key string) string {
	var f struct {
		Content map[string]json.RawMessage `json:"content"`
	}
	_ = json.Unmarshal(ev.JSON, &f)
	var s string
	_ = json.Unmarshal(f.Content[key], &s)
	return s
}
