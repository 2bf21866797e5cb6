package clientapi

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"strings"

	"github.com/rempart-hs/rempart/internal/httpapi"
	"github.com/rempart-hs/rempart/internal/storage"
)

func (a *API) routesReceipts(rt *httpapi.Router) {
	rt.Authed(v3("POST", "/rooms/{roomId}/receipt/{receiptType}/{eventId}"), a.postReceipt)
}

// Receipt and marker types of the receipts and read markers modules.
const (
	receiptRead        = "m.read"
	receiptReadPrivate = "m.read.private"
	markerFullyRead    = "m.fully_read"
)

// receiptTarget checks that the user is joined to the room and may see
// the event, and returns it.
func (a *API) receiptTarget(ctx context.Context, roomID, userID, eventID string) (*storage.Event, error) {
	if !strings.HasPrefix(eventID, "$") || len(eventID) > 255 {
		return nil, httpapi.InvalidParam("invalid event ID")
	}
	if err := a.requireJoined(ctx, roomID, userID); err != nil {
		return nil, err
	}
	v, err := a.viewRoom(ctx, roomID, userID)
	if err != nil {
		return nil, err
	}
	return a.visibleEvent(ctx, v, roomID, eventID)
}

// maxThreadHops bounds how far relations are followed to find an event's
// thread, as the spec recommends.
const maxThreadHops = 3

// threadOf returns the thread root an event belongs to, or "" when it is
// in the main timeline: it follows relations up to maxThreadHops.
func (a *API) threadOf(ctx context.Context, ev *storage.Event) (string, error) {
	cur := ev
	for hop := 0; hop < maxThreadHops && cur.RelatesTo != ""; hop++ {
		if cur.RelType == "m.thread" {
			return cur.RelatesTo, nil
		}
		parent, err := a.DB.GetEvent(ctx, cur.RelatesTo)
		if errors.Is(err, storage.ErrNotFound) || (err == nil && parent.RoomID != ev.RoomID) {
			return "", nil
		}
		if err != nil {
			return "", err
		}
		cur = &parent
	}
	if cur.RelType == "m.thread" {
		return cur.RelatesTo, nil
	}
	return "", nil
}

// checkThreadID validates a receipt's thread_id against its event: "main"
// for main-timeline events, or the event's thread root.
func (a *API) checkThreadID(ctx context.Context, threadID string, ev *storage.Event) error {
	if threadID == "" {
		return nil
	}
	if threadID != "main" && !strings.HasPrefix(threadID, "$") {
		return httpapi.InvalidParam("thread_id must be \"main\" or a thread root event ID")
	}
	root, err := a.threadOf(ctx, ev)
	if err != nil {
		return err
	}
	switch {
	case threadID == "main" && root != "":
		return httpapi.InvalidParam("the event is in a thread, not the main timeline")
	case threadID != "main" && threadID != root && threadID != ev.EventID:
		return httpapi.InvalidParam("the event is not in thread %s", threadID)
	}
	return nil
}

// setReceipt stores one receipt or the fully-read marker and wakes the
// syncs that will see it. Receipts and markers only move forward: one
// pointing at an earlier event than the current one is ignored.
func (a *API) setReceipt(ctx context.Context, userID, roomID, typ, threadID string, ev *storage.Event) error {
	if typ == markerFullyRead {
		if cur, err := a.DB.GetAccountData(ctx, userID, roomID, markerFullyRead); err == nil {
			var c struct {
				EventID string `json:"event_id"`
			}
			if json.Unmarshal(cur, &c) == nil && c.EventID != "" {
				if prev, err := a.DB.GetEvent(ctx, c.EventID); err == nil && prev.StreamPos > ev.StreamPos {
					return nil
				}
			}
		} else if !errors.Is(err, storage.ErrNotFound) {
			return err
		}
		content, _ := json.Marshal(map[string]string{"event_id": ev.EventID})
		return a.DB.WithTx(ctx, func(tx *storage.Tx) error {
			if _, err := tx.PutAccountData(ctx, userID, roomID, markerFullyRead, content); err != nil {
				return err
			}
			tx.AfterCommit(func() { a.Notifier.WakeUsers(userID) })
			return nil
		})
	}
	prev, err := a.DB.ReceiptPosition(ctx, roomID, typ, userID, threadID)
	if err != nil {
		return err
	}
	if prev > ev.StreamPos {
		return nil
	}
	return a.DB.WithTx(ctx, func(tx *storage.Tx) error {
		if _, err := tx.PutReceipt(ctx, storage.Receipt{RoomID: roomID, Type: typ, UserID: userID, ThreadID: threadID, EventID: ev.EventID, TS: a.now().UnixMilli()}); err != nil {
			return err
		}
		tx.AfterCommit(func() {
			if typ == receiptReadPrivate {
				a.Notifier.WakeUsers(userID) // only the owner ever sees it
			} else {
				a.Notifier.WakeRoom(roomID)
			}
		})
		return nil
	})
}

// postReceipt serves POST /_matrix/client/v3/rooms/{roomId}/receipt/{receiptType}/{eventId}.
func (a *API) postReceipt(r *http.Request) (any, error) {
	ctx := r.Context()
	req := httpapi.RequesterFrom(ctx)
	roomID, err := pathRoomID(r)
	if err != nil {
		return nil, err
	}
	typ := r.PathValue("receiptType")
	switch typ {
	case receiptRead, receiptReadPrivate, markerFullyRead:
	default:
		return nil, httpapi.InvalidParam("receipt type must be m.read, m.read.private or m.fully_read")
	}
	var body map[string]json.RawMessage
	if err := httpapi.DecodeJSON(r, &body); err != nil {
		return nil, err
	}
	threadID := ""
	if raw, ok := body["thread_id"]; ok {
		if err := json.Unmarshal(raw, &threadID); err != nil || threadID == "" || len(threadID) > 255 {
			return nil, httpapi.InvalidParam("thread_id field must be a non-empty string")
		}
		if typ == markerFullyRead {
			return nil, httpapi.InvalidParam("thread_id cannot be used with m.fully_read")
		}
	}
	ev, err := a.receiptTarget(ctx, roomID, req.UserID, r.PathValue("eventId"))
	if err != nil {
		return nil, err
	}
	if err := a.checkThreadID(ctx, threadID, ev); err != nil {
		return nil, err
	}
	if err := a.setReceipt(ctx, req.UserID, roomID, typ, threadID, ev); err != nil {
		return nil, err
	}
	return struct{}{}, nil
}
