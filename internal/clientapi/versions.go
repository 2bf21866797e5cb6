package clientapi

import (
	"net/http"
	"strings"

	"github.com/rempart-hs/rempart/internal/httpapi"
	"github.com/rempart-hs/rempart/internal/rooms"
)

// SpecVersions are the Client-Server spec versions whose required
// endpoints Rempart serves.
var SpecVersions = []string{"v1.1", "v1.2", "v1.3", "v1.4", "v1.5", "v1.6", "v1.7", "v1.8", "v1.9", "v1.10", "v1.11"}

func (a *API) routesVersions(rt *httpapi.Router) {
	rt.Public("GET /_matrix/client/versions", a.getVersions)
	rt.Public("GET /.well-known/matrix/client", a.getWellKnownClient)
	rt.Authed(v3("GET", "/capabilities"), a.getCapabilities)
}

// getVersions serves GET /_matrix/client/versions.
func (a *API) getVersions(r *http.Request) (any, error) {
	return map[string]any{
		"versions":          SpecVersions,
		"unstable_features": map[string]bool{"org.matrix.msc3814": true},
	}, nil
}

// getWellKnownClient serves GET /.well-known/matrix/client.
func (a *API) getWellKnownClient(r *http.Request) (any, error) {
	base := strings.TrimSuffix(a.Config.PublicBaseURL, "/")
	return map[string]any{"m.homeserver": map[string]string{"base_url": base}}, nil
}

// getCapabilities serves GET /_matrix/client/v3/capabilities.
func (a *API) getCapabilities(r *http.Request) (any, error) {
	return map[string]any{"capabilities": map[string]any{
		"m.change_password": map[string]bool{"enabled": true},
		"m.room_versions":   map[string]any{"default": a.Config.Rooms.DefaultVersion, "available": rooms.SupportedVersions},
		"m.set_displayname": map[string]bool{"enabled": true},
		"m.set_avatar_url":  map[string]bool{"enabled": true},
		"m.3pid_changes":    map[string]bool{"enabled": false},
		"m.get_login_token": map[string]bool{"enabled": false},
		"m.profile_fields":  map[string]any{"enabled": true, "disallowed": []string{}},
	}}, nil
}
