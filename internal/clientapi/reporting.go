package clientapi

import (
	"encoding/json"
	"errors"
	"log/slog"
	"net/http"
	"strconv"

	"github.com/rempart-hs/rempart/internal/httpapi"
	"github.com/rempart-hs/rempart/internal/storage"
)

// Reporting content: users report events, rooms and users to the server
// administrators. Reports are stored for the admin API; their reasons are
// never logged.

// maxReportReason bounds a report's reason, in bytes.
const maxReportReason = 4096

func (a *API) routesReporting(rt *httpapi.Router) {
	rt.Authed(v3("POST", "/rooms/{roomId}/report/{eventId}"), a.postReportEvent)
	rt.Authed(v3("POST", "/rooms/{roomId}/report"), a.postReportRoom)
	rt.Authed(v3("POST", "/users/{userId}/report"), a.postReportUser)
}

// reportBody is the request body of the report endpoints.
type reportBody struct {
	Reason *string `json:"reason"`
	// Score was removed from the spec in v1.18; it is still accepted and
	// checked, as Synapse does, for older clients.
	Score json.RawMessage `json:"score"`
}

// decodeReport reads and bounds a report body; reasonRequired is set for
// the room and user reports, whose reason is required (but may be blank).
func decodeReport(r *http.Request, reasonRequired bool) (reportBody, *int, error) {
	var b reportBody
	if err := httpapi.DecodeJSON(r, &b); err != nil {
		return b, nil, err
	}
	if b.Reason == nil && reasonRequired {
		return b, nil, httpapi.MissingParam("reason is required")
	}
	if b.Reason != nil && len(*b.Reason) > maxReportReason {
		return b, nil, httpapi.InvalidParam("reason is limited to %d bytes", maxReportReason)
	}
	var score *int
	if len(b.Score) > 0 && string(b.Score) != "null" {
		n, err := strconv.Atoi(string(b.Score))
		if err != nil || n < -100 || n > 0 {
			return b, nil, httpapi.InvalidParam("score must be an integer between -100 and 0")
		}
		score = &n
	}
	return b, score, nil
}

// postReportEvent serves POST /_matrix/client/v3/rooms/{roomId}/report/{eventId}.
func (a *API) postReportEvent(r *http.Request) (any, error) {
	ctx := r.Context()
	req := httpapi.RequesterFrom(ctx)
	roomID, err := pathRoomID(r)
	if err != nil {
		return nil, err
	}
	eventID := r.PathValue("eventId")
	body, score, err := decodeReport(r, false)
	if err != nil {
		return nil, err
	}
	notFound := httpapi.NotFound("the event was not found or you are not joined to the room")
	// The spec (v1.8) requires the reporter to be joined to the room now,
	// and the event must be one they may see.
	if m, err := a.DB.GetMembership(ctx, roomID, req.UserID); errors.Is(err, storage.ErrNotFound) || (err == nil && m.Membership != "join") {
		return nil, notFound
	} else if err != nil {
		return nil, err
	}
	ev, err := a.DB.GetEvent(ctx, eventID)
	if errors.Is(err, storage.ErrNotFound) || (err == nil && ev.RoomID != roomID) {
		return nil, notFound
	}
	if err != nil {
		return nil, err
	}
	vis, err := a.Rooms.NewVisibility(ctx, roomID, req.UserID)
	if err != nil {
		return nil, err
	}
	if !vis.CanSee(&ev) {
		return nil, notFound
	}
	var id int64
	if err := a.DB.WithTx(ctx, func(tx *storage.Tx) error {
		id, err = tx.InsertEventReport(ctx, storage.EventReport{RoomID: roomID, EventID: eventID, UserID: req.UserID,
			Reason: body.Reason, Score: score, CreatedTS: a.now().UnixMilli()})
		return err
	}); err != nil {
		return nil, err
	}
	slog.InfoContext(ctx, "event reported", "report_id", id, "room", roomID, "event", eventID, "reporter", req.UserID)
	return struct{}{}, nil
}

// postReportRoom serves POST /_matrix/client/v3/rooms/{roomId}/report.
// The reporter need not be in the room (spec v1.13).
func (a *API) postReportRoom(r *http.Request) (any, error) {
	ctx := r.Context()
	req := httpapi.RequesterFrom(ctx)
	roomID, err := pathRoomID(r)
	if err != nil {
		return nil, err
	}
	body, _, err := decodeReport(r, true)
	if err != nil {
		return nil, err
	}
	if _, err := a.DB.GetRoom(ctx, roomID); errors.Is(err, storage.ErrNotFound) {
		return nil, httpapi.NotFound("the room was not found")
	} else if err != nil {
		return nil, err
	}
	var id int64
	if err := a.DB.WithTx(ctx, func(tx *storage.Tx) error {
		id, err = tx.InsertRoomReport(ctx, roomID, req.UserID, *body.Reason, a.now().UnixMilli())
		return err
	}); err != nil {
		return nil, err
	}
	slog.InfoContext(ctx, "room reported", "report_id", id, "room", roomID, "reporter", req.UserID)
	return struct{}{}, nil
}

// postReportUser serves POST /_matrix/client/v3/users/{userId}/report.
// The answer is 200 whether or not a local user exists (which the spec
// allows), so that reports cannot be used to enumerate accounts (threat
// model T2); reports of unknown local users are dropped.
func (a *API) postReportUser(r *http.Request) (any, error) {
	ctx := r.Context()
	req := httpapi.RequesterFrom(ctx)
	target, err := pathUserID(r)
	if err != nil {
		return nil, err
	}
	body, _, err := decodeReport(r, true)
	if err != nil {
		return nil, err
	}
	if a.isLocalUser(target) {
		if _, err := a.DB.GetUser(ctx, target); errors.Is(err, storage.ErrNotFound) {
			return struct{}{}, nil
		} else if err != nil {
			return nil, err
		}
	}
	var id int64
	if err := a.DB.WithTx(ctx, func(tx *storage.Tx) error {
		id, err = tx.InsertUserReport(ctx, target, req.UserID, *body.Reason, a.now().UnixMilli())
		return err
	}); err != nil {
		return nil, err
	}
	slog.InfoContext(ctx, "user reported", "report_id", id, "target", target, "reporter", req.UserID)
	return struct{}{}, nil
}
