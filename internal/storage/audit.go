package storage

import (
	"context"
	"fmt"
)

// AuditRecord is one row of the audit log. Hash chains it to the record
// before it (PrevHash); internal/audit computes both.
type AuditRecord struct {
	Seq      int64
	TS       int64 // milliseconds since the epoch
	Actor    string
	Action   string
	Target   string
	IP       string
	Details  string // compact JSON object
	PrevHash string
	Hash     string
}

// LockAuditHead returns the sequence number and hash of the newest audit
// record (0 and "" when the log is empty). On PostgreSQL the head row stays
// locked until the transaction ends, so that appends from several
// processes form one chain; SQLite has a single writer anyway.
func (tx *Tx) LockAuditHead(ctx context.Context) (seq int64, hash string, err error) {
	q := `SELECT seq, hash FROM audit_head WHERE id = 1`
	if tx.db.dialect == Postgres {
		q += ` FOR UPDATE`
	}
	if err := tx.queryRow(ctx, q).Scan(&seq, &hash); err != nil {
		return 0, "", fmt.Errorf("audit head: %w", err)
	}
	return seq, hash, nil
}

// AppendAudit stores r and makes it the chain's head. r.Seq must be one
// more than the head returned by LockAuditHead in the same transaction.
func (tx *Tx) AppendAudit(ctx context.Context, r AuditRecord) error {
	if _, err := tx.exec(ctx, `INSERT INTO audit_log (seq, ts, actor, action, target, ip, details, prev_hash, hash)
		VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)`, r.Seq, r.TS, r.Actor, r.Action, r.Target, r.IP, r.Details, r.PrevHash, r.Hash); err != nil {
		return fmt.Errorf("append audit record %d: %w", r.Seq, err)
	}
	if _, err := tx.exec(ctx, `UPDATE audit_head SET seq = ?, hash = ? WHERE id = 1`, r.Seq, r.Hash); err != nil {
		return fmt.Errorf("move audit head: %w", err)
	}
	return nil
}

// AuditHead returns the head without locking it.
func (db *DB) AuditHead(ctx context.Context) (seq int64, hash string, err error) {
	err = db.queryRow(ctx, `SELECT seq, hash FROM audit_head WHERE id = 1`).Scan(&seq, &hash)
	return seq, hash, err
}

// AuditFilter selects audit records; empty fields match everything.
type AuditFilter struct {
	Actor  string
	Action string
}

// AuditRecords returns up to limit records with seq > after, oldest first.
func (db *DB) AuditRecords(ctx context.Context, after int64, limit int, f AuditFilter) ([]AuditRecord, error) {
	q := `SELECT seq, ts, actor, action, target, ip, details, prev_hash, hash FROM audit_log WHERE seq > ?`
	args := []any{after}
	if f.Actor != "" {
		q += ` AND actor = ?`
		args = append(args, f.Actor)
	}
	if f.Action != "" {
		q += ` AND action = ?`
		args = append(args, f.Action)
	}
	q += ` ORDER BY seq LIMIT ?`
	args = append(args, limit)
	rows, err := db.query(ctx, q, args...)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []AuditRecord
	for rows.Next() {
		var r AuditRecord
		if err := rows.Scan(&r.Seq, &r.TS, &r.Actor, &r.Action, &r.Target, &r.IP, &r.Details, &r.PrevHash, &r.Hash); err != nil {
			return nil, err
		}
		out = append(out, r)
	}
	return out, rows.Err()
}
