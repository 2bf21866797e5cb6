package main

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"time"

	"github.com/rempart-hs/rempart/internal/audit"
	"github.com/rempart-hs/rempart/internal/config"
	"github.com/rempart-hs/rempart/internal/storage"
)

const auditUsage = `usage:
  rempart audit verify [--config FILE]
      check the whole chain; prints the head (keep it elsewhere) and exits 1
      when a record was altered, inserted or removed
  rempart audit list [--actor ID] [--action NAME] [--after SEQ] [--limit N] [--config FILE]
      print records as JSON lines, oldest first
`

// openAudit returns the audit log of db under the configured chain key.
func openAudit(cfg config.Config, db *storage.DB) (*audit.Log, error) {
	key, err := audit.LoadOrCreateKey(cfg.AuditKeyFile())
	if err != nil {
		return nil, err
	}
	return audit.New(db, key), nil
}

// tokenRef names a secret in the audit log without revealing it.
func tokenRef(tok string) string {
	h := sha256.Sum256([]byte(tok))
	return "sha256:" + hex.EncodeToString(h[:8])
}

// cmdAudit runs `rempart audit verify|list`.
func cmdAudit(args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 || (args[0] != "verify" && args[0] != "list") {
		fmt.Fprint(stderr, auditUsage)
		return 2
	}
	var actor, action *string
	var after *int64
	var limit *int
	cfg, code := loadConfig("audit "+args[0], args[1:], stderr, func(fs *flag.FlagSet) {
		actor = fs.String("actor", "", "only records of this actor")
		action = fs.String("action", "", "only records of this action")
		after = fs.Int64("after", 0, "only records after this sequence number")
		limit = fs.Int("limit", 1000, "at most this many records")
	})
	if code != 0 {
		return code
	}
	if len(positional(args[1:])) != 0 || *limit <= 0 {
		fmt.Fprint(stderr, auditUsage)
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
	if args[0] == "list" {
		recs, err := db.AuditRecords(ctx, *after, *limit, storage.AuditFilter{Actor: *actor, Action: *action})
		if err != nil {
			fmt.Fprintln(stderr, err)
			return 1
		}
		enc := json.NewEncoder(stdout)
		for _, r := range recs {
			_ = enc.Encode(map[string]any{"seq": r.Seq, "ts": time.UnixMilli(r.TS).UTC().Format(time.RFC3339Nano),
				"actor": r.Actor, "action": r.Action, "target": r.Target, "ip": r.IP,
				"details": json.RawMessage(r.Details), "hash": r.Hash})
		}
		return 0
	}
	log, err := openAudit(cfg, db)
	if err != nil {
		fmt.Fprintln(stderr, err)
		return 1
	}
	rep, err := log.Verify(ctx)
	if err != nil {
		fmt.Fprintln(stderr, "verify:", err)
		return 1
	}
	if !rep.OK() {
		fmt.Fprintf(stdout, "audit log BROKEN at record %d: %s (%d records verified before it)\n", rep.Broken, rep.Problem, rep.Records)
		return 1
	}
	fmt.Fprintf(stdout, "audit log OK: %d records, head %d %s\n", rep.Records, rep.HeadSeq, rep.HeadHash)
	return 0
}
