// Package audit is Rempart's tamper-evident audit log: every sensitive act
// (an infected upload refused, media quarantined or deleted, an account or
// registration token created by an operator…) is appended as one record.
//
// Records are numbered without gaps and chained: each record's hash is an
// HMAC-SHA256, under a key kept outside the database (audit.key in the data
// directory), of its own fields and of the previous record's hash. Whoever
// can write to the database but does not hold the key cannot alter, insert
// or remove a record without Verify noticing; truncating the newest records
// shows as a head that no longer matches one recorded elsewhere (Verify
// prints it, for operators to keep). Records hold identifiers and hashes,
// never secrets or message contents.
package audit

import (
	"bytes"
	"context"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"time"

	"github.com/rempart-hs/rempart/internal/httpapi"
	"github.com/rempart-hs/rempart/internal/storage"
)

// Entry is what a caller records.
type Entry struct {
	// Actor is who acted: a Matrix user ID, or "cli:<command>" for an
	// operator's command.
	Actor string
	// Action names the act, dotted: "media.infected", "user.create"…
	Action string
	// Target is what was acted on: a user ID, a media ID, a content hash.
	Target string
	// IP is the requester's address; left empty, it is taken from the
	// request context (httpapi.ClientIPFrom) when the act came over HTTP.
	IP string
	// Details are further facts (JSON-encodable; never secrets).
	Details map[string]any
}

// Log appends to and verifies the audit log.
type Log struct {
	db  *storage.DB
	key []byte
	now func() time.Time
}

// New returns the audit log of db, chained under key.
func New(db *storage.DB, key []byte) *Log {
	return &Log{db: db, key: key, now: time.Now}
}

// Record appends e in a transaction of its own. The act has happened (or
// been refused) already; a failure to record it is returned and logged.
func (l *Log) Record(ctx context.Context, e Entry) error {
	err := l.db.WithTx(ctx, func(tx *storage.Tx) error { return l.RecordTx(ctx, tx, e) })
	if err != nil {
		slog.ErrorContext(ctx, "audit: record failed", "action", e.Action, "err", err)
	}
	return err
}

// RecordTx appends e inside the caller's transaction, so that the act and
// its record commit or roll back together.
func (l *Log) RecordTx(ctx context.Context, tx *storage.Tx, e Entry) error {
	if e.IP == "" {
		e.IP = httpapi.ClientIPFrom(ctx)
	}
	details := []byte("{}")
	if len(e.Details) > 0 {
		var err error
		if details, err = json.Marshal(e.Details); err != nil {
			return fmt.Errorf("audit details: %w", err)
		}
	}
	seq, prev, err := tx.LockAuditHead(ctx)
	if err != nil {
		return err
	}
	r := storage.AuditRecord{Seq: seq + 1, TS: l.now().UnixMilli(), Actor: e.Actor, Action: e.Action,
		Target: e.Target, IP: e.IP, Details: string(details), PrevHash: prev}
	r.Hash = l.hash(r)
	return tx.AppendAudit(ctx, r)
}

// hash is the record's keyed hash over its fields and the previous hash.
func (l *Log) hash(r storage.AuditRecord) string {
	// A JSON array gives every field an unambiguous boundary.
	b, _ := json.Marshal([]any{r.Seq, r.TS, r.Actor, r.Action, r.Target, r.IP, r.Details, r.PrevHash})
	m := hmac.New(sha256.New, l.key)
	m.Write(b)
	return hex.EncodeToString(m.Sum(nil))
}

// Report is the outcome of Verify.
type Report struct {
	// Records is how many records were checked.
	Records int64
	// HeadSeq and HeadHash identify the newest record: keep them elsewhere
	// to detect a later truncation.
	HeadSeq  int64
	HeadHash string
	// Broken is the first record that fails (0: none), and Problem why.
	Broken  int64
	Problem string
}

// OK reports whether the whole chain verified.
func (r Report) OK() bool { return r.Broken == 0 }

// Verify walks the whole log and checks numbering, chaining and hashes,
// and that the head row names the last record.
func (l *Log) Verify(ctx context.Context) (Report, error) {
	var rep Report
	var last int64
	prev := ""
	for {
		recs, err := l.db.AuditRecords(ctx, last, 1000, storage.AuditFilter{})
		if err != nil {
			return rep, err
		}
		for _, r := range recs {
			switch {
			case r.Seq != last+1:
				rep.Broken, rep.Problem = last+1, fmt.Sprintf("record %d is missing (next is %d)", last+1, r.Seq)
			case r.PrevHash != prev:
				rep.Broken, rep.Problem = r.Seq, "its previous-hash does not match the record before it"
			case !hmac.Equal([]byte(r.Hash), []byte(l.hash(r))):
				rep.Broken, rep.Problem = r.Seq, "its hash does not match its contents"
			}
			if rep.Broken != 0 {
				return rep, nil
			}
			rep.Records++
			last, prev = r.Seq, r.Hash
		}
		if len(recs) < 1000 {
			break
		}
	}
	headSeq, headHash, err := l.db.AuditHead(ctx)
	if err != nil {
		return rep, err
	}
	rep.HeadSeq, rep.HeadHash = last, prev
	if headSeq != last || headHash != prev {
		rep.Broken, rep.Problem = last+1, fmt.Sprintf("the head names record %d but the log ends at %d", headSeq, last)
	}
	return rep, nil
}

// LoadOrCreateKey reads the chain key at path, creating a random 256-bit
// key (mode 0600) when the file does not exist.
func LoadOrCreateKey(path string) ([]byte, error) {
	b, err := os.ReadFile(path)
	if err == nil {
		key, derr := hex.DecodeString(string(bytes.TrimSpace(b)))
		if derr != nil || len(key) < 32 {
			return nil, fmt.Errorf("audit key %s: not 32+ hex-encoded bytes", path)
		}
		return key, nil
	}
	if !errors.Is(err, os.ErrNotExist) {
		return nil, fmt.Errorf("audit key: %w", err)
	}
	key := make([]byte, 32)
	if _, err := rand.Read(key); err != nil {
		return nil, err
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return nil, fmt.Errorf("audit key: %w", err)
	}
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		if errors.Is(err, os.ErrExist) {
			// Another process created it first.
			return LoadOrCreateKey(path)
		}
		return nil, fmt.Errorf("audit key: %w", err)
	}
	if _, err := f.WriteString(hex.EncodeToString(key) + "\n"); err != nil {
		f.Close()
		return nil, fmt.Errorf("audit key: %w", err)
	}
	return key, f.Close()
}
