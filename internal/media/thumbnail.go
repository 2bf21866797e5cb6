package media

import (
	"bufio"
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"image"
	"image/color/palette"
	"image/gif"
	"image/jpeg"
	"image/png"
	"io"
	"net/http"
	"strconv"

	"golang.org/x/image/draw"
	_ "golang.org/x/image/webp" // WebP decoding

	"github.com/rempart-hs/rempart/internal/httpapi"
	"github.com/rempart-hs/rempart/internal/storage"
)

// thumbSize is one of the sizes thumbnails are made in: requests are
// rounded up to the nearest, so the cache stays small and bounded.
type thumbSize struct{ w, h int }

var thumbSizes = map[string][]thumbSize{
	"crop":  {{32, 32}, {96, 96}, {320, 320}, {640, 640}},
	"scale": {{32, 32}, {96, 96}, {320, 240}, {640, 480}, {800, 600}},
}

// pickSize returns the smallest standard size at least as large as the
// request, or the largest one.
func pickSize(method string, w, h int) thumbSize {
	sizes := thumbSizes[method]
	for _, s := range sizes {
		if s.w >= w && s.h >= h {
			return s
		}
	}
	return sizes[len(sizes)-1]
}

// errNoThumbnail is the spec's 400 for content that cannot be thumbnailed.
func errNoThumbnail(why string) *httpapi.Error {
	return httpapi.Unknown("cannot generate a thumbnail: %s", why)
}

// thumbnail serves GET /_matrix/client/v1/media/thumbnail/{serverName}/{mediaId}
// (and, when enabled, the legacy /_matrix/media/v3/thumbnail).
func (s *Service) thumbnail(w http.ResponseWriter, r *http.Request) error {
	q := r.URL.Query()
	width, err := dimension(q, "width")
	if err != nil {
		return err
	}
	height, err := dimension(q, "height")
	if err != nil {
		return err
	}
	method := q.Get("method")
	if method == "" {
		method = "scale"
	}
	if method != "crop" && method != "scale" {
		return httpapi.InvalidParam("method must be crop or scale")
	}
	animated := false
	switch q.Get("animated") {
	case "", "false":
	case "true":
		animated = true
	default:
		return httpapi.InvalidParam("animated must be true or false")
	}
	m, err := s.lookup(r)
	if err != nil {
		return err
	}
	t, err := s.makeThumbnail(r.Context(), m.ContentHash, pickSize(method, width, height), method, animated)
	if err != nil {
		return err
	}
	return s.serveContent(w, r, t.ThumbHash, t.ContentType, "thumbnail."+extension(t.ContentType))
}

func dimension(q map[string][]string, name string) (int, error) {
	v := ""
	if vs := q[name]; len(vs) > 0 {
		v = vs[0]
	}
	if v == "" {
		return 0, httpapi.MissingParam("%s is required", name)
	}
	n, err := strconv.Atoi(v)
	if err != nil || n < 1 || n > 10000 {
		return 0, httpapi.InvalidParam("%s must be an integer between 1 and 10000", name)
	}
	return n, nil
}

func extension(contentType string) string {
	switch contentType {
	case "image/jpeg":
		return "jpg"
	case "image/gif":
		return "gif"
	}
	return "png"
}

// makeThumbnail returns the cached thumbnail of a content hash, or makes
// it: once per shape however many ask at the same time, in the bounded
// worker pool.
func (s *Service) makeThumbnail(ctx context.Context, hash string, size thumbSize, method string, animated bool) (*storage.MediaThumbnail, error) {
	if t, err := s.db.GetMediaThumbnail(ctx, hash, size.w, size.h, method, animated); err == nil {
		return t, nil
	} else if !errors.Is(err, storage.ErrNotFound) {
		return nil, err
	}
	key := fmt.Sprintf("%s/%dx%d/%s/%v", hash, size.w, size.h, method, animated)
	v, err, _ := s.thumbGroup.Do(key, func() (any, error) {
		select {
		case s.thumbSlots <- struct{}{}:
		case <-ctx.Done():
			return nil, ctx.Err()
		}
		defer func() { <-s.thumbSlots }()
		if t, err := s.db.GetMediaThumbnail(ctx, hash, size.w, size.h, method, animated); err == nil {
			return t, nil
		}
		body, ctype, err := s.render(hash, size, method, animated)
		if err != nil {
			return nil, err
		}
		t := storage.MediaThumbnail{SourceHash: hash, Width: size.w, Height: size.h, Method: method, Animated: animated,
			ContentType: ctype, Size: int64(len(body))}
		bctx := context.WithoutCancel(ctx)
		t.ThumbHash, err = s.store.PutBytes(body, func(th string) error {
			return s.db.WithTx(bctx, func(tx *storage.Tx) error {
				t.ThumbHash = th
				return tx.PutMediaThumbnail(bctx, t)
			})
		})
		if err != nil {
			return nil, err
		}
		// Another process may have won the race: serve what is recorded.
		if rec, err := s.db.GetMediaThumbnail(ctx, hash, size.w, size.h, method, animated); err == nil {
			return rec, nil
		}
		return &t, nil
	})
	if err != nil {
		return nil, err
	}
	return v.(*storage.MediaThumbnail), nil
}

// render decodes the source (after checking its declared dimensions
// against the pixel limit) and encodes the thumbnail.
func (s *Service) render(hash string, size thumbSize, method string, animated bool) ([]byte, string, error) {
	f, err := s.store.Open(hash)
	if err != nil {
		return nil, "", err
	}
	defer f.Close()
	cfg, format, err := image.DecodeConfig(bufio.NewReader(f))
	if err != nil {
		return nil, "", errNoThumbnail("not a supported image (JPEG, PNG, GIF, WebP)")
	}
	maxPixels := s.cfg.Media.Thumbnails.MaxSourcePixels
	if cfg.Width <= 0 || cfg.Height <= 0 || int64(cfg.Width)*int64(cfg.Height) > maxPixels {
		return nil, "", httpapi.TooLarge("image is too large to thumbnail (%dx%d)", cfg.Width, cfg.Height)
	}
	if _, err := f.Seek(0, io.SeekStart); err != nil {
		return nil, "", err
	}
	if format == "gif" && animated {
		frames, area, err := gifStats(bufio.NewReader(f))
		if err != nil {
			return nil, "", errNoThumbnail("malformed GIF")
		}
		if _, err := f.Seek(0, io.SeekStart); err != nil {
			return nil, "", err
		}
		// Too long an animation gets a still thumbnail instead: animated
		// is only a preference.
		if frames > 1 && frames <= 1000 && area <= maxPixels {
			return renderAnimatedGIF(f, cfg, size, method)
		}
	}
	src, _, err := image.Decode(bufio.NewReader(f))
	if err != nil {
		return nil, "", errNoThumbnail("the image could not be decoded (truncated or corrupt)")
	}
	dst := resize(src, size, method)
	var buf bytes.Buffer
	if format == "jpeg" {
		err = jpeg.Encode(&buf, dst, &jpeg.Options{Quality: 80})
		return buf.Bytes(), "image/jpeg", err
	}
	err = (&png.Encoder{CompressionLevel: png.BestSpeed}).Encode(&buf, dst)
	return buf.Bytes(), "image/png", err
}

// geometry returns the source rectangle to sample and the output size.
// Scale fits the image inside the box; crop fills the box and cuts the
// overflow around the centre. Images are never enlarged.
func geometry(b image.Rectangle, size thumbSize, method string) (image.Rectangle, int, int) {
	sw, sh := b.Dx(), b.Dy()
	if method == "crop" {
		// Largest centred rectangle of the box's aspect ratio.
		cw, ch := sw, sw*size.h/size.w
		if ch > sh {
			cw, ch = sh*size.w/size.h, sh
		}
		cw, ch = max(cw, 1), max(ch, 1)
		x0 := b.Min.X + (sw-cw)/2
		y0 := b.Min.Y + (sh-ch)/2
		src := image.Rect(x0, y0, x0+cw, y0+ch)
		return src, min(size.w, cw), min(size.h, ch)
	}
	if sw <= size.w && sh <= size.h {
		return b, sw, sh
	}
	dw, dh := size.w, sh*size.w/sw
	if dh > size.h {
		dw, dh = sw*size.h/sh, size.h
	}
	return b, max(dw, 1), max(dh, 1)
}

// resize scales src into the thumbnail. Large reductions go in two steps:
// a fast bilinear pass down to twice the target, then Catmull-Rom (a 12 MP
// photo takes a fraction of a second instead of over one).
func resize(src image.Image, size thumbSize, method string) image.Image {
	sr, dw, dh := geometry(src.Bounds(), size, method)
	if sr.Dx() > 4*dw && sr.Dy() > 4*dh {
		mid := image.NewRGBA(image.Rect(0, 0, 2*dw, 2*dh))
		draw.ApproxBiLinear.Scale(mid, mid.Bounds(), src, sr, draw.Src, nil)
		src, sr = mid, mid.Bounds()
	}
	dst := image.NewRGBA(image.Rect(0, 0, dw, dh))
	draw.CatmullRom.Scale(dst, dst.Bounds(), src, sr, draw.Src, nil)
	return dst
}

// renderAnimatedGIF scales every frame of an animated GIF (composited as a
// viewer would show it) into an animated GIF thumbnail.
func renderAnimatedGIF(r io.Reader, cfg image.Config, size thumbSize, method string) ([]byte, string, error) {
	g, err := gif.DecodeAll(bufio.NewReader(r))
	if err != nil {
		return nil, "", errNoThumbnail("the animation could not be decoded (truncated or corrupt)")
	}
	bounds := image.Rect(0, 0, cfg.Width, cfg.Height)
	sr, dw, dh := geometry(bounds, size, method)
	canvas := image.NewRGBA(bounds)
	out := &gif.GIF{LoopCount: g.LoopCount, Config: image.Config{Width: dw, Height: dh}}
	pal := palette.Plan9
	for i, fr := range g.Image {
		var saved *image.RGBA
		disposal := byte(0)
		if i < len(g.Disposal) {
			disposal = g.Disposal[i]
		}
		if disposal == gif.DisposalPrevious {
			saved = image.NewRGBA(bounds)
			draw.Copy(saved, image.Point{}, canvas, bounds, draw.Src, nil)
		}
		draw.Draw(canvas, fr.Bounds(), fr, fr.Bounds().Min, draw.Over)
		scaled := image.NewRGBA(image.Rect(0, 0, dw, dh))
		draw.ApproxBiLinear.Scale(scaled, scaled.Bounds(), canvas, sr, draw.Src, nil)
		pm := image.NewPaletted(scaled.Bounds(), pal)
		draw.Draw(pm, pm.Bounds(), scaled, image.Point{}, draw.Src)
		out.Image = append(out.Image, pm)
		delay := 10
		if i < len(g.Delay) {
			delay = g.Delay[i]
		}
		out.Delay = append(out.Delay, delay)
		out.Disposal = append(out.Disposal, gif.DisposalNone)
		switch disposal {
		case gif.DisposalBackground:
			draw.Draw(canvas, fr.Bounds(), image.Transparent, image.Point{}, draw.Src)
		case gif.DisposalPrevious:
			canvas = saved
		}
	}
	var buf bytes.Buffer
	if err := gif.EncodeAll(&buf, out); err != nil {
		return nil, "", err
	}
	return buf.Bytes(), "image/gif", nil
}

// gifStats walks a GIF's blocks without decompressing anything and
// returns its frame count and the sum of its frames' areas, so that an
// animation is refused before it is decoded if it would be a
// decompression bomb.
func gifStats(r *bufio.Reader) (frames int, area int64, err error) {
	hdr := make([]byte, 13)
	if _, err := io.ReadFull(r, hdr); err != nil {
		return 0, 0, err
	}
	if string(hdr[:3]) != "GIF" {
		return 0, 0, errors.New("not a GIF")
	}
	if hdr[10]&0x80 != 0 {
		if _, err := r.Discard(3 << ((hdr[10] & 7) + 1)); err != nil {
			return 0, 0, err
		}
	}
	skipSubBlocks := func() error {
		for {
			n, err := r.ReadByte()
			if err != nil {
				return err
			}
			if n == 0 {
				return nil
			}
			if _, err := r.Discard(int(n)); err != nil {
				return err
			}
		}
	}
	for {
		b, err := r.ReadByte()
		if err != nil {
			return frames, area, err
		}
		switch b {
		case 0x21: // extension: label, then sub-blocks
			if _, err := r.ReadByte(); err != nil {
				return frames, area, err
			}
			if err := skipSubBlocks(); err != nil {
				return frames, area, err
			}
		case 0x2C: // image descriptor
			d := make([]byte, 9)
			if _, err := io.ReadFull(r, d); err != nil {
				return frames, area, err
			}
			w, h := binary.LittleEndian.Uint16(d[4:6]), binary.LittleEndian.Uint16(d[6:8])
			frames++
			area += int64(w) * int64(h)
			if d[8]&0x80 != 0 {
				if _, err := r.Discard(3 << ((d[8] & 7) + 1)); err != nil {
					return frames, area, err
				}
			}
			if _, err := r.ReadByte(); err != nil { // LZW minimum code size
				return frames, area, err
			}
			if err := skipSubBlocks(); err != nil {
				return frames, area, err
			}
		case 0x3B: // trailer
			return frames, area, nil
		default:
			return frames, area, fmt.Errorf("unexpected GIF block 0x%02x", b)
		}
	}
}
