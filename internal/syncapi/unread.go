package syncapi

import (
	"context"
	"encoding/json"

	"github.com/rempart-hs/rempart/internal/pushrules"
	"github.com/rempart-hs/rempart/internal/storage"
)

// maxUnreadScan bounds how many unread events are evaluated per room and
// sync; counts above it are reported as at least this many.
const maxUnreadScan = 200

// lazyRules loads the syncing user's push rules at most once per sync, and
// only if some room needs them.
type lazyRules struct {
	db     *storage.DB
	userID string
	rs     *pushrules.Ruleset
}

func (l *lazyRules) get(ctx context.Context) (*pushrules.Ruleset, error) {
	if l.rs == nil {
		rs, err := pushrules.Load(ctx, l.db, l.userID)
		if err != nil {
			return nil, err
		}
		l.rs = &rs
	}
	return l.rs, nil
}

// unread evaluates the user's push rules against the events from others
// after their read position and counts notifications and highlights.
func (s *Service) unread(ctx context.Context, rules *lazyRules, roomID, userID string, after int64) (*Unread, error) {
	evs, err := s.db.UnreadCandidates(ctx, roomID, userID, after, maxUnreadScan)
	if err != nil || len(evs) == 0 {
		return &Unread{}, err
	}
	rs, err := rules.get(ctx)
	if err != nil {
		return nil, err
	}
	pctx, err := s.pushContext(ctx, roomID, userID)
	if err != nil {
		return nil, err
	}
	out := &Unread{}
	for i := range evs {
		pctx.SenderPower = pctx.levelOf(evs[i].Sender)
		res := rs.Evaluate(evs[i].JSON, pctx.Context)
		if res.Notify {
			out.NotificationCount++
		}
		if res.Highlight {
			out.HighlightCount++
		}
	}
	return out, nil
}

type pushContext struct {
	pushrules.Context
	users        map[string]int64
	usersDefault int64
	creators     map[string]bool
}

func (p *pushContext) levelOf(userID string) int64 {
	if p.creators[userID] {
		return 1 << 53
	}
	if l, ok := p.users[userID]; ok {
		return l
	}
	return p.usersDefault
}

// pushContext gathers what push conditions need about a room.
func (s *Service) pushContext(ctx context.Context, roomID, userID string) (*pushContext, error) {
	state, err := s.db.CurrentState(ctx, roomID, []storage.StateKeyTuple{
		{Type: "m.room.power_levels"}, {Type: "m.room.create"}, {Type: "m.room.member", StateKey: userID},
	})
	if err != nil {
		return nil, err
	}
	n, err := s.db.JoinedMemberCount(ctx, roomID)
	if err != nil {
		return nil, err
	}
	p := &pushContext{Context: pushrules.Context{UserID: userID, MemberCount: n}, creators: map[string]bool{}}
	notif := map[string]int64{"room": 50}
	for i := range state {
		ev := &state[i]
		var c struct {
			Content struct {
				Users         map[string]int64 `json:"users"`
				UsersDefault  int64            `json:"users_default"`
				Notifications map[string]int64 `json:"notifications"`
				Displayname   string           `json:"displayname"`
				RoomVersion   string           `json:"room_version"`
				Additional    []string         `json:"additional_creators"`
			} `json:"content"`
		}
		_ = json.Unmarshal(ev.JSON, &c)
		switch ev.Type {
		case "m.room.power_levels":
			p.users, p.usersDefault = c.Content.Users, c.Content.UsersDefault
			for k, v := range c.Content.Notifications {
				notif[k] = v
			}
		case "m.room.member":
			p.DisplayName = c.Content.Displayname
		case "m.room.create":
			if c.Content.RoomVersion == "12" {
				p.creators[ev.Sender] = true
				for _, u := range c.Content.Additional {
					p.creators[u] = true
				}
			}
		}
	}
	p.NotifPowerLevel = func(key string) int64 {
		if l, ok := notif[key]; ok {
			return l
		}
		return 50
	}
	return p, nil
}
