package clientapi

import "github.com/rempart-hs/rempart/internal/httpapi"

func (a *API) routesUserDirectory(rt *httpapi.Router) {}
