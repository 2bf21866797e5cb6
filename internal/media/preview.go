package media

import (
	"context"
	"errors"
	"fmt"
	"io"
	"mime"
	"net"
	"net/http"
	"net/netip"
	"net/url"
	"strings"
	"syscall"
	"time"

	"golang.org/x/net/html"

	"github.com/rempart-hs/rempart/internal/config"
	"github.com/rempart-hs/rempart/internal/httpapi"
)

// previewer fetches web pages for URL previews. Every connection it makes
// is checked after DNS resolution, on the address actually dialled
// (redirects included): private, loopback, link-local, shared, multicast
// and unspecified addresses are refused unless listed in
// media.preview_url.allowed_networks. No proxy is used.
type previewer struct {
	cfg     config.PreviewURL
	allowed []netip.Prefix
	client  *http.Client
}

var errBlockedAddress = errors.New("address not allowed")

func newPreviewer(cfg config.PreviewURL) *previewer {
	p := &previewer{cfg: cfg}
	for _, n := range cfg.AllowedNetworks {
		if pf, err := netip.ParsePrefix(n); err == nil {
			p.allowed = append(p.allowed, pf.Masked())
		}
	}
	dialer := &net.Dialer{Timeout: cfg.Timeout, Control: p.control}
	p.client = &http.Client{
		Timeout: cfg.Timeout,
		Transport: &http.Transport{
			Proxy:                 nil,
			DialContext:           dialer.DialContext,
			TLSHandshakeTimeout:   cfg.Timeout,
			ResponseHeaderTimeout: cfg.Timeout,
			MaxIdleConns:          4,
			IdleConnTimeout:       30 * time.Second,
		},
		CheckRedirect: func(req *http.Request, via []*http.Request) error {
			if len(via) >= 5 {
				return errors.New("too many redirects")
			}
			if req.URL.Scheme != "http" && req.URL.Scheme != "https" {
				return errors.New("redirect to a non-HTTP URL")
			}
			return nil
		},
	}
	return p
}

// control runs on every dial after the name is resolved.
func (p *previewer) control(network, address string, _ syscall.RawConn) error {
	ap, err := netip.ParseAddrPort(address)
	if err != nil {
		return errBlockedAddress
	}
	if !p.addrAllowed(ap.Addr()) {
		return errBlockedAddress
	}
	return nil
}

// blockedPrefixes are refused besides the address classes netip knows:
// shared address space, and IPv6 prefixes that embed IPv4 addresses
// (NAT64, 6to4, Teredo) and could reach private ones.
var blockedPrefixes = []netip.Prefix{
	netip.MustParsePrefix("100.64.0.0/10"),
	netip.MustParsePrefix("64:ff9b::/96"),
	netip.MustParsePrefix("64:ff9b:1::/48"),
	netip.MustParsePrefix("2002::/16"),
	netip.MustParsePrefix("2001::/32"),
}

func (p *previewer) addrAllowed(a netip.Addr) bool {
	a = a.Unmap()
	for _, pf := range p.allowed {
		if pf.Contains(a) {
			return true
		}
	}
	if a.IsLoopback() || a.IsPrivate() || a.IsLinkLocalUnicast() || a.IsLinkLocalMulticast() ||
		a.IsInterfaceLocalMulticast() || a.IsMulticast() || a.IsUnspecified() {
		return false
	}
	for _, pf := range blockedPrefixes {
		if pf.Contains(a) {
			return false
		}
	}
	if a.Is4() && (a.As4()[0] == 0 || a.As4()[0] >= 240) {
		return false
	}
	return true
}

// previewURL serves GET /_matrix/client/v1/media/preview_url (and the
// legacy /_matrix/media/v3/preview_url). Only registered when
// media.preview_url.enabled.
func (s *Service) previewURL(r *http.Request) (any, error) {
	raw := r.URL.Query().Get("url")
	if raw == "" {
		return nil, httpapi.MissingParam("url is required")
	}
	if len(raw) > 2048 {
		return nil, httpapi.InvalidParam("url is too long")
	}
	u, err := url.Parse(raw)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" || u.User != nil {
		return nil, httpapi.InvalidParam("url must be an http or https URL")
	}
	og, err := s.preview.fetch(r.Context(), u.String())
	if err != nil {
		if errors.Is(err, errBlockedAddress) {
			return nil, httpapi.Forbidden("previews of this address are not allowed")
		}
		return nil, &httpapi.Error{Status: http.StatusBadGateway, Code: "M_UNKNOWN", Message: "could not fetch the URL"}
	}
	return og, nil
}

// fetch downloads at most max_bytes of an HTML page and extracts its
// OpenGraph properties (og:image is left out: no third-party image is
// fetched and stored).
func (p *previewer) fetch(ctx context.Context, target string) (map[string]any, error) {
	ctx, cancel := context.WithTimeout(ctx, p.cfg.Timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, target, nil)
	if err != nil {
		return nil, err
	}
	req.Header.Set("User-Agent", "Rempart URL preview")
	req.Header.Set("Accept", "text/html,application/xhtml+xml")
	resp, err := p.client.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("status %d", resp.StatusCode)
	}
	og := map[string]any{}
	mt, _, _ := mime.ParseMediaType(resp.Header.Get("Content-Type"))
	if mt != "text/html" && mt != "application/xhtml+xml" {
		return og, nil
	}
	return parseOpenGraph(io.LimitReader(resp.Body, p.cfg.MaxBytes)), nil
}

// parseOpenGraph reads og:* meta properties, with <title> and the
// description meta tag as fallbacks.
func parseOpenGraph(r io.Reader) map[string]any {
	og := map[string]any{}
	z := html.NewTokenizer(r)
	var title string
	inTitle := false
	for {
		switch z.Next() {
		case html.ErrorToken:
			if _, ok := og["og:title"]; !ok && title != "" {
				og["og:title"] = title
			}
			return og
		case html.StartTagToken, html.SelfClosingTagToken:
			name, hasAttr := z.TagName()
			switch string(name) {
			case "title":
				inTitle = true
			case "meta":
				var prop, content string
				for hasAttr {
					var k, v []byte
					k, v, hasAttr = z.TagAttr()
					switch string(k) {
					case "property", "name":
						prop = strings.ToLower(string(v))
					case "content":
						content = string(v)
					}
				}
				if len(content) > 1000 {
					content = content[:1000]
				}
				switch {
				case prop == "og:image" || strings.HasPrefix(prop, "og:image:"):
				case strings.HasPrefix(prop, "og:") && len(og) < 32:
					og[prop] = content
				case prop == "description":
					if _, ok := og["og:description"]; !ok {
						og["og:description"] = content
					}
				}
			}
		case html.TextToken:
			if inTitle && len(title) < 1000 {
				title += strings.TrimSpace(string(z.Text()))
			}
		case html.EndTagToken:
			inTitle = false
		}
	}
}
