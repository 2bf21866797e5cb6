// Package server assembles a Rempart homeserver from its configuration:
// storage, the room engine, sync, the HTTP routers and listeners, and
// graceful shutdown.
package server

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/http/pprof"
	"time"

	"github.com/rempart-hs/rempart/internal/audit"
	"github.com/rempart-hs/rempart/internal/auth"
	"github.com/rempart-hs/rempart/internal/clientapi"
	"github.com/rempart-hs/rempart/internal/config"
	"github.com/rempart-hs/rempart/internal/e2ee"
	"github.com/rempart-hs/rempart/internal/guard"
	"github.com/rempart-hs/rempart/internal/httpapi"
	"github.com/rempart-hs/rempart/internal/media"
	"github.com/rempart-hs/rempart/internal/notifier"
	"github.com/rempart-hs/rempart/internal/policy"
	"github.com/rempart-hs/rempart/internal/pushrules"
	"github.com/rempart-hs/rempart/internal/rooms"
	"github.com/rempart-hs/rempart/internal/signing"
	"github.com/rempart-hs/rempart/internal/storage"
	"github.com/rempart-hs/rempart/internal/syncapi"
	"github.com/rempart-hs/rempart/internal/typing"
)

// Server is a running homeserver.
type Server struct {
	Config   config.Config
	DB       *storage.DB
	Auth     *auth.Service
	Rooms    *rooms.Engine
	Sync     *syncapi.Service
	Notifier *notifier.Notifier
	Typing   *typing.Tracker
	E2EE     *e2ee.Service
	Media    *media.Service
	// Audit is the tamper-evident audit log of sensitive acts.
	Audit *audit.Log

	client   *http.Server
	admin    *http.Server
	lastSeen *auth.LastSeen
	// ClientAddr and AdminAddr are the bound listener addresses.
	ClientAddr string
	AdminAddr  string
}

// New opens the database, loads the signing key and wires every component.
func New(ctx context.Context, cfg config.Config) (*Server, error) {
	db, err := storage.Open(ctx, cfg.DatabaseURL())
	if err != nil {
		return nil, err
	}
	key, err := signing.LoadOrCreate(cfg.KeyPath())
	if err != nil {
		db.Close()
		return nil, err
	}
	auditKey, err := audit.LoadOrCreateKey(cfg.AuditKeyFile())
	if err != nil {
		db.Close()
		return nil, err
	}
	s := &Server{Config: cfg, DB: db}
	s.Audit = audit.New(db, auditKey)
	s.Notifier = notifier.New(db)
	s.Typing = typing.New(s.Notifier)
	s.Auth = auth.New(db, cfg.ServerName, cfg.Limits.PasswordHashConcurrency)
	s.Auth.SetPasswordCost(uint32(cfg.Limits.PasswordHashMemoryKiB), uint32(cfg.Limits.PasswordHashIterations))
	pol := policy.New(db, &s.Config)
	s.Rooms = rooms.NewEngine(db, rooms.Config{ServerName: cfg.ServerName, KeyID: key.ID, Key: key.Priv, DefaultVersion: cfg.Rooms.DefaultVersion}, s.Notifier, pol)
	// Push rules are evaluated for each event stored, for unread counts:
	// for messages before they are queued, off the writer.
	push := pushrules.NewEvaluator(cfg.ServerName)
	s.Rooms.AddPreparedHook(push.EventStored, func(ctx context.Context, db *storage.DB, ev *storage.Event) (rooms.StoredHook, error) {
		finish, err := push.Prepare(ctx, db, ev)
		return rooms.StoredHook(finish), err
	})
	s.Sync = syncapi.New(db, s.Rooms, s.Notifier, s.Typing)
	s.E2EE = e2ee.New(db, s.Notifier, s.Auth)
	s.Sync.AddExtension(s.E2EE)
	if s.Media, err = media.New(&s.Config, db, s.Audit); err != nil {
		db.Close()
		return nil, err
	}

	rt := httpapi.NewRouter(s.Auth)
	rt.AddHook(guard.NewRateLimiter(cfg.RateLimits))
	s.lastSeen = auth.NewLastSeen(db, time.Minute)
	rt.AddHook(s.lastSeen)
	api := &clientapi.API{Config: &s.Config, DB: db, Auth: s.Auth, Rooms: s.Rooms, Sync: s.Sync, Typing: s.Typing, Notifier: s.Notifier}
	api.Policy = pol
	api.DeviceHooks = append(api.DeviceHooks, s.E2EE.DeviceDeleted, deletePushers)
	api.Register(rt)
	s.E2EE.Register(rt)
	s.Media.Register(rt)
	s.client = &http.Server{
		Handler:           httpapi.Middleware(rt, httpapi.Limits{MaxBodyBytes: cfg.Limits.MaxRequestBytes, BodyLimitFor: s.Media.BodyLimit}),
		MaxHeaderBytes:    cfg.Limits.MaxHeaderBytes,
		ReadHeaderTimeout: 10 * time.Second,
		ReadTimeout:       cfg.Limits.ReadTimeout,
		IdleTimeout:       2 * time.Minute,
		ErrorLog:          slog.NewLogLogger(slog.Default().Handler(), slog.LevelWarn),
	}
	if cfg.AdminListen != "" {
		s.admin = &http.Server{
			Handler:           adminHandler(db, cfg.AdminPprof),
			MaxHeaderBytes:    cfg.Limits.MaxHeaderBytes,
			ReadHeaderTimeout: 10 * time.Second,
			ReadTimeout:       cfg.Limits.ReadTimeout,
		}
	}
	return s, nil
}

// adminHandler serves the admin listener. The admin API proper comes with
// its own issue; for now it answers health checks and, when configured,
// serves the Go profiler.
func adminHandler(db *storage.DB, profiler bool) http.Handler {
	mux := http.NewServeMux()
	if profiler {
		mux.HandleFunc("GET /debug/pprof/", pprof.Index)
		mux.HandleFunc("GET /debug/pprof/cmdline", pprof.Cmdline)
		mux.HandleFunc("GET /debug/pprof/profile", pprof.Profile)
		mux.HandleFunc("GET /debug/pprof/symbol", pprof.Symbol)
		mux.HandleFunc("GET /debug/pprof/trace", pprof.Trace)
	}
	mux.HandleFunc("GET /health", func(w http.ResponseWriter, r *http.Request) {
		if _, err := db.MaxStreamPos(r.Context()); err != nil {
			httpapi.WriteError(w, r, err)
			return
		}
		httpapi.WriteJSON(w, http.StatusOK, map[string]string{"status": "ok"})
	})
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		httpapi.WriteError(w, r, httpapi.Unrecognized("unrecognized request"))
	})
	return mux
}

// Serve listens on the configured addresses and serves until ctx is
// cancelled, then shuts down gracefully: it stops accepting, releases
// long-polling syncs, waits for in-flight requests (up to 20 s) and closes
// the database. ready, if not nil, is called once the listeners are bound.
func (s *Server) Serve(ctx context.Context, ready func()) error {
	cl, err := net.Listen("tcp", s.Config.Listen)
	if err != nil {
		s.DB.Close()
		return fmt.Errorf("listen %s: %w", s.Config.Listen, err)
	}
	s.ClientAddr = cl.Addr().String()
	var al net.Listener
	if s.admin != nil {
		if al, err = net.Listen("tcp", s.Config.AdminListen); err != nil {
			cl.Close()
			s.DB.Close()
			return fmt.Errorf("listen %s: %w", s.Config.AdminListen, err)
		}
		s.AdminAddr = al.Addr().String()
	}
	errs := make(chan error, 2)
	go func() { errs <- s.client.Serve(cl) }()
	if al != nil {
		go func() { errs <- s.admin.Serve(al) }()
	}
	slog.Info("rempart serving", "server_name", s.Config.ServerName, "client", s.ClientAddr, "admin", s.AdminAddr)
	if ready != nil {
		ready()
	}
	var serveErr error
	select {
	case <-ctx.Done():
	case serveErr = <-errs:
	}
	slog.Info("shutting down")
	s.Notifier.Shutdown()
	sctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	if err := s.client.Shutdown(sctx); err != nil {
		slog.Warn("client listener shutdown", "err", err)
	}
	if s.admin != nil {
		_ = s.admin.Shutdown(sctx)
	}
	s.Media.Close()
	s.lastSeen.Close()
	if err := s.DB.Close(); err != nil {
		slog.Warn("close database", "err", err)
	}
	if serveErr != nil && !errors.Is(serveErr, http.ErrServerClosed) {
		return serveErr
	}
	return nil
}

// deletePushers removes the pushers a deleted device registered.
func deletePushers(ctx context.Context, tx *storage.Tx, userID, deviceID string) error {
	return tx.DeleteDevicePushers(ctx, userID, deviceID)
}
