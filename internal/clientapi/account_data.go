package clientapi

import "github.com/rempart-hs/rempart/internal/httpapi"

func (a *API) routesAccountData(rt *httpapi.Router) {}
