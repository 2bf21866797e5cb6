package config

import (
	"fmt"
	"net"
	"net/netip"
	"strings"
	"time"
)

// Media configures the content repository: uploads, downloads, thumbnails,
// antivirus scanning, the content-scanner API and URL previews.
type Media struct {
	// Path is the media root directory (created 0700). Empty means
	// <data_dir>/media.
	Path string `yaml:"path"`
	// MaxUploadSize is the largest upload, in bytes.
	MaxUploadSize int64 `yaml:"max_upload_size"`
	// UserQuota is the total bytes each user may have stored (0: no quota).
	UserQuota int64 `yaml:"user_quota"`
	// UploadsPerMinute bounds each user's uploads and created media IDs
	// (0: no limit).
	UploadsPerMinute int `yaml:"uploads_per_minute"`
	// UploadTimeout is the time allowed to receive one upload body
	// (replacing limits.read_timeout for uploads).
	UploadTimeout time.Duration `yaml:"upload_timeout"`
	// MaxPendingUploads bounds each user's media IDs created with
	// POST /_matrix/media/v1/create and not yet uploaded.
	MaxPendingUploads int `yaml:"max_pending_uploads"`
	// UnusedExpiry is how long a created media ID waits for its upload.
	UnusedExpiry time.Duration `yaml:"unused_expiry"`
	// LegacyUnauthenticated serves the deprecated unauthenticated
	// /_matrix/media/v3/download and /thumbnail endpoints. Off by default:
	// they answer 404 M_NOT_FOUND.
	LegacyUnauthenticated bool `yaml:"legacy_unauthenticated"`

	Thumbnails     Thumbnails     `yaml:"thumbnails"`
	Antivirus      Antivirus      `yaml:"antivirus"`
	ContentScanner ContentScanner `yaml:"content_scanner"`
	PreviewURL     PreviewURL     `yaml:"preview_url"`
}

// Thumbnails bounds thumbnail generation.
type Thumbnails struct {
	// MaxSourcePixels is the largest image (width × height) ever decoded;
	// larger images get no thumbnail (decompression bombs).
	MaxSourcePixels int64 `yaml:"max_source_pixels"`
	// Workers is the number of thumbnails generated at once.
	Workers int `yaml:"workers"`
}

// Antivirus configures ClamAV scanning of every upload.
type Antivirus struct {
	// Clamd is the clamd socket: unix:/path/to/clamd.ctl or
	// tcp://host:port. Empty disables scanning.
	Clamd string `yaml:"clamd"`
	// FailOpen accepts uploads when clamd cannot be reached. Off by
	// default: such uploads are refused.
	FailOpen bool `yaml:"fail_open"`
	// Timeout bounds one scan.
	Timeout time.Duration `yaml:"timeout"`
}

// ContentScanner serves the matrix-content-scanner API
// (/_matrix/media_proxy/unstable/…) for clients configured to use one.
type ContentScanner struct {
	Enabled bool `yaml:"enabled"`
	// KeyPath is the scanner's Curve25519 key for encrypted request
	// bodies, generated when missing. Empty means
	// <data_dir>/content_scanner.key.
	KeyPath string `yaml:"key_path"`
	// AllowedMimeTypes, when not empty, refuses decrypted attachments of
	// any other (detected) type with MCS_MIME_TYPE_FORBIDDEN.
	AllowedMimeTypes []string `yaml:"allowed_mime_types"`
}

// PreviewURL configures GET /_matrix/client/v1/media/preview_url.
type PreviewURL struct {
	// Enabled is off by default: the server fetches no URL for anyone.
	Enabled bool `yaml:"enabled"`
	// MaxBytes bounds the fetched document.
	MaxBytes int64 `yaml:"max_bytes"`
	// Timeout bounds one fetch, redirects included.
	Timeout time.Duration `yaml:"timeout"`
	// AllowedNetworks are CIDRs exempted from the refusal of private,
	// loopback and link-local addresses (an intranet the server may
	// preview). Empty by default.
	AllowedNetworks []string `yaml:"allowed_networks"`
}

func (m *Media) validate() error {
	if m.MaxUploadSize < 1 || m.MaxUploadSize > 1<<34 {
		return &Error{"media.max_upload_size", "must be between 1 and 17179869184"}
	}
	if m.UserQuota < 0 {
		return &Error{"media.user_quota", "must not be negative"}
	}
	if m.UploadsPerMinute < 0 {
		return &Error{"media.uploads_per_minute", "must not be negative"}
	}
	if m.UploadTimeout < time.Second {
		return &Error{"media.upload_timeout", "must be at least 1s"}
	}
	if m.MaxPendingUploads < 1 {
		return &Error{"media.max_pending_uploads", "must be at least 1"}
	}
	if m.UnusedExpiry < time.Minute {
		return &Error{"media.unused_expiry", "must be at least 1m"}
	}
	if m.Thumbnails.MaxSourcePixels < 1 || m.Thumbnails.MaxSourcePixels > 1<<30 {
		return &Error{"media.thumbnails.max_source_pixels", "must be between 1 and 1073741824"}
	}
	if m.Thumbnails.Workers < 1 || m.Thumbnails.Workers > 64 {
		return &Error{"media.thumbnails.workers", "must be between 1 and 64"}
	}
	if a := m.Antivirus.Clamd; a != "" {
		if _, _, err := ClamdAddress(a); err != nil {
			return &Error{"media.antivirus.clamd", err.Error()}
		}
	}
	if m.Antivirus.Timeout < time.Second {
		return &Error{"media.antivirus.timeout", "must be at least 1s"}
	}
	if m.ContentScanner.Enabled && m.Antivirus.Clamd == "" {
		return &Error{"media.content_scanner.enabled", "needs media.antivirus.clamd"}
	}
	if m.PreviewURL.MaxBytes < 1024 || m.PreviewURL.MaxBytes > 64<<20 {
		return &Error{"media.preview_url.max_bytes", "must be between 1024 and 67108864"}
	}
	if m.PreviewURL.Timeout < time.Second || m.PreviewURL.Timeout > time.Minute {
		return &Error{"media.preview_url.timeout", "must be between 1s and 1m"}
	}
	for _, n := range m.PreviewURL.AllowedNetworks {
		if _, err := netip.ParsePrefix(n); err != nil {
			return &Error{"media.preview_url.allowed_networks", fmt.Sprintf("%q is not a CIDR", n)}
		}
	}
	return nil
}

// ClamdAddress parses a clamd address, unix:/path or tcp://host:port, into
// a network and address for net.Dial.
func ClamdAddress(s string) (network, addr string, err error) {
	switch {
	case strings.HasPrefix(s, "unix:"):
		p := strings.TrimPrefix(strings.TrimPrefix(s, "unix:"), "//")
		if !strings.HasPrefix(p, "/") {
			return "", "", fmt.Errorf("%q: unix socket path must be absolute", s)
		}
		return "unix", p, nil
	case strings.HasPrefix(s, "tcp://"):
		hp := strings.TrimPrefix(s, "tcp://")
		if _, _, err := net.SplitHostPort(hp); err != nil {
			return "", "", fmt.Errorf("%q is not tcp://host:port", s)
		}
		return "tcp", hp, nil
	}
	return "", "", fmt.Errorf("%q is not unix:/path or tcp://host:port", s)
}

// MediaPath returns the media root directory.
func (c *Config) MediaPath() string {
	if c.Media.Path != "" {
		return c.Media.Path
	}
	return c.DataDir + "/media"
}

// ContentScannerKeyPath returns the content scanner's key file.
func (c *Config) ContentScannerKeyPath() string {
	if c.Media.ContentScanner.KeyPath != "" {
		return c.Media.ContentScanner.KeyPath
	}
	return c.DataDir + "/content_scanner.key"
}

func defaultMedia() Media {
	return Media{
		MaxUploadSize:     50 << 20,
		UserQuota:         1 << 30,
		UploadsPerMinute:  30,
		UploadTimeout:     10 * time.Minute,
		MaxPendingUploads: 10,
		UnusedExpiry:      24 * time.Hour,
		Thumbnails:        Thumbnails{MaxSourcePixels: 32_000_000, Workers: 2},
		Antivirus:         Antivirus{Timeout: 60 * time.Second},
		PreviewURL:        PreviewURL{MaxBytes: 1 << 20, Timeout: 10 * time.Second},
	}
}
