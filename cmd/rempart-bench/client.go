package main

import (
	"bytes"
	"context"
	"crypto/hmac"
	"crypto/sha1"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strings"
	"time"
)

// client speaks the Client-Server API with plain net/http: the benchmark
// measures the server, so the client side stays as thin as possible.
type client struct {
	base string
	hc   *http.Client
}

func newClient(base string, timeout time.Duration) *client {
	tr := &http.Transport{
		Proxy:               nil,
		DialContext:         (&net.Dialer{Timeout: 10 * time.Second, KeepAlive: 30 * time.Second}).DialContext,
		MaxIdleConns:        0,
		MaxIdleConnsPerHost: 20000,
		IdleConnTimeout:     2 * time.Minute,
		DisableCompression:  true,
	}
	return &client{base: strings.TrimRight(base, "/"), hc: &http.Client{Transport: tr, Timeout: timeout}}
}

// matrixError is a non-2xx answer.
type matrixError struct {
	Status  int    `json:"-"`
	Errcode string `json:"errcode"`
	Message string `json:"error"`
}

func (e *matrixError) Error() string {
	return fmt.Sprintf("HTTP %d %s: %s", e.Status, e.Errcode, e.Message)
}

// answerError is the error of an answer with status and body: nil for a
// 2xx status, otherwise a *matrixError with what the body says.
func answerError(status int, body []byte) error {
	if status/100 == 2 {
		return nil
	}
	me := &matrixError{Status: status}
	_ = json.Unmarshal(body, me)
	return me
}

// unsupported reports whether err says the server lacks the endpoint.
func unsupported(err error) bool {
	var me *matrixError
	return errors.As(err, &me) && (me.Status == http.StatusNotFound || me.Status == http.StatusMethodNotAllowed) &&
		(me.Errcode == "M_UNRECOGNIZED" || me.Errcode == "")
}

// do sends a request with an optional JSON body and decodes a 2xx JSON
// answer into out (when not nil). It returns the response size in bytes.
func (c *client) do(ctx context.Context, method, path, token string, body, out any) (int, error) {
	var rd io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			return 0, err
		}
		rd = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(ctx, method, c.base+path, rd)
	if err != nil {
		return 0, err
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := c.hc.Do(req)
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return 0, err
	}
	if err := answerError(resp.StatusCode, b); err != nil {
		return len(b), err
	}
	if out != nil {
		if err := json.Unmarshal(b, out); err != nil {
			return len(b), fmt.Errorf("%s %s: decode answer: %w", method, path, err)
		}
	}
	return len(b), nil
}

// user is a registered account with an access token.
type user struct {
	ID        string
	Localpart string
	Token     string
}

// benchPassword is the password of every benchmark account.
const benchPassword = "rempart-bench-password"

// register creates an account, through the Synapse-compatible shared-secret
// API (HMAC-SHA1 over nonce, user, password and admin flag) when a secret
// is given, or through open registration with the dummy stage otherwise.
func (c *client) register(ctx context.Context, secret, localpart, displayName string) (*user, error) {
	var out struct {
		UserID      string `json:"user_id"`
		AccessToken string `json:"access_token"`
	}
	if secret != "" {
		var n struct {
			Nonce string `json:"nonce"`
		}
		if _, err := c.do(ctx, "GET", "/_synapse/admin/v1/register", "", nil, &n); err != nil {
			return nil, fmt.Errorf("get nonce: %w", err)
		}
		mac := hmac.New(sha1.New, []byte(secret))
		mac.Write([]byte(n.Nonce + "\x00" + localpart + "\x00" + benchPassword + "\x00notadmin"))
		body := map[string]any{"nonce": n.Nonce, "username": localpart, "password": benchPassword,
			"admin": false, "displayname": displayName, "mac": hex.EncodeToString(mac.Sum(nil))}
		if _, err := c.do(ctx, "POST", "/_synapse/admin/v1/register", "", body, &out); err != nil {
			if inUse(err) {
				return c.login(ctx, localpart)
			}
			return nil, fmt.Errorf("register %s: %w", localpart, err)
		}
	} else {
		body := map[string]any{"username": localpart, "password": benchPassword,
			"auth": map[string]any{"type": "m.login.dummy"}, "initial_device_display_name": "rempart-bench"}
		if _, err := c.do(ctx, "POST", "/_matrix/client/v3/register", "", body, &out); err != nil {
			if inUse(err) {
				return c.login(ctx, localpart)
			}
			return nil, fmt.Errorf("register %s: %w", localpart, err)
		}
		if displayName != "" {
			path := "/_matrix/client/v3/profile/" + url.PathEscape(out.UserID) + "/displayname"
			// Best effort: a server without profiles still gets its users.
			if _, err := c.do(ctx, "PUT", path, out.AccessToken, map[string]string{"displayname": displayName}, nil); err != nil && !unsupported(err) {
				return nil, fmt.Errorf("set display name of %s: %w", localpart, err)
			}
		}
	}
	return &user{ID: out.UserID, Localpart: localpart, Token: out.AccessToken}, nil
}

// inUse reports whether a registration failed because the account exists.
func inUse(err error) bool {
	var me *matrixError
	return errors.As(err, &me) && me.Errcode == "M_USER_IN_USE"
}

// login logs in to an account an interrupted earlier run registered (its
// token was not kept), so that a run can resume building a data set.
func (c *client) login(ctx context.Context, localpart string) (*user, error) {
	var out struct {
		UserID      string `json:"user_id"`
		AccessToken string `json:"access_token"`
	}
	body := map[string]any{"type": "m.login.password", "identifier": map[string]string{"type": "m.id.user", "user": localpart},
		"password": benchPassword, "initial_device_display_name": "rempart-bench"}
	if _, err := c.do(ctx, "POST", "/_matrix/client/v3/login", "", body, &out); err != nil {
		return nil, fmt.Errorf("log in to existing %s: %w", localpart, err)
	}
	return &user{ID: out.UserID, Localpart: localpart, Token: out.AccessToken}, nil
}

func (c *client) createRoom(ctx context.Context, u *user, name string) (string, error) {
	var out struct {
		RoomID string `json:"room_id"`
	}
	body := map[string]any{"preset": "public_chat", "name": name}
	if _, err := c.do(ctx, "POST", "/_matrix/client/v3/createRoom", u.Token, body, &out); err != nil {
		return "", fmt.Errorf("create room: %w", err)
	}
	return out.RoomID, nil
}

func (c *client) join(ctx context.Context, u *user, roomID string) error {
	_, err := c.do(ctx, "POST", "/_matrix/client/v3/rooms/"+url.PathEscape(roomID)+"/join", u.Token, map[string]any{}, nil)
	if err != nil {
		return fmt.Errorf("join %s: %w", roomID, err)
	}
	return nil
}

func (c *client) send(ctx context.Context, u *user, roomID, txnID string, content any) error {
	_, err := c.do(ctx, "PUT", sendPath(roomID, txnID), u.Token, content, nil)
	return err
}

// sendPath is the path of a message send (PUT).
func sendPath(roomID, txnID string) string {
	return "/_matrix/client/v3/rooms/" + url.PathEscape(roomID) + "/send/m.room.message/" + url.PathEscape(txnID)
}

// syncResponse is the part of a /sync answer the benchmark reads.
type syncResponse struct {
	NextBatch string `json:"next_batch"`
	Rooms     struct {
		Join map[string]struct {
			State struct {
				Events []json.RawMessage `json:"events"`
			} `json:"state"`
			UnreadNotifications struct {
				NotificationCount *int `json:"notification_count"`
			} `json:"unread_notifications"`
			Timeline struct {
				Events []struct {
					Type    string `json:"type"`
					Content struct {
						Run string `json:"bench_run"`
						Seq *int64 `json:"bench_seq"`
					} `json:"content"`
				} `json:"events"`
			} `json:"timeline"`
		} `json:"join"`
	} `json:"rooms"`
}

func (c *client) sync(ctx context.Context, u *user, since, filter string, timeout time.Duration) (*syncResponse, int, error) {
	q := url.Values{}
	if since != "" {
		q.Set("since", since)
	}
	if filter != "" {
		q.Set("filter", filter)
	}
	q.Set("timeout", fmt.Sprint(timeout.Milliseconds()))
	var out syncResponse
	n, err := c.do(ctx, "GET", "/_matrix/client/v3/sync?"+q.Encode(), u.Token, nil, &out)
	if err != nil {
		return nil, n, err
	}
	return &out, n, nil
}

// waitReady polls GET /_matrix/client/versions until it answers 200.
func (c *client) waitReady(ctx context.Context, limit time.Duration) error {
	ctx, cancel := context.WithTimeout(ctx, limit)
	defer cancel()
	for {
		rctx, rcancel := context.WithTimeout(ctx, time.Second)
		_, err := c.do(rctx, "GET", "/_matrix/client/versions", "", nil, nil)
		rcancel()
		if err == nil {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("server at %s not ready after %s: %w", c.base, limit, err)
		case <-time.After(5 * time.Millisecond):
		}
	}
}
