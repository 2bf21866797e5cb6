package syncapi_test

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/url"
	"sync"
	"testing"
	"time"

	"maunium.net/go/mautrix"
	"maunium.net/go/mautrix/id"

	"github.com/rempart-hs/rempart/internal/httpapi"
	"github.com/rempart-hs/rempart/internal/rooms"
	"github.com/rempart-hs/rempart/internal/syncapi"
	"github.com/rempart-hs/rempart/internal/testserver"
)

// The delivery benchmarks follow the load tool's delivery scenario: each
// member of a 10-member room long-polls /sync with an inline filter naming
// its room (lazy-loaded members, timeline limit 100); a member sends a
// message; every long-poll wakes, answers with it, and the client polls
// again. A sync here is what the server does for one request: authenticate
// the access token, handle the request, encode the answer.

const deliveryMembers = 10

type deliveryFixture struct {
	srv    *testserver.Server
	roomID string
	users  []deliveryUser
	last   string // the last message sent
}

type deliveryUser struct {
	id, token string
	cli       *mautrix.Client
}

func newDeliveryFixture(b *testing.B) *deliveryFixture {
	b.Helper()
	srv := testserver.Start(b)
	ctx := context.Background()
	f := &deliveryFixture{srv: srv}
	for i := 0; i < deliveryMembers; i++ {
		cli := srv.RegisterUser("member")
		f.users = append(f.users, deliveryUser{id: cli.UserID.String(), token: cli.AccessToken, cli: cli})
	}
	name := "Delivery"
	roomID, err := srv.Srv.Rooms.Create(ctx, rooms.CreateRequest{Creator: f.users[0].id, Preset: "public_chat", Name: &name})
	if err != nil {
		b.Fatal(err)
	}
	for _, u := range f.users[1:] {
		if _, err := srv.Srv.Rooms.ChangeMembership(ctx, rooms.MembershipRequest{RoomID: roomID, Sender: u.id, Target: u.id, Membership: "join"}); err != nil {
			b.Fatal(err)
		}
	}
	f.roomID = roomID
	return f
}

// deliveryFilter is the load tool's long-poll filter.
func (f *deliveryFixture) filter() string {
	return fmt.Sprintf(`{"room":{"rooms":[%q],"timeline":{"limit":100},"state":{"lazy_load_members":true}},"presence":{"not_types":["*"]}}`, f.roomID)
}

// sync serves one /sync request of u as the router does (token look-up,
// handler, JSON encoding).
func (f *deliveryFixture) sync(ctx context.Context, u deliveryUser, since string, timeout time.Duration) (*syncapi.Response, error) {
	req, err := f.srv.Srv.Auth.Authenticate(ctx, u.token)
	if err != nil {
		return nil, err
	}
	q := url.Values{"filter": {f.filter()}, "timeout": {fmt.Sprint(timeout.Milliseconds())}}
	if since != "" {
		q.Set("since", since)
	}
	r := httptest.NewRequest(http.MethodGet, "/_matrix/client/v3/sync?"+q.Encode(), nil)
	r = r.WithContext(httpapi.WithRequester(ctx, req))
	out, err := f.srv.Srv.Sync.Handle(r)
	if err != nil {
		return nil, err
	}
	resp := out.(*syncapi.Response)
	if _, err := json.Marshal(resp); err != nil {
		return nil, err
	}
	return resp, nil
}

// receiptEvery is how many messages the members let pass before they
// mark the room read, as clients do: unread counts stay bounded.
const receiptEvery = 20

// send sends message i from a member (each member in turn); every
// receiptEvery messages, every member first marks the room read (its last
// message).
func (f *deliveryFixture) send(b *testing.B, i int) {
	ctx := context.Background()
	if i > 0 && i%receiptEvery == 0 {
		f.markRead(b)
	}
	u := f.users[i%len(f.users)]
	ev, err := f.srv.Srv.Rooms.Send(ctx, rooms.SendRequest{RoomID: f.roomID, Sender: u.id, Type: "m.room.message",
		Content: json.RawMessage(fmt.Sprintf(`{"msgtype":"m.text","body":"probe %d"}`, i))})
	if err != nil {
		b.Fatal(err)
	}
	f.last = ev.EventID
}

func (f *deliveryFixture) markRead(b *testing.B) {
	for _, u := range f.users {
		if err := u.cli.MarkRead(context.Background(), id.RoomID(f.roomID), id.EventID(f.last)); err != nil {
			b.Fatal(err)
		}
	}
}

// initialTokens returns each member's position after an initial sync.
func (f *deliveryFixture) initialTokens(b *testing.B) []string {
	since := make([]string, len(f.users))
	for i, u := range f.users {
		resp, err := f.sync(context.Background(), u, "", 0)
		if err != nil {
			b.Fatal(err)
		}
		since[i] = resp.NextBatch
	}
	return since
}

// BenchmarkDeliverySync is the incremental sync of each member after one
// new message in their room (timeout 0: no wait), as a woken long-poll
// runs it, and the same with nothing new. cpu-ns/op is per sync.
func BenchmarkDeliverySync(b *testing.B) {
	f := newDeliveryFixture(b)
	since := f.initialTokens(b)
	ctx := context.Background()
	b.Run("one-new-event", func(b *testing.B) {
		var cpu cpuMeter
		var reads uint64
		i := 0
		for b.Loop() {
			b.StopTimer()
			f.send(b, i)
			b.StartTimer()
			r0 := f.srv.Srv.DB.ReadStatements()
			cpu.begin()
			for k, u := range f.users {
				resp, err := f.sync(ctx, u, since[k], 0)
				if err != nil {
					b.Fatal(err)
				}
				if resp.Rooms == nil || len(resp.Rooms.Join[f.roomID].Timeline.Events) != 1 {
					b.Fatal("the sync does not hold exactly the new message")
				}
				since[k] = resp.NextBatch
			}
			cpu.end()
			reads += f.srv.Srv.DB.ReadStatements() - r0
			i++
		}
		b.ReportMetric(float64(cpu.total.Nanoseconds())/float64(b.N*len(f.users)), "cpu-ns/sync")
		b.ReportMetric(float64(reads)/float64(b.N*len(f.users)), "reads/sync")
	})
	b.Run("nothing-new", func(b *testing.B) {
		since = f.initialTokens(b)
		var cpu cpuMeter
		i := 0
		var reads uint64
		for b.Loop() {
			k := i % len(f.users)
			r0 := f.srv.Srv.DB.ReadStatements()
			cpu.begin()
			resp, err := f.sync(ctx, f.users[k], since[k], 0)
			cpu.end()
			reads += f.srv.Srv.DB.ReadStatements() - r0
			if err != nil {
				b.Fatal(err)
			}
			if resp.Rooms != nil {
				b.Fatal("a sync with nothing new lists rooms")
			}
			i++
		}
		b.ReportMetric(float64(cpu.total.Nanoseconds())/float64(b.N), "cpu-ns/sync")
		b.ReportMetric(float64(reads)/float64(b.N), "reads/sync")
	})
}

// BenchmarkDeliverySyncUnread is BenchmarkDeliverySync's one-new-event
// in a room whose members have never read it: each has a backlog of
// unread notifications there (3,000 messages, sent first), as in a busy
// room that its members do not open. Its cost must not follow the
// backlog (storage/unread_cache.go).
func BenchmarkDeliverySyncUnread(b *testing.B) {
	f := newDeliveryFixture(b)
	ctx := context.Background()
	const backlog = 3000
	var wg sync.WaitGroup
	for g := range f.users {
		wg.Go(func() {
			u := f.users[g]
			for i := g; i < backlog; i += len(f.users) {
				if _, err := f.srv.Srv.Rooms.Send(ctx, rooms.SendRequest{RoomID: f.roomID, Sender: u.id, Type: "m.room.message",
					Content: json.RawMessage(fmt.Sprintf(`{"msgtype":"m.text","body":"backlog %d"}`, i))}); err != nil {
					b.Error(err)
					return
				}
			}
		})
	}
	wg.Wait()
	since := f.initialTokens(b)
	var cpu cpuMeter
	i := 0
	for b.Loop() {
		b.StopTimer()
		u := f.users[i%len(f.users)]
		if _, err := f.srv.Srv.Rooms.Send(ctx, rooms.SendRequest{RoomID: f.roomID, Sender: u.id, Type: "m.room.message",
			Content: json.RawMessage(fmt.Sprintf(`{"msgtype":"m.text","body":"probe %d"}`, i))}); err != nil {
			b.Fatal(err)
		}
		b.StartTimer()
		cpu.begin()
		for k, u := range f.users {
			resp, err := f.sync(ctx, u, since[k], 0)
			if err != nil {
				b.Fatal(err)
			}
			jr := resp.Rooms.Join[f.roomID]
			if len(jr.Timeline.Events) != 1 || jr.UnreadNotifications == nil || jr.UnreadNotifications.NotificationCount < backlog*9/10 {
				b.Fatal("the sync does not hold the new message and the backlog's count")
			}
			since[k] = resp.NextBatch
		}
		cpu.end()
		i++
	}
	b.ReportMetric(float64(cpu.total.Nanoseconds())/float64(b.N*len(f.users)), "cpu-ns/sync")
}

// BenchmarkDeliveryLongPoll is the whole delivery cycle: every member's
// long-poll waits; a member sends a message; each long-poll wakes, answers
// with it and its client polls again. cpu-ns/op is per answer (the send
// included, as in the load tool), send-to-last-answer wall time per op in
// deliver-ns/op.
func BenchmarkDeliveryLongPoll(b *testing.B) {
	f := newDeliveryFixture(b)
	since := f.initialTokens(b)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	n := len(f.users)
	answers := make(chan error, n)
	var wg sync.WaitGroup
	next := make([]chan struct{}, n)
	for k := range f.users {
		next[k] = make(chan struct{}, 1)
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				select {
				case <-next[k]:
				case <-ctx.Done():
					return
				}
				for {
					resp, err := f.sync(ctx, f.users[k], since[k], time.Minute)
					if ctx.Err() != nil {
						return
					}
					if err != nil {
						answers <- err
						return
					}
					since[k] = resp.NextBatch
					if resp.Rooms != nil && len(resp.Rooms.Join[f.roomID].Timeline.Events) > 0 {
						answers <- nil
						break
					}
				}
			}
		}()
	}
	startPolls := func() {
		for k := range next {
			next[k] <- struct{}{}
		}
		time.Sleep(20 * time.Millisecond) // let every poll reach its wait
	}
	var cpu cpuMeter
	var deliver time.Duration
	i := 0
	startPolls()
	for b.Loop() {
		cpu.begin()
		t := time.Now()
		f.send(b, i)
		for range n {
			if err := <-answers; err != nil {
				b.Fatal(err)
			}
		}
		deliver += time.Since(t)
		// The clients poll again (their first build, finding nothing,
		// is part of the cycle).
		for k := range next {
			next[k] <- struct{}{}
		}
		time.Sleep(5 * time.Millisecond)
		cpu.end()
		i++
	}
	b.ReportMetric(float64(cpu.total.Nanoseconds())/float64(b.N*n), "cpu-ns/answer")
	b.ReportMetric(float64(deliver.Nanoseconds())/float64(b.N), "deliver-ns/op")
	cancel()
	wg.Wait()
}
