// Command rempart runs and administers a Rempart homeserver.
//
//	rempart serve [--config rempart.yaml]
//	rempart config example
//	rempart config check --config rempart.yaml
//	rempart user create NAME [--admin] [--password-file F] [--config …]
//	rempart token create [--uses N] [--expires 24h] [--config …]
//	rempart media quarantine|unquarantine|delete|list (MXC | --user U | --room R)
//	rempart audit verify|list [--config …]
package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/rempart-hs/rempart/internal/audit"
	"github.com/rempart-hs/rempart/internal/auth"
	"github.com/rempart-hs/rempart/internal/config"
	"github.com/rempart-hs/rempart/internal/server"
	"github.com/rempart-hs/rempart/internal/storage"
)

const usage = `usage:
  rempart serve [--config FILE]           run the homeserver
  rempart config example                  print a complete commented configuration
  rempart config check --config FILE      validate a configuration file
  rempart user create NAME [--admin] [--password-file FILE] [--config FILE]
  rempart token create [--uses N] [--expires DURATION] [--config FILE]
  rempart media (quarantine|unquarantine|delete|list) (MXC | --user ID | --room ID) [--config FILE]
  rempart audit (verify|list) [--config FILE]  check or read the tamper-evident audit log
`

func main() {
	os.Exit(run(os.Args[1:], os.Stdin, os.Stdout, os.Stderr))
}

// run executes a command and returns the process exit code: 0 success,
// 1 runtime failure, 2 bad usage or configuration.
func run(args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		fmt.Fprint(stderr, usage)
		return 2
	}
	switch args[0] {
	case "serve":
		return cmdServe(args[1:], stderr)
	case "config":
		if len(args) >= 2 && args[1] == "example" {
			fmt.Fprint(stdout, config.Example())
			return 0
		}
		if len(args) >= 2 && args[1] == "check" {
			if _, code := loadConfig("config check", args[2:], stderr); code != 0 {
				return code
			}
			fmt.Fprintln(stdout, "configuration OK")
			return 0
		}
	case "user":
		if len(args) >= 2 && args[1] == "create" {
			return cmdUserCreate(args[2:], stdin, stdout, stderr)
		}
	case "token":
		if len(args) >= 2 && args[1] == "create" {
			return cmdTokenCreate(args[2:], stdout, stderr)
		}
	case "media":
		return cmdMedia(args[1:], stdout, stderr)
	case "audit":
		return cmdAudit(args[1:], stdout, stderr)
	case "help", "-h", "--help":
		fmt.Fprint(stdout, usage)
		return 0
	}
	fmt.Fprint(stderr, usage)
	return 2
}

// loadConfig parses --config from args (plus any extra flags registered on
// fs by the caller) and loads it, or the defaults when absent.
func loadConfig(name string, args []string, stderr io.Writer, extra ...func(*flag.FlagSet)) (config.Config, int) {
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	fs.SetOutput(stderr)
	path := fs.String("config", "", "configuration file (YAML)")
	for _, e := range extra {
		e(fs)
	}
	if err := fs.Parse(reorder(args)); err != nil {
		return config.Config{}, 2
	}
	cfg := config.Default()
	if *path != "" {
		var err error
		if cfg, err = config.Load(*path); err != nil {
			fmt.Fprintln(stderr, err)
			return cfg, 2
		}
	}
	return cfg, 0
}

// reorder moves positional arguments after flags so that
// "user create alice --admin" parses like "user create --admin alice".
func reorder(args []string) []string {
	var flags, pos []string
	for i := 0; i < len(args); i++ {
		a := args[i]
		if strings.HasPrefix(a, "-") {
			flags = append(flags, a)
			if !strings.Contains(a, "=") && i+1 < len(args) && !isBoolFlag(a) {
				flags = append(flags, args[i+1])
				i++
			}
			continue
		}
		pos = append(pos, a)
	}
	return append(flags, pos...)
}

func isBoolFlag(f string) bool {
	f = strings.TrimLeft(f, "-")
	return f == "admin"
}

func setupLogging(cfg config.Config, stderr io.Writer) {
	var level slog.Level
	_ = level.UnmarshalText([]byte(cfg.Log.Level))
	opts := &slog.HandlerOptions{Level: level}
	var h slog.Handler = slog.NewTextHandler(stderr, opts)
	if cfg.Log.Format == "json" {
		h = slog.NewJSONHandler(stderr, opts)
	}
	slog.SetDefault(slog.New(h))
}

func cmdServe(args []string, stderr io.Writer) int {
	cfg, code := loadConfig("serve", args, stderr)
	if code != 0 {
		return code
	}
	setupLogging(cfg, stderr)
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	srv, err := server.New(ctx, cfg)
	if err != nil {
		slog.Error("start-up failed", "err", err)
		return 1
	}
	if err := srv.Serve(ctx, nil); err != nil {
		slog.Error("server stopped", "err", err)
		return 1
	}
	return 0
}

func cmdUserCreate(args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	var admin *bool
	var pwFile *string
	cfg, code := loadConfig("user create", args, stderr, func(fs *flag.FlagSet) {
		admin = fs.Bool("admin", false, "make the user a server admin")
		pwFile = fs.String("password-file", "", "read the password from this file (default: standard input)")
	})
	if code != 0 {
		return code
	}
	pos := positional(args)
	if len(pos) != 1 {
		fmt.Fprint(stderr, "user create needs exactly one NAME\n"+usage)
		return 2
	}
	var raw []byte
	var err error
	if *pwFile != "" {
		raw, err = os.ReadFile(*pwFile)
	} else {
		raw, err = io.ReadAll(io.LimitReader(stdin, 4096))
	}
	if err != nil {
		fmt.Fprintln(stderr, "read password:", err)
		return 1
	}
	pw := strings.TrimRight(string(raw), "\r\n")
	if err := auth.CheckPasswordPolicy(pw, cfg.Registration.PasswordMinLength); err != nil {
		fmt.Fprintln(stderr, "password refused:", err)
		return 2
	}
	setupLogging(cfg, stderr)
	ctx := context.Background()
	db, err := storage.Open(ctx, cfg.DatabaseURL())
	if err != nil {
		fmt.Fprintln(stderr, err)
		return 1
	}
	defer db.Close()
	svc := auth.New(db, cfg.ServerName, 1)
	hash, err := svc.HashPassword(ctx, pw)
	if err != nil {
		fmt.Fprintln(stderr, err)
		return 1
	}
	log, err := openAudit(cfg, db)
	if err != nil {
		fmt.Fprintln(stderr, err)
		return 1
	}
	var userID string
	err = db.WithTx(ctx, func(tx *storage.Tx) error {
		var err error
		if userID, err = svc.CreateAccount(ctx, tx, auth.NewAccount{Localpart: strings.ToLower(pos[0]), Admin: *admin}, hash); err != nil {
			return err
		}
		return log.RecordTx(ctx, tx, audit.Entry{Actor: "cli:user create", Action: "user.create", Target: userID,
			Details: map[string]any{"admin": *admin}})
	})
	if err != nil {
		fmt.Fprintln(stderr, "create user:", err)
		return 1
	}
	fmt.Fprintln(stdout, userID)
	return 0
}

// positional returns the non-flag arguments.
func positional(args []string) []string {
	var out []string
	r := reorder(args)
	for i := 0; i < len(r); i++ {
		if strings.HasPrefix(r[i], "-") {
			if !strings.Contains(r[i], "=") && !isBoolFlag(r[i]) {
				i++
			}
			continue
		}
		out = append(out, r[i])
	}
	return out
}

func cmdTokenCreate(args []string, stdout, stderr io.Writer) int {
	var uses *int
	var expires *time.Duration
	cfg, code := loadConfig("token create", args, stderr, func(fs *flag.FlagSet) {
		uses = fs.Int("uses", 1, "number of registrations allowed (0: unlimited)")
		expires = fs.Duration("expires", 7*24*time.Hour, "validity (0: never expires)")
	})
	if code != 0 {
		return code
	}
	if *uses < 0 || *expires < 0 {
		fmt.Fprintln(stderr, "--uses and --expires must not be negative")
		return 2
	}
	ctx := context.Background()
	db, err := storage.Open(ctx, cfg.DatabaseURL())
	if err != nil {
		fmt.Fprintln(stderr, err)
		return 1
	}
	defer db.Close()
	tok, _ := auth.NewToken("")
	tok = tok[:24]
	t := storage.RegistrationToken{Token: tok}
	if *uses > 0 {
		t.UsesAllowed = uses
	}
	if *expires > 0 {
		t.ExpiryTS = time.Now().Add(*expires).UnixMilli()
	}
	log, err := openAudit(cfg, db)
	if err != nil {
		fmt.Fprintln(stderr, err)
		return 1
	}
	err = db.WithTx(ctx, func(tx *storage.Tx) error {
		if err := tx.CreateRegistrationToken(ctx, t); err != nil {
			return err
		}
		return log.RecordTx(ctx, tx, audit.Entry{Actor: "cli:token create", Action: "registration_token.create", Target: tokenRef(tok),
			Details: map[string]any{"uses_allowed": *uses, "expiry_ts": t.ExpiryTS}})
	})
	if err != nil {
		fmt.Fprintln(stderr, "create token:", err)
		return 1
	}
	if cfg.Registration.Mode != "token" {
		fmt.Fprintln(stderr, "note: registration.mode is not \"token\"; this token is not usable until it is")
	}
	fmt.Fprintln(stdout, tok)
	return 0
}
