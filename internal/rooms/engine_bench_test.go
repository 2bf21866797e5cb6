package rooms_test

import (
	"context"
	"crypto/ed25519"
	"encoding/json"
	"fmt"
	"runtime"
	"strconv"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	gmsl "github.com/matrix-org/gomatrixserverlib"
	"github.com/matrix-org/gomatrixserverlib/spec"

	"github.com/rempart-hs/rempart/internal/rooms"
	"github.com/rempart-hs/rempart/internal/storage"
	"github.com/rempart-hs/rempart/internal/testserver"
)

// Micro-benchmarks of the send path's hot spots. Run with e.g.
//
//	go test -run '^$' -bench . -benchmem -cpuprofile cpu.out ./internal/rooms
//
// The Engine benchmarks use a real server's database (REMPART_TEST_DB picks
// SQLite or PostgreSQL), so they include the commit (synchronous=FULL on
// SQLite); the others isolate the CPU-only steps Engine.Send runs for every
// event.

var benchMessage = json.RawMessage(`{"msgtype":"m.text","body":"A benchmark message of ordinary length, about one line of chat."}`)

// benchRoom starts a server and returns it with a user and a public room
// that user created.
func benchRoom(b *testing.B) (*testserver.Server, string, string) {
	b.Helper()
	srv := testserver.Start(b)
	alice := srv.RegisterUser("alice").UserID.String()
	roomID, err := srv.Srv.Rooms.Create(context.Background(), rooms.CreateRequest{Creator: alice, Preset: "public_chat"})
	if err != nil {
		b.Fatal(err)
	}
	return srv, alice, roomID
}

// BenchmarkEngineSend is Engine.Send of one message, one at a time: build,
// sign, authorise, store and commit, with the push rule evaluation the
// server runs in the same transaction (members=1000: a room of a thousand
// local members, each with a display name, whom every message may notify).
func BenchmarkEngineSend(b *testing.B) {
	for _, members := range []int{1, 1000} {
		b.Run(fmt.Sprintf("members=%d", members), func(b *testing.B) {
			srv, alice, roomID := benchRoom(b)
			addMembers(b, srv, roomID, members-1)
			ctx := context.Background()
			i := 0
			cpu := cpuTime()
			for b.Loop() {
				i++
				_, err := srv.Srv.Rooms.Send(ctx, rooms.SendRequest{RoomID: roomID, Sender: alice, Type: "m.room.message",
					Content: benchMessage, TxnDevice: "DEV", TxnID: strconv.Itoa(i)})
				if err != nil {
					b.Fatal(err)
				}
			}
			reportCPU(b, cpuTime()-cpu)
		})
	}
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

func reportCPU(b *testing.B, d time.Duration) {
	b.ReportMetric(float64(d.Nanoseconds())/float64(b.N), "cpu-ns/op")
}

// addMembers joins n local users with display names to a public room.
func addMembers(b *testing.B, srv *testserver.Server, roomID string, n int) {
	b.Helper()
	ctx := context.Background()
	for i := 0; i < n; i++ {
		u := fmt.Sprintf("@m%d:%s", i, srv.Config.ServerName)
		if _, err := srv.Srv.Rooms.ChangeMembership(ctx, rooms.MembershipRequest{RoomID: roomID, Sender: u, Target: u, Membership: "join",
			Extra: map[string]any{"displayname": fmt.Sprintf("Member %d", i)}}); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkEngineSendParallel is Engine.Send from many goroutines, each in
// its own room: what the send scenario of rempart-bench does through HTTP
// (16 goroutines over 64 rooms, and 100 goroutines over 100 rooms as with
// the load tool's 100 senders), and 100 goroutines into one room, as the
// load tool's big-room phase does, also with 1,000 members each of whom
// every message notifies.
func BenchmarkEngineSendParallel(b *testing.B) {
	for _, c := range []struct {
		name                       string
		goroutines, rooms, members int
	}{{"goroutines=16", 16, 64, 1}, {"goroutines=100", 100, 100, 1}, {"goroutines=100-oneroom", 100, 1, 1},
		{"goroutines=100-oneroom-members=1000", 100, 1, 1000}} {
		b.Run(c.name, func(b *testing.B) {
			benchSendParallel(b, c.goroutines, c.rooms, c.members)
		})
	}
}

func benchSendParallel(b *testing.B, goroutines, nRooms, members int) {
	srv, alice, _ := benchRoom(b)
	ctx := context.Background()
	var roomSeq, txn atomic.Int64
	ids := make([]string, nRooms)
	for i := range ids {
		id, err := srv.Srv.Rooms.Create(ctx, rooms.CreateRequest{Creator: alice, Preset: "public_chat"})
		if err != nil {
			b.Fatal(err)
		}
		addMembers(b, srv, id, members-1)
		ids[i] = id
	}
	// SetParallelism multiplies GOMAXPROCS.
	b.SetParallelism(max(1, goroutines/runtime.GOMAXPROCS(0)))
	b.ResetTimer()
	cpu := cpuTime()
	defer func() { reportCPU(b, cpuTime()-cpu) }()
	b.RunParallel(func(pb *testing.PB) {
		roomID := ids[roomSeq.Add(1)%int64(nRooms)]
		for pb.Next() {
			_, err := srv.Srv.Rooms.Send(ctx, rooms.SendRequest{RoomID: roomID, Sender: alice, Type: "m.room.message",
				Content: benchMessage, TxnDevice: "DEV", TxnID: strconv.FormatInt(txn.Add(1), 10)})
			if err != nil {
				b.Error(err)
				return
			}
		}
	})
}

// BenchmarkEngineJoin is a join to a room that already has many members
// (each join reads the room's auth state; the notifier then reads every
// member to wake their syncs).
func BenchmarkEngineJoin(b *testing.B) {
	for _, members := range []int{10, 1000} {
		b.Run(fmt.Sprintf("members=%d", members), func(b *testing.B) {
			srv, _, roomID := benchRoom(b)
			ctx := context.Background()
			join := func(i int) {
				u := fmt.Sprintf("@m%d:%s", i, srv.Config.ServerName)
				if _, err := srv.Srv.Rooms.ChangeMembership(ctx, rooms.MembershipRequest{RoomID: roomID, Sender: u, Target: u, Membership: "join"}); err != nil {
					b.Fatal(err)
				}
			}
			for i := 0; i < members; i++ {
				join(i)
			}
			i := members
			cpu := cpuTime()
			for b.Loop() {
				join(i)
				i++
			}
			reportCPU(b, cpuTime()-cpu)
		})
	}
}

// BenchmarkEngineCreate is createRoom (a private room and its initial
// state, about six events in one transaction), one at a time and from 16
// goroutines as the load tool's rooms scenario does. On PostgreSQL the
// transaction holds the event-order lock from its first event to its
// commit, so the parallel case shows how much of a creation that lock
// serialises.
func BenchmarkEngineCreate(b *testing.B) {
	for _, goroutines := range []int{1, 16} {
		b.Run(fmt.Sprintf("goroutines=%d", goroutines), func(b *testing.B) {
			srv, alice, _ := benchRoom(b)
			ctx := context.Background()
			b.SetParallelism(max(1, goroutines/runtime.GOMAXPROCS(0)))
			if goroutines == 1 {
				b.SetParallelism(1)
			}
			b.ResetTimer()
			cpu := cpuTime()
			defer func() { reportCPU(b, cpuTime()-cpu) }()
			b.RunParallel(func(pb *testing.PB) {
				for pb.Next() {
					if _, err := srv.Srv.Rooms.Create(ctx, rooms.CreateRequest{Creator: alice, Preset: "private_chat"}); err != nil {
						b.Error(err)
						return
					}
				}
			})
		})
	}
}

// authFixture is a room's auth state parsed as gomatrixserverlib events.
type authFixture struct {
	verImpl gmsl.IRoomVersion
	state   []storage.Event
	auth    *gmsl.AuthEvents
	refs    []string
	sender  string
	roomID  string
	key     ed25519.PrivateKey
}

func newAuthFixture(b *testing.B) *authFixture {
	b.Helper()
	srv, alice, roomID := benchRoom(b)
	state, err := srv.Srv.DB.CurrentState(context.Background(), roomID, nil)
	if err != nil {
		b.Fatal(err)
	}
	room, err := srv.Srv.DB.GetRoom(context.Background(), roomID)
	if err != nil {
		b.Fatal(err)
	}
	verImpl := gmsl.MustGetRoomVersion(gmsl.RoomVersion(room.RoomVersion))
	var pdus []gmsl.PDU
	var refs []string
	for _, se := range state {
		pdu, err := verImpl.NewEventFromTrustedJSON(se.JSON, false)
		if err != nil {
			b.Fatal(err)
		}
		pdus = append(pdus, pdu)
		switch se.Type {
		case "m.room.create", "m.room.power_levels":
			refs = append(refs, se.EventID)
		case "m.room.member":
			if *se.StateKey == alice {
				refs = append(refs, se.EventID)
			}
		}
	}
	auth, err := gmsl.NewAuthEvents(pdus)
	if err != nil {
		b.Fatal(err)
	}
	_, key, _ := ed25519.GenerateKey(nil)
	return &authFixture{verImpl: verImpl, state: state, auth: auth, refs: refs, sender: alice, roomID: roomID, key: key}
}

func (f *authFixture) build(b *testing.B) gmsl.PDU {
	proto := gmsl.ProtoEvent{SenderID: f.sender, RoomID: f.roomID, Type: "m.room.message", Content: spec.RawJSON(benchMessage),
		AuthEvents: f.refs, PrevEvents: []string{f.state[len(f.state)-1].EventID}, Depth: 10}
	pdu, err := f.verImpl.NewEventBuilderFromProtoEvent(&proto).Build(time.Now(), "localhost", "ed25519:bench", f.key)
	if err != nil {
		b.Fatal(err)
	}
	return pdu
}

// BenchmarkBuildEvent is building a message event: canonical JSON,
// content hash, ed25519 signature and reference hash (the event ID).
func BenchmarkBuildEvent(b *testing.B) {
	f := newAuthFixture(b)
	for b.Loop() {
		f.build(b)
	}
}

// BenchmarkAuthCheck is the spec's authorisation rules for a message.
func BenchmarkAuthCheck(b *testing.B) {
	f := newAuthFixture(b)
	pdu := f.build(b)
	userID := func(_ spec.RoomID, s spec.SenderID) (*spec.UserID, error) { return spec.NewUserID(string(s), true) }
	for b.Loop() {
		if err := gmsl.Allowed(pdu, f.auth, userID); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkParseAuthState is re-parsing the stored auth events, which
// Engine.Send does for every event before the auth check.
func BenchmarkParseAuthState(b *testing.B) {
	f := newAuthFixture(b)
	for b.Loop() {
		for i := range f.state {
			if _, err := f.verImpl.NewEventFromTrustedJSON(f.state[i].JSON, false); err != nil {
				b.Fatal(err)
			}
		}
	}
}

// BenchmarkCanonicalJSON is canonicalising a stored message event.
func BenchmarkCanonicalJSON(b *testing.B) {
	f := newAuthFixture(b)
	js := f.build(b).JSON()
	for b.Loop() {
		if _, err := gmsl.CanonicalJSON(js); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkFormatClientEvent is converting a stored event to the client
// format, done for every event of every sync and /messages answer.
func BenchmarkFormatClientEvent(b *testing.B) {
	f := newAuthFixture(b)
	pdu := f.build(b)
	ev := storage.Event{EventID: pdu.EventID(), RoomID: f.roomID, Type: "m.room.message", Sender: f.sender,
		OriginServerTS: int64(pdu.OriginServerTS()), JSON: pdu.JSON(), TxnDevice: "DEV", TxnID: "1"}
	viewer := rooms.Viewer{UserID: f.sender, DeviceID: "DEV"}
	for b.Loop() {
		_ = rooms.Format(&ev, viewer, false, nil)
	}
}
