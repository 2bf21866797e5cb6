package conformance

import (
	"bytes"
	"image"
	"image/color"
	"image/png"
	"io"
	"mime"
	"net/http"
	"strings"
	"testing"

	"github.com/rempart-hs/rempart/internal/config"
)

// mediaReq sends a raw (non-JSON) media request and validates a JSON
// response body against the spec when there is one.
func (e *env) mediaReq(method, path, token, contentType string, body []byte, wantStatus int) response {
	e.t.Helper()
	var rd io.Reader
	if body != nil {
		rd = bytes.NewReader(body)
	}
	req, err := http.NewRequest(method, e.srv.URL+path, rd)
	if err != nil {
		e.t.Fatal(err)
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	if contentType != "" {
		req.Header.Set("Content-Type", contentType)
	}
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		e.t.Fatalf("%s %s: %v", method, path, err)
	}
	defer res.Body.Close()
	b, _ := io.ReadAll(res.Body)
	resp := response{Status: res.StatusCode, Body: b, Header: res.Header}
	if resp.Status != wantStatus {
		e.t.Fatalf("%s %s: status %d, want %d: %s", method, path, resp.Status, wantStatus, b)
	}
	if strings.HasPrefix(res.Header.Get("Content-Type"), "application/json") {
		e.validate(method, path, resp)
	}
	return resp
}

func (e *env) mediaErr(method, path, token, contentType string, body []byte, wantStatus int, code string) {
	e.t.Helper()
	r := e.mediaReq(method, path, token, contentType, body, wantStatus)
	if got, _ := r.JSON(e.t)["errcode"].(string); got != code {
		e.t.Fatalf("%s %s: errcode %q, want %q", method, path, got, code)
	}
}

func testPNG(t *testing.T, w, h int) []byte {
	t.Helper()
	img := image.NewRGBA(image.Rect(0, 0, w, h))
	for y := 0; y < h; y++ {
		for x := 0; x < w; x++ {
			img.Set(x, y, color.RGBA{uint8(x), uint8(y), 128, 255})
		}
	}
	var buf bytes.Buffer
	if err := png.Encode(&buf, img); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

// Content repository (spec module "Content repository"): the
// authenticated endpoints under /_matrix/client/v1/media, uploads under
// /_matrix/media, and the deprecated unauthenticated endpoints.
func TestContentRepository(t *testing.T) {
	e := newEnv(t, func(c *config.Config) { c.Media.MaxUploadSize = 64 << 10 })
	u := e.register("media")
	srv := e.srv.Config.ServerName

	// Upload and the mxc URI.
	up := e.mediaReq("POST", "/_matrix/media/v3/upload?filename=hello.txt", u.Token, "text/plain", []byte("hello media"), 200).JSON(t)
	uri, _ := up["content_uri"].(string)
	id, ok := strings.CutPrefix(uri, "mxc://"+srv+"/")
	if !ok {
		t.Fatalf("content_uri %q", uri)
	}

	// Download: authenticated, with the spec's headers.
	dl := e.mediaReq("GET", "/_matrix/client/v1/media/download/"+srv+"/"+id, u.Token, "", nil, 200)
	if string(dl.Body) != "hello media" {
		t.Fatalf("download body %q", dl.Body)
	}
	disp, params, err := mime.ParseMediaType(dl.Header.Get("Content-Disposition"))
	if err != nil || disp != "inline" || params["filename"] != "hello.txt" {
		t.Fatalf("Content-Disposition %q", dl.Header.Get("Content-Disposition"))
	}
	dl = e.mediaReq("GET", "/_matrix/client/v1/media/download/"+srv+"/"+id+"/other.txt", u.Token, "", nil, 200)
	if _, params, _ := mime.ParseMediaType(dl.Header.Get("Content-Disposition")); params["filename"] != "other.txt" {
		t.Fatalf("override filename: %q", dl.Header.Get("Content-Disposition"))
	}

	// Thumbnails: inline, an image type of the spec's list.
	pu := e.mediaReq("POST", "/_matrix/media/v3/upload", u.Token, "image/png", testPNG(t, 200, 100), 200).JSON(t)
	pid := strings.TrimPrefix(pu["content_uri"].(string), "mxc://"+srv+"/")
	th := e.mediaReq("GET", "/_matrix/client/v1/media/thumbnail/"+srv+"/"+pid+"?width=32&height=32&method=crop", u.Token, "", nil, 200)
	if ct := th.Header.Get("Content-Type"); ct != "image/png" {
		t.Fatalf("thumbnail Content-Type %q", ct)
	}
	if d, _, _ := mime.ParseMediaType(th.Header.Get("Content-Disposition")); d != "inline" {
		t.Fatalf("thumbnail Content-Disposition %q", th.Header.Get("Content-Disposition"))
	}
	e.mediaErr("GET", "/_matrix/client/v1/media/thumbnail/"+srv+"/"+pid+"?width=abc&height=32", u.Token, "", nil, 400, "M_INVALID_PARAM")
	e.mediaErr("GET", "/_matrix/client/v1/media/thumbnail/"+srv+"/"+pid+"?height=32", u.Token, "", nil, 400, "M_MISSING_PARAM")
	e.mediaErr("GET", "/_matrix/client/v1/media/thumbnail/"+srv+"/"+id+"?width=32&height=32", u.Token, "", nil, 400, "M_UNKNOWN")

	// Config.
	cfg := e.do("GET", "/_matrix/client/v1/media/config", u.Token, nil, 200).JSON(t)
	if cfg["m.upload.size"] != float64(64<<10) {
		t.Fatalf("m.upload.size %v", cfg["m.upload.size"])
	}
	e.do("GET", "/_matrix/media/v3/config", u.Token, nil, 200)

	// Asynchronous upload.
	cr := e.do("POST", "/_matrix/media/v1/create", u.Token, nil, 200).JSON(t)
	aid := strings.TrimPrefix(cr["content_uri"].(string), "mxc://"+srv+"/")
	if _, ok := cr["unused_expires_at"].(float64); !ok {
		t.Fatalf("create: no unused_expires_at: %v", cr)
	}
	e.mediaErr("GET", "/_matrix/client/v1/media/download/"+srv+"/"+aid+"?timeout_ms=50", u.Token, "", nil, 504, "M_NOT_YET_UPLOADED")
	other := e.register("mediaother")
	e.mediaErr("PUT", "/_matrix/media/v3/upload/"+srv+"/"+aid, other.Token, "text/plain", []byte("x"), 403, "M_FORBIDDEN")
	e.mediaReq("PUT", "/_matrix/media/v3/upload/"+srv+"/"+aid, u.Token, "text/plain", []byte("later"), 200)
	e.mediaErr("PUT", "/_matrix/media/v3/upload/"+srv+"/"+aid, u.Token, "text/plain", []byte("again"), 409, "M_CANNOT_OVERWRITE_MEDIA")
	e.mediaErr("PUT", "/_matrix/media/v3/upload/"+srv+"/nosuchid", u.Token, "text/plain", []byte("x"), 404, "M_NOT_FOUND")
	if b := e.mediaReq("GET", "/_matrix/client/v1/media/download/"+srv+"/"+aid, other.Token, "", nil, 200).Body; string(b) != "later" {
		t.Fatalf("async download %q", b)
	}

	// Errors.
	e.mediaErr("POST", "/_matrix/media/v3/upload", u.Token, "application/octet-stream", make([]byte, 64<<10+1), 413, "M_TOO_LARGE")
	e.mediaErr("GET", "/_matrix/client/v1/media/download/"+srv+"/nosuchmedia", u.Token, "", nil, 404, "M_NOT_FOUND")
	e.mediaErr("GET", "/_matrix/client/v1/media/download/other.example/"+id, u.Token, "", nil, 404, "M_NOT_FOUND")
	e.mediaErr("GET", "/_matrix/client/v1/media/download/"+srv+"/..%2F..%2Fetc", u.Token, "", nil, 404, "M_NOT_FOUND")

	// Authentication required on every authenticated path.
	for _, p := range []struct{ method, path string }{
		{"POST", "/_matrix/media/v3/upload"},
		{"POST", "/_matrix/media/v1/create"},
		{"PUT", "/_matrix/media/v3/upload/" + srv + "/" + aid},
		{"GET", "/_matrix/client/v1/media/download/" + srv + "/" + id},
		{"GET", "/_matrix/client/v1/media/download/" + srv + "/" + id + "/f.txt"},
		{"GET", "/_matrix/client/v1/media/thumbnail/" + srv + "/" + pid + "?width=32&height=32"},
		{"GET", "/_matrix/client/v1/media/config"},
		{"GET", "/_matrix/media/v3/config"},
	} {
		e.mediaErr(p.method, p.path, "", "text/plain", nil, 401, "M_MISSING_TOKEN")
		e.mediaErr(p.method, p.path, "not-a-token", "text/plain", nil, 401, "M_UNKNOWN_TOKEN")
	}

	// Legacy unauthenticated endpoints: 404 M_NOT_FOUND, with or without a token.
	for _, p := range []string{
		"/_matrix/media/v3/download/" + srv + "/" + id,
		"/_matrix/media/v3/download/" + srv + "/" + id + "/hello.txt",
		"/_matrix/media/v3/thumbnail/" + srv + "/" + pid + "?width=32&height=32",
		"/_matrix/media/r0/download/" + srv + "/" + id,
	} {
		e.mediaErr("GET", p, "", "", nil, 404, "M_NOT_FOUND")
		e.mediaErr("GET", p, u.Token, "", nil, 404, "M_NOT_FOUND")
	}
	// preview_url is off by default.
	e.mediaErr("GET", "/_matrix/client/v1/media/preview_url?url=https%3A%2F%2Fexample.org", u.Token, "", nil, 404, "M_UNRECOGNIZED")
}

// The deprecated endpoints serve media when the operator turns them on.
func TestContentRepositoryLegacyEnabled(t *testing.T) {
	e := newEnv(t, func(c *config.Config) { c.Media.LegacyUnauthenticated = true })
	u := e.register("legacy")
	srv := e.srv.Config.ServerName
	up := e.mediaReq("POST", "/_matrix/media/v3/upload", u.Token, "text/plain", []byte("old client"), 200).JSON(t)
	id := strings.TrimPrefix(up["content_uri"].(string), "mxc://"+srv+"/")
	if b := e.mediaReq("GET", "/_matrix/media/v3/download/"+srv+"/"+id, "", "", nil, 200).Body; string(b) != "old client" {
		t.Fatalf("legacy download %q", b)
	}
}
