// Package storage is Rempart's single storage layer. The same SQL runs on the
// embedded SQLite backend (the default) and on PostgreSQL; the few dialect
// differences are handled here, in one place.
package storage

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	_ "github.com/jackc/pgx/v5/stdlib" // PostgreSQL driver
	_ "modernc.org/sqlite"             // pure-Go SQLite driver
)

// Dialect names the SQL backend in use.
type Dialect int

// The supported backends.
const (
	SQLite Dialect = iota
	Postgres
)

// ErrNotFound is returned when a looked-up row does not exist.
var ErrNotFound = errors.New("not found")

// DB is a handle on the homeserver database. Writes go through one
// connection pool and reads through another: on SQLite the writer has a single
// connection (SQLite allows one writer) and readers run in parallel under WAL.
type DB struct {
	dialect Dialect
	write   *sql.DB
	read    *sql.DB
	gc      *groupCommitter
	// stmts caches statements prepared on the writer, readStmts on the
	// readers (SQLite only).
	stmts     stmtCache
	readStmts stmtCache
	// ckpt checkpoints the write-ahead log off the writer (SQLite).
	ckpt *checkpointer
	// wal syncs the SQLite write-ahead log for the writer (walsync.go).
	wal *walSyncer
	// prune deletes expired transaction IDs (see txn_prune.go).
	prune *background
	// analyse keeps PostgreSQL's statistics when autovacuum is off
	// (analyze.go).
	analyse *background
	// positions caches CurrentStreamPositions between commits.
	positions atomic.Pointer[cachedPositions]
	// positionsRead is the read of the positions in flight, if any
	// (guarded by positionsMu; see CurrentStreamPositions).
	positionsMu   sync.Mutex
	positionsRead *positionsRead
	// commits counts the commits of this process's write transactions,
	// each counted before its after-commit work (see
	// CurrentStreamPositions); the SQLite checkpointer reads it too.
	commits atomic.Uint64
	// pushRules counts the commits of this process that changed a user's
	// push rules (see PushRulesGeneration).
	pushRules atomic.Uint64
	// tokens keeps access-token owners (token_cache.go), memberships
	// users' memberships for /sync, keyCounts devices' key counts.
	tokens      *readCache[string, TokenOwner]
	memberships *readCache[string, []Membership]
	keyCounts   *readCache[deviceKey, deviceKeyCounts]
	// unread keeps members' counts of many unread notifications
	// (unread_cache.go).
	unread unreadCache
	// directoryState keeps published rooms' directory state
	// (PublishedRooms).
	directoryState *readCache[string, map[string]json.RawMessage]
	// directoryLoad lets one PublishedRooms at a time read the directory
	// state it lacks.
	directoryLoad sync.Mutex
	// roomRows are the group committer's room rows and roomGen counts
	// the room-row writes outside its batches (see room_rows.go).
	roomRows roomRows
	roomGen  atomic.Uint64
	// reads counts the statements of db.query and db.queryRow.
	reads atomic.Uint64
	// stagedActs counts the rows waiting in event_push_staged, as far as
	// this process knows (see push_staged.go).
	stagedActs atomic.Int64
	// stagedInflow counts the rows staged since the last move.
	stagedInflow atomic.Int64
	mover        stagedMover
	// ckptCatchUp is set by the checkpointer when the committer should
	// checkpoint the log's last frames itself; catchUps counts those
	// checkpoints (see checkpoint.go).
	ckptCatchUp atomic.Bool
	catchUps    atomic.Uint64
}

// Open connects to the database named by url: "postgres://…" or
// "postgresql://…" selects PostgreSQL, anything else is a SQLite file path
// (optionally prefixed with "sqlite:" or "file:"). Migrations run before Open
// returns.
func Open(ctx context.Context, dsn string) (*DB, error) {
	db := &DB{
		tokens:         newReadCache[string, TokenOwner](tokenCacheMaxAge, tokenCacheMax),
		memberships:    newReadCache[string, []Membership](syncCacheMaxAge, syncCacheMax),
		keyCounts:      newReadCache[deviceKey, deviceKeyCounts](syncCacheMaxAge, syncCacheMax),
		directoryState: newReadCache[string, map[string]json.RawMessage](directoryStateMaxAge, directoryStateMax),
	}
	if strings.HasPrefix(dsn, "postgres://") || strings.HasPrefix(dsn, "postgresql://") {
		dsn, err := withGenericPlans(dsn)
		if err != nil {
			return nil, err
		}
		pool, err := sql.Open("pgx", dsn)
		if err != nil {
			return nil, fmt.Errorf("open postgres: %w", err)
		}
		pool.SetMaxOpenConns(32)
		// Keep every connection: with fewer idle ones, each burst of
		// concurrent requests closed the extra connections on release and
		// opened new ones on the next burst, a new server process each
		// (with pgx's cache of prepared statements empty): some 3,500
		// connections in a 20 s send benchmark, a good part of
		// PostgreSQL's CPU.
		pool.SetMaxIdleConns(32)
		pool.SetConnMaxIdleTime(5 * time.Minute)
		db.dialect, db.write, db.read = Postgres, pool, pool
	} else {
		path := strings.TrimPrefix(strings.TrimPrefix(dsn, "sqlite:"), "file:")
		if path == "" {
			return nil, errors.New("empty database path")
		}
		if dir := filepath.Dir(path); dir != "" {
			if err := os.MkdirAll(dir, 0o700); err != nil {
				return nil, fmt.Errorf("create database directory: %w", err)
			}
		}
		// Private to the server: SQLite gives its -wal and -shm files the
		// database file's mode.
		f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o600)
		if err != nil {
			return nil, fmt.Errorf("create database file: %w", err)
		}
		f.Close()
		if err := os.Chmod(path, 0o600); err != nil {
			return nil, fmt.Errorf("database file mode: %w", err)
		}
		q := url.Values{}
		q.Add("_pragma", "journal_mode(WAL)")
		q.Add("_pragma", "cache_size(-32768)") // KiB: 32 MiB of page cache
		q.Add("_pragma", "busy_timeout(10000)")
		q.Add("_pragma", "foreign_keys(1)")
		// NORMAL: the commit writes its log frames without syncing them;
		// the syncer does, and nothing waits on a commit before it is
		// durable (see walsync.go).
		q.Add("_pragma", "synchronous(NORMAL)")
		// Temporary files in memory: above all the statement journals of
		// multi-row statements inside a transaction (a message to a big
		// room inserts hundreds of push action rows per statement), which
		// SQLite otherwise spills to a file past 64 KiB, page by page.
		q.Add("_pragma", "temp_store(MEMORY)")
		q.Add("_pragma", fmt.Sprintf("wal_autocheckpoint(%d)", walWriterCheckpoint))
		q.Add("_txlock", "immediate")
		w, err := sql.Open("sqlite", "file:"+path+"?"+q.Encode())
		if err != nil {
			return nil, fmt.Errorf("open sqlite: %w", err)
		}
		w.SetMaxOpenConns(1)
		w.SetConnMaxIdleTime(0)
		rq := url.Values{}
		rq.Add("_pragma", "busy_timeout(10000)")
		rq.Add("_pragma", "query_only(1)")
		// 4 MiB of page cache per reader. Each of the 8 readers keeps its
		// own copy of the pages it read, outside the Go heap: at 16 MiB
		// they held 130 MiB of resident memory for pages that the OS page
		// cache also holds (a reader's miss is a pread from it).
		rq.Add("_pragma", "cache_size(-4096)")
		r, err := sql.Open("sqlite", "file:"+path+"?"+rq.Encode())
		if err != nil {
			w.Close()
			return nil, fmt.Errorf("open sqlite reader: %w", err)
		}
		r.SetMaxOpenConns(8)
		// Keep them all: the default keeps 2 idle, so under concurrent
		// reads connections were closed and reopened (pragmas run again,
		// cached statements prepared again) all the time.
		r.SetMaxIdleConns(8)
		cq := url.Values{}
		cq.Add("_pragma", "busy_timeout(10000)")
		c, err := sql.Open("sqlite", "file:"+path+"?"+cq.Encode())
		if err != nil {
			w.Close()
			r.Close()
			return nil, fmt.Errorf("open sqlite checkpointer: %w", err)
		}
		c.SetMaxOpenConns(1)
		c.SetMaxIdleConns(1)
		c.SetConnMaxIdleTime(0)
		db.dialect, db.write, db.read = SQLite, w, r
		db.ckpt = startCheckpointer(c, &db.commits, &db.ckptCatchUp)
		db.wal = startWALSyncer(path)
	}
	db.gc = newGroupCommitter(db)
	pctx, cancel := context.WithTimeout(ctx, 15*time.Second)
	defer cancel()
	if err := db.write.PingContext(pctx); err != nil {
		db.Close()
		return nil, fmt.Errorf("connect to database: %w", err)
	}
	if err := db.migrate(ctx); err != nil {
		db.Close()
		return nil, err
	}
	if err := db.countStagedActs(ctx); err != nil {
		db.Close()
		return nil, err
	}
	db.prune = startPruner(db)
	db.analyse = startAnalyser(ctx, db)
	return db, nil
}

// withGenericPlans adds plan_cache_mode=force_generic_plan to a PostgreSQL
// URL that does not set plan_cache_mode itself. pgx prepares every
// statement once per connection; by default PostgreSQL still plans each
// execution again for its parameters ("custom plans") as long as that
// looks cheaper than one plan for all. With statistics, planning a sync
// read such as "rooms with events in (since, now]" looks up the current
// end of the events index for the range (the values are past the
// histogram) and cost 0.3–2 ms against 0.1 ms to run it; 500 woken
// long-polls a second then kept PostgreSQL's CPU busy planning, and
// delivery took seconds (p50 0.7–3.3 s on the benchmark's analysed data
// set, 16–64 ms with generic plans). The hot statements are index look-ups
// whatever their parameters, so one plan each loses nothing there. An
// operator can still choose with ?plan_cache_mode=auto in the URL.
func withGenericPlans(dsn string) (string, error) {
	u, err := url.Parse(dsn)
	if err != nil {
		// Not err itself: it quotes the URL, password included.
		return "", errors.New("database url: not a valid URL")
	}
	q := u.Query()
	if q.Has("plan_cache_mode") {
		return dsn, nil
	}
	q.Set("plan_cache_mode", "force_generic_plan")
	u.RawQuery = q.Encode()
	return u.String(), nil
}

// Dialect reports which backend this handle talks to.
func (db *DB) Dialect() Dialect { return db.dialect }

// Close releases all connections.
func (db *DB) Close() error {
	db.analyse.close()
	db.prune.close()
	db.gc.close()
	db.wal.close()
	db.ckpt.close()
	db.stmts.close()
	db.readStmts.close()
	err := db.write.Close()
	if db.read != db.write {
		if rerr := db.read.Close(); err == nil {
			err = rerr
		}
	}
	return err
}

// rebind rewrites '?' placeholders to PostgreSQL's $n form. Queries in this
// package never contain a literal '?' outside placeholders.
func (db *DB) rebind(q string) string {
	if db.dialect != Postgres || !strings.Contains(q, "?") {
		return q
	}
	var b strings.Builder
	b.Grow(len(q) + 8)
	n := 0
	for i := 0; i < len(q); i++ {
		if q[i] == '?' {
			n++
			b.WriteByte('$')
			b.WriteString(strconv.Itoa(n))
			continue
		}
		b.WriteByte(q[i])
	}
	return b.String()
}

// Tx is a write transaction. All writes happen inside one; see DB.WithTx.
type Tx struct {
	db *DB
	// tx runs the statements: the *sql.Tx, or for a pipelined batch
	// (PostgreSQL, pipeline.go) the connection its transaction runs on.
	tx sqlRunner
	// sqlTx is the *sql.Tx when there is one (statements prepared on
	// the SQLite writer are bound to it).
	sqlTx *sql.Tx
	// afterCommit callbacks run once the transaction has committed.
	afterCommit []func()
	// missed are the queries the statement cache lacked (SQLite).
	missed []string
	// locked holds the rows of the rooms a batch locked up front
	// (PostgreSQL), kept current by AppendEvent.
	locked map[string]Room
	// dirtyRooms lists the rooms of tx.locked whose head AppendEvent
	// advanced, to be written before the commit.
	dirtyRooms []string
	// orderLocked is set once tx holds the event-order lock (PostgreSQL).
	orderLocked bool
	// inBatch is set for the transactions of the group committer; heads
	// are the room rows such a transaction read or wrote (SQLite, see
	// room_rows.go).
	inBatch bool
	heads   map[string]Room

	// The write-behind of a batch on PostgreSQL (see batchwrite.go).
	writeBehind   bool
	flushErr      error
	pendingEvents []pendingEvent
	pendingActs   []PushAction
	// positions are the reserved stream positions not handed out yet.
	positions []int64
	// unitsLeft counts the units of the batch yet to run, this one
	// included.
	unitsLeft int
	// batchRooms are the rooms of the batch's units; recipients the push
	// recipients read ahead for some of them.
	batchRooms []string
	recipients map[string][]PushRecipient
	// claims are the batch's transaction ID claims (PostgreSQL), unit
	// the index of the running unit.
	claims map[txnKey]*claimed
	unit   int
}

// ended prepares, once tx has released the writer, the statements it missed.
func (tx *Tx) ended() {
	if len(tx.missed) > 0 {
		tx.db.stmts.prepare(tx.db.write, tx.missed)
	}
}

// WithTx runs fn in a write transaction, committing when it returns nil and
// rolling back otherwise, and returns once the commit is durable. It is the
// one way Rempart writes to the database.
func (db *DB) WithTx(ctx context.Context, fn func(tx *Tx) error) error {
	return db.withTx(ctx, fn, true)
}

// withTx is WithTx; with durable false it returns once the commit call
// has returned, without waiting for the log sync that makes it durable
// (SQLite), for a transaction whose loss in a crash nobody can tell from
// its commit, such as a move of staged rows, which leaves them where they
// are read as well. Readers still see it only once it is durable, as any
// commit (walsync.go), and later commits are synced after it.
func (db *DB) withTx(ctx context.Context, fn func(tx *Tx) error, durable bool) error {
	sqlTx, err := db.write.BeginTx(ctx, nil)
	if err != nil {
		return fmt.Errorf("begin transaction: %w", err)
	}
	tx := &Tx{db: db, tx: sqlTx, sqlTx: sqlTx}
	defer tx.ended()
	if err := fn(tx); err != nil {
		_ = sqlTx.Rollback()
		// The error may come from what earlier commits wrote (a name
		// taken, say): it too waits until they are durable.
		db.readVisible()
		return err
	}
	seq := db.beginCommit()
	err = sqlTx.Commit()
	db.endCommit(seq)
	if err != nil {
		return fmt.Errorf("commit: %w", err)
	}
	db.committed()
	for _, f := range tx.afterCommit {
		f()
	}
	if !durable {
		return nil
	}
	return db.waitDurable(seq)
}

// committed counts a commit of a write transaction.
func (db *DB) committed() { db.commits.Add(1) }

// beginCommit is called just before a commit call (or an autocommit
// statement) on the writer; endCommit with its result once the call has
// returned, whatever its outcome. On SQLite they number the commit for the
// syncer (walsync.go); on PostgreSQL, whose commits are durable when they
// return, they do nothing.
func (db *DB) beginCommit() uint64 {
	if db.wal == nil {
		return 0
	}
	return db.wal.begin()
}

func (db *DB) endCommit(seq uint64) {
	if db.wal != nil {
		db.wal.end(seq)
	}
}

// waitDurable returns once commit seq (from beginCommit) is durable.
func (db *DB) waitDurable(seq uint64) error {
	if db.wal == nil {
		return nil
	}
	return db.wal.wait(seq)
}

// whenDurable runs f once every commit ended so far is durable: at once on
// PostgreSQL, on the syncer's goroutine on SQLite.
func (db *DB) whenDurable(f func(error)) {
	if db.wal == nil {
		f(nil)
		return
	}
	db.wal.whenDurable(f)
}

// readVisible is called after a read's query call (see walsync.go).
func (db *DB) readVisible() {
	if db.wal != nil {
		db.wal.visible()
	}
}

// sqlRunner runs statements: a *sql.Tx or a *sql.Conn.
type sqlRunner interface {
	ExecContext(ctx context.Context, q string, args ...any) (sql.Result, error)
	QueryContext(ctx context.Context, q string, args ...any) (*sql.Rows, error)
	QueryRowContext(ctx context.Context, q string, args ...any) *sql.Row
}

// AfterCommit registers f to run after the transaction commits successfully.
func (tx *Tx) AfterCommit(f func()) { tx.afterCommit = append(tx.afterCommit, f) }

func (tx *Tx) exec(ctx context.Context, q string, args ...any) (sql.Result, error) {
	if err := tx.settle(ctx); err != nil {
		return nil, err
	}
	if st := tx.stmt(ctx, q); st != nil {
		return st.ExecContext(ctx, args...)
	}
	return tx.tx.ExecContext(ctx, tx.db.rebind(q), args...)
}

// execPrepared is exec for a statement with more placeholders than the
// statement cache takes by default, which the caller runs often enough
// (with few distinct texts) to be worth preparing.
func (tx *Tx) execPrepared(ctx context.Context, q string, args ...any) (sql.Result, error) {
	if err := tx.settle(ctx); err != nil {
		return nil, err
	}
	if st := tx.stmtFor(ctx, q, true); st != nil {
		return st.ExecContext(ctx, args...)
	}
	return tx.tx.ExecContext(ctx, tx.db.rebind(q), args...)
}

func (tx *Tx) query(ctx context.Context, q string, args ...any) (*sql.Rows, error) {
	if err := tx.settle(ctx); err != nil {
		return nil, err
	}
	if st := tx.stmt(ctx, q); st != nil {
		return st.QueryContext(ctx, args...)
	}
	return tx.tx.QueryContext(ctx, tx.db.rebind(q), args...)
}

func (tx *Tx) queryRow(ctx context.Context, q string, args ...any) *sql.Row {
	// A failure to settle aborts the PostgreSQL transaction, so the query
	// fails too; the batch then replays writing through (see attempt).
	_ = tx.settle(ctx)
	if st := tx.stmt(ctx, q); st != nil {
		return st.QueryRowContext(ctx, args...)
	}
	return tx.tx.QueryRowContext(ctx, tx.db.rebind(q), args...)
}

// stmt returns q prepared on the SQLite writer and bound to tx, or nil when
// q is not cached. PostgreSQL needs no cache here: pgx keeps its own
// per-connection cache of prepared statements.
func (tx *Tx) stmt(ctx context.Context, q string) *sql.Stmt {
	return tx.stmtFor(ctx, q, false)
}

// stmtFor is stmt; always caches q whatever its number of placeholders.
func (tx *Tx) stmtFor(ctx context.Context, q string, always bool) *sql.Stmt {
	if tx.db.dialect != SQLite {
		return nil
	}
	st := tx.db.stmts.get(q)
	if st == nil {
		if len(tx.missed) < 64 && (always || cacheable(q)) {
			tx.missed = append(tx.missed, q)
		}
		return nil
	}
	// The statement was prepared on the writer's one connection, which tx
	// holds, so this re-uses it without preparing again.
	return tx.sqlTx.StmtContext(ctx, st)
}

// insertReturningID inserts a row and returns the value of its integer
// primary key column idCol.
func (tx *Tx) insertReturningID(ctx context.Context, idCol, q string, args ...any) (int64, error) {
	var id int64
	err := tx.queryRow(ctx, q+" RETURNING "+idCol, args...).Scan(&id)
	return id, err
}

// ReadStatements counts the statements run outside write transactions
// since the database was opened: benchmarks report it per request.
func (db *DB) ReadStatements() uint64 { return db.reads.Load() }

// query runs a read on the reader pool; it returns once every commit the
// read could have seen is durable (see walsync.go).
func (db *DB) query(ctx context.Context, q string, args ...any) (*sql.Rows, error) {
	rows, err := db.queryInternal(ctx, q, args...)
	db.readVisible()
	return rows, err
}

// queryRow is query for one row.
func (db *DB) queryRow(ctx context.Context, q string, args ...any) *sql.Row {
	row := db.queryRowInternal(ctx, q, args...)
	db.readVisible()
	return row
}

// queryInternal is query without waiting for the commits the read could
// have seen to be durable. It is only for reads whose rows nobody outside
// the process learns before a commit that depends on them is durable:
// the push recipients of a message being sent (they become push actions
// in its own, later, commit) and an access token's owner (a token exists
// for its client only once the commit creating it is durable). Such reads
// are on the send path, where waiting for the commit in flight cost each
// send up to a commit and a sync.
func (db *DB) queryInternal(ctx context.Context, q string, args ...any) (*sql.Rows, error) {
	db.reads.Add(1)
	if st := db.readStmt(q); st != nil {
		return st.QueryContext(ctx, args...)
	}
	return db.read.QueryContext(ctx, db.rebind(q), args...)
}

// queryRowInternal is queryInternal for one row.
func (db *DB) queryRowInternal(ctx context.Context, q string, args ...any) *sql.Row {
	db.reads.Add(1)
	if st := db.readStmt(q); st != nil {
		return st.QueryRowContext(ctx, args...)
	}
	return db.read.QueryRowContext(ctx, db.rebind(q), args...)
}

// readStmt returns q prepared on the SQLite reader pool (each reader
// connection prepares it once, on first use), or nil to run it unprepared.
// PostgreSQL: see Tx.stmt.
func (db *DB) readStmt(q string) *sql.Stmt {
	if db.dialect != SQLite {
		return nil
	}
	if st := db.readStmts.get(q); st != nil {
		return st
	}
	if !cacheable(q) {
		return nil
	}
	// No connection is held here, so preparing cannot wait on ourselves.
	db.readStmts.prepare(db.read, []string{q})
	return db.readStmts.get(q)
}

func (db *DB) exec(ctx context.Context, q string, args ...any) (sql.Result, error) {
	seq := db.beginCommit()
	res, err := db.write.ExecContext(ctx, db.rebind(q), args...)
	db.endCommit(seq)
	if err != nil {
		return res, err
	}
	return res, db.waitDurable(seq)
}

// notFound maps sql.ErrNoRows to ErrNotFound.
func notFound(err error) error {
	if errors.Is(err, sql.ErrNoRows) {
		return ErrNotFound
	}
	return err
}

// placeholders returns "?,?,…" with n entries.
func placeholders(n int) string {
	if n <= 0 {
		return ""
	}
	return strings.Repeat("?,", n-1) + "?"
}
