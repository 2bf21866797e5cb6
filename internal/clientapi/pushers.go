package clientapi

import (
	"encoding/json"
	"net/http"
	"net/url"
	"slices"
	"strings"

	"github.com/rempart-hs/rempart/internal/httpapi"
	"github.com/rempart-hs/rempart/internal/storage"
)

// Bounds on pushers.
const (
	maxPusherDataBytes = 4096
	maxPushersPerUser  = 100
)

func (a *API) routesPushers(rt *httpapi.Router) {
	rt.Authed(v3("GET", "/pushers"), a.getPushers)
	rt.Authed(v3("POST", "/pushers/set"), a.postPushersSet)
}

type pusherJSON struct {
	AppID             string          `json:"app_id"`
	PushKey           string          `json:"pushkey"`
	Kind              string          `json:"kind"`
	AppDisplayName    string          `json:"app_display_name"`
	DeviceDisplayName string          `json:"device_display_name"`
	ProfileTag        string          `json:"profile_tag,omitempty"`
	Lang              string          `json:"lang"`
	Data              json.RawMessage `json:"data"`
}

// getPushers serves GET /_matrix/client/v3/pushers.
func (a *API) getPushers(r *http.Request) (any, error) {
	ps, err := a.DB.Pushers(r.Context(), httpapi.RequesterFrom(r.Context()).UserID)
	if err != nil {
		return nil, err
	}
	out := make([]pusherJSON, 0, len(ps))
	for _, p := range ps {
		out = append(out, pusherJSON{AppID: p.AppID, PushKey: p.PushKey, Kind: p.Kind, AppDisplayName: p.AppDisplayName,
			DeviceDisplayName: p.DeviceDisplayName, ProfileTag: p.ProfileTag, Lang: p.Lang, Data: p.Data})
	}
	return map[string]any{"pushers": out}, nil
}

// postPushersSet serves POST /_matrix/client/v3/pushers/set. Pushers are
// registered and listed, and removed with the device that registered them;
// delivery to push gateways and email is not implemented yet.
func (a *API) postPushersSet(r *http.Request) (any, error) {
	ctx := r.Context()
	req := httpapi.RequesterFrom(ctx)
	var body struct {
		AppID             *string         `json:"app_id"`
		PushKey           *string         `json:"pushkey"`
		Kind              json.RawMessage `json:"kind"`
		AppDisplayName    *string         `json:"app_display_name"`
		DeviceDisplayName *string         `json:"device_display_name"`
		ProfileTag        string          `json:"profile_tag"`
		Lang              *string         `json:"lang"`
		Data              json.RawMessage `json:"data"`
		Append            bool            `json:"append"`
	}
	if err := httpapi.DecodeJSON(r, &body); err != nil {
		return nil, err
	}
	if body.AppID == nil || body.PushKey == nil {
		return nil, httpapi.MissingParam("app_id and pushkey are required")
	}
	if len(*body.AppID) > 64 || len(*body.PushKey) > 512 || *body.AppID == "" || *body.PushKey == "" {
		return nil, httpapi.InvalidParam("app_id must be 1-64 bytes and pushkey 1-512 bytes")
	}
	if len(body.Kind) == 0 {
		return nil, httpapi.MissingParam("kind is required")
	}
	if string(body.Kind) == "null" {
		// kind: null deletes the pusher.
		err := a.DB.WithTx(ctx, func(tx *storage.Tx) error { return tx.DeletePusher(ctx, req.UserID, *body.AppID, *body.PushKey) })
		if err != nil {
			return nil, err
		}
		return struct{}{}, nil
	}
	var kind string
	if err := json.Unmarshal(body.Kind, &kind); err != nil || (kind != "http" && kind != "email") {
		return nil, httpapi.InvalidParam("kind must be http, email or null")
	}
	if body.AppDisplayName == nil || body.DeviceDisplayName == nil || body.Lang == nil || len(body.Data) == 0 || string(body.Data) == "null" {
		return nil, httpapi.MissingParam("app_display_name, device_display_name, lang and data are required")
	}
	var data map[string]json.RawMessage
	if err := json.Unmarshal(body.Data, &data); err != nil || data == nil {
		return nil, httpapi.BadJSON("data must be an object")
	}
	if len(body.Data) > maxPusherDataBytes {
		return nil, httpapi.InvalidParam("data is limited to %d bytes", maxPusherDataBytes)
	}
	if f, ok := data["format"]; ok {
		var format string
		if json.Unmarshal(f, &format) != nil || format != "event_id_only" {
			return nil, httpapi.InvalidParam("data.format must be event_id_only")
		}
	}
	switch kind {
	case "http":
		var u string
		if raw, ok := data["url"]; !ok || string(raw) == "null" {
			return nil, httpapi.MissingParam("data.url is required for http pushers")
		} else if err := json.Unmarshal(raw, &u); err != nil {
			return nil, httpapi.InvalidParam("data.url must be a string")
		}
		// The spec asks for HTTPS; plain http is accepted for push
		// gateways on a private network.
		pu, err := url.Parse(u)
		if err != nil || (pu.Scheme != "https" && pu.Scheme != "http") || pu.Host == "" || pu.User != nil ||
			pu.Path != "/_matrix/push/v1/notify" || len(u) > 2048 {
			return nil, httpapi.InvalidParam("data.url must be an http(s) URL with the path /_matrix/push/v1/notify")
		}
	case "email":
		if *body.AppID != "m.email" {
			return nil, httpapi.InvalidParam("email pushers have the app_id m.email")
		}
		if at := strings.LastIndexByte(*body.PushKey, '@'); at <= 0 || at == len(*body.PushKey)-1 {
			return nil, httpapi.InvalidParam("the pushkey of an email pusher is an email address")
		}
	}
	for _, f := range []string{*body.AppDisplayName, *body.DeviceDisplayName, *body.Lang, body.ProfileTag} {
		if len(f) > 255 {
			return nil, httpapi.InvalidParam("pusher fields are limited to 255 bytes")
		}
	}
	p := storage.Pusher{UserID: req.UserID, AppID: *body.AppID, PushKey: *body.PushKey, Kind: kind,
		AppDisplayName: *body.AppDisplayName, DeviceDisplayName: *body.DeviceDisplayName, ProfileTag: body.ProfileTag,
		Lang: *body.Lang, Data: body.Data, DeviceID: req.DeviceID, CreatedTS: a.now().UnixMilli()}
	existing, err := a.DB.Pushers(ctx, req.UserID)
	if err != nil {
		return nil, err
	}
	replaces := slices.ContainsFunc(existing, func(e storage.Pusher) bool { return e.AppID == p.AppID && e.PushKey == p.PushKey })
	if !replaces && len(existing) >= maxPushersPerUser {
		return nil, httpapi.InvalidParam("at most %d pushers per user", maxPushersPerUser)
	}
	if err := a.DB.WithTx(ctx, func(tx *storage.Tx) error { return tx.PutPusher(ctx, p, body.Append) }); err != nil {
		return nil, err
	}
	return struct{}{}, nil
}
