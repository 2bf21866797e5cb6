package pushrules

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"sync"
	"time"

	"github.com/rempart-hs/rempart/internal/storage"
)

// maxCachedRulesets bounds the evaluator's cache of compiled rulesets.
const maxCachedRulesets = 20000

// Evaluator decides, when an event is stored, which local members of its
// room it notifies, and records that as push actions (the source of
// unread counts and GET /notifications; see storage/push_staged.go for
// where they are kept). Each member's rules are loaded
// and compiled at most once per rule change: the cache is keyed by the
// version of the user's rules (the stream position of their m.push_rules
// account data, which every change advances), so it stays correct when
// several processes share one database.
type Evaluator struct {
	serverName string

	mu    sync.Mutex
	cache map[string]cachedRules
	// names caches each room's member display names, keyed by the room's
	// state group: any membership change makes a new group, so an entry is
	// never used for other state than the one it was read from.
	names map[string]cachedNames
	// recipients caches each room's push recipients for Prepare (see
	// preparedRecipients); recipientsHeld counts the members it holds.
	recipients     map[string]cachedRecipients
	recipientsHeld int
}

type cachedRecipients struct {
	stateGroup int64
	rulesGen   uint64
	loaded     time.Time
	members    []storage.PushRecipient
}

// maxCachedRecipients bounds the members held by the recipients cache
// (some 50 bytes each).
const maxCachedRecipients = 200000

// recipientsMaxAge is how long a room's cached recipients are used. Rule
// changes made through this process replace them at once; this bounds how
// late a change made through another process sharing the database (whose
// commits do not move storage.DB.PushRulesGeneration here) is seen.
const recipientsMaxAge = time.Second

type cachedNames struct {
	stateGroup int64
	names      map[string]string
}

// maxCachedRoomNames bounds the rooms whose display names are cached.
const maxCachedRoomNames = 2000

type cachedRules struct {
	version int64
	rules   *Compiled
}

// NewEvaluator returns an evaluator for the local users of serverName.
func NewEvaluator(serverName string) *Evaluator {
	return &Evaluator{serverName: serverName, cache: map[string]cachedRules{}, names: map[string]cachedNames{},
		recipients: map[string]cachedRecipients{}}
}

// source is what evaluation reads: the transaction storing the event, or
// (Prepare) the database before the event is queued.
type source interface {
	PushRulesOfUsers(ctx context.Context, userIDs []string) (map[string][]storage.StoredPushRule, error)
	PushRuleOverridesOfUsers(ctx context.Context, userIDs []string) (map[string][]storage.PushRuleOverride, error)
	MemberDisplayNames(ctx context.Context, roomID string) (map[string]string, error)
	CurrentStateEvents(ctx context.Context, roomID string, keys []storage.StateKeyTuple) ([]storage.Event, error)
}

// dbSource reads outside a transaction.
type dbSource struct{ *storage.DB }

func (s dbSource) CurrentStateEvents(ctx context.Context, roomID string, keys []storage.StateKeyTuple) ([]storage.Event, error) {
	return s.CurrentState(ctx, roomID, keys)
}

// EventStored is the room engine's hook: it runs inside the transaction
// that stored ev, after the event's state changes were applied.
func (e *Evaluator) EventStored(ctx context.Context, tx *storage.Tx, ev *storage.Event) error {
	if ev.Type == "m.room.redaction" {
		if target := redactedEventID(ev.JSON); target != "" {
			if err := tx.DeletePushActionsForEvent(ctx, target); err != nil {
				return fmt.Errorf("drop notifications of redacted event: %w", err)
			}
		}
	}
	// An invite notifies the invitee, who is not joined yet.
	var invitee *storage.PushRecipient
	if ev.Type == "m.room.member" && ev.StateKey != nil && *ev.StateKey != ev.Sender && e.isLocal(*ev.StateKey) {
		var c struct {
			Content struct {
				Membership string `json:"membership"`
			} `json:"content"`
		}
		if json.Unmarshal(ev.JSON, &c) == nil && c.Content.Membership == "invite" {
			v, err := tx.PushRulesVersion(ctx, *ev.StateKey)
			if err != nil {
				return err
			}
			invitee = &storage.PushRecipient{UserID: *ev.StateKey, RulesVersion: v}
		}
	}
	members, err := tx.PushRecipients(ctx, ev.RoomID)
	if err != nil {
		return fmt.Errorf("push recipients: %w", err)
	}
	acts, err := e.evaluate(ctx, tx, ev, members, invitee)
	if err != nil || len(acts) == 0 {
		return err
	}
	return tx.InsertPushActions(ctx, acts)
}

// Prepare evaluates ev, a message event (no state key, not a redaction)
// about to be queued, on the database as it is, and returns the hook that
// stores the result in ev's transaction. It moves the reads and the rule
// evaluation (for a room of a thousand members, a thousand evaluations)
// off the single writer, which then only inserts the rows. The room
// engine queues ev only if the room's state is still the one ev was built
// on when it commits (otherwise ev is built again and EventStored runs in
// its transaction), so the members read here are the members at ev. A
// member's push rules changed in between are applied from the next event,
// as if the change had come a moment later.
func (e *Evaluator) Prepare(ctx context.Context, db *storage.DB, ev *storage.Event) (func(ctx context.Context, tx *storage.Tx, ev *storage.Event) error, error) {
	members, err := e.preparedRecipients(ctx, db, ev.RoomID, ev.StateGroupAfter)
	if err != nil {
		return nil, err
	}
	acts, err := e.evaluate(ctx, dbSource{db}, ev, members, nil)
	if err != nil {
		return nil, err
	}
	return func(ctx context.Context, tx *storage.Tx, stored *storage.Event) error {
		if len(acts) == 0 {
			return nil
		}
		for i := range acts {
			acts[i].StreamPos = stored.StreamPos
		}
		return tx.InsertPushActions(ctx, acts)
	}, nil
}

// preparedRecipients returns the push recipients of a room whose state is
// stateGroup, for Prepare. Reading them was a seventh of the send path's
// CPU (on SQLite every write empties the readers' page caches, so each
// read went to the file), for an answer that changes only with the room's
// memberships, which are state and so make a new state group, or with a
// member's push rules, which move the database's push rules generation.
// The generation is taken before the read, so a change committed during
// it makes the entry outdated at once.
func (e *Evaluator) preparedRecipients(ctx context.Context, db *storage.DB, roomID string, stateGroup int64) ([]storage.PushRecipient, error) {
	gen := db.PushRulesGeneration()
	now := time.Now()
	e.mu.Lock()
	c, ok := e.recipients[roomID]
	e.mu.Unlock()
	if ok && c.stateGroup == stateGroup && c.rulesGen == gen && now.Sub(c.loaded) < recipientsMaxAge {
		return c.members, nil
	}
	members, err := db.PushRecipients(ctx, roomID)
	if err != nil {
		return nil, fmt.Errorf("push recipients: %w", err)
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	if old, ok := e.recipients[roomID]; ok {
		e.recipientsHeld -= len(old.members)
	}
	if e.recipientsHeld+len(members) > maxCachedRecipients {
		clear(e.recipients) // rare: start over rather than track recency
		e.recipientsHeld = 0
	}
	e.recipients[roomID] = cachedRecipients{stateGroup: stateGroup, rulesGen: gen, loaded: now, members: members}
	e.recipientsHeld += len(members)
	return members, nil
}

// evaluate returns the notifications ev makes for members, the local
// joined members of its room (and extra, when not nil).
func (e *Evaluator) evaluate(ctx context.Context, src source, ev *storage.Event, members []storage.PushRecipient, extra *storage.PushRecipient) ([]storage.PushAction, error) {
	memberCount := len(members)
	recipients := make([]storage.PushRecipient, 0, len(members)+1)
	for _, m := range members {
		if m.UserID != ev.Sender && e.isLocal(m.UserID) {
			recipients = append(recipients, m)
		}
	}
	if extra != nil {
		recipients = append(recipients, *extra)
	}
	if len(recipients) == 0 {
		return nil, nil
	}
	rules, err := e.rulesFor(ctx, src, recipients)
	if err != nil {
		return nil, err
	}
	pev, err := NewEvent(ev.JSON)
	if err != nil {
		return nil, nil // not an object: nothing can match
	}
	room := &roomFacts{src: src, roomID: ev.RoomID, sender: ev.Sender, stateGroup: ev.StateGroupAfter, ev: e}
	threadID := "main"
	if ev.RelType == "m.thread" && ev.RelatesTo != "" {
		threadID = ev.RelatesTo
	}
	var acts []storage.PushAction
	memberEvent := ev.Type == "m.room.member" && ev.StateKey != nil
	for _, r := range recipients {
		userID := r.UserID
		if memberEvent && userID != *ev.StateKey && rules[userID].QuietOnMembers() {
			continue // Evaluate would not notify
		}
		res := rules[userID].Evaluate(pev, Context{
			UserID:          userID,
			MemberCount:     memberCount,
			DisplayName:     func() string { return room.displayName(ctx, userID) },
			SenderMayNotify: func(key string) bool { return room.senderMayNotify(ctx, key) },
		})
		if !res.Notify {
			continue
		}
		acts = append(acts, storage.PushAction{UserID: userID, RoomID: ev.RoomID, EventID: ev.EventID, StreamPos: ev.StreamPos,
			ThreadID: threadID, Highlight: res.Highlight, Actions: res.ActionsJSON, TS: ev.OriginServerTS})
	}
	if room.err != nil {
		return nil, room.err
	}
	return acts, nil
}

func (e *Evaluator) isLocal(userID string) bool {
	return strings.HasPrefix(userID, "@") && strings.HasSuffix(userID, ":"+e.serverName)
}

// rulesFor returns the compiled rules of each recipient, loading the
// missing or outdated ones in one batch.
func (e *Evaluator) rulesFor(ctx context.Context, src source, recipients []storage.PushRecipient) (map[string]*Compiled, error) {
	out := make(map[string]*Compiled, len(recipients))
	var missing []string
	versions := map[string]int64{}
	e.mu.Lock()
	for _, r := range recipients {
		if c, ok := e.cache[r.UserID]; ok && c.version == r.RulesVersion {
			out[r.UserID] = c.rules
			continue
		}
		missing = append(missing, r.UserID)
		versions[r.UserID] = r.RulesVersion
	}
	e.mu.Unlock()
	if len(missing) == 0 {
		return out, nil
	}
	stored, err := src.PushRulesOfUsers(ctx, missing)
	if err != nil {
		return nil, fmt.Errorf("load push rules: %w", err)
	}
	overrides, err := src.PushRuleOverridesOfUsers(ctx, missing)
	if err != nil {
		return nil, fmt.Errorf("load push rule overrides: %w", err)
	}
	loaded := make(map[string]*Compiled, len(missing))
	for _, userID := range missing {
		rs := build(userID, stored[userID], overrides[userID])
		loaded[userID] = Compile(&rs)
		out[userID] = loaded[userID]
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	if len(e.cache)+len(loaded) > maxCachedRulesets {
		clear(e.cache) // rare: start over rather than track recency
	}
	for userID, c := range loaded {
		// A rule change committed since the version was read carries a
		// higher version and replaces this entry.
		if old, ok := e.cache[userID]; !ok || old.version <= versions[userID] {
			e.cache[userID] = cachedRules{version: versions[userID], rules: c}
		}
	}
	return out, nil
}

// roomFacts loads, at most once per event and only when a rule asks, what
// conditions need to know about the room.
type roomFacts struct {
	src    source
	roomID string
	sender string
	err    error

	levelsLoaded bool
	senderLevel  int64
	notifLevels  map[string]int64

	stateGroup int64
	ev         *Evaluator
	names      map[string]string
}

func (f *roomFacts) senderMayNotify(ctx context.Context, key string) bool {
	if !f.levelsLoaded {
		f.levelsLoaded = true
		f.loadLevels(ctx)
	}
	need, ok := f.notifLevels[key]
	if !ok {
		need = 50 // the spec's default for every notification key
	}
	return f.senderLevel >= need
}

func (f *roomFacts) loadLevels(ctx context.Context) {
	state, err := f.src.CurrentStateEvents(ctx, f.roomID, []storage.StateKeyTuple{{Type: "m.room.power_levels"}, {Type: "m.room.create"}})
	if err != nil {
		f.err = err
		return
	}
	var pl, create *storage.Event
	for i := range state {
		switch state[i].Type {
		case "m.room.power_levels":
			pl = &state[i]
		case "m.room.create":
			create = &state[i]
		}
	}
	f.senderLevel, f.notifLevels = SenderLevel(pl, create, f.sender)
}

// SenderLevel returns a user's power level in a room and the levels its
// power_levels event requires for notification keys, from the room's
// current m.room.power_levels and m.room.create events (either may be
// nil). Room creators in room version 12 rank above every level.
func SenderLevel(pl, create *storage.Event, userID string) (int64, map[string]int64) {
	var cc struct {
		Sender  string `json:"sender"`
		Content struct {
			RoomVersion        string   `json:"room_version"`
			Creator            string   `json:"creator"`
			AdditionalCreators []string `json:"additional_creators"`
		} `json:"content"`
	}
	if create != nil {
		_ = json.Unmarshal(create.JSON, &cc)
	}
	if create != nil && cc.Content.RoomVersion == "12" {
		if userID == cc.Sender {
			return 1 << 53, map[string]int64{}
		}
		for _, u := range cc.Content.AdditionalCreators {
			if u == userID {
				return 1 << 53, map[string]int64{}
			}
		}
	}
	if pl == nil {
		// Without power levels the creator has 100 and everyone else 0.
		if create != nil && (cc.Sender == userID || cc.Content.Creator == userID) {
			return 100, map[string]int64{}
		}
		return 0, map[string]int64{}
	}
	var pc struct {
		Content struct {
			Users         map[string]json.Number `json:"users"`
			UsersDefault  json.Number            `json:"users_default"`
			Notifications map[string]json.Number `json:"notifications"`
		} `json:"content"`
	}
	_ = json.Unmarshal(pl.JSON, &pc)
	level := num(pc.Content.UsersDefault, 0)
	if v, ok := pc.Content.Users[userID]; ok {
		level = num(v, level)
	}
	notif := map[string]int64{}
	for k, v := range pc.Content.Notifications {
		notif[k] = num(v, 50)
	}
	return level, notif
}

// num reads a power level, which older room versions may give as a string.
func num(n json.Number, def int64) int64 {
	if n == "" {
		return def
	}
	if v, err := n.Int64(); err == nil {
		return v
	}
	return def
}

// displayName is the user's display name in the room. The first call of
// an event reads every member's name at once (or takes them from the
// evaluator's cache for this state group), so that a message to a room of
// a thousand members costs one query, not a thousand.
func (f *roomFacts) displayName(ctx context.Context, userID string) string {
	if f.names == nil {
		names, err := f.ev.roomNames(ctx, f.src, f.roomID, f.stateGroup)
		if err != nil {
			f.err = err
			f.names = map[string]string{}
			return ""
		}
		f.names = names
	}
	return f.names[userID]
}

// roomNames returns the room's member display names at stateGroup.
func (e *Evaluator) roomNames(ctx context.Context, src source, roomID string, stateGroup int64) (map[string]string, error) {
	e.mu.Lock()
	c, ok := e.names[roomID]
	e.mu.Unlock()
	if ok && c.stateGroup == stateGroup {
		return c.names, nil
	}
	names, err := src.MemberDisplayNames(ctx, roomID)
	if err != nil {
		return nil, err
	}
	e.mu.Lock()
	if len(e.names) >= maxCachedRoomNames {
		clear(e.names)
	}
	e.names[roomID] = cachedNames{stateGroup: stateGroup, names: names}
	e.mu.Unlock()
	return names, nil
}

// redactedEventID returns the event a redaction redacts (top-level
// "redacts" before room version 11, content.redacts from then on).
func redactedEventID(eventJSON []byte) string {
	var r struct {
		Redacts string `json:"redacts"`
		Content struct {
			Redacts string `json:"redacts"`
		} `json:"content"`
	}
	if json.Unmarshal(eventJSON, &r) != nil {
		return ""
	}
	if r.Content.Redacts != "" {
		return r.Content.Redacts
	}
	return r.Redacts
}
