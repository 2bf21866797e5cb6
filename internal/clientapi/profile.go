package clientapi

import (
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"net/http"
	"regexp"
	"time"
	"unicode/utf8"

	"github.com/rempart-hs/rempart/internal/httpapi"
	"github.com/rempart-hs/rempart/internal/rooms"
	"github.com/rempart-hs/rempart/internal/storage"
)

// Profiles: display name, avatar and (v1.16) extensible profile fields.
// Look-ups are decided by policy.CanSeeProfile; a change of display name or
// avatar is propagated to the user's m.room.member event in every room they
// are joined to.

const (
	// maxDisplayName bounds display names, in characters (as Synapse).
	maxDisplayName = 256
	// maxAvatarURL bounds avatar URLs, in bytes.
	maxAvatarURL = 1024
	// maxProfileKey is the spec's limit on a profile field name, in bytes.
	maxProfileKey = 255
	// maxProfileBytes is the spec's limit on a whole profile, as JSON.
	maxProfileBytes = 64 * 1024
)

// profileKeyRE is the spec's grammar for profile field names.
var profileKeyRE = regexp.MustCompile(`^(avatar_url|displayname|m\.tz|[a-z][a-z0-9_]*(\.[a-z][a-z0-9_]*)+)$`)

// mxcRE matches an MXC URI: mxc://<server-name>/<media-id>.
var mxcRE = regexp.MustCompile(`^mxc://[A-Za-z0-9.\-:\[\]]+/[A-Za-z0-9_\-]+$`)

func (a *API) routesProfile(rt *httpapi.Router) {
	rt.Authed(v3("GET", "/profile/{userId}"), a.getProfile)
	rt.Authed(v3("GET", "/profile/{userId}/{keyName}"), a.getProfileField)
	rt.Authed(v3("PUT", "/profile/{userId}/{keyName}"), a.putProfileField)
	rt.Authed(v3("DELETE", "/profile/{userId}/{keyName}"), a.deleteProfileField)
}

var (
	errProfileTooLarge = &httpapi.Error{Status: http.StatusBadRequest, Code: "M_PROFILE_TOO_LARGE", Message: "the profile would exceed 64 KiB"}
	errKeyTooLarge     = &httpapi.Error{Status: http.StatusBadRequest, Code: "M_KEY_TOO_LARGE", Message: "profile field names are limited to 255 bytes"}
)

// profileKey returns the validated {keyName} path parameter.
func profileKey(r *http.Request) (string, error) {
	k := r.PathValue("keyName")
	if len(k) > maxProfileKey {
		return "", errKeyTooLarge
	}
	if !profileKeyRE.MatchString(k) {
		return "", httpapi.InvalidParam("invalid profile field name")
	}
	return k, nil
}

// loadVisibleProfile checks that the requester may see target's profile
// and returns it as the JSON object the spec defines.
func (a *API) loadVisibleProfile(ctx context.Context, target string) (map[string]json.RawMessage, error) {
	req := httpapi.RequesterFrom(ctx)
	ok, err := a.Policy.CanSeeProfile(ctx, req.UserID, target)
	if err != nil {
		return nil, err
	}
	if !ok {
		return nil, httpapi.Forbidden("you may only look up the profiles of people you share a room with")
	}
	if !a.isLocalUser(target) {
		return nil, httpapi.NotFound("profile not found")
	}
	u, err := a.DB.GetUser(ctx, target)
	if errors.Is(err, storage.ErrNotFound) {
		return nil, httpapi.NotFound("profile not found")
	}
	if err != nil {
		return nil, err
	}
	fields, err := a.DB.ProfileFields(ctx, target)
	if err != nil {
		return nil, err
	}
	return profileObject(u, fields), nil
}

// profileObject assembles a profile from the users row and extra fields.
func profileObject(u storage.User, fields map[string]json.RawMessage) map[string]json.RawMessage {
	out := make(map[string]json.RawMessage, len(fields)+2)
	for k, v := range fields {
		out[k] = v
	}
	if u.DisplayName != "" {
		out["displayname"], _ = json.Marshal(u.DisplayName)
	}
	if u.AvatarURL != "" {
		out["avatar_url"], _ = json.Marshal(u.AvatarURL)
	}
	return out
}

// getProfile serves GET /_matrix/client/v3/profile/{userId}.
func (a *API) getProfile(r *http.Request) (any, error) {
	target, err := pathUserID(r)
	if err != nil {
		return nil, err
	}
	return a.loadVisibleProfile(r.Context(), target)
}

// getProfileField serves GET /_matrix/client/v3/profile/{userId}/{keyName}.
func (a *API) getProfileField(r *http.Request) (any, error) {
	target, err := pathUserID(r)
	if err != nil {
		return nil, err
	}
	key, err := profileKey(r)
	if err != nil {
		return nil, err
	}
	p, err := a.loadVisibleProfile(r.Context(), target)
	if err != nil {
		return nil, err
	}
	v, ok := p[key]
	if !ok {
		return nil, httpapi.NotFound("this user has no profile field %s", key)
	}
	return map[string]json.RawMessage{key: v}, nil
}

// profileWriteTarget checks that the requester changes their own profile.
func profileWriteTarget(r *http.Request) (userID, key string, err error) {
	target, err := pathUserID(r)
	if err != nil {
		return "", "", err
	}
	if key, err = profileKey(r); err != nil {
		return "", "", err
	}
	if req := httpapi.RequesterFrom(r.Context()); req.UserID != target {
		return "", "", httpapi.Forbidden("you may only change your own profile")
	}
	return target, key, nil
}

// validateProfileValue checks the value of a field the spec constrains and
// returns it in canonical (compact) form.
func validateProfileValue(key string, raw json.RawMessage) (json.RawMessage, error) {
	switch key {
	case "displayname", "avatar_url", "m.tz":
		var s string
		if err := json.Unmarshal(raw, &s); err != nil || string(raw) == "null" {
			return nil, httpapi.InvalidParam("%s must be a string", key)
		}
		switch {
		case key == "displayname" && utf8.RuneCountInString(s) > maxDisplayName:
			return nil, httpapi.InvalidParam("displayname is limited to %d characters", maxDisplayName)
		case key == "avatar_url" && s != "" && (len(s) > maxAvatarURL || !mxcRE.MatchString(s)):
			return nil, httpapi.InvalidParam("avatar_url must be an mxc:// URI")
		case key == "m.tz" && len(s) > maxProfileKey:
			return nil, httpapi.InvalidParam("m.tz is too long")
		}
		return json.Marshal(s)
	}
	var v any
	if err := json.Unmarshal(raw, &v); err != nil {
		return nil, httpapi.BadJSON("invalid value for %s", key)
	}
	return json.Marshal(v)
}

// putProfileField serves PUT /_matrix/client/v3/profile/{userId}/{keyName}.
func (a *API) putProfileField(r *http.Request) (any, error) {
	userID, key, err := profileWriteTarget(r)
	if err != nil {
		return nil, err
	}
	var body map[string]json.RawMessage
	if err := httpapi.DecodeJSON(r, &body); err != nil {
		return nil, err
	}
	raw, ok := body[key]
	if !ok {
		return nil, httpapi.MissingParam("the request body must contain %q", key)
	}
	value, err := validateProfileValue(key, raw)
	if err != nil {
		return nil, err
	}
	return a.changeProfile(r, userID, key, value)
}

// deleteProfileField serves DELETE /_matrix/client/v3/profile/{userId}/{keyName}.
func (a *API) deleteProfileField(r *http.Request) (any, error) {
	userID, key, err := profileWriteTarget(r)
	if err != nil {
		return nil, err
	}
	return a.changeProfile(r, userID, key, nil)
}

// changeProfile sets (value != nil) or deletes one profile field, enforces
// the profile size limit, and propagates display name and avatar changes
// to the user's rooms.
func (a *API) changeProfile(r *http.Request, userID, key string, value json.RawMessage) (any, error) {
	ctx := r.Context()
	changed := false
	err := a.DB.WithTx(ctx, func(tx *storage.Tx) error {
		u, err := tx.LockUser(ctx, userID)
		if err != nil {
			return err
		}
		fields, err := tx.ProfileFields(ctx, userID)
		if err != nil {
			return err
		}
		profile := profileObject(u, fields)
		old := profile[key]
		if value == nil {
			delete(profile, key)
		} else {
			profile[key] = value
		}
		if b, _ := json.Marshal(profile); len(b) > maxProfileBytes {
			return errProfileTooLarge
		}
		switch key {
		case "displayname", "avatar_url":
			var s string
			if value != nil {
				_ = json.Unmarshal(value, &s)
			}
			prev := u.DisplayName
			if key == "avatar_url" {
				prev = u.AvatarURL
			}
			changed = s != prev
			if key == "displayname" {
				return tx.SetProfile(ctx, userID, &s, nil)
			}
			return tx.SetProfile(ctx, userID, nil, &s)
		default:
			changed = string(old) != string(value)
			if value == nil {
				return tx.DeleteProfileField(ctx, userID, key)
			}
			return tx.SetProfileField(ctx, userID, key, value)
		}
	})
	if err != nil {
		return nil, err
	}
	if changed && (key == "displayname" || key == "avatar_url") {
		a.propagateProfile(ctx, userID)
	}
	return struct{}{}, nil
}

// propagateProfile sends a fresh m.room.member join event, carrying the new
// display name and avatar, to every room the user is joined to (as Synapse
// does). It runs to completion even if the client goes away; a room that
// refuses the event is skipped.
func (a *API) propagateProfile(ctx context.Context, userID string) {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 2*time.Minute)
	defer cancel()
	ms, err := a.DB.UserMemberships(ctx, userID)
	if err != nil {
		slog.ErrorContext(ctx, "profile propagation: list rooms", "user", userID, "err", err)
		return
	}
	for _, m := range ms {
		if m.Membership != "join" {
			continue
		}
		_, err := a.Rooms.ChangeMembership(ctx, rooms.MembershipRequest{RoomID: m.RoomID, Sender: userID, Target: userID, Membership: "join"})
		if err != nil {
			slog.WarnContext(ctx, "profile propagation: update member event", "user", userID, "room", m.RoomID, "err", err)
		}
	}
}
