package clientapi

import (
	"encoding/json"
	"net/http"
	"time"

	"github.com/rempart-hs/rempart/internal/httpapi"
	"github.com/rempart-hs/rempart/internal/typing"
)

func (a *API) routesTyping(rt *httpapi.Router) {
	rt.Authed(v3("PUT", "/rooms/{roomId}/typing/{userId}"), a.putTyping)
}

// defaultTypingTimeout applies when a client starts typing without a timeout.
const defaultTypingTimeout = 30 * time.Second

// putTyping serves PUT /_matrix/client/v3/rooms/{roomId}/typing/{userId}.
// Users may only set their own typing state, in rooms they are joined to;
// the timeout is capped by typing.MaxTimeout.
func (a *API) putTyping(r *http.Request) (any, error) {
	ctx := r.Context()
	req := httpapi.RequesterFrom(ctx)
	roomID, err := pathRoomID(r)
	if err != nil {
		return nil, err
	}
	userID, err := pathUserID(r)
	if err != nil {
		return nil, err
	}
	if userID != req.UserID {
		return nil, httpapi.Forbidden("you may only set your own typing state")
	}
	var body struct {
		Typing  *bool            `json:"typing"`
		Timeout *json.RawMessage `json:"timeout"`
	}
	if err := httpapi.DecodeJSON(r, &body); err != nil {
		return nil, err
	}
	if body.Typing == nil {
		return nil, httpapi.BadJSON("missing typing field")
	}
	timeout := defaultTypingTimeout
	if body.Timeout != nil && string(*body.Timeout) != "null" {
		var ms int64
		if err := json.Unmarshal(*body.Timeout, &ms); err != nil {
			return nil, httpapi.BadJSON("timeout must be an integer")
		}
		if ms < 0 {
			return nil, httpapi.InvalidParam("timeout must not be negative")
		}
		if ms > 0 {
			timeout = time.Duration(min(ms, int64(typing.MaxTimeout/time.Millisecond))) * time.Millisecond
		}
	}
	if err := a.requireJoined(ctx, roomID, req.UserID); err != nil {
		return nil, err
	}
	a.Typing.Set(roomID, req.UserID, *body.Typing, timeout)
	return struct{}{}, nil
}
