package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"

	"github.com/rempart-hs/rempart/internal/media"
	"github.com/rempart-hs/rempart/internal/storage"
)

const mediaUsage = `usage:
  rempart media quarantine (MXC | --user USER_ID | --room ROOM_ID) [--config FILE]
  rempart media unquarantine MXC [--config FILE]
  rempart media delete (MXC | --user USER_ID | --room ROOM_ID) [--config FILE]
  rempart media list --user USER_ID [--config FILE]
MXC is mxc://SERVER/ID or a bare local media ID. Quarantined media stays on
disk for investigation and is served to nobody; deleted media is removed,
its content too once no other media ID shares it.
`

// cmdMedia runs `rempart media …`: quarantine, unquarantine, delete and
// list local media, by ID, by uploader or by the room that refers to it.
func cmdMedia(args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		fmt.Fprint(stderr, mediaUsage)
		return 2
	}
	action := args[0]
	switch action {
	case "quarantine", "unquarantine", "delete", "list":
	default:
		fmt.Fprint(stderr, mediaUsage)
		return 2
	}
	var user, room *string
	cfg, code := loadConfig("media "+action, args[1:], stderr, func(fs *flag.FlagSet) {
		user = fs.String("user", "", "every media ID this user uploaded")
		room = fs.String("room", "", "every local media ID the room's events refer to")
	})
	if code != 0 {
		return code
	}
	pos := positional(args[1:])
	targets := len(pos)
	if *user != "" {
		targets++
	}
	if *room != "" {
		targets++
	}
	if targets != 1 || len(pos) > 1 || (action == "unquarantine" && len(pos) != 1) || (action == "list" && *user == "") {
		fmt.Fprint(stderr, mediaUsage)
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
	log, err := openAudit(cfg, db)
	if err != nil {
		fmt.Fprintln(stderr, err)
		return 1
	}
	svc, err := media.New(&cfg, db, log)
	if err != nil {
		fmt.Fprintln(stderr, err)
		return 1
	}
	defer svc.Close()

	var ids []string
	switch {
	case len(pos) == 1:
		id, err := svc.ParseMediaRef(pos[0])
		if err != nil {
			fmt.Fprintln(stderr, err)
			return 2
		}
		ids = []string{id}
	case *user != "":
		ids, err = svc.UserMedia(ctx, *user)
	default:
		ids, err = svc.RoomMedia(ctx, *room)
	}
	if err != nil {
		fmt.Fprintln(stderr, err)
		return 1
	}
	status := 0
	done := 0
	for _, id := range ids {
		var err error
		switch action {
		case "list":
			fmt.Fprintf(stdout, "mxc://%s/%s\n", cfg.ServerName, id)
			continue
		case "quarantine":
			err = svc.SetQuarantined(ctx, "cli:media quarantine", id, true)
		case "unquarantine":
			err = svc.SetQuarantined(ctx, "cli:media unquarantine", id, false)
		case "delete":
			err = svc.Delete(ctx, "cli:media delete", id)
		}
		if errors.Is(err, storage.ErrNotFound) && len(pos) == 0 {
			continue // a room may refer to media that is already gone
		}
		if err != nil {
			if errors.Is(err, storage.ErrNotFound) {
				err = fmt.Errorf("no such media")
			}
			fmt.Fprintf(stderr, "%s mxc://%s/%s: %v\n", action, cfg.ServerName, id, err)
			status = 1
			continue
		}
		done++
	}
	if action != "list" {
		fmt.Fprintf(stdout, "%sd %d media\n", action, done)
	}
	return status
}
