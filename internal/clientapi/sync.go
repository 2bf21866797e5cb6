package clientapi

import (
	"github.com/rempart-hs/rempart/internal/httpapi"
)

func (a *API) routesSync(rt *httpapi.Router) {
	rt.Authed(v3("GET", "/sync"), a.Sync.Handle)
}
