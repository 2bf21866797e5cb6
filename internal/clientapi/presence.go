package clientapi

import (
	"errors"
	"net/http"

	"github.com/rempart-hs/rempart/internal/httpapi"
	"github.com/rempart-hs/rempart/internal/storage"
)

// Presence. It is off by default (threat model T9: presence is metadata):
// then PUT is accepted and nothing is stored, and GET reports everyone as
// offline. When presence.enabled is set, the state a user sets is stored
// and returned. Either way, only people who share a room with the user
// (policy.CanSeeProfile) may read it.

const (
	// maxStatusMsg bounds a presence status message, in bytes.
	maxStatusMsg = 1024
	// presenceIdleMS is the inactivity after which "online" reads as
	// "unavailable".
	presenceIdleMS = 5 * 60 * 1000
)

func (a *API) routesPresence(rt *httpapi.Router) {
	rt.Authed(v3("GET", "/presence/{userId}/status"), a.getPresence)
	rt.Authed(v3("PUT", "/presence/{userId}/status"), a.putPresence)
}

// presenceJSON is the body of GET /presence/{userId}/status.
type presenceJSON struct {
	Presence        string  `json:"presence"`
	LastActiveAgo   *int64  `json:"last_active_ago,omitempty"`
	StatusMsg       *string `json:"status_msg,omitempty"`
	CurrentlyActive *bool   `json:"currently_active,omitempty"`
}

// putPresence serves PUT /_matrix/client/v3/presence/{userId}/status.
func (a *API) putPresence(r *http.Request) (any, error) {
	userID, err := pathUserID(r)
	if err != nil {
		return nil, err
	}
	if httpapi.RequesterFrom(r.Context()).UserID != userID {
		return nil, httpapi.Forbidden("you may only set your own presence")
	}
	var body struct {
		Presence  *string `json:"presence"`
		StatusMsg *string `json:"status_msg"`
	}
	if err := httpapi.DecodeJSON(r, &body); err != nil {
		return nil, err
	}
	if body.Presence == nil {
		return nil, httpapi.MissingParam("presence is required")
	}
	switch *body.Presence {
	case "online", "offline", "unavailable":
	default:
		return nil, httpapi.InvalidParam("presence must be online, offline or unavailable")
	}
	if body.StatusMsg != nil && len(*body.StatusMsg) > maxStatusMsg {
		return nil, httpapi.InvalidParam("status_msg is limited to %d bytes", maxStatusMsg)
	}
	if !a.Config.Presence.Enabled {
		return struct{}{}, nil
	}
	p := storage.Presence{UserID: userID, State: *body.Presence, StatusMsg: body.StatusMsg, LastActiveTS: a.now().UnixMilli()}
	if err := a.DB.WithTx(r.Context(), func(tx *storage.Tx) error {
		_, err := tx.PutPresence(r.Context(), p)
		return err
	}); err != nil {
		return nil, err
	}
	return struct{}{}, nil
}

// getPresence serves GET /_matrix/client/v3/presence/{userId}/status.
func (a *API) getPresence(r *http.Request) (any, error) {
	ctx := r.Context()
	userID, err := pathUserID(r)
	if err != nil {
		return nil, err
	}
	ok, err := a.Policy.CanSeeProfile(ctx, httpapi.RequesterFrom(ctx).UserID, userID)
	if err != nil {
		return nil, err
	}
	if !ok {
		return nil, httpapi.Forbidden("you may only see the presence of people you share a room with")
	}
	offline := presenceJSON{Presence: "offline"}
	if !a.Config.Presence.Enabled {
		return offline, nil
	}
	p, err := a.DB.GetPresence(ctx, userID)
	if errors.Is(err, storage.ErrNotFound) {
		return offline, nil
	}
	if err != nil {
		return nil, err
	}
	ago := max(a.now().UnixMilli()-p.LastActiveTS, 0)
	out := presenceJSON{Presence: p.State, LastActiveAgo: &ago, StatusMsg: p.StatusMsg}
	if p.State == "online" {
		active := ago < presenceIdleMS
		if !active {
			out.Presence = "unavailable"
		}
		out.CurrentlyActive = &active
	}
	return out, nil
}
