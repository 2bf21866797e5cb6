// Package config defines Rempart's configuration: the YAML file format, its
// defaults (which are what most deployments run, so they are the secure
// choice), validation, and the commented example printed by
// `rempart config example`.
package config

import (
	"bytes"
	_ "embed"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"time"

	"go.yaml.in/yaml/v3"
)

// Config is the whole server configuration.
type Config struct {
	// ServerName is the domain part of user IDs and room aliases.
	ServerName string `yaml:"server_name"`
	// PublicBaseURL is the URL clients reach the server at (for .well-known).
	PublicBaseURL string `yaml:"public_baseurl"`
	// Listen is the client API listener address.
	Listen string `yaml:"listen"`
	// AdminListen is the admin API listener (loopback by default; "" disables it).
	AdminListen string `yaml:"admin_listen"`
	// AdminPprof serves Go's profiler (/debug/pprof/) on the admin
	// listener, for profiling under load. Off by default.
	AdminPprof bool `yaml:"admin_pprof"`
	// DataDir holds the SQLite database and the signing key.
	DataDir string `yaml:"data_dir"`
	// SigningKeyPath is the ed25519 signing key file (generated when missing).
	SigningKeyPath string `yaml:"signing_key_path"`
	// AuditKeyPath is the key that chains the audit log (generated when
	// missing). Every process sharing a database needs the same key.
	AuditKeyPath string `yaml:"audit_key_path"`

	Database      Database      `yaml:"database"`
	Registration  Registration  `yaml:"registration"`
	RateLimits    RateLimits    `yaml:"rate_limits"`
	Presence      Presence      `yaml:"presence"`
	Limits        Limits        `yaml:"limits"`
	Rooms         Rooms         `yaml:"rooms"`
	UserDirectory UserDirectory `yaml:"user_directory"`
	RoomDirectory RoomDirectory `yaml:"room_directory"`
	Media         Media         `yaml:"media"`
	Log           Log           `yaml:"log"`
}

// Database selects the storage backend.
type Database struct {
	// URL is "postgres://…" for PostgreSQL; empty means the embedded SQLite
	// database at <data_dir>/rempart.db; any other value is a SQLite path.
	URL string `yaml:"url"`
}

// Registration controls who may create accounts.
type Registration struct {
	// Mode is closed (default), open, or token.
	Mode string `yaml:"mode"`
	// SharedSecret enables the Synapse-compatible shared-secret
	// registration API when set.
	SharedSecret string `yaml:"shared_secret"`
	// PasswordMinLength is the minimum password length.
	PasswordMinLength int `yaml:"password_min_length"`
	// GuestAccess allows guest registration (off by default).
	GuestAccess bool `yaml:"guest_access"`
}

// RateLimits configures per-account and per-IP request rate limiting.
type RateLimits struct {
	Enabled bool `yaml:"enabled"`
	// PerSecond and Burst apply to each authenticated user and each IP.
	PerSecond float64 `yaml:"per_second"`
	Burst     int     `yaml:"burst"`
	// LoginPerMinute bounds login and registration attempts per IP and per account.
	LoginPerMinute int `yaml:"login_per_minute"`
}

// Presence controls presence sharing (off by default: nothing is shared).
type Presence struct {
	Enabled bool `yaml:"enabled"`
}

// Limits bounds requests.
type Limits struct {
	// MaxRequestBytes bounds JSON request bodies.
	MaxRequestBytes int64 `yaml:"max_request_bytes"`
	// MaxHeaderBytes bounds request headers.
	MaxHeaderBytes int `yaml:"max_header_bytes"`
	// ReadTimeout bounds the time to read a request (slow clients).
	ReadTimeout time.Duration `yaml:"read_timeout"`
	// PasswordHashConcurrency bounds concurrent password hashing.
	PasswordHashConcurrency int `yaml:"password_hash_concurrency"`
	// PasswordHashMemoryKiB and PasswordHashIterations are the argon2id
	// cost of new password hashes (existing hashes keep the cost they
	// were made with).
	PasswordHashMemoryKiB  int `yaml:"password_hash_memory_kib"`
	PasswordHashIterations int `yaml:"password_hash_iterations"`
}

// Rooms configures room defaults.
type Rooms struct {
	// DefaultVersion is the room version for new rooms (10, 11 or 12).
	DefaultVersion string `yaml:"default_version"`
}

// Log configures structured logging.
type Log struct {
	Level  string `yaml:"level"`  // debug, info, warn, error
	Format string `yaml:"format"` // text or json
}

// Default returns the configuration used when no file is given.
func Default() Config {
	return Config{
		ServerName:    "localhost",
		PublicBaseURL: "http://127.0.0.1:8008/",
		Listen:        "127.0.0.1:8008",
		AdminListen:   "127.0.0.1:8009",
		DataDir:       "rempart-data",
		Registration:  Registration{Mode: "closed", PasswordMinLength: 8},
		RateLimits:    RateLimits{Enabled: true, PerSecond: 10, Burst: 50, LoginPerMinute: 10},
		Limits: Limits{
			MaxRequestBytes:         1 << 20,
			MaxHeaderBytes:          32 << 10,
			ReadTimeout:             30 * time.Second,
			PasswordHashConcurrency: 2,
			PasswordHashMemoryKiB:   64 * 1024,
			PasswordHashIterations:  1,
		},
		Rooms:         Rooms{DefaultVersion: "11"},
		UserDirectory: defaultUserDirectory(),
		RoomDirectory: defaultRoomDirectory(),
		Media:         defaultMedia(),
		Log:           Log{Level: "info", Format: "text"},
	}
}

// Error is a configuration error naming the offending key.
type Error struct {
	Key string
	Msg string
}

func (e *Error) Error() string { return fmt.Sprintf("config: %s: %s", e.Key, e.Msg) }

// Load reads a YAML file over the defaults and validates the result.
// Unknown keys are errors.
func Load(path string) (Config, error) {
	cfg := Default()
	b, err := os.ReadFile(path)
	if err != nil {
		return cfg, fmt.Errorf("config: %w", err)
	}
	if err := Parse(b, &cfg); err != nil {
		return cfg, err
	}
	return cfg, nil
}

var unknownFieldRe = regexp.MustCompile(`line (\d+): field (\S+) not found in type config\.(\w+)`)

// Parse decodes YAML into cfg (which holds defaults) and validates it.
func Parse(b []byte, cfg *Config) error {
	dec := yaml.NewDecoder(bytes.NewReader(b))
	dec.KnownFields(true)
	if err := dec.Decode(cfg); err != nil && !errors.Is(err, io.EOF) {
		msg := err.Error()
		if m := unknownFieldRe.FindStringSubmatch(msg); m != nil {
			key := m[2]
			if sec := sectionKey(m[3]); sec != "" {
				key = sec + "." + key
			}
			return &Error{Key: key, Msg: "unknown key (line " + m[1] + ")"}
		}
		return &Error{Key: "(file)", Msg: strings.TrimPrefix(msg, "yaml: ")}
	}
	return cfg.Validate()
}

// sectionKey maps a Go struct name to its YAML section for error messages.
func sectionKey(typ string) string {
	switch typ {
	case "Config":
		return ""
	case "RateLimits":
		return "rate_limits"
	case "UserDirectory":
		return "user_directory"
	case "RoomDirectory":
		return "room_directory"
	case "Thumbnails", "Antivirus":
		return "media." + strings.ToLower(typ)
	case "ContentScanner":
		return "media.content_scanner"
	case "PreviewURL":
		return "media.preview_url"
	}
	return strings.ToLower(typ)
}

var serverNameRe = regexp.MustCompile(`^[A-Za-z0-9.\-]+(:[0-9]{1,5})?$|^\[[0-9A-Fa-f:.]+\](:[0-9]{1,5})?$`)

// Validate checks every value and reports the first bad key.
func (c *Config) Validate() error {
	if c.ServerName == "" || !serverNameRe.MatchString(c.ServerName) {
		return &Error{"server_name", fmt.Sprintf("%q is not a valid server name", c.ServerName)}
	}
	if _, _, err := net.SplitHostPort(c.Listen); err != nil {
		return &Error{"listen", fmt.Sprintf("%q is not host:port", c.Listen)}
	}
	if c.AdminListen != "" {
		if _, _, err := net.SplitHostPort(c.AdminListen); err != nil {
			return &Error{"admin_listen", fmt.Sprintf("%q is not host:port", c.AdminListen)}
		}
	}
	if c.DataDir == "" {
		return &Error{"data_dir", "must not be empty"}
	}
	switch c.Registration.Mode {
	case "closed", "open", "token":
	default:
		return &Error{"registration.mode", fmt.Sprintf("%q is not one of closed, open, token", c.Registration.Mode)}
	}
	if c.Registration.PasswordMinLength < 1 || c.Registration.PasswordMinLength > 512 {
		return &Error{"registration.password_min_length", "must be between 1 and 512"}
	}
	if c.RateLimits.PerSecond < 0 || c.RateLimits.Burst < 0 || c.RateLimits.LoginPerMinute < 0 {
		return &Error{"rate_limits", "values must not be negative"}
	}
	if c.Limits.MaxRequestBytes < 1024 || c.Limits.MaxRequestBytes > 1<<30 {
		return &Error{"limits.max_request_bytes", "must be between 1024 and 1073741824"}
	}
	if c.Limits.MaxHeaderBytes < 1024 {
		return &Error{"limits.max_header_bytes", "must be at least 1024"}
	}
	if c.Limits.ReadTimeout < time.Second {
		return &Error{"limits.read_timeout", "must be at least 1s"}
	}
	if c.Limits.PasswordHashConcurrency < 1 {
		return &Error{"limits.password_hash_concurrency", "must be at least 1"}
	}
	if c.Limits.PasswordHashMemoryKiB < 64 || c.Limits.PasswordHashMemoryKiB > 4<<20 {
		return &Error{"limits.password_hash_memory_kib", "must be between 64 and 4194304"}
	}
	if c.Limits.PasswordHashIterations < 1 || c.Limits.PasswordHashIterations > 100 {
		return &Error{"limits.password_hash_iterations", "must be between 1 and 100"}
	}
	switch c.Rooms.DefaultVersion {
	case "10", "11", "12":
	default:
		return &Error{"rooms.default_version", fmt.Sprintf("%q is not one of 10, 11, 12", c.Rooms.DefaultVersion)}
	}
	if err := c.UserDirectory.validate(); err != nil {
		return err
	}
	if err := c.RoomDirectory.validate(); err != nil {
		return err
	}
	if err := c.Media.validate(); err != nil {
		return err
	}
	switch c.Log.Level {
	case "debug", "info", "warn", "error":
	default:
		return &Error{"log.level", fmt.Sprintf("%q is not one of debug, info, warn, error", c.Log.Level)}
	}
	switch c.Log.Format {
	case "text", "json":
	default:
		return &Error{"log.format", fmt.Sprintf("%q is not one of text, json", c.Log.Format)}
	}
	return nil
}

// DatabaseURL returns the database to open: the configured URL or the
// embedded SQLite file under the data directory.
func (c *Config) DatabaseURL() string {
	if c.Database.URL != "" {
		return c.Database.URL
	}
	return filepath.Join(c.DataDir, "rempart.db")
}

// AuditKeyFile returns the audit log's chain key path.
func (c *Config) AuditKeyFile() string {
	if c.AuditKeyPath != "" {
		return c.AuditKeyPath
	}
	return filepath.Join(c.DataDir, "audit.key")
}

// KeyPath returns the signing key path.
func (c *Config) KeyPath() string {
	if c.SigningKeyPath != "" {
		return c.SigningKeyPath
	}
	return filepath.Join(c.DataDir, "signing.key")
}

//go:embed example.yaml
var example string

// Example returns the complete commented example configuration.
func Example() string { return example }
