package clientapi

import (
	"net/http"

	"github.com/rempart-hs/rempart/internal/httpapi"
)

func (a *API) routesUserDirectory(rt *httpapi.Router) {
	rt.Authed(v3("POST", "/user_directory/search"), a.postUserDirectorySearch)
}

// maxSearchTermBytes bounds a user directory search term.
const maxSearchTermBytes = 256

// directoryUser is one user directory search result.
type directoryUser struct {
	UserID      string `json:"user_id"`
	DisplayName string `json:"display_name,omitempty"`
	AvatarURL   string `json:"avatar_url,omitempty"`
}

// postUserDirectorySearch serves POST /_matrix/client/v3/user_directory/search.
// Who may be found is decided by policy.UserSearch (threat model T1): by
// default only users sharing a room with the searcher, for terms of at
// least user_directory.min_search_length characters, at most
// user_directory.max_results at a time.
func (a *API) postUserDirectorySearch(r *http.Request) (any, error) {
	ctx := r.Context()
	req := httpapi.RequesterFrom(ctx)
	var body struct {
		SearchTerm *string `json:"search_term"`
		Limit      *int64  `json:"limit"`
	}
	if err := httpapi.DecodeJSON(r, &body); err != nil {
		return nil, err
	}
	if body.SearchTerm == nil {
		return nil, httpapi.BadJSON("missing search_term")
	}
	if len(*body.SearchTerm) > maxSearchTermBytes {
		return nil, httpapi.InvalidParam("search_term is longer than %d bytes", maxSearchTermBytes)
	}
	limit := int64(10)
	if body.Limit != nil {
		if *body.Limit < 0 {
			return nil, httpapi.InvalidParam("limit must not be negative")
		}
		limit = *body.Limit
	}
	results := []directoryUser{}
	resp := map[string]any{"results": results, "limited": false}
	if limit == 0 {
		return resp, nil
	}
	q, ok := a.Policy.UserSearch(req, *body.SearchTerm, int(min(limit, 1000)))
	if !ok {
		return resp, nil
	}
	want := q.Limit
	q.Limit = want + 1 // one more tells whether the list was truncated
	users, err := a.DB.SearchUsers(ctx, q)
	if err != nil {
		return nil, err
	}
	if len(users) > want {
		users = users[:want]
		resp["limited"] = true
	}
	for _, u := range users {
		results = append(results, directoryUser{UserID: u.UserID, DisplayName: u.DisplayName, AvatarURL: u.AvatarURL})
	}
	resp["results"] = results
	return resp, nil
}
