package storage

import "context"

// The group committer's rooms (SQLite). Every message reads its room's row
// (LockRoom) and writes its new head: the read was 8 % of the writer's
// time in the send benchmark, the writer being what bounds SQLite's send
// rate. On SQLite this process is the database's only writer, and the
// group committer (one goroutine) writes most room rows, so it keeps the
// rows it read or wrote:
//
//   - within a batch, in the transaction (Tx.heads), and after the batch
//     commits, in roomRows, which only the committer goroutine touches;
//     a batch that rolls back drops what it held;
//   - any other write of a room row (a transaction of DB.WithTx, a new
//     room, a change of published visibility) moves DB.roomGen; the
//     committer starts over whenever it sees roomGen moved since its last
//     batch began. Such a write happens on the one writer connection, so
//     it ends before the next batch begins and the committer sees it then.
//
// PostgreSQL, where several processes may write, locks and reads the
// batch's rooms up front instead (lockRooms).
type roomRows struct {
	rows map[string]Room
	// gen is DB.roomGen when the rows were last known valid.
	gen uint64
}

// maxRoomRows bounds roomRows (about 200 bytes a row); past it the cache
// starts over.
const maxRoomRows = 50_000

// cachesRooms reports whether LockRoom may answer from the committer's
// rows: in a batch, on SQLite.
func (tx *Tx) cachesRooms() bool { return tx.inBatch && tx.db.dialect == SQLite }

// beginRooms runs when a batch's transaction has begun.
func (tx *Tx) beginRooms() {
	rr := &tx.db.roomRows
	if g := tx.db.roomGen.Load(); g != rr.gen || len(rr.rows) >= maxRoomRows {
		rr.rows, rr.gen = nil, g
	}
}

// commitRooms runs once a batch's transaction has committed: the rows it
// read or wrote join the committer's, unless a write outside the batches
// happened since the batch began.
func (tx *Tx) commitRooms() {
	if !tx.cachesRooms() || len(tx.heads) == 0 {
		return
	}
	rr := &tx.db.roomRows
	if tx.db.roomGen.Load() != rr.gen {
		rr.rows = nil
		return
	}
	if rr.rows == nil {
		rr.rows = make(map[string]Room, len(tx.heads))
	}
	for id, r := range tx.heads {
		rr.rows[id] = r
	}
}

// cachedRoom answers LockRoom from the batch's rows or the committer's.
func (tx *Tx) cachedRoom(roomID string) (Room, bool) {
	if r, ok := tx.heads[roomID]; ok {
		return r, true
	}
	if tx.db.roomGen.Load() != tx.db.roomRows.gen {
		return Room{}, false // a unit of this batch wrote a room row
	}
	r, ok := tx.db.roomRows.rows[roomID]
	return r, ok
}

// keepRoom records r as the batch's row of its room.
func (tx *Tx) keepRoom(r Room) {
	if tx.heads == nil {
		tx.heads = make(map[string]Room)
	}
	tx.heads[r.RoomID] = r
}

// roomWritten is called for a write of a room row that the committer's
// rows do not follow.
func (tx *Tx) roomWritten(roomID string) {
	delete(tx.heads, roomID)
	tx.db.roomGen.Add(1)
}

// lockRoomSQLite is LockRoom on SQLite.
func (tx *Tx) lockRoomSQLite(ctx context.Context, roomID string) (Room, error) {
	if !tx.cachesRooms() {
		return scanRoom(tx.queryRow(ctx, `SELECT `+roomColumns+` FROM rooms WHERE room_id = ?`, roomID))
	}
	if r, ok := tx.cachedRoom(roomID); ok {
		return r, nil
	}
	r, err := scanRoom(tx.queryRow(ctx, `SELECT `+roomColumns+` FROM rooms WHERE room_id = ?`, roomID))
	if err == nil {
		tx.keepRoom(r)
	}
	return r, err
}
