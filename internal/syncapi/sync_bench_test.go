package syncapi_test

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strconv"
	"syscall"
	"testing"
	"time"

	"github.com/rempart-hs/rempart/internal/httpapi"
	"github.com/rempart-hs/rempart/internal/rooms"
	"github.com/rempart-hs/rempart/internal/syncapi"
	"github.com/rempart-hs/rempart/internal/testserver"
)

// Micro-benchmarks of sync assembly, calling the sync handler directly
// (no HTTP) on a real database. Run with e.g.
//
//	go test -run '^$' -bench . -benchmem -cpuprofile cpu.out ./internal/syncapi
//
// The fixture is a user in 500 rooms (50 with -short): one room of 1,000
// members, the others with 5 members, each with 10 messages from its
// members.

type syncFixture struct {
	srv   *testserver.Server
	user  string
	rooms int
}

func newSyncFixture(b *testing.B) *syncFixture {
	b.Helper()
	nRooms, bigMembers := 500, 1000
	if testing.Short() {
		nRooms, bigMembers = 50, 100
	}
	srv := testserver.Start(b)
	alice := srv.RegisterUser("alice").UserID.String()
	ctx := context.Background()
	eng := srv.Srv.Rooms
	member := func(i int) string { return fmt.Sprintf("@member%d:%s", i, srv.Config.ServerName) }
	for r := 0; r < nRooms; r++ {
		name := fmt.Sprintf("Room %d", r)
		roomID, err := eng.Create(ctx, rooms.CreateRequest{Creator: alice, Preset: "public_chat", Name: &name})
		if err != nil {
			b.Fatal(err)
		}
		n := 4
		if r == 0 {
			n = bigMembers
		}
		var members []string
		for m := 0; m < n; m++ {
			u := member(r*4 + m)
			members = append(members, u)
			if _, err := eng.ChangeMembership(ctx, rooms.MembershipRequest{RoomID: roomID, Sender: u, Target: u, Membership: "join"}); err != nil {
				b.Fatal(err)
			}
		}
		for i := 0; i < 10; i++ {
			_, err := eng.Send(ctx, rooms.SendRequest{RoomID: roomID, Sender: members[i%len(members)], Type: "m.room.message",
				Content: json.RawMessage(fmt.Sprintf(`{"msgtype":"m.text","body":"message %d"}`, i))})
			if err != nil {
				b.Fatal(err)
			}
		}
	}
	return &syncFixture{srv: srv, user: alice, rooms: nRooms}
}

func (f *syncFixture) sync(b *testing.B, query url.Values) *syncapi.Response {
	r := httptest.NewRequest(http.MethodGet, "/_matrix/client/v3/sync?"+query.Encode(), nil)
	r = r.WithContext(httpapi.WithRequester(r.Context(), &httpapi.Requester{UserID: f.user, DeviceID: "BENCH"}))
	out, err := f.srv.Srv.Sync.Handle(r)
	if err != nil {
		b.Fatal(err)
	}
	resp := out.(*syncapi.Response)
	// Serialisation is part of the cost a client sees.
	if _, err := json.Marshal(resp); err != nil {
		b.Fatal(err)
	}
	return resp
}

// cpuTime returns the CPU time (user and system) the process has used. The
// benchmarks report it per operation (cpu-ns/op) beside the wall time,
// which on a shared machine depends on what else runs.
func cpuTime() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// cpuMeter sums the CPU time of the measured parts of a benchmark.
type cpuMeter struct {
	total time.Duration
	start time.Duration
}

func (m *cpuMeter) begin() { m.start = cpuTime() }
func (m *cpuMeter) end()   { m.total += cpuTime() - m.start }
func (m *cpuMeter) report(b *testing.B) {
	b.ReportMetric(float64(m.total.Nanoseconds())/float64(b.N), "cpu-ns/op")
}

func filterParam(lazy bool) string {
	return fmt.Sprintf(`{"room":{"timeline":{"limit":10},"state":{"lazy_load_members":%t}}}`, lazy)
}

// BenchmarkInitialSync is an initial sync of the fixture user, with and
// without lazy-loaded members, timeline limit 10.
func BenchmarkInitialSync(b *testing.B) {
	f := newSyncFixture(b)
	for _, lazy := range []bool{true, false} {
		b.Run("lazy="+strconv.FormatBool(lazy), func(b *testing.B) {
			q := url.Values{"filter": {filterParam(lazy)}}
			var cpu cpuMeter
			r0 := f.srv.Srv.DB.ReadStatements()
			for b.Loop() {
				cpu.begin()
				resp := f.sync(b, q)
				cpu.end()
				if resp.Rooms == nil || len(resp.Rooms.Join) != f.rooms {
					b.Fatalf("initial sync lists the wrong rooms")
				}
			}
			cpu.report(b)
			b.ReportMetric(float64(f.srv.Srv.DB.ReadStatements()-r0)/float64(b.N), "reads/op")
		})
	}
}

// BenchmarkIncrementalSync is an incremental sync with nothing new
// (timeout 0), and one after a new message in one room.
func BenchmarkIncrementalSync(b *testing.B) {
	f := newSyncFixture(b)
	q := url.Values{"filter": {filterParam(true)}}
	since := f.sync(b, q).NextBatch
	b.Run("idle", func(b *testing.B) {
		q := url.Values{"filter": {filterParam(true)}, "since": {since}, "timeout": {"0"}}
		var cpu cpuMeter
		for b.Loop() {
			cpu.begin()
			f.sync(b, q)
			cpu.end()
		}
		cpu.report(b)
	})
	b.Run("one-new-event", func(b *testing.B) {
		ctx := context.Background()
		joined, err := f.srv.Srv.DB.UserMemberships(ctx, f.user)
		if err != nil {
			b.Fatal(err)
		}
		roomID := joined[len(joined)-1].RoomID
		i := 0
		var cpu cpuMeter
		for b.Loop() {
			b.StopTimer()
			i++
			_, err := f.srv.Srv.Rooms.Send(ctx, rooms.SendRequest{RoomID: roomID, Sender: f.user, Type: "m.room.message",
				Content: json.RawMessage(fmt.Sprintf(`{"msgtype":"m.text","body":"incremental %d"}`, i))})
			if err != nil {
				b.Fatal(err)
			}
			b.StartTimer()
			cpu.begin()
			resp := f.sync(b, url.Values{"filter": {filterParam(true)}, "since": {since}, "timeout": {"0"}})
			cpu.end()
			if resp.Rooms == nil || len(resp.Rooms.Join) != 1 {
				b.Fatalf("incremental sync does not list exactly the room with the new event")
			}
			since = resp.NextBatch
		}
		cpu.report(b)
	})
}

// BenchmarkSyncToken is formatting and parsing a sync token.
func BenchmarkSyncToken(b *testing.B) {
	t := syncapi.Token{Events: 123456789, AccountData: 1234, Receipts: 5678, Typing: 9, ToDevice: 42, DeviceLists: 7}
	for b.Loop() {
		if _, err := syncapi.ParseToken(t.String()); err != nil {
			b.Fatal(err)
		}
	}
}
