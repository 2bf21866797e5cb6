package integration

import (
	"bufio"
	"bytes"
	"context"
	"crypto/ecdh"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"image"
	"image/color"
	"image/gif"
	"image/jpeg"
	"image/png"
	"io"
	"io/fs"
	"mime"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"maunium.net/go/mautrix"
	"maunium.net/go/mautrix/crypto/attachment"
	"maunium.net/go/mautrix/crypto/backup"
	"maunium.net/go/mautrix/id"

	"github.com/rempart-hs/rempart/internal/config"
	"github.com/rempart-hs/rempart/internal/media/clamdtest"
	"github.com/rempart-hs/rempart/internal/storage"
	"github.com/rempart-hs/rempart/internal/testserver"
)

// mediaGet sends an authenticated (when token is set) GET and returns the
// response with its body read.
func mediaDo(t *testing.T, method, u, token, ctype string, body []byte, hdr map[string]string) (*http.Response, []byte) {
	t.Helper()
	var rd io.Reader
	if body != nil {
		rd = bytes.NewReader(body)
	}
	req, err := http.NewRequest(method, u, rd)
	if err != nil {
		t.Fatal(err)
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	if ctype != "" {
		req.Header.Set("Content-Type", ctype)
	}
	for k, v := range hdr {
		req.Header.Set(k, v)
	}
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, u, err)
	}
	defer res.Body.Close()
	b, _ := io.ReadAll(res.Body)
	return res, b
}

func errcode(b []byte) string {
	var m struct {
		Errcode string `json:"errcode"`
	}
	_ = json.Unmarshal(b, &m)
	return m.Errcode
}

func wantErr(t *testing.T, res *http.Response, body []byte, status int, code string) {
	t.Helper()
	if res.StatusCode != status || errcode(body) != code {
		t.Fatalf("%s %s: got %d %s, want %d %s", res.Request.Method, res.Request.URL.Path, res.StatusCode, body, status, code)
	}
}

// storedFiles lists the content files under the media root (not tmp).
func storedFiles(t *testing.T, srv *testserver.Server) []string {
	t.Helper()
	root := srv.Config.MediaPath()
	var out []string
	_ = filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err == nil && !d.IsDir() {
			out = append(out, strings.TrimPrefix(p, root))
		}
		return nil
	})
	return out
}

func upload(t *testing.T, cli *mautrix.Client, data []byte, ctype, name string) id.ContentURI {
	t.Helper()
	resp, err := cli.UploadMedia(context.Background(), mautrix.ReqUploadMedia{ContentBytes: data, ContentType: ctype, FileName: name})
	if err != nil {
		t.Fatalf("upload: %v", err)
	}
	return resp.ContentURI
}

func downloadURL(srv *testserver.Server, uri id.ContentURI) string {
	return srv.URL + "/_matrix/client/v1/media/download/" + uri.Homeserver + "/" + uri.FileID
}

// TestMediaRoundTrip: real clients upload and download; identical content
// is stored once; headers keep a browser from running what it serves.
func TestMediaRoundTrip(t *testing.T) {
	srv := testserver.Start(t)
	alice, bob := srv.RegisterUser("alice"), srv.RegisterUser("bob")
	ctx := context.Background()

	name := "résumé 履歴書 \"quoted\".txt"
	uri := upload(t, alice, []byte("bonjour"), "text/plain; charset=utf-8", name)
	got, err := bob.DownloadBytes(ctx, uri)
	if err != nil || string(got) != "bonjour" {
		t.Fatalf("download: %q %v", got, err)
	}
	res, _ := mediaDo(t, "GET", downloadURL(srv, uri), bob.AccessToken, "", nil, nil)
	h := res.Header
	if h.Get("Content-Type") != "text/plain; charset=utf-8" || h.Get("X-Content-Type-Options") != "nosniff" ||
		h.Get("Cross-Origin-Resource-Policy") != "cross-origin" || !strings.HasPrefix(h.Get("Content-Security-Policy"), "sandbox; default-src 'none'") {
		t.Fatalf("unsafe headers: %v", h)
	}
	if d, p, err := mime.ParseMediaType(h.Get("Content-Disposition")); err != nil || d != "inline" || p["filename"] != name {
		t.Fatalf("Content-Disposition %q (%v): %v", h.Get("Content-Disposition"), err, p)
	}

	// Active content is served as an opaque attachment.
	for _, ct := range []string{"text/html", "image/svg+xml", "application/javascript", "text/xml"} {
		u := upload(t, alice, []byte("<script>alert(1)</script>"), ct, "x")
		res, _ := mediaDo(t, "GET", downloadURL(srv, u), bob.AccessToken, "", nil, nil)
		if res.Header.Get("Content-Type") != "application/octet-stream" || !strings.HasPrefix(res.Header.Get("Content-Disposition"), "attachment") {
			t.Fatalf("%s served as %q, %q", ct, res.Header.Get("Content-Type"), res.Header.Get("Content-Disposition"))
		}
	}
	// PDF keeps its type but is an attachment.
	u := upload(t, alice, []byte("%PDF-1.4\n"), "application/pdf", "doc.pdf")
	res, _ = mediaDo(t, "GET", downloadURL(srv, u), bob.AccessToken, "", nil, nil)
	if res.Header.Get("Content-Type") != "application/pdf" || !strings.HasPrefix(res.Header.Get("Content-Disposition"), "attachment") {
		t.Fatalf("pdf served as %q, %q", res.Header.Get("Content-Type"), res.Header.Get("Content-Disposition"))
	}

	// Identical uploads are stored once; the root is private.
	before := len(storedFiles(t, srv))
	u1 := upload(t, alice, []byte("same bytes"), "text/plain", "")
	u2 := upload(t, bob, []byte("same bytes"), "text/plain", "")
	if u1 == u2 {
		t.Fatal("two uploads got the same media ID")
	}
	if n := len(storedFiles(t, srv)); n != before+1 {
		t.Fatalf("identical uploads stored %d times", n-before)
	}
	st, err := os.Stat(srv.Config.MediaPath())
	if err != nil || st.Mode().Perm()&0o077 != 0 {
		t.Fatalf("media root mode %v (%v)", st.Mode(), err)
	}

	// Range requests (audio/video seeking).
	vid := bytes.Repeat([]byte("0123456789"), 100)
	vu := upload(t, alice, vid, "video/mp4", "clip.mp4")
	res, b := mediaDo(t, "GET", downloadURL(srv, vu), bob.AccessToken, "", nil, map[string]string{"Range": "bytes=10-19"})
	if res.StatusCode != http.StatusPartialContent || string(b) != string(vid[10:20]) || res.Header.Get("Content-Range") != "bytes 10-19/1000" {
		t.Fatalf("range: %d %q %q", res.StatusCode, b, res.Header.Get("Content-Range"))
	}

	// Survives a restart.
	srv.Restart()
	if got, err := bob.DownloadBytes(ctx, uri); err != nil || string(got) != "bonjour" {
		t.Fatalf("after restart: %q %v", got, err)
	}
}

// TestMediaUnauthenticated: no media byte without an access token, on any
// media path.
func TestMediaUnauthenticated(t *testing.T) {
	srv := testserver.Start(t, func(c *config.Config) {
		c.Media.ContentScanner.Enabled = true
		c.Media.Antivirus.Clamd = "unix:/nonexistent/clamd.sock"
		c.Media.Antivirus.FailOpen = true
	})
	alice := srv.RegisterUser("alice")
	uri := upload(t, alice, testPNG(t, 64, 64), "image/png", "a.png")
	s, m := uri.Homeserver, uri.FileID
	for _, p := range []string{
		"/_matrix/client/v1/media/download/" + s + "/" + m,
		"/_matrix/client/v1/media/download/" + s + "/" + m + "/a.png",
		"/_matrix/client/v1/media/thumbnail/" + s + "/" + m + "?width=32&height=32",
		"/_matrix/media_proxy/unstable/download/" + s + "/" + m,
		"/_matrix/media_proxy/unstable/scan/" + s + "/" + m,
		"/_matrix/media_proxy/unstable/thumbnail/" + s + "/" + m + "?width=32&height=32",
	} {
		res, b := mediaDo(t, "GET", srv.URL+p, "", "", nil, nil)
		wantErr(t, res, b, 401, "M_MISSING_TOKEN")
		res, _ = mediaDo(t, "GET", srv.URL+p+"?access_token=bogus", "", "", nil, nil)
		if res.StatusCode != 401 {
			t.Fatalf("%s with a bogus token: %d", p, res.StatusCode)
		}
	}
	for _, p := range []string{
		"/_matrix/media/v3/download/" + s + "/" + m,
		"/_matrix/media/v3/download/" + s + "/" + m + "/a.png",
		"/_matrix/media/v3/thumbnail/" + s + "/" + m + "?width=32&height=32",
		"/_matrix/media/r0/download/" + s + "/" + m,
		"/_matrix/media/r0/thumbnail/" + s + "/" + m + "?width=32&height=32",
	} {
		res, b := mediaDo(t, "GET", srv.URL+p, "", "", nil, nil)
		wantErr(t, res, b, 404, "M_NOT_FOUND")
	}
	for _, p := range []string{"/_matrix/media_proxy/unstable/scan_encrypted", "/_matrix/media_proxy/unstable/download_encrypted",
		"/_matrix/media/v3/upload", "/_matrix/media/v1/create"} {
		res, b := mediaDo(t, "POST", srv.URL+p, "", "application/json", []byte(`{}`), nil)
		wantErr(t, res, b, 401, "M_MISSING_TOKEN")
	}
	res, b := mediaDo(t, "GET", srv.URL+"/_matrix/media/v7/download/"+s+"/"+m, "", "", nil, nil)
	if res.StatusCode != 404 || bytes.Contains(b, []byte("PNG")) {
		t.Fatalf("unknown media path: %d %q", res.StatusCode, b)
	}
}

func testPNG(t *testing.T, w, h int) []byte {
	t.Helper()
	img := image.NewRGBA(image.Rect(0, 0, w, h))
	for y := 0; y < h; y++ {
		for x := 0; x < w; x++ {
			img.Set(x, y, color.RGBA{uint8(x * 7), uint8(y * 3), 90, 255})
		}
	}
	var buf bytes.Buffer
	if err := png.Encode(&buf, img); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

// hugePNGHeader is a valid PNG signature and IHDR claiming 30000×30000
// pixels, followed by nothing: a decompression-bomb shape.
func hugePNGHeader() []byte {
	var buf bytes.Buffer
	img := image.NewGray(image.Rect(0, 0, 1, 1))
	_ = png.Encode(&buf, img)
	b := buf.Bytes()
	// IHDR width/height at offsets 16..23; patch and fix the CRC.
	out := append([]byte{}, b[:33]...)
	for i, v := range []uint32{30000, 30000} {
		out[16+4*i] = byte(v >> 24)
		out[17+4*i] = byte(v >> 16)
		out[18+4*i] = byte(v >> 8)
		out[19+4*i] = byte(v)
	}
	crc := crc32IEEE(out[12:29])
	out[29], out[30], out[31], out[32] = byte(crc>>24), byte(crc>>16), byte(crc>>8), byte(crc)
	return out
}

func crc32IEEE(b []byte) uint32 {
	crc := ^uint32(0)
	for _, c := range b {
		crc ^= uint32(c)
		for k := 0; k < 8; k++ {
			if crc&1 != 0 {
				crc = crc>>1 ^ 0xEDB88320
			} else {
				crc >>= 1
			}
		}
	}
	return ^crc
}

// TestMediaThumbnails: crop and scale from JPEG, PNG and GIF (animated when
// asked), refusal of bombs and broken images, and caching.
func TestMediaThumbnails(t *testing.T) {
	srv := testserver.Start(t, func(c *config.Config) { c.Media.Thumbnails.MaxSourcePixels = 16_000_000 })
	alice := srv.RegisterUser("alice")
	ctx := context.Background()
	thumb := func(uri id.ContentURI, q string) (*http.Response, []byte) {
		return mediaDo(t, "GET", srv.URL+"/_matrix/client/v1/media/thumbnail/"+uri.Homeserver+"/"+uri.FileID+"?"+q, alice.AccessToken, "", nil, nil)
	}

	// A 12 MP JPEG, fast enough.
	big := image.NewYCbCr(image.Rect(0, 0, 4000, 3000), image.YCbCrSubsampleRatio420)
	for i := range big.Y {
		big.Y[i] = uint8(i)
	}
	var jb bytes.Buffer
	if err := jpeg.Encode(&jb, big, &jpeg.Options{Quality: 50}); err != nil {
		t.Fatal(err)
	}
	ju := upload(t, alice, jb.Bytes(), "image/jpeg", "photo.jpg")
	start := time.Now()
	resp, err := alice.DownloadThumbnail(ctx, ju, 240, 320, mautrix.DownloadThumbnailExtra{Method: "scale"})
	if err != nil {
		t.Fatal(err)
	}
	tb, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	took := time.Since(start)
	cfg, format, err := image.DecodeConfig(bytes.NewReader(tb))
	if err != nil || format != "jpeg" || cfg.Width != 320 || cfg.Height != 240 {
		t.Fatalf("jpeg scale thumbnail: %v %s %dx%d", err, format, cfg.Width, cfg.Height)
	}
	t.Logf("12 MP JPEG thumbnail in %v", took)
	// Cached: the second request is a lookup.
	start = time.Now()
	res, _ := thumb(ju, "width=320&height=240&method=scale")
	if res.StatusCode != 200 || time.Since(start) > took {
		t.Fatalf("cached thumbnail: %d in %v", res.StatusCode, time.Since(start))
	}

	// PNG crop.
	pu := upload(t, alice, testPNG(t, 300, 100), "image/png", "wide.png")
	res, b := thumb(pu, "width=96&height=96&method=crop")
	cfg, format, err = image.DecodeConfig(bytes.NewReader(b))
	if res.StatusCode != 200 || err != nil || format != "png" || cfg.Width != 96 || cfg.Height != 96 {
		t.Fatalf("png crop: %d %v %s %dx%d", res.StatusCode, err, format, cfg.Width, cfg.Height)
	}
	if d, _, _ := mime.ParseMediaType(res.Header.Get("Content-Disposition")); d != "inline" {
		t.Fatalf("thumbnail disposition %q", res.Header.Get("Content-Disposition"))
	}

	// Animated GIF: animated only when asked.
	g := &gif.GIF{}
	for i := 0; i < 3; i++ {
		fr := image.NewPaletted(image.Rect(0, 0, 200, 200), []color.Color{color.Black, color.White, color.RGBA{255, 0, 0, 255}})
		for p := range fr.Pix {
			fr.Pix[p] = uint8((p / 200 / (i + 1)) % 3)
		}
		g.Image = append(g.Image, fr)
		g.Delay = append(g.Delay, 10)
	}
	var gb bytes.Buffer
	if err := gif.EncodeAll(&gb, g); err != nil {
		t.Fatal(err)
	}
	gu := upload(t, alice, gb.Bytes(), "image/gif", "anim.gif")
	res, b = thumb(gu, "width=96&height=96&method=scale&animated=true")
	if res.StatusCode != 200 || res.Header.Get("Content-Type") != "image/gif" {
		t.Fatalf("animated thumbnail: %d %s %s", res.StatusCode, res.Header.Get("Content-Type"), b)
	}
	ag, err := gif.DecodeAll(bytes.NewReader(b))
	if err != nil || len(ag.Image) != 3 || ag.Config.Width != 96 {
		t.Fatalf("animated thumbnail: %v, %d frames", err, len(ag.Image))
	}
	res, _ = thumb(gu, "width=96&height=96&method=scale")
	if res.Header.Get("Content-Type") != "image/png" {
		t.Fatalf("static thumbnail of a GIF: %s", res.Header.Get("Content-Type"))
	}

	// Refusals: bomb, truncated, lying, not an image.
	bomb := upload(t, alice, hugePNGHeader(), "image/png", "bomb.png")
	res, b = thumb(bomb, "width=32&height=32")
	wantErr(t, res, b, 413, "M_TOO_LARGE")
	full := testPNG(t, 120, 120)
	trunc := upload(t, alice, full[:len(full)/2], "image/png", "trunc.png")
	res, b = thumb(trunc, "width=32&height=32")
	wantErr(t, res, b, 400, "M_UNKNOWN")
	liar := upload(t, alice, []byte("this is not a JPEG at all"), "image/jpeg", "liar.jpg")
	res, b = thumb(liar, "width=32&height=32")
	wantErr(t, res, b, 400, "M_UNKNOWN")
	// The lying image is still served only as what it claims, unsniffable.
	res, _ = mediaDo(t, "GET", downloadURL(srv, liar), alice.AccessToken, "", nil, nil)
	if res.Header.Get("X-Content-Type-Options") != "nosniff" {
		t.Fatal("no nosniff")
	}
	res, b = thumb(pu, "width=-5&height=32")
	wantErr(t, res, b, 400, "M_INVALID_PARAM")
	res, b = thumb(pu, "width=32&height=32&method=stretch")
	wantErr(t, res, b, 400, "M_INVALID_PARAM")
}

// TestMediaLimits: size, quota, rate, pending IDs, and bad uploads leave
// nothing behind.
func TestMediaLimits(t *testing.T) {
	srv := testserver.Start(t, func(c *config.Config) {
		c.Media.MaxUploadSize = 4096
		c.Media.UserQuota = 10000
		c.Media.UploadsPerMinute = 13
		c.Media.MaxPendingUploads = 2
	})
	alice := srv.RegisterUser("alice")
	up := srv.URL + "/_matrix/media/v3/upload"
	files := func() int { return len(storedFiles(t, srv)) }

	res, b := mediaDo(t, "POST", up, alice.AccessToken, "application/octet-stream", make([]byte, 4097), nil)
	wantErr(t, res, b, 413, "M_TOO_LARGE")
	res, b = mediaDo(t, "POST", up, alice.AccessToken, "application/octet-stream", []byte{}, nil)
	wantErr(t, res, b, 400, "M_UNKNOWN")
	res, b = mediaDo(t, "POST", up+"?filename="+url.QueryEscape("../../etc/passwd"), alice.AccessToken, "text/plain", []byte("x"), nil)
	wantErr(t, res, b, 400, "M_INVALID_PARAM")
	res, b = mediaDo(t, "POST", up+"?filename=a%00b", alice.AccessToken, "text/plain", []byte("x"), nil)
	wantErr(t, res, b, 400, "M_INVALID_PARAM")
	if n := files(); n != 0 {
		t.Fatalf("%d files left by refused uploads", n)
	}

	// A body shorter than its Content-Length.
	conn, err := net.Dial("tcp", strings.TrimPrefix(srv.URL, "http://"))
	if err != nil {
		t.Fatal(err)
	}
	fmt.Fprintf(conn, "POST /_matrix/media/v3/upload HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer %s\r\nContent-Type: text/plain\r\nContent-Length: 1000\r\n\r\nonly a few bytes", alice.AccessToken)
	_ = conn.(*net.TCPConn).CloseWrite()
	_ = conn.SetReadDeadline(time.Now().Add(10 * time.Second))
	hr, err := http.ReadResponse(bufio.NewReader(conn), nil)
	if err == nil {
		b, _ := io.ReadAll(hr.Body)
		if hr.StatusCode != 400 {
			t.Fatalf("short body: %d %s", hr.StatusCode, b)
		}
	}
	conn.Close()
	if n := files(); n != 0 {
		t.Fatalf("%d files left by a short body", n)
	}

	// Quota: 10000 bytes.
	for i := 0; i < 2; i++ {
		res, b = mediaDo(t, "POST", up, alice.AccessToken, "application/octet-stream", bytes.Repeat([]byte{byte(i)}, 4000), nil)
		if res.StatusCode != 200 {
			t.Fatalf("upload %d: %d %s", i, res.StatusCode, b)
		}
	}
	res, b = mediaDo(t, "POST", up, alice.AccessToken, "application/octet-stream", bytes.Repeat([]byte{9}, 4000), nil)
	wantErr(t, res, b, 403, "M_FORBIDDEN")
	if n := files(); n != 2 {
		t.Fatalf("%d files after a quota refusal, want 2", n)
	}

	// Pending IDs: at most 2.
	for i := 0; i < 2; i++ {
		if _, err := alice.CreateMXC(context.Background()); err != nil {
			t.Fatal(err)
		}
	}
	_, err = alice.CreateMXC(context.Background())
	if !errors.Is(err, mautrix.MLimitExceeded) {
		t.Fatalf("third pending ID: %v", err)
	}

	// Rate: 13 per minute, 11 used above (8 uploads, refused ones included, and 3 creates).
	var lastStatus int
	var lastBody []byte
	for i := 0; i < 3; i++ {
		res, lastBody = mediaDo(t, "POST", up, alice.AccessToken, "text/plain", []byte("r"), nil)
		lastStatus = res.StatusCode
	}
	if lastStatus != 429 || errcode(lastBody) != "M_LIMIT_EXCEEDED" {
		t.Fatalf("upload rate: %d %s", lastStatus, lastBody)
	}
}

// TestMediaEncryptedAttachment: an attachment encrypted as clients do
// (AES-CTR, SHA-256) round-trips byte for byte.
func TestMediaEncryptedAttachment(t *testing.T) {
	srv := testserver.Start(t)
	alice, bob := srv.RegisterUser("alice"), srv.RegisterUser("bob")
	plain := bytes.Repeat([]byte("secret attachment "), 500)
	ef := attachment.NewEncryptedFile()
	cipher := encrypt(ef, plain)
	uri := upload(t, alice, cipher, "application/octet-stream", "")
	got, err := bob.DownloadBytes(context.Background(), uri)
	if err != nil {
		t.Fatal(err)
	}
	if err := received(ef).DecryptInPlace(got); err != nil || !bytes.Equal(got, plain) {
		t.Fatalf("decrypt: %v", err)
	}
}

// encrypt encrypts a copy of plain as a client does (AES-CTR, SHA-256).
func encrypt(ef *attachment.EncryptedFile, plain []byte) []byte {
	out := bytes.Clone(plain)
	ef.EncryptInPlace(out)
	return out
}

// received is the EncryptedFile as the recipient decodes it from the event.
func received(ef *attachment.EncryptedFile) *attachment.EncryptedFile {
	var out attachment.EncryptedFile
	_ = json.Unmarshal(mustJSON(ef), &out)
	return &out
}

// scanFileJSON is the EncryptedFile body of the content-scanner API.
func scanFileJSON(ef *attachment.EncryptedFile, uri id.ContentURI) map[string]any {
	b, _ := json.Marshal(ef)
	var m map[string]any
	_ = json.Unmarshal(b, &m)
	m["url"] = uri.String()
	return m
}

// TestMediaAntivirus: a real clamd refuses EICAR uploads, passes clean
// files, and the content-scanner endpoints find EICAR inside encrypted
// attachments.
func TestMediaAntivirus(t *testing.T) {
	sock := clamdtest.Start(t)
	srv := testserver.Start(t, func(c *config.Config) {
		c.Media.Antivirus.Clamd = sock
		c.Media.ContentScanner.Enabled = true
	})
	alice := srv.RegisterUser("alice")
	up := srv.URL + "/_matrix/media/v3/upload"

	res, b := mediaDo(t, "POST", up, alice.AccessToken, "text/plain", []byte(clamdtest.EICAR), nil)
	wantErr(t, res, b, 403, "M_FORBIDDEN")
	if !strings.Contains(string(b), clamdtest.Signature) {
		t.Fatalf("refusal gives no reason: %s", b)
	}
	if n := len(storedFiles(t, srv)); n != 0 {
		t.Fatalf("infected upload kept: %d files", n)
	}
	// The refusal is in the audit log: who, where, which signature, and the
	// content's hash, never the content; the chain verifies.
	recs, err := srv.Srv.DB.AuditRecords(context.Background(), 0, 10, storage.AuditFilter{Action: "media.infected"})
	if err != nil || len(recs) != 1 || recs[0].Actor != alice.UserID.String() || !strings.HasPrefix(recs[0].Target, "sha256:") ||
		!strings.Contains(recs[0].Details, clamdtest.Signature) || !strings.Contains(recs[0].Details, `"upload"`) || recs[0].IP != "127.0.0.1" {
		t.Fatalf("audit of the refused upload: %+v, %v", recs, err)
	}
	if strings.Contains(recs[0].Details+recs[0].Target, "EICAR-STANDARD") {
		t.Fatalf("audit record holds the content: %+v", recs[0])
	}
	if rep, err := srv.Srv.Audit.Verify(context.Background()); err != nil || !rep.OK() {
		t.Fatalf("audit chain: %+v, %v", rep, err)
	}
	clean := upload(t, alice, []byte("a perfectly clean file"), "text/plain", "clean.txt")
	if got, err := alice.DownloadBytes(context.Background(), clean); err != nil || string(got) != "a perfectly clean file" {
		t.Fatalf("clean download: %v", err)
	}

	mcs := func(method, path string, body any) (*http.Response, map[string]any) {
		t.Helper()
		var raw []byte
		if body != nil {
			raw, _ = json.Marshal(body)
		}
		res, b := mediaDo(t, method, srv.URL+"/_matrix/media_proxy/unstable"+path, alice.AccessToken, "application/json", raw, nil)
		var m map[string]any
		_ = json.Unmarshal(b, &m)
		return res, m
	}

	// Plain scan of stored media.
	res, m := mcs("GET", "/scan/"+clean.Homeserver+"/"+clean.FileID, nil)
	if res.StatusCode != 200 || m["clean"] != true {
		t.Fatalf("scan clean: %d %v", res.StatusCode, m)
	}

	// Encrypted attachments: EICAR inside is found only by decrypting.
	efBad := attachment.NewEncryptedFile()
	badURI := upload(t, alice, encrypt(efBad, []byte(clamdtest.EICAR)), "application/octet-stream", "")
	efGood := attachment.NewEncryptedFile()
	goodURI := upload(t, alice, encrypt(efGood, []byte("holiday photos")), "application/octet-stream", "")

	res, m = mcs("POST", "/scan_encrypted", map[string]any{"file": scanFileJSON(efBad, badURI)})
	if res.StatusCode != 200 || m["clean"] != false {
		t.Fatalf("scan_encrypted EICAR: %d %v", res.StatusCode, m)
	}
	if recs, err := srv.Srv.DB.AuditRecords(context.Background(), 0, 100, storage.AuditFilter{Action: "media.infected"}); err != nil ||
		!strings.Contains(recs[len(recs)-1].Details, `"scan_encrypted"`) {
		t.Fatalf("audit of the infected attachment: %+v, %v", recs, err)
	}
	res, m = mcs("POST", "/scan_encrypted", map[string]any{"file": scanFileJSON(efGood, goodURI)})
	if res.StatusCode != 200 || m["clean"] != true {
		t.Fatalf("scan_encrypted clean: %d %v", res.StatusCode, m)
	}
	res, m = mcs("POST", "/download_encrypted", map[string]any{"file": scanFileJSON(efBad, badURI)})
	if res.StatusCode != 403 || m["reason"] != "MCS_MEDIA_NOT_CLEAN" {
		t.Fatalf("download_encrypted EICAR: %d %v", res.StatusCode, m)
	}
	res, b = mediaDo(t, "POST", srv.URL+"/_matrix/media_proxy/unstable/download_encrypted", alice.AccessToken, "application/json",
		mustJSON(map[string]any{"file": scanFileJSON(efGood, goodURI)}), nil)
	if res.StatusCode != 200 {
		t.Fatalf("download_encrypted clean: %d %s", res.StatusCode, b)
	}
	if err := received(efGood).DecryptInPlace(b); err != nil || string(b) != "holiday photos" {
		t.Fatalf("download_encrypted content: %v", err)
	}

	// The body encrypted to the scanner's public key (PkEncryption).
	res, m = mcs("GET", "/public_key", nil)
	pkb, err := base64.RawStdEncoding.DecodeString(fmt.Sprint(m["public_key"]))
	if res.StatusCode != 200 || err != nil {
		t.Fatalf("public_key: %d %v %v", res.StatusCode, m, err)
	}
	pub, err := ecdh.X25519().NewPublicKey(pkb)
	if err != nil {
		t.Fatal(err)
	}
	enc, err := backup.EncryptSessionDataWithPubkey(pub, map[string]any{"file": scanFileJSON(efBad, badURI)})
	if err != nil {
		t.Fatal(err)
	}
	res, m = mcs("POST", "/scan_encrypted", map[string]any{"encrypted_body": enc})
	if res.StatusCode != 200 || m["clean"] != false {
		t.Fatalf("encrypted_body EICAR: %d %v", res.StatusCode, m)
	}

	// Errors of the scanner API.
	other, _ := backup.NewMegolmBackupKey()
	wrong, _ := backup.EncryptSessionDataWithPubkey(other.PublicKey(), map[string]any{"file": scanFileJSON(efBad, badURI)})
	res, m = mcs("POST", "/scan_encrypted", map[string]any{"encrypted_body": wrong})
	if res.StatusCode != 403 || m["reason"] != "MCS_BAD_DECRYPTION" {
		t.Fatalf("wrong key: %d %v", res.StatusCode, m)
	}
	wrongFile := scanFileJSON(efGood, badURI) // key of another file: hash mismatch
	res, m = mcs("POST", "/scan_encrypted", map[string]any{"file": wrongFile})
	if res.StatusCode != 403 || m["reason"] != "MCS_BAD_DECRYPTION" {
		t.Fatalf("hash mismatch: %d %v", res.StatusCode, m)
	}
	res, b = mediaDo(t, "POST", srv.URL+"/_matrix/media_proxy/unstable/scan_encrypted", alice.AccessToken, "application/json", []byte(`{"file": `), nil)
	if res.StatusCode != 400 || !strings.Contains(string(b), "MCS_MALFORMED_JSON") {
		t.Fatalf("malformed: %d %s", res.StatusCode, b)
	}
}

func mustJSON(v any) []byte {
	b, _ := json.Marshal(v)
	return b
}

// TestMediaAntivirusMimeAndFailClosed: the allowed-type list of the
// content scanner, and uploads refused when clamd is unreachable.
func TestMediaAntivirusMimeAndFailClosed(t *testing.T) {
	sock := clamdtest.Start(t)
	srv := testserver.Start(t, func(c *config.Config) {
		c.Media.Antivirus.Clamd = sock
		c.Media.ContentScanner.Enabled = true
		c.Media.ContentScanner.AllowedMimeTypes = []string{"image/png"}
	})
	alice := srv.RegisterUser("alice")
	ef := attachment.NewEncryptedFile()
	uri := upload(t, alice, encrypt(ef, []byte("plain text, not an image")), "application/octet-stream", "")
	res, b := mediaDo(t, "POST", srv.URL+"/_matrix/media_proxy/unstable/scan_encrypted", alice.AccessToken, "application/json",
		mustJSON(map[string]any{"file": scanFileJSON(ef, uri)}), nil)
	if res.StatusCode != 403 || !strings.Contains(string(b), "MCS_MIME_TYPE_FORBIDDEN") {
		t.Fatalf("mime: %d %s", res.StatusCode, b)
	}

	down := testserver.Start(t, func(c *config.Config) { c.Media.Antivirus.Clamd = "unix:/nonexistent/clamd.sock" })
	bob := down.RegisterUser("bob")
	res, b = mediaDo(t, "POST", down.URL+"/_matrix/media/v3/upload", bob.AccessToken, "text/plain", []byte("hello"), nil)
	if res.StatusCode != 503 || errcode(b) != "M_UNKNOWN" {
		t.Fatalf("clamd down: %d %s", res.StatusCode, b)
	}
	if n := len(storedFiles(t, down)); n != 0 {
		t.Fatalf("unscanned upload kept: %d files", n)
	}
}

// TestMediaPreviewURL: off by default; when on, private addresses are
// refused after resolution, and allowed networks are previewed.
func TestMediaPreviewURL(t *testing.T) {
	page := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/html; charset=utf-8")
		fmt.Fprint(w, `<html><head><title>Fallback</title><meta property="og:title" content="Rempart"><meta property="og:description" content="A homeserver"></head><body>x</body></html>`)
	}))
	defer page.Close()

	srv := testserver.Start(t, func(c *config.Config) { c.Media.PreviewURL.Enabled = true })
	alice := srv.RegisterUser("alice")
	get := func(s *testserver.Server, tok, target string) (*http.Response, []byte) {
		return mediaDo(t, "GET", s.URL+"/_matrix/client/v1/media/preview_url?url="+url.QueryEscape(target), tok, "", nil, nil)
	}
	for _, target := range []string{page.URL, "http://localhost:" + strings.Split(page.URL, ":")[2], "http://[::1]/", "http://169.254.169.254/latest/meta-data/", "http://10.1.2.3/", "http://0.0.0.0/"} {
		res, b := get(srv, alice.AccessToken, target)
		wantErr(t, res, b, 403, "M_FORBIDDEN")
	}
	res, b := get(srv, alice.AccessToken, "file:///etc/passwd")
	wantErr(t, res, b, 400, "M_INVALID_PARAM")
	res, b = get(srv, "", page.URL)
	wantErr(t, res, b, 401, "M_MISSING_TOKEN")

	open := testserver.Start(t, func(c *config.Config) {
		c.Media.PreviewURL.Enabled = true
		c.Media.PreviewURL.AllowedNetworks = []string{"127.0.0.1/32"}
	})
	bob := open.RegisterUser("bob")
	res, b = get(open, bob.AccessToken, page.URL)
	var og map[string]any
	_ = json.Unmarshal(b, &og)
	if res.StatusCode != 200 || og["og:title"] != "Rempart" || og["og:description"] != "A homeserver" {
		t.Fatalf("preview: %d %s", res.StatusCode, b)
	}
}

// TestMediaConfigErrors: bad media settings stop start-up naming the key.
func TestMediaConfigErrors(t *testing.T) {
	for _, c := range []struct{ yaml, key string }{
		{"media:\n  antivirus:\n    clamd: localhost:3310\n", "media.antivirus.clamd"},
		{"media:\n  content_scanner:\n    enabled: true\n", "media.content_scanner.enabled"},
		{"media:\n  preview_url:\n    bogus: 1\n", "media.preview_url.bogus"},
		{"media:\n  preview_url:\n    allowed_networks: [intranet]\n", "media.preview_url.allowed_networks"},
		{"media:\n  max_upload_size: 0\n", "media.max_upload_size"},
		{"media:\n  thumbnails:\n    workers: 0\n", "media.thumbnails.workers"},
	} {
		cfg := config.Default()
		err := config.Parse([]byte(c.yaml), &cfg)
		var ce *config.Error
		if !errors.As(err, &ce) || ce.Key != c.key {
			t.Errorf("%q: got %v, want an error naming %s", c.yaml, err, c.key)
		}
	}
	cfg := config.Default()
	if err := config.Parse([]byte("media:\n  antivirus:\n    clamd: tcp://127.0.0.1:3310\n  content_scanner:\n    enabled: true\n"), &cfg); err != nil {
		t.Fatal(err)
	}
}
