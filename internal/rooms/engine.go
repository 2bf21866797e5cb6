// Package rooms is the room engine: it builds, signs, authorises and stores
// room events, with gomatrixserverlib providing event formats, hashing,
// signing, redaction and the spec's authorisation rules. Every event a local
// user sends goes through Engine.Send: it is built and authorised against
// the room's state and appended in a transaction that locks the room and
// checks that state is still current (see sendpath.go), so that the room's
// DAG, state groups and current state stay consistent even with several
// processes on one PostgreSQL database. Concurrent sends share transactions
// (group commit, storage.DB.Batch).
package rooms

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	gmsl "github.com/matrix-org/gomatrixserverlib"
	"github.com/matrix-org/gomatrixserverlib/spec"

	"github.com/rempart-hs/rempart/internal/httpapi"
	"github.com/rempart-hs/rempart/internal/storage"
)

// MaxEventBytes is the spec's limit on a whole event's size.
const MaxEventBytes = 65536

// Notifier is told about new room events after they commit (the sync
// notifier implements it).
type Notifier interface {
	RoomEvent(roomID string, pos int64, ev *storage.Event)
}

// Policy decides, before any event is built, whether a user may perform an
// action on a room (beyond the spec's authorisation rules). It is the one
// place for deployment policy such as "externals may not create rooms".
type Policy interface {
	CheckSend(ctx context.Context, req *SendRequest) error
}

// Engine builds and stores room events.
type Engine struct {
	db             *storage.DB
	serverName     spec.ServerName
	keyID          gmsl.KeyID
	key            ed25519.PrivateKey
	signatureSize  int // what the server's signature adds to an event
	notifier       Notifier
	policy         Policy
	defaultVersion string
	now            func() time.Time
	storedHooks    []storedHook
	cache          roomCache
}

// StoredHook runs inside the transaction that stored a new room event,
// after its state changes and redaction were applied (push rule
// evaluation uses it). An error aborts the send.
type StoredHook func(ctx context.Context, tx *storage.Tx, ev *storage.Event) error

// PrepareHook does a stored hook's work for a message event (no state
// key, not a redaction) before the event is queued for its transaction,
// outside the single writer, and returns the hook that finishes it in the
// transaction (ev then has its stream position). It is used only when the
// event commits on the room state it was built on; otherwise the event is
// built again and the plain StoredHook runs instead.
type PrepareHook func(ctx context.Context, db *storage.DB, ev *storage.Event) (StoredHook, error)

type storedHook struct {
	stored  StoredHook
	prepare PrepareHook // nil: stored runs for every event
}

// AddStoredHook registers h; call it before the engine serves requests.
func (e *Engine) AddStoredHook(h StoredHook) {
	e.storedHooks = append(e.storedHooks, storedHook{stored: h})
}

// AddPreparedHook registers h, with prepare doing its work ahead for
// message events (see PrepareHook).
func (e *Engine) AddPreparedHook(h StoredHook, prepare PrepareHook) {
	e.storedHooks = append(e.storedHooks, storedHook{stored: h, prepare: prepare})
}

// Config configures an Engine.
type Config struct {
	ServerName     string
	KeyID          string
	Key            ed25519.PrivateKey
	DefaultVersion string
}

// NewEngine returns a room engine.
func NewEngine(db *storage.DB, cfg Config, n Notifier, p Policy) *Engine {
	return &Engine{db: db, serverName: spec.ServerName(cfg.ServerName), keyID: gmsl.KeyID(cfg.KeyID), key: cfg.Key,
		signatureSize: signatureSize(spec.ServerName(cfg.ServerName), gmsl.KeyID(cfg.KeyID)),
		notifier:      n, policy: p, defaultVersion: cfg.DefaultVersion, now: time.Now}
}

// DB returns the engine's database.
func (e *Engine) DB() *storage.DB { return e.db }

// ServerName returns the local server name.
func (e *Engine) ServerName() string { return string(e.serverName) }

// SupportedVersions are the room versions this server creates and joins.
var SupportedVersions = map[string]string{"10": "stable", "11": "stable", "12": "stable"}

// SendRequest is an event a local user wants to send.
type SendRequest struct {
	RoomID   string
	Sender   string
	Type     string
	StateKey *string
	Content  json.RawMessage
	Redacts  string
	// TxnDevice and TxnID make the send idempotent per device.
	TxnDevice string
	TxnID     string
	// TxnScope separates the transaction IDs of different endpoints
	// ("send" when empty); the room ID is added to it.
	TxnScope string
}

// Sent is the result of a successful send.
type Sent struct {
	EventID   string
	StreamPos int64
}

func userIDForSender(_ spec.RoomID, s spec.SenderID) (*spec.UserID, error) {
	return spec.NewUserID(string(s), true)
}

// Send authorises and stores one event from a local user. It returns once
// the event is committed; concurrent sends share transactions (group
// commit), and the sends of one room are serialised in this process.
func (e *Engine) Send(ctx context.Context, req SendRequest) (Sent, error) {
	if e.policy != nil {
		if err := e.policy.CheckSend(ctx, &req); err != nil {
			return Sent{}, err
		}
	}
	if req.TxnScope == "" {
		req.TxnScope = "send"
	}
	// Transaction IDs are scoped per room too, as the request path is: a
	// client reusing one in another room gets a new event, never an event
	// ID from elsewhere.
	req.TxnScope += " " + req.RoomID
	ent := e.cache.acquire(req.RoomID)
	locked := true
	var res sendResult
	err := errStale
	if fastPath(&req) {
		var wait func() (sendResult, error)
		res, wait, err = e.sendBuilt(ctx, ent, req)
		if wait != nil {
			// Queued: the room's next send may be built meanwhile.
			e.cache.release(ent)
			locked = false
			res, err = wait()
			if err != nil || res.ev == nil {
				ent = e.cache.acquire(req.RoomID)
				locked = true
				ent.invalidate()
			}
		}
	}
	if errors.Is(err, errStale) {
		if !locked {
			ent = e.cache.acquire(req.RoomID)
			locked = true
		}
		ent.invalidate()
		res, err = e.sendInTx(ctx, req)
	}
	if locked {
		e.cache.release(ent)
	}
	if err != nil {
		return Sent{}, err
	}
	if res.ev == nil {
		return Sent{EventID: res.dupEventID}, nil
	}
	if e.notifier != nil {
		e.notifier.RoomEvent(req.RoomID, res.ev.StreamPos, res.ev)
	}
	return Sent{EventID: res.ev.EventID, StreamPos: res.ev.StreamPos}, nil
}

// stateLookup returns a room's current state events for keys, parsed
// (absent keys omitted).
type stateLookup func(keys []storage.StateKeyTuple) ([]gmsl.PDU, error)

// txState reads the state from tx.
func txState(ctx context.Context, tx *storage.Tx, verImpl gmsl.IRoomVersion, roomID string) stateLookup {
	return func(keys []storage.StateKeyTuple) ([]gmsl.PDU, error) {
		stateEvs, err := tx.CurrentStateEvents(ctx, roomID, keys)
		if err != nil {
			return nil, fmt.Errorf("load auth state: %w", err)
		}
		pdus := make([]gmsl.PDU, 0, len(stateEvs))
		for i := range stateEvs {
			se := &stateEvs[i]
			pdu, err := verImpl.NewEventFromTrustedJSON(se.JSON, se.RedactedBy != "")
			if err != nil {
				return nil, fmt.Errorf("parse stored event %s: %w", se.EventID, err)
			}
			pdus = append(pdus, pdu)
		}
		return pdus, nil
	}
}

// buildOn builds and signs req as the next event of room (after its latest
// event, at the next depth), with the auth events its type needs taken from
// state. It returns the event, the auth events it was built on (for the
// auth check), and the state event it replaces (nil if none). It does not
// run the auth rules.
func (e *Engine) buildOn(verImpl gmsl.IRoomVersion, room *storage.Room, req SendRequest, state stateLookup) (gmsl.PDU, *gmsl.AuthEvents, gmsl.PDU, error) {
	if len(req.Content) == 0 {
		req.Content = json.RawMessage("{}")
	}
	proto := gmsl.ProtoEvent{
		SenderID: req.Sender,
		RoomID:   room.RoomID,
		Type:     req.Type,
		StateKey: req.StateKey,
		Content:  spec.RawJSON(req.Content),
		Redacts:  req.Redacts,
	}
	needed, err := gmsl.StateNeededForProtoEvent(&proto)
	if err != nil {
		return nil, nil, nil, httpapi.BadJSON("%v", err)
	}
	tuples := needed.Tuples()
	keys := make([]storage.StateKeyTuple, 0, len(tuples)+1)
	for _, t := range tuples {
		keys = append(keys, storage.StateKeyTuple{Type: t.EventType, StateKey: t.StateKey})
	}
	// The sender's own membership and the replaced state, for prev_content.
	if req.StateKey != nil {
		keys = append(keys, storage.StateKeyTuple{Type: req.Type, StateKey: *req.StateKey})
	}
	authPDUs, err := state(keys)
	if err != nil {
		return nil, nil, nil, err
	}
	var prev gmsl.PDU
	if req.StateKey != nil {
		for _, p := range authPDUs {
			if p.Type() == req.Type && p.StateKeyEquals(*req.StateKey) {
				prev = p
			}
		}
	}
	authEvents, err := gmsl.NewAuthEvents(authPDUs)
	if err != nil {
		return nil, nil, nil, fmt.Errorf("auth events: %w", err)
	}
	refs, err := needed.AuthEventReferences(authEvents)
	if err != nil {
		return nil, nil, nil, err
	}
	if verImpl.DomainlessRoomIDs() && room.RoomID != "" {
		// v12: the create event is implied by the room ID, never listed.
		createID := "$" + room.RoomID[1:]
		filtered := refs[:0]
		for _, r := range refs {
			if r != createID {
				filtered = append(filtered, r)
			}
		}
		refs = filtered
	}
	proto.AuthEvents = refs
	if room.LatestEventID != "" {
		proto.PrevEvents = []string{room.LatestEventID}
	} else {
		proto.PrevEvents = []string{}
	}
	proto.Depth = room.Depth + 1
	if verImpl.DomainlessRoomIDs() && req.Type == spec.MRoomCreate && req.StateKey != nil && *req.StateKey == "" {
		proto.RoomID = ""
	}
	pdu, err := e.build(verImpl, &proto)
	if err != nil {
		return nil, nil, nil, err
	}
	return pdu, authEvents, prev, nil
}

// build builds proto: a message directly as canonical JSON, hashed but
// not signed (messagebuild.go; Signed signs it when it leaves the server),
// anything else with gomatrixserverlib's builder, hashed and signed. An
// event over MaxEventBytes, signature included, is refused.
func (e *Engine) build(verImpl gmsl.IRoomVersion, proto *gmsl.ProtoEvent) (gmsl.PDU, error) {
	var pdu gmsl.PDU
	var err error
	size := 0 // what the signature will add
	if canBuildMessage(verImpl.Version(), proto, e.serverName) {
		pdu, err = buildMessage(verImpl, proto, e.now(), e.serverName)
		size = e.signatureSize
	} else {
		pdu, err = verImpl.NewEventBuilderFromProtoEvent(proto).Build(e.now(), e.serverName, e.keyID, e.key)
	}
	var tooLarge gmsl.EventValidationError
	if errors.As(err, &tooLarge) && tooLarge.Code == gmsl.EventValidationTooLarge {
		return nil, httpapi.TooLarge("event exceeds %d bytes", MaxEventBytes)
	}
	if err != nil {
		return nil, httpapi.BadJSON("cannot build event: %v", err)
	}
	if len(pdu.JSON())+size > MaxEventBytes {
		return nil, httpapi.TooLarge("event exceeds %d bytes", MaxEventBytes)
	}
	return pdu, nil
}

// eventRow is the row AppendEvent stores for pdu, built from req and
// replacing the state event prev (nil if none).
func eventRow(pdu gmsl.PDU, req SendRequest, prev gmsl.PDU) storage.NewEvent {
	ev := storage.NewEvent{Event: storage.Event{
		EventID:        pdu.EventID(),
		RoomID:         pdu.RoomID().String(),
		Type:           req.Type,
		StateKey:       req.StateKey,
		Sender:         req.Sender,
		OriginServerTS: int64(pdu.OriginServerTS()),
		Depth:          pdu.Depth(),
		JSON:           pdu.JSON(),
		TxnDevice:      req.TxnDevice,
		TxnID:          req.TxnID,
	}}
	if req.StateKey != nil && prev != nil {
		ev.Unsigned = prevUnsigned(prev.Content(), prev.EventID(), string(prev.SenderID()))
	}
	if req.Type == spec.MRoomMember {
		ev.Membership, _ = pdu.Membership()
	}
	ev.RelType, ev.RelatesTo = relation(req.Content)
	return ev
}

// appendInTx builds, signs, authorises and appends an event to a locked room.
func (e *Engine) appendInTx(ctx context.Context, tx *storage.Tx, room *storage.Room, req SendRequest) (*storage.Event, error) {
	verImpl, err := gmsl.GetRoomVersion(gmsl.RoomVersion(room.RoomVersion))
	if err != nil {
		return nil, fmt.Errorf("room %s has unknown version %s", room.RoomID, room.RoomVersion)
	}
	pdu, authEvents, prev, err := e.buildOn(verImpl, room, req, txState(ctx, tx, verImpl, room.RoomID))
	if err != nil {
		return nil, err
	}
	if req.Type == spec.MRoomCreate {
		if room.LatestEventID != "" {
			return nil, httpapi.Forbidden("the room already has a create event")
		}
		if room.RoomID == "" {
			room.RoomID = pdu.RoomID().String()
		}
		if err := tx.CreateRoom(ctx, *room); err != nil {
			return nil, err
		}
		if err := authEvents.AddEvent(pdu); err != nil {
			return nil, err
		}
	}
	if err := gmsl.Allowed(pdu, authEvents, userIDForSender); err != nil {
		return nil, httpapi.Forbidden("%s", authMessage(err))
	}
	ev := eventRow(pdu, req, prev)
	if req.Type == spec.MRoomRedaction {
		if err := e.checkRedaction(ctx, tx, room, verImpl, pdu, authEvents); err != nil {
			return nil, err
		}
	}
	return e.storeInTx(ctx, tx, room, ev, func() error {
		if req.Type == spec.MRoomRedaction {
			return e.applyRedaction(ctx, tx, verImpl, pdu)
		}
		return nil
	})
}

// storeInTx appends ev to a locked room, then runs after (if not nil) and
// the stored hooks. It returns the stored event.
func (e *Engine) storeInTx(ctx context.Context, tx *storage.Tx, room *storage.Room, ev storage.NewEvent, after func() error) (*storage.Event, error) {
	groupBefore := room.StateGroup
	pos, err := tx.AppendEvent(ctx, room, ev)
	if err != nil {
		return nil, err
	}
	// AppendEvent advanced room (a pointer), not its copy of ev.
	ev.StreamPos, ev.StateGroupBefore, ev.StateGroupAfter = pos, groupBefore, room.StateGroup
	if after != nil {
		if err := after(); err != nil {
			return nil, err
		}
	}
	for _, h := range e.storedHooks {
		h := h.stored
		if err := h(ctx, tx, &ev.Event); err != nil {
			return nil, err
		}
	}
	return &ev.Event, nil
}

func authMessage(err error) string {
	var na *gmsl.NotAllowed
	if errors.As(err, &na) {
		return na.Message
	}
	return err.Error()
}

// relation extracts m.relates_to's rel_type and event_id from content.
func relation(content json.RawMessage) (relType, eventID string) {
	// Most events have no relation: skip the decoding unless the key may
	// be there (spelt out, or hidden behind a JSON escape).
	if !bytes.Contains(content, []byte("m.relates_to")) && bytes.IndexByte(content, '\\') < 0 {
		return "", ""
	}
	var c struct {
		RelatesTo *struct {
			RelType string `json:"rel_type"`
			EventID string `json:"event_id"`
		} `json:"m.relates_to"`
	}
	if json.Unmarshal(content, &c) != nil || c.RelatesTo == nil {
		return "", ""
	}
	return c.RelatesTo.RelType, c.RelatesTo.EventID
}

func redactsOf(pdu gmsl.PDU) string {
	if r := pdu.Redacts(); r != "" {
		return r
	}
	var c struct {
		Redacts string `json:"redacts"`
	}
	_ = json.Unmarshal(pdu.Content(), &c)
	return c.Redacts
}

// checkRedaction refuses redactions the sender is not allowed to apply:
// redacting another user's event needs the power level "redact".
func (e *Engine) checkRedaction(ctx context.Context, tx *storage.Tx, room *storage.Room, verImpl gmsl.IRoomVersion, pdu gmsl.PDU, auth *gmsl.AuthEvents) error {
	target := redactsOf(pdu)
	if target == "" {
		return httpapi.BadJSON("redaction without redacts")
	}
	tev, err := tx.GetEvent(ctx, target)
	if errors.Is(err, storage.ErrNotFound) || (err == nil && tev.RoomID != room.RoomID) {
		return httpapi.NotFound("event to redact not found")
	}
	if err != nil {
		return err
	}
	if tev.Sender == string(pdu.SenderID()) {
		return nil
	}
	plEv, _ := auth.PowerLevels()
	createEv, _ := auth.Create()
	pl, err := gmsl.NewPowerLevelContentFromEvent(plEv)
	if plEv == nil || err != nil {
		pl = gmsl.PowerLevelContent{}
		if createEv != nil {
			pl.Defaults()
		}
	}
	if userLevel(verImpl, createEv, pl, string(pdu.SenderID())) >= pl.Redact {
		return nil
	}
	return httpapi.Forbidden("you may not redact other users' events")
}

// userLevel returns a user's power level, treating v12 creators as above all.
func userLevel(verImpl gmsl.IRoomVersion, createEv gmsl.PDU, pl gmsl.PowerLevelContent, userID string) int64 {
	if verImpl.PrivilegedCreators() && createEv != nil {
		if string(createEv.SenderID()) == userID {
			return 1 << 53
		}
		var c struct {
			Additional []string `json:"additional_creators"`
		}
		_ = json.Unmarshal(createEv.Content(), &c)
		for _, u := range c.Additional {
			if u == userID {
				return 1 << 53
			}
		}
	}
	return pl.UserLevel(spec.SenderID(userID))
}

func (e *Engine) applyRedaction(ctx context.Context, tx *storage.Tx, verImpl gmsl.IRoomVersion, pdu gmsl.PDU) error {
	target := redactsOf(pdu)
	tev, err := tx.GetEvent(ctx, target)
	if err != nil {
		return err
	}
	redacted, err := verImpl.RedactEventJSON(tev.JSON)
	if err != nil {
		return fmt.Errorf("redact %s: %w", target, err)
	}
	return tx.RedactEvent(ctx, target, redacted, pdu.EventID())
}
