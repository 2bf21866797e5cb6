// Package testserver starts a real Rempart server for tests, on a random
// loopback port with a fresh database, and gives tests real Matrix clients
// (maunium.net/go/mautrix) to drive it over HTTP.
//
// The backend is chosen by REMPART_TEST_DB: "sqlite" (default) or
// "postgres". For PostgreSQL, REMPART_TEST_PG_URL names a server to create
// throw-away databases on (default
// postgres://postgres@127.0.0.1:5432/postgres?sslmode=disable).
package testserver

import (
	"context"
	"crypto/rand"
	"database/sql"
	"encoding/hex"
	"fmt"
	"net"
	"net/url"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	_ "github.com/jackc/pgx/v5/stdlib" // PostgreSQL driver for database setup
	"maunium.net/go/mautrix"
	"maunium.net/go/mautrix/id"

	"github.com/rempart-hs/rempart/internal/config"
	"github.com/rempart-hs/rempart/internal/server"
)

// Server is a running test homeserver.
type Server struct {
	// URL is the client API base URL, e.g. http://127.0.0.1:39123.
	URL    string
	Config config.Config
	Srv    *server.Server

	t      testing.TB
	cancel context.CancelFunc
	done   chan error
}

// Backend returns the backend under test: "sqlite" or "postgres".
func Backend() string {
	if b := os.Getenv("REMPART_TEST_DB"); b != "" {
		return b
	}
	return "sqlite"
}

// Option adjusts the test configuration before start-up.
type Option func(*config.Config)

// TestConfig is the test profile: registration open, rate limits off,
// cheap password hashes (argon2id at 1 MiB: tests create hundreds of
// accounts), the admin listener on a random loopback port. It is never the
// default.
func TestConfig(t testing.TB) config.Config {
	cfg := config.Default()
	cfg.DataDir = t.TempDir()
	cfg.Listen = "127.0.0.1:0"
	cfg.AdminListen = "127.0.0.1:0"
	cfg.Registration.Mode = "open"
	cfg.Registration.SharedSecret = "test-shared-secret"
	cfg.RateLimits.Enabled = false
	cfg.Limits.PasswordHashMemoryKiB = 1024
	cfg.Log.Level = "warn"
	if Backend() == "postgres" {
		cfg.Database.URL = newPostgresDB(t)
	}
	return cfg
}

// Start starts a server with the test profile and stops it at cleanup.
func Start(t testing.TB, opts ...Option) *Server {
	t.Helper()
	cfg := TestConfig(t)
	for _, o := range opts {
		o(&cfg)
	}
	if err := cfg.Validate(); err != nil {
		t.Fatalf("test config: %v", err)
	}
	s := &Server{Config: cfg, t: t}
	s.start()
	t.Cleanup(s.Stop)
	return s
}

func (s *Server) start() {
	s.t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	srv, err := server.New(ctx, s.Config)
	if err != nil {
		cancel()
		s.t.Fatalf("start server: %v", err)
	}
	ready := make(chan struct{})
	done := make(chan error, 1)
	go func() { done <- srv.Serve(ctx, func() { close(ready) }) }()
	select {
	case <-ready:
	case err := <-done:
		cancel()
		s.t.Fatalf("serve: %v", err)
	case <-time.After(30 * time.Second):
		cancel()
		s.t.Fatalf("server did not start")
	}
	s.Srv, s.cancel, s.done = srv, cancel, done
	s.URL = "http://" + srv.ClientAddr
	// Keep the same ports across restarts.
	s.Config.Listen = srv.ClientAddr
	if srv.AdminAddr != "" {
		s.Config.AdminListen = srv.AdminAddr
	}
}

// AdminURL is the admin listener's base URL.
func (s *Server) AdminURL() string { return "http://" + s.Srv.AdminAddr }

// Stop shuts the server down gracefully (idempotent).
func (s *Server) Stop() {
	if s.cancel == nil {
		return
	}
	s.cancel()
	if err := <-s.done; err != nil {
		s.t.Errorf("server stopped with error: %v", err)
	}
	s.cancel = nil
}

// Restart stops the server and starts it again on the same database, data
// directory and port.
func (s *Server) Restart() {
	s.t.Helper()
	s.Stop()
	for i := 0; i < 50; i++ { // the port may take a moment to free
		l, err := net.Listen("tcp", s.Config.Listen)
		if err == nil {
			l.Close()
			break
		}
		time.Sleep(50 * time.Millisecond)
	}
	s.start()
}

var userSeq struct {
	sync.Mutex
	n int
}

// UniqueName returns a localpart not used before in this process.
func UniqueName(prefix string) string {
	userSeq.Lock()
	defer userSeq.Unlock()
	userSeq.n++
	return fmt.Sprintf("%s%d", strings.ToLower(prefix), userSeq.n)
}

// Password is the password of every user made by RegisterUser.
const Password = "correct horse battery staple"

// Client returns an unauthenticated mautrix client for the server.
func (s *Server) Client() *mautrix.Client {
	s.t.Helper()
	cli, err := mautrix.NewClient(s.URL, "", "")
	if err != nil {
		s.t.Fatalf("new client: %v", err)
	}
	return cli
}

// RegisterUser registers a fresh user (localpart derived from prefix) with
// the dummy registration flow and returns a logged-in client.
func (s *Server) RegisterUser(prefix string) *mautrix.Client {
	s.t.Helper()
	cli := s.Client()
	resp, err := cli.RegisterDummy(context.Background(), &mautrix.ReqRegister[any]{
		Username: UniqueName(prefix), Password: Password, InitialDeviceDisplayName: "test device",
	})
	if err != nil {
		s.t.Fatalf("register: %v", err)
	}
	cli.UserID, cli.AccessToken, cli.DeviceID = resp.UserID, resp.AccessToken, resp.DeviceID
	return cli
}

// Login logs an existing user in with a new device.
func (s *Server) Login(userID id.UserID) *mautrix.Client {
	s.t.Helper()
	cli := s.Client()
	_, err := cli.Login(context.Background(), &mautrix.ReqLogin{
		Type: mautrix.AuthTypePassword, Identifier: mautrix.UserIdentifier{Type: mautrix.IdentifierTypeUser, User: userID.String()},
		Password: Password, StoreCredentials: true,
	})
	if err != nil {
		s.t.Fatalf("login: %v", err)
	}
	return cli
}

// PostgresAdminURL is the PostgreSQL server tests create databases on.
func PostgresAdminURL() string {
	if u := os.Getenv("REMPART_TEST_PG_URL"); u != "" {
		return u
	}
	return "postgres://postgres@127.0.0.1:5432/postgres?sslmode=disable"
}

// newPostgresDB creates an empty database for one test and drops it at
// cleanup, returning its URL.
func newPostgresDB(t testing.TB) string {
	t.Helper()
	admin := PostgresAdminURL()
	db, err := sql.Open("pgx", admin)
	if err != nil {
		t.Fatalf("postgres: %v", err)
	}
	b := make([]byte, 6)
	_, _ = rand.Read(b)
	name := "rempart_test_" + hex.EncodeToString(b)
	if _, err := db.Exec("CREATE DATABASE " + name); err != nil {
		db.Close()
		t.Fatalf("create database (is PostgreSQL running at %s?): %v", admin, err)
	}
	u, err := url.Parse(admin)
	if err != nil {
		t.Fatalf("parse %s: %v", admin, err)
	}
	u.Path = "/" + name
	t.Cleanup(func() {
		_, _ = db.Exec("DROP DATABASE IF EXISTS " + name + " WITH (FORCE)")
		db.Close()
	})
	return u.String()
}
