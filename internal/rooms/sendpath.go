package rooms

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"slices"
	"sync"

	gmsl "github.com/matrix-org/gomatrixserverlib"
	"github.com/matrix-org/gomatrixserverlib/spec"

	"github.com/rempart-hs/rempart/internal/httpapi"
	"github.com/rempart-hs/rempart/internal/storage"
)

// The send path. Engine.Send serialises the sends of one room in this
// process (roomEntry.mu, held from building the event until its commit), and
// builds, signs and authorises the event outside any transaction, from an
// in-memory copy of the room's head and of the parsed state events its auth
// needs. The database stays the source of truth: the transaction that
// appends the event (a group-committed Batch) locks the room and checks
// that its latest event, depth and state group are still those the event
// was built on. When they moved (another process on the same PostgreSQL
// database, or a write that bypassed this path), the cached copy is dropped
// and the event is built again inside the transaction, as it was before.

// maxCachedRooms bounds the room cache; idle entries beyond it are dropped.
// An entry of a small room (a few members, each of whom sent) costs about
// 10 KB of heap (measured: 400 rooms of 2–6 members), a room of a thousand
// members that all joined through this process about 1.5 MB. 10,000
// entries keep the cache near 100 MB of heap for ordinary rooms (200 MB
// at the former 20,000), leaving the rest of the 1 GiB a 300,000-user
// server is given to the long-polls' connections and the other caches.
const maxCachedRooms = 10000

// errStale reports that a room moved under an event built outside the
// transaction.
var errStale = errors.New("room changed since the event was built")

// roomCache holds a roomEntry per recently used room.
type roomCache struct {
	mu    sync.Mutex
	rooms map[string]*roomEntry
}

// roomEntry is one room's in-process send lock and cached state. All fields
// but refs are guarded by mu.
type roomEntry struct {
	mu   sync.Mutex
	refs int // guarded by roomCache.mu

	valid   bool
	room    storage.Room // the head the cached state belongs to
	verImpl gmsl.IRoomVersion
	// state holds parsed current state events by key; a nil value records
	// that the key is absent from the room's state.
	state map[storage.StateKeyTuple]gmsl.PDU
	// allowed records the (sender, type) pairs of non-state events the
	// auth rules allowed on this state. For such an event the rules read
	// only the sender's membership and the power levels, never the
	// content, so the answer holds until the state changes: parsing the
	// power levels and running the rules again was a twentieth of a
	// send's CPU. Cleared with the state; bounded by maxAllowed.
	allowed map[allowedKey]struct{}
}

type allowedKey struct{ sender, evType string }

// maxAllowed bounds a room's allowed set; past it the set starts again.
const maxAllowed = 1024

// acquire locks and returns the entry of roomID.
func (c *roomCache) acquire(roomID string) *roomEntry {
	c.mu.Lock()
	if c.rooms == nil {
		c.rooms = map[string]*roomEntry{}
	}
	ent := c.rooms[roomID]
	if ent == nil {
		if len(c.rooms) >= maxCachedRooms {
			c.evictLocked()
		}
		ent = &roomEntry{}
		c.rooms[roomID] = ent
	}
	ent.refs++
	c.mu.Unlock()
	ent.mu.Lock()
	return ent
}

// release unlocks an entry taken by acquire.
func (c *roomCache) release(ent *roomEntry) {
	ent.mu.Unlock()
	c.mu.Lock()
	ent.refs--
	c.mu.Unlock()
}

// evictLocked drops about a tenth of the idle entries (random ones: map
// iteration order).
func (c *roomCache) evictLocked() {
	n := len(c.rooms) / 10
	for id, ent := range c.rooms {
		if n <= 0 {
			return
		}
		if ent.refs == 0 {
			delete(c.rooms, id)
			n--
		}
	}
}

func (ent *roomEntry) invalidate() {
	ent.valid, ent.state, ent.verImpl, ent.allowed = false, nil, nil, nil
}

// load reads the room's head; state is read lazily by key. The head is read
// before any state, so state read later is never older than the head: if
// it is newer, the room's latest event moved and the transaction's check
// catches it.
func (e *Engine) loadEntry(ctx context.Context, ent *roomEntry, roomID string) error {
	room, err := e.db.GetRoom(ctx, roomID)
	if errors.Is(err, storage.ErrNotFound) {
		return httpapi.NotFound("unknown room")
	}
	if err != nil {
		return err
	}
	verImpl, err := gmsl.GetRoomVersion(gmsl.RoomVersion(room.RoomVersion))
	if err != nil {
		return fmt.Errorf("room %s has unknown version %s", room.RoomID, room.RoomVersion)
	}
	ent.valid, ent.room, ent.verImpl = true, room, verImpl
	ent.state = map[storage.StateKeyTuple]gmsl.PDU{}
	ent.allowed = nil
	return nil
}

// stateFor returns the parsed current state events for keys (absent keys
// omitted), reading the ones not cached yet.
func (e *Engine) stateFor(ctx context.Context, ent *roomEntry, keys []storage.StateKeyTuple) (map[storage.StateKeyTuple]gmsl.PDU, error) {
	var missing []storage.StateKeyTuple
	for _, k := range keys {
		if _, ok := ent.state[k]; !ok {
			missing = append(missing, k)
		}
	}
	if len(missing) > 0 {
		evs, err := e.db.CurrentState(ctx, ent.room.RoomID, missing)
		if err != nil {
			return nil, fmt.Errorf("load auth state: %w", err)
		}
		for _, k := range missing {
			ent.state[k] = nil
		}
		for i := range evs {
			se := &evs[i]
			if se.StateKey == nil {
				continue
			}
			pdu, err := ent.verImpl.NewEventFromTrustedJSON(se.JSON, se.RedactedBy != "")
			if err != nil {
				return nil, fmt.Errorf("parse stored event %s: %w", se.EventID, err)
			}
			ent.state[storage.StateKeyTuple{Type: se.Type, StateKey: *se.StateKey}] = pdu
		}
	}
	out := make(map[storage.StateKeyTuple]gmsl.PDU, len(keys))
	for _, k := range keys {
		if p := ent.state[k]; p != nil {
			out[k] = p
		}
	}
	return out, nil
}

// fastPath reports whether req may be built outside the transaction:
// everything but create events (which make the room) and redactions (which
// read and rewrite another event).
func fastPath(req *SendRequest) bool {
	return req.Type != spec.MRoomCreate && req.Type != spec.MRoomRedaction
}

// isMessage reports whether req is a message in the sense of the send
// path's shortcuts: no state key, not a redaction. Its auth answer depends
// only on the room state, and its stored hooks may be prepared.
func isMessage(req *SendRequest) bool {
	return req.StateKey == nil && req.Type != spec.MRoomRedaction
}

// sendResult is what a send's transaction produced.
type sendResult struct {
	dupEventID string // the earlier result of the same transaction ID
	room       storage.Room
	ev         *storage.Event
}

// sendBuilt builds req outside the transaction from the cached room state
// and appends it in a group-committed batch. It returns errStale when the
// room moved since its state was cached. For a message it returns once the
// event is queued, with wait to wait for its commit: the caller may then
// release the room (the cached head already points at the queued event);
// wait's result is the event's, and an error or a duplicate (res.ev nil)
// leaves the cached head wrong, so the caller must invalidate it. For other
// events it returns once committed, with wait nil.
func (e *Engine) sendBuilt(ctx context.Context, ent *roomEntry, req SendRequest) (sendResult, func() (sendResult, error), error) {
	if !ent.valid {
		if err := e.loadEntry(ctx, ent, req.RoomID); err != nil {
			return sendResult{}, nil, err
		}
	}
	head := ent.room
	verImpl := ent.verImpl
	pdu, authEvents, prev, err := e.buildOn(verImpl, &head, req, func(keys []storage.StateKeyTuple) ([]gmsl.PDU, error) {
		state, err := e.stateFor(ctx, ent, keys)
		return slices.Collect(maps.Values(state)), err
	})
	if err != nil {
		return sendResult{}, nil, err
	}
	ak := allowedKey{req.Sender, req.Type}
	if _, known := ent.allowed[ak]; !known || !isMessage(&req) {
		if err := gmsl.Allowed(pdu, authEvents, userIDForSender); err != nil {
			// Refused on the cached state: confirm on the database's, in
			// case the room moved without this process seeing it.
			return sendResult{}, nil, errStale
		}
		if isMessage(&req) {
			if ent.allowed == nil || len(ent.allowed) >= maxAllowed {
				ent.allowed = map[allowedKey]struct{}{}
			}
			ent.allowed[ak] = struct{}{}
		}
	}
	ev := eventRow(pdu, req, prev)
	hooks, err := e.prepareHooks(ctx, req, ev.Event, head.StateGroup)
	if err != nil {
		return sendResult{}, nil, err
	}

	res := &sendResult{}
	now := e.now().UnixMilli()
	unit := func(ctx context.Context, tx *storage.Tx) error {
		*res = sendResult{}
		room, err := tx.LockRoom(ctx, req.RoomID)
		if errors.Is(err, storage.ErrNotFound) {
			return httpapi.NotFound("unknown room")
		}
		if err != nil {
			return err
		}
		if req.TxnID != "" {
			// The event ID is known already: claim the transaction ID for
			// it, or learn the earlier result.
			prev, err := tx.ClaimTxn(ctx, req.Sender, req.TxnDevice, req.TxnScope, req.TxnID, ev.EventID, now)
			if err != nil {
				return err
			}
			if prev != "" {
				res.dupEventID = prev
				return nil
			}
		}
		if room.LatestEventID != head.LatestEventID || room.Depth != head.Depth || room.StateGroup != head.StateGroup {
			return errStale
		}
		stored := ev // AppendEvent fills in the copy
		pos, err := tx.AppendEvent(ctx, &room, stored)
		if err != nil {
			return err
		}
		out := stored.Event
		out.StreamPos = pos
		out.StateGroupBefore = head.StateGroup
		out.StateGroupAfter = room.StateGroup
		for _, h := range hooks {
			if err := h(ctx, tx, &out); err != nil {
				return err
			}
		}
		res.room, res.ev = room, &out
		return nil
	}
	var queued func() error
	if req.TxnID != "" {
		// Claimed with the other transaction IDs of its batch, in one
		// statement.
		queued = e.db.BatchAsyncClaim(ctx, req.RoomID, storage.TxnClaim{UserID: req.Sender, DeviceID: req.TxnDevice,
			Scope: req.TxnScope, TxnID: req.TxnID, Result: ev.EventID, TS: now}, unit)
	} else {
		queued = e.db.BatchAsync(ctx, req.RoomID, unit)
	}
	if req.StateKey == nil {
		// A message leaves the state (and state group) as it was: the
		// room's next send may be built on it at once, since a room's
		// units commit in the order queued. If this one fails, the next
		// fails the head check and is built again in the transaction.
		ent.room.LatestEventID, ent.room.Depth = ev.EventID, ev.Depth
		return sendResult{}, func() (sendResult, error) {
			if err := queued(); err != nil {
				return sendResult{}, err
			}
			return *res, nil
		}, nil
	}
	// A state event gets its state group in the transaction: hold the
	// room until it is committed.
	if err := queued(); err != nil {
		ent.invalidate()
		return sendResult{}, nil, err
	}
	if res.ev != nil {
		ent.room = res.room
		ent.state[storage.StateKeyTuple{Type: req.Type, StateKey: *req.StateKey}] = pdu
		ent.allowed = nil
	}
	return *res, nil, nil
}

// prepareHooks returns the stored hooks to run in the transaction of ev,
// built on a state of group stateGroup: for a message, those with a
// PrepareHook did their work here. The transaction runs them only if the
// room's state is still that one.
func (e *Engine) prepareHooks(ctx context.Context, req SendRequest, ev storage.Event, stateGroup int64) ([]StoredHook, error) {
	hooks := make([]StoredHook, len(e.storedHooks))
	for i, h := range e.storedHooks {
		hooks[i] = h.stored
		if h.prepare == nil || !isMessage(&req) {
			continue
		}
		ev.StateGroupBefore, ev.StateGroupAfter = stateGroup, stateGroup
		finish, err := h.prepare(ctx, e.db, &ev)
		if err != nil {
			return nil, err
		}
		hooks[i] = finish
	}
	return hooks, nil
}

// sendInTx is the general send: build, sign and authorise inside the
// transaction, on the state read there. It handles create events,
// redactions and rooms whose cached state went stale.
func (e *Engine) sendInTx(ctx context.Context, req SendRequest) (sendResult, error) {
	var res sendResult
	err := e.db.Batch(ctx, req.RoomID, func(ctx context.Context, tx *storage.Tx) error {
		res = sendResult{}
		room, err := tx.LockRoom(ctx, req.RoomID)
		if errors.Is(err, storage.ErrNotFound) {
			return httpapi.NotFound("unknown room")
		}
		if err != nil {
			return err
		}
		if req.TxnID != "" {
			if prev, err := tx.TxnResult(ctx, req.Sender, req.TxnDevice, req.TxnScope, req.TxnID); err == nil {
				res.dupEventID = prev
				return nil
			} else if !errors.Is(err, storage.ErrNotFound) {
				return err
			}
		}
		ev, err := e.appendInTx(ctx, tx, &room, req)
		if err != nil {
			return err
		}
		if req.TxnID != "" {
			if err := tx.PutTxnResult(ctx, req.Sender, req.TxnDevice, req.TxnScope, req.TxnID, ev.EventID, e.now().UnixMilli()); err != nil {
				return err
			}
		}
		res.room, res.ev = room, ev
		return nil
	})
	return res, err
}

// prevUnsigned is the unsigned object of a state event replacing prev.
func prevUnsigned(prevContent []byte, prevID, prevSender string) []byte {
	if len(prevContent) == 0 {
		prevContent = []byte("null")
	}
	var b bytes.Buffer
	b.Grow(len(prevContent) + len(prevID) + len(prevSender) + 64)
	b.WriteString(`{"prev_content":`)
	b.Write(prevContent)
	b.WriteString(`,"prev_sender":`)
	writeJSONString(&b, prevSender)
	b.WriteString(`,"replaces_state":`)
	writeJSONString(&b, prevID)
	b.WriteByte('}')
	return b.Bytes()
}

func writeJSONString(b *bytes.Buffer, s string) {
	enc, _ := json.Marshal(s)
	b.Write(enc)
}
