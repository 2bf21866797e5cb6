package clientapi

import "github.com/rempart-hs/rempart/internal/httpapi"

func (a *API) routesProfile(rt *httpapi.Router) {}
