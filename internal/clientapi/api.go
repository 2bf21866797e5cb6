// Package clientapi serves the Matrix Client-Server API. Each file covers
// one area of the spec and is named after it; handlers are thin: they
// decode and validate the request, ask the policy layer, call the room
// engine or storage, and shape the response.
package clientapi

import (
	"context"
	"errors"
	"net/http"
	"strings"
	"time"

	"github.com/matrix-org/gomatrixserverlib/spec"

	"github.com/rempart-hs/rempart/internal/auth"
	"github.com/rempart-hs/rempart/internal/config"
	"github.com/rempart-hs/rempart/internal/httpapi"
	"github.com/rempart-hs/rempart/internal/notifier"
	"github.com/rempart-hs/rempart/internal/policy"
	"github.com/rempart-hs/rempart/internal/rooms"
	"github.com/rempart-hs/rempart/internal/storage"
	"github.com/rempart-hs/rempart/internal/syncapi"
	"github.com/rempart-hs/rempart/internal/typing"
)

// API holds what the Client-Server handlers need.
type API struct {
	Config   *config.Config
	DB       *storage.DB
	Auth     *auth.Service
	Rooms    *rooms.Engine
	Sync     *syncapi.Service
	Typing   *typing.Tracker
	Notifier *notifier.Notifier
	// Policy makes Rempart's authorisation decisions (profile look-ups, …).
	Policy *policy.Policy
	// DeviceHooks run inside the transaction that deletes a device, so
	// that other modules (end-to-end keys, to-device queues) clean up too.
	DeviceHooks []func(ctx context.Context, tx *storage.Tx, userID, deviceID string) error
	now         func() time.Time
}

// Register adds every Client-Server endpoint to the router. Each area's
// routes are listed in its own file.
func (a *API) Register(rt *httpapi.Router) {
	if a.now == nil {
		a.now = time.Now
	}
	a.routesVersions(rt)
	a.routesLogin(rt)
	a.routesRegister(rt)
	a.routesAccount(rt)
	a.routesDevices(rt)
	a.routesRoomCreate(rt)
	a.routesMembership(rt)
	a.routesSend(rt)
	a.routesRoomRead(rt)
	a.routesSync(rt)
	a.routesAccountData(rt)
	a.routesProfile(rt)
	a.routesFilter(rt)
	a.routesPushRules(rt)
	a.routesPushers(rt)
	a.routesNotifications(rt)
	a.routesDirectory(rt)
	a.routesReceipts(rt)
	a.routesReadMarkers(rt)
	a.routesTyping(rt)
	a.routesRelations(rt)
	a.routesThreads(rt)
	a.routesPresence(rt)
	a.routesReporting(rt)
	a.routesUserDirectory(rt)
}

// v3 prefixes a Client-Server path with "/_matrix/client/v3".
func v3(method, path string) string { return method + " /_matrix/client/v3" + path }

// v1 prefixes a Client-Server path with "/_matrix/client/v1".
func v1(method, path string) string { return method + " /_matrix/client/v1" + path }

// pathRoomID returns a validated {roomId} path parameter.
func pathRoomID(r *http.Request) (string, error) {
	id := r.PathValue("roomId")
	if !strings.HasPrefix(id, "!") || len(id) > 255 {
		return "", httpapi.InvalidParam("invalid room ID")
	}
	return id, nil
}

// pathUserID returns a validated {userId} path parameter.
func pathUserID(r *http.Request) (string, error) {
	id := r.PathValue("userId")
	if _, err := spec.NewUserID(id, true); err != nil {
		return "", httpapi.InvalidParam("invalid user ID")
	}
	return id, nil
}

// requireJoined returns M_FORBIDDEN unless userID is joined to roomID.
func (a *API) requireJoined(ctx context.Context, roomID, userID string) error {
	m, err := a.DB.GetMembership(ctx, roomID, userID)
	if errors.Is(err, storage.ErrNotFound) || (err == nil && m.Membership != "join") {
		return httpapi.Forbidden("you are not joined to this room")
	}
	return err
}

// requireMemberOrFormer returns the membership of a user who is or was in
// the room; users who never were get M_FORBIDDEN.
func (a *API) requireMemberOrFormer(ctx context.Context, roomID, userID string) (storage.Membership, error) {
	m, err := a.DB.GetMembership(ctx, roomID, userID)
	if errors.Is(err, storage.ErrNotFound) {
		if _, rerr := a.DB.GetRoom(ctx, roomID); errors.Is(rerr, storage.ErrNotFound) {
			return m, httpapi.Forbidden("unknown room or not a member")
		}
		return m, httpapi.Forbidden("you are not a member of this room")
	}
	return m, err
}

// isLocalUser reports whether userID belongs to this server.
func (a *API) isLocalUser(userID string) bool {
	return strings.HasSuffix(userID, ":"+a.Config.ServerName) && strings.HasPrefix(userID, "@")
}
