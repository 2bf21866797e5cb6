package storage

import (
	"context"
	"errors"
	"fmt"
	"slices"
)

// Write-behind for group-commit batches on PostgreSQL. Every statement is a
// round trip to the server, and a batch's units run one after the other on
// one connection, so a batch of fifty messages spent most of its time
// waiting for some two hundred round trips (claim, insert, recipients,
// push actions for each). In a batch, the writes whose answer nobody needs
// are buffered and sent as one statement per table (the message rows, their
// push actions, the room heads), stream positions are reserved up front
// for the batch, the transaction IDs of the batch are claimed together (see
// TxnClaim) and the push recipients of all the batch's rooms are read
// together, so that a batch of messages costs the same few round trips
// whatever its size.
//
// Buffered rows must be in the database before any other statement reads
// or writes: every statement but the write-behind's own goes through
// settle, which sends what is buffered first and drops what was read ahead
// (another unit's statement may have changed memberships or push rules).
// SQLite, whose statements are function calls, keeps writing through and
// claiming one by one.

// errWriteBehind wraps the failure of a buffered write. It cannot be pinned
// on the unit that buffered it, so the batch is replayed writing through,
// which finds the unit.
type errWriteBehind struct{ err error }

func (e errWriteBehind) Error() string { return "buffered batch write: " + e.err.Error() }
func (e errWriteBehind) Unwrap() error { return e.err }

// pendingEvent is a message row buffered by AppendEvent.
type pendingEvent struct {
	pos                     int64
	ev                      *NewEvent
	unsigned                string
	stateBefore, stateAfter int64
}

// settle runs before every statement but the write-behind's own: it sends
// the buffered rows and forgets the recipients read ahead. A failure is
// kept in tx.flushErr (the PostgreSQL transaction is aborted, so the
// statement that follows fails too) and the batch replayed writing through.
func (tx *Tx) settle(ctx context.Context) error {
	if !tx.writeBehind {
		return nil
	}
	tx.recipients = nil
	return tx.flushBuffered(ctx)
}

// maxBufferedActs bounds the push actions a batch buffers: a message to a
// room of a thousand members brings a thousand, and a batch of such
// messages held (and sent as one statement of) hundreds of thousands, some
// 150 MiB more at the peak.
const maxBufferedActs = 4096

// flushBuffered sends the buffered rows, keeping a failure in tx.flushErr
// (see settle).
func (tx *Tx) flushBuffered(ctx context.Context) error {
	if tx.flushErr != nil {
		return tx.flushErr
	}
	if err := tx.flush(ctx); err != nil {
		tx.flushErr = err
		return err
	}
	return nil
}

// flush sends the buffered message rows and push actions, one statement
// each.
func (tx *Tx) flush(ctx context.Context) error {
	for _, w := range tx.bufferedWrites() {
		if _, err := tx.tx.ExecContext(ctx, w.sql, w.args...); err != nil {
			return fmt.Errorf("%s: %w", w.what, err)
		}
	}
	tx.pendingEvents, tx.pendingActs = tx.pendingEvents[:0], tx.pendingActs[:0]
	return nil
}

// write is a statement of the write-behind, in PostgreSQL's own
// placeholder syntax.
type write struct {
	what string
	sql  string
	args []any
}

// bufferedWrites returns the statements that send the buffered message
// rows and push actions (none when nothing is buffered).
func (tx *Tx) bufferedWrites() []write {
	var out []write
	if n := len(tx.pendingEvents); n > 0 {
		pos := make([]int64, n)
		ids, rooms, types, senders, js, uns := make([]string, n), make([]string, n), make([]string, n), make([]string, n), make([]string, n), make([]string, n)
		ts, depth, before, after := make([]int64, n), make([]int64, n), make([]int64, n), make([]int64, n)
		relType, relatesTo, txnDev, txnID := make([]*string, n), make([]*string, n), make([]*string, n), make([]*string, n)
		opt := func(s string) *string {
			if s == "" {
				return nil
			}
			return &s
		}
		for i, p := range tx.pendingEvents {
			e := p.ev
			pos[i], ids[i], rooms[i], types[i], senders[i] = p.pos, e.EventID, e.RoomID, e.Type, e.Sender
			ts[i], depth[i], js[i], uns[i], before[i], after[i] = e.OriginServerTS, e.Depth, string(e.JSON), p.unsigned, p.stateBefore, p.stateAfter
			relType[i], relatesTo[i], txnDev[i], txnID[i] = opt(e.RelType), opt(e.RelatesTo), opt(e.TxnDevice), opt(e.TxnID)
		}
		out = append(out, write{"insert events", `INSERT INTO events (stream_pos, event_id, room_id, type, sender, origin_server_ts, depth, json, unsigned,
			state_group_before, state_group_after, rel_type, relates_to, txn_device, txn_id) OVERRIDING SYSTEM VALUE
			SELECT * FROM unnest($1::bigint[], $2::text[], $3::text[], $4::text[], $5::text[], $6::bigint[], $7::bigint[], $8::text[], $9::text[],
				$10::bigint[], $11::bigint[], $12::text[], $13::text[], $14::text[], $15::text[])`,
			[]any{pos, ids, rooms, types, senders, ts, depth, js, uns, before, after, relType, relatesTo, txnDev, txnID}})
	}
	if n := len(tx.pendingActs); n > 0 {
		users, rooms, threads, acts := make([]string, n), make([]string, n), make([]string, n), make([]string, n)
		pos, hl := make([]int64, n), make([]int64, n)
		for i, a := range tx.pendingActs {
			users[i], rooms[i], pos[i], threads[i], hl[i], acts[i] = a.UserID, a.RoomID, a.StreamPos, a.ThreadID, int64(b2i(a.Highlight)), string(a.Actions)
		}
		// Straight to event_push_actions: staging them (push_staged.go)
		// is for SQLite's page writes.
		out = append(out, write{"insert push actions", `INSERT INTO event_push_actions (user_id, room_id, stream_pos, thread_id, highlight, actions)
			SELECT * FROM unnest($1::text[], $2::text[], $3::bigint[], $4::text[], $5::smallint[], $6::text[])
			ON CONFLICT (user_id, room_id, stream_pos) DO NOTHING`, []any{users, rooms, pos, threads, hl, acts}})
	}
	return out
}

// nextEventPos hands out the next stream position reserved for the batch,
// reserving enough for the units still to run when none is left. The
// batch holds the event-order lock, so the positions it reserves are above
// every committed one and below every later batch's; the ones it leaves
// unused are gaps, as a rolled-back insert leaves.
func (tx *Tx) nextEventPos(ctx context.Context) (int64, error) {
	if len(tx.positions) == 0 {
		n := max(tx.unitsLeft, 4)
		rows, err := tx.tx.QueryContext(ctx, `SELECT nextval(pg_get_serial_sequence('events', 'stream_pos')) FROM generate_series(1, $1)`, n)
		if err != nil {
			return 0, fmt.Errorf("reserve stream positions: %w", err)
		}
		defer rows.Close()
		for rows.Next() {
			var p int64
			if err := rows.Scan(&p); err != nil {
				return 0, err
			}
			tx.positions = append(tx.positions, p)
		}
		if err := rows.Err(); err != nil {
			return 0, err
		}
		slices.Sort(tx.positions)
		if len(tx.positions) == 0 {
			return 0, errors.New("reserve stream positions: none")
		}
	}
	p := tx.positions[0]
	tx.positions = tx.positions[1:]
	return p, nil
}

// recipientsAhead returns the push recipients of roomID, reading them with
// those of every other room of the batch not read yet: the units of a
// batch are mostly messages to different rooms. Rows read ahead stay valid
// until the next statement of another kind (see settle).
func (tx *Tx) recipientsAhead(ctx context.Context, roomID string) ([]PushRecipient, error) {
	if r, ok := tx.recipients[roomID]; ok {
		return r, nil
	}
	ids := []any{roomID}
	for _, id := range tx.batchRooms {
		if _, ok := tx.recipients[id]; !ok && id != roomID {
			ids = append(ids, id)
		}
	}
	rows, err := tx.tx.QueryContext(ctx, `SELECT m.room_id, m.user_id, COALESCE(a.stream_pos, 0) FROM memberships m
		LEFT JOIN account_data a ON a.user_id = m.user_id AND a.room_id = '' AND a.type = 'm.push_rules'
		WHERE m.room_id = ANY($1::text[]) AND m.membership = 'join'`, anyStrings(ids))
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	if tx.recipients == nil {
		tx.recipients = make(map[string][]PushRecipient, len(ids))
	}
	for _, id := range ids {
		tx.recipients[id.(string)] = nil
	}
	for rows.Next() {
		var room string
		var p PushRecipient
		if err := rows.Scan(&room, &p.UserID, &p.RulesVersion); err != nil {
			return nil, err
		}
		tx.recipients[room] = append(tx.recipients[room], p)
	}
	if err := rows.Err(); err != nil {
		tx.recipients = nil
		return nil, err
	}
	return tx.recipients[roomID], nil
}

func anyStrings(xs []any) []string {
	out := make([]string, len(xs))
	for i, x := range xs {
		out[i] = x.(string)
	}
	return out
}

// TxnClaim is the transaction ID a unit of a batch will claim with
// ClaimTxn, given up front (see BatchAsyncClaim) so that the claims of a
// whole batch take one statement (PostgreSQL).
type TxnClaim struct {
	UserID, DeviceID, Scope, TxnID string
	// Result is what the claim records (the event ID).
	Result string
	TS     int64
}

type txnKey struct{ user, device, scope, txn string }

// claimed is the outcome of a batch's claim of one transaction ID.
type claimed struct {
	// owner is the index of the unit whose claim was recorded, -1 when
	// the ID was recorded before the batch.
	owner int
	// result is the recorded result.
	result string
	// taken is set once the owner's ClaimTxn has run.
	taken bool
}

// claimTxns records the transaction IDs the batch's units declared, in one
// statement (plus one to read the earlier results of those recorded
// before), before any unit runs. When several units of the batch claim
// the same ID, the first claims it and the others see its result, as if
// they had run one after the other.
func (tx *Tx) claimTxns(ctx context.Context, jobs []*batchJob) error {
	w, keys := tx.claimWrite(jobs)
	if len(keys) == 0 {
		return nil
	}
	rows, err := tx.tx.QueryContext(ctx, w.sql, w.args...)
	if err != nil {
		return err
	}
	inserted, err := scanClaimed(rows)
	rows.Close()
	if err != nil {
		return err
	}
	return tx.claimsRecordedBefore(ctx, keys, inserted)
}

// claimWrite prepares the batch's claims (tx.claims) and returns the
// statement that records them, returning the keys it inserted, and the
// keys claimed (none: nothing to run).
func (tx *Tx) claimWrite(jobs []*batchJob) (write, []txnKey) {
	var keys []txnKey
	for i, j := range jobs {
		if j.claim == nil {
			continue
		}
		c := j.claim
		k := txnKey{c.UserID, c.DeviceID, c.Scope, c.TxnID}
		if tx.claims == nil {
			tx.claims = map[txnKey]*claimed{}
		}
		if _, ok := tx.claims[k]; ok {
			continue
		}
		tx.claims[k] = &claimed{owner: i, result: c.Result}
		keys = append(keys, k)
	}
	if len(keys) == 0 {
		return write{}, nil
	}
	// Arrays rather than a row of placeholders per claim: one statement
	// text whatever the batch's size, prepared once per connection.
	users, devices, scopes, txns, results := make([]string, len(keys)), make([]string, len(keys)), make([]string, len(keys)), make([]string, len(keys)), make([]string, len(keys))
	ts := make([]int64, len(keys))
	for i, k := range keys {
		c := tx.claims[k]
		users[i], devices[i], scopes[i], txns[i], results[i], ts[i] = k.user, k.device, k.scope, k.txn, c.result, jobs[c.owner].claim.TS
	}
	return write{"claim transaction IDs", `INSERT INTO txn_ids (user_id, device_id, scope, txn_id, result, created_ts)
		SELECT * FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::text[], $6::bigint[])
		ON CONFLICT (user_id, device_id, scope, txn_id) DO NOTHING RETURNING user_id, device_id, scope, txn_id`,
		[]any{users, devices, scopes, txns, results, ts}}, keys
}

// scanClaimed reads the keys the claim statement inserted (the caller
// closes rows).
func scanClaimed(rows interface {
	Next() bool
	Scan(...any) error
	Err() error
}) (map[txnKey]bool, error) {
	inserted := map[txnKey]bool{}
	for rows.Next() {
		var k txnKey
		if err := rows.Scan(&k.user, &k.device, &k.scope, &k.txn); err != nil {
			return nil, err
		}
		inserted[k] = true
	}
	return inserted, rows.Err()
}

// claimsRecordedBefore reads the earlier results of the keys the claim
// did not insert: they were recorded before the batch.
func (tx *Tx) claimsRecordedBefore(ctx context.Context, keys []txnKey, inserted map[txnKey]bool) error {
	if len(inserted) == len(keys) {
		return nil
	}
	var users, devices, scopes, txns []string
	for _, k := range keys {
		if inserted[k] {
			continue
		}
		users, devices, scopes, txns = append(users, k.user), append(devices, k.device), append(scopes, k.scope), append(txns, k.txn)
		tx.claims[k].owner, tx.claims[k].result = -1, ""
	}
	rows, err := tx.query(ctx, `SELECT t.user_id, t.device_id, t.scope, t.txn_id, t.result FROM txn_ids t
		JOIN unnest(?::text[], ?::text[], ?::text[], ?::text[]) AS k (user_id, device_id, scope, txn_id)
		ON t.user_id = k.user_id AND t.device_id = k.device_id AND t.scope = k.scope AND t.txn_id = k.txn_id`,
		users, devices, scopes, txns)
	if err != nil {
		return err
	}
	defer rows.Close()
	for rows.Next() {
		var k txnKey
		var r string
		if err := rows.Scan(&k.user, &k.device, &k.scope, &k.txn, &r); err != nil {
			return err
		}
		if c := tx.claims[k]; c != nil {
			c.result = r
		}
	}
	return rows.Err()
}

// claimedTxn answers ClaimTxn from the batch's claims: ok is false when
// the unit declared no claim for this ID.
func (tx *Tx) claimedTxn(unit int, k txnKey, result string) (prev string, ok bool, err error) {
	c := tx.claims[k]
	if c == nil {
		return "", false, nil
	}
	if c.owner == unit && !c.taken && c.result == result {
		c.taken = true
		return "", true, nil
	}
	if c.result == "" {
		// Recorded before the batch, and gone by the time it was read.
		return "", true, ErrNotFound
	}
	return c.result, true, nil
}

// untakenClaim returns the index of a unit whose claim was recorded but
// which did not make it (its ClaimTxn did not run, or ran with another
// result), or -1. Such a unit would leave a transaction ID pointing at an
// event it did not store.
func (tx *Tx) untakenClaim() int {
	for _, c := range tx.claims {
		if c.owner >= 0 && !c.taken {
			return c.owner
		}
	}
	return -1
}
