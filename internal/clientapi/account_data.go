package clientapi

import (
	"encoding/json"
	"errors"
	"net/http"
	"strings"

	"github.com/rempart-hs/rempart/internal/httpapi"
	"github.com/rempart-hs/rempart/internal/storage"
)

// Client config (account data) and room tagging: per-user data, global or
// per room, that only its owner may read or write. Room tags are the room
// account data of type m.tag.

// maxAccountDataType bounds the event type of account data.
const maxAccountDataType = 255

// maxTagBytes is the spec's limit on a tag name.
const maxTagBytes = 255

func (a *API) routesAccountData(rt *httpapi.Router) {
	rt.Authed(v3("GET", "/user/{userId}/account_data/{type}"), a.getAccountData)
	rt.Authed(v3("PUT", "/user/{userId}/account_data/{type}"), a.putAccountData)
	rt.Authed(v3("GET", "/user/{userId}/rooms/{roomId}/account_data/{type}"), a.getAccountData)
	rt.Authed(v3("PUT", "/user/{userId}/rooms/{roomId}/account_data/{type}"), a.putAccountData)
	rt.Authed(v3("GET", "/user/{userId}/rooms/{roomId}/tags"), a.getTags)
	rt.Authed(v3("PUT", "/user/{userId}/rooms/{roomId}/tags/{tag}"), a.putTag)
	rt.Authed(v3("DELETE", "/user/{userId}/rooms/{roomId}/tags/{tag}"), a.deleteTag)
}

// accountDataTarget checks that the path's user is the requester and
// returns the user, the room ("" for global data; validated when the
// pattern has {roomId}) and, when the pattern has {type}, the type.
func accountDataTarget(r *http.Request, verb string) (userID, roomID string, err error) {
	req := httpapi.RequesterFrom(r.Context())
	if r.PathValue("userId") != req.UserID {
		return "", "", httpapi.Forbidden("cannot %s account data of other users", verb)
	}
	if strings.Contains(r.Pattern, "{roomId}") {
		if roomID, err = pathRoomID(r); err != nil {
			return "", "", httpapi.InvalidParam("%q is not a valid room ID", r.PathValue("roomId"))
		}
	}
	return req.UserID, roomID, nil
}

// accountDataType returns the validated {type} path parameter.
func accountDataType(r *http.Request) (string, error) {
	t := r.PathValue("type")
	if t == "" || len(t) > maxAccountDataType {
		return "", httpapi.InvalidParam("account data type must be 1 to %d bytes", maxAccountDataType)
	}
	return t, nil
}

// getAccountData serves GET /_matrix/client/v3/user/{userId}/account_data/{type}
// and GET /_matrix/client/v3/user/{userId}/rooms/{roomId}/account_data/{type}.
func (a *API) getAccountData(r *http.Request) (any, error) {
	userID, roomID, err := accountDataTarget(r, "read")
	if err != nil {
		return nil, err
	}
	typ, err := accountDataType(r)
	if err != nil {
		return nil, err
	}
	c, err := a.DB.GetAccountData(r.Context(), userID, roomID, typ)
	if errors.Is(err, storage.ErrNotFound) {
		if roomID != "" {
			return nil, httpapi.NotFound("room account data not found")
		}
		return nil, httpapi.NotFound("account data not found")
	}
	if err != nil {
		return nil, err
	}
	return c, nil
}

// putAccountData serves PUT /_matrix/client/v3/user/{userId}/account_data/{type}
// and PUT /_matrix/client/v3/user/{userId}/rooms/{roomId}/account_data/{type}.
func (a *API) putAccountData(r *http.Request) (any, error) {
	userID, roomID, err := accountDataTarget(r, "set")
	if err != nil {
		return nil, err
	}
	typ, err := accountDataType(r)
	if err != nil {
		return nil, err
	}
	// Types the server manages: m.fully_read goes through read markers,
	// m.push_rules through the push rules API.
	if typ == "m.fully_read" || typ == "m.push_rules" {
		return nil, &httpapi.Error{Status: http.StatusMethodNotAllowed, Code: "M_BAD_JSON",
			Message: "cannot set " + typ + " through this API"}
	}
	content, err := readJSONObject(r)
	if err != nil {
		return nil, err
	}
	if err := a.DB.WithTx(r.Context(), func(tx *storage.Tx) error {
		_, err := tx.PutAccountData(r.Context(), userID, roomID, typ, content)
		return err
	}); err != nil {
		return nil, err
	}
	a.Notifier.WakeUsers(userID)
	return struct{}{}, nil
}

// readJSONObject reads a request body that must be a JSON object and
// returns it compacted.
func readJSONObject(r *http.Request) ([]byte, error) {
	var obj map[string]json.RawMessage
	if err := httpapi.DecodeJSON(r, &obj); err != nil {
		return nil, err
	}
	if obj == nil { // the body was JSON null
		return nil, httpapi.BadJSON("content must be a JSON object")
	}
	return json.Marshal(obj)
}

// tagsContent is the content of an m.tag event.
type tagsContent struct {
	Tags map[string]map[string]json.RawMessage `json:"tags"`
}

// tagTarget validates the path of a tag request.
func tagTarget(r *http.Request, verb string) (userID, roomID, tag string, err error) {
	if userID, roomID, err = accountDataTarget(r, verb); err != nil {
		return
	}
	tag = r.PathValue("tag")
	if tag == "" || len(tag) > maxTagBytes {
		return "", "", "", httpapi.InvalidParam("tag must be 1 to %d bytes", maxTagBytes)
	}
	return
}

// getTags serves GET /_matrix/client/v3/user/{userId}/rooms/{roomId}/tags.
func (a *API) getTags(r *http.Request) (any, error) {
	userID, roomID, err := accountDataTarget(r, "read")
	if err != nil {
		return nil, err
	}
	c, err := a.DB.GetAccountData(r.Context(), userID, roomID, "m.tag")
	if errors.Is(err, storage.ErrNotFound) {
		return map[string]any{"tags": map[string]any{}}, nil
	}
	if err != nil {
		return nil, err
	}
	return decodeTags(c), nil
}

// decodeTags parses stored m.tag content, tolerating anything malformed
// (it may have been set through the account data API).
func decodeTags(c []byte) tagsContent {
	var t tagsContent
	_ = json.Unmarshal(c, &t)
	if t.Tags == nil {
		t.Tags = map[string]map[string]json.RawMessage{}
	}
	for k, v := range t.Tags {
		if v == nil {
			t.Tags[k] = map[string]json.RawMessage{}
		}
	}
	return t
}

// putTag serves PUT /_matrix/client/v3/user/{userId}/rooms/{roomId}/tags/{tag}.
func (a *API) putTag(r *http.Request) (any, error) {
	userID, roomID, tag, err := tagTarget(r, "set")
	if err != nil {
		return nil, err
	}
	var body map[string]json.RawMessage
	if err := httpapi.DecodeJSON(r, &body); err != nil {
		return nil, err
	}
	if body == nil {
		return nil, httpapi.BadJSON("tag content must be a JSON object")
	}
	if o, ok := body["order"]; ok {
		var order float64
		if err := json.Unmarshal(o, &order); err != nil {
			return nil, httpapi.BadJSON("order must be a number")
		}
	}
	return a.updateTags(r, userID, roomID, func(t *tagsContent) { t.Tags[tag] = body })
}

// deleteTag serves DELETE /_matrix/client/v3/user/{userId}/rooms/{roomId}/tags/{tag}.
func (a *API) deleteTag(r *http.Request) (any, error) {
	userID, roomID, tag, err := tagTarget(r, "delete")
	if err != nil {
		return nil, err
	}
	return a.updateTags(r, userID, roomID, func(t *tagsContent) { delete(t.Tags, tag) })
}

// updateTags applies change to the room's m.tag account data in one
// transaction and wakes the user's syncs.
func (a *API) updateTags(r *http.Request, userID, roomID string, change func(*tagsContent)) (any, error) {
	ctx := r.Context()
	err := a.DB.WithTx(ctx, func(tx *storage.Tx) error {
		if _, err := tx.LockUser(ctx, userID); err != nil {
			return err
		}
		c, err := tx.GetAccountData(ctx, userID, roomID, "m.tag")
		if err != nil && !errors.Is(err, storage.ErrNotFound) {
			return err
		}
		t := decodeTags(c)
		change(&t)
		b, err := json.Marshal(t)
		if err != nil {
			return err
		}
		if len(b) > httpapi.MaxBodyBytes {
			return httpapi.TooLarge("too many tags on this room")
		}
		_, err = tx.PutAccountData(ctx, userID, roomID, "m.tag", b)
		return err
	})
	if err != nil {
		return nil, err
	}
	a.Notifier.WakeUsers(userID)
	return struct{}{}, nil
}
