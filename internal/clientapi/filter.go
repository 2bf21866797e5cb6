package clientapi

import (
	"bytes"
	"encoding/json"
	"errors"
	"net/http"
	"strconv"

	"github.com/rempart-hs/rempart/internal/filter"
	"github.com/rempart-hs/rempart/internal/httpapi"
	"github.com/rempart-hs/rempart/internal/storage"
)

// Filters: stored sync filter definitions, private to their owner.

// maxFilterBytes bounds a stored filter definition.
const maxFilterBytes = 64 * 1024

func (a *API) routesFilter(rt *httpapi.Router) {
	rt.Authed(v3("POST", "/user/{userId}/filter"), a.postFilter)
	rt.Authed(v3("GET", "/user/{userId}/filter/{filterId}"), a.getFilter)
}

// filterOwner checks that the path's user is the requester.
func filterOwner(r *http.Request, verb string) (string, error) {
	req := httpapi.RequesterFrom(r.Context())
	if r.PathValue("userId") != req.UserID {
		return "", httpapi.Forbidden("cannot %s filters of other users", verb)
	}
	return req.UserID, nil
}

// postFilter serves POST /_matrix/client/v3/user/{userId}/filter.
func (a *API) postFilter(r *http.Request) (any, error) {
	userID, err := filterOwner(r, "create")
	if err != nil {
		return nil, err
	}
	body, err := httpapi.ReadBody(r, maxFilterBytes)
	if err != nil {
		return nil, err
	}
	if _, err := filter.Parse(body); err != nil {
		return nil, err
	}
	// Store the definition compacted, as the client wrote it.
	def, err := compactJSON(body)
	if err != nil {
		return nil, err
	}
	var id int64
	if err := a.DB.WithTx(r.Context(), func(tx *storage.Tx) error {
		id, err = tx.CreateFilter(r.Context(), userID, def)
		return err
	}); err != nil {
		return nil, err
	}
	return map[string]string{"filter_id": strconv.FormatInt(id, 10)}, nil
}

// getFilter serves GET /_matrix/client/v3/user/{userId}/filter/{filterId}.
func (a *API) getFilter(r *http.Request) (any, error) {
	userID, err := filterOwner(r, "read")
	if err != nil {
		return nil, err
	}
	id, err := strconv.ParseInt(r.PathValue("filterId"), 10, 64)
	if err != nil || id < 0 {
		return nil, httpapi.NotFound("unknown filter")
	}
	def, err := a.DB.GetFilter(r.Context(), userID, id)
	if errors.Is(err, storage.ErrNotFound) {
		return nil, httpapi.NotFound("unknown filter")
	}
	if err != nil {
		return nil, err
	}
	return json.RawMessage(def), nil
}

// compactJSON compacts an already checked JSON body ("" becomes {}).
func compactJSON(b []byte) ([]byte, error) {
	if len(bytes.TrimSpace(b)) == 0 {
		return []byte("{}"), nil
	}
	var buf bytes.Buffer
	if err := json.Compact(&buf, b); err != nil {
		return nil, httpapi.NotJSON("request body is not valid JSON")
	}
	return buf.Bytes(), nil
}
