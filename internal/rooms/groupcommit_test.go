package rooms_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/rempart-hs/rempart/internal/rooms"
	"github.com/rempart-hs/rempart/internal/storage"
	"github.com/rempart-hs/rempart/internal/testserver"
)

// TestGroupCommitConcurrentSends sends from many goroutines into a few
// rooms at once (so that sends share transactions), with some sends failing
// inside the transaction: every other send is acknowledged, survives a
// restart, and each room's events form one chain in the order each sender
// saw its sends acknowledged.
func TestGroupCommitConcurrentSends(t *testing.T) {
	srv := testserver.Start(t)
	ctx := context.Background()
	alice := srv.RegisterUser("alice").UserID.String()
	const nRooms, nSenders, perSender = 4, 40, 15
	roomIDs := make([]string, nRooms)
	for i := range roomIDs {
		id, err := srv.Srv.Rooms.Create(ctx, rooms.CreateRequest{Creator: alice, Preset: "public_chat"})
		if err != nil {
			t.Fatal(err)
		}
		roomIDs[i] = id
	}
	// A stored hook that fails for marked events: the failure happens
	// inside the shared transaction, after the event was appended.
	errBad := errors.New("refused by the test hook")
	var hookCalls atomic.Int64
	srv.Srv.Rooms.AddStoredHook(func(ctx context.Context, tx *storage.Tx, ev *storage.Event) error {
		hookCalls.Add(1)
		if bytes.Contains(ev.JSON, []byte(`"bad"`)) {
			return errBad
		}
		return nil
	})

	type sent struct {
		eventID string
		pos     int64
	}
	acked := make([][]sent, nSenders)
	var wg sync.WaitGroup
	var failures atomic.Int64
	start := make(chan struct{})
	for s := range nSenders {
		wg.Add(1)
		go func() {
			defer wg.Done()
			<-start
			room := roomIDs[s%nRooms]
			for i := range perSender {
				body := fmt.Sprintf("s%d-%d", s, i)
				if (s+i)%7 == 0 {
					body = "bad"
				}
				content, _ := json.Marshal(map[string]string{"msgtype": "m.text", "body": body})
				res, err := srv.Srv.Rooms.Send(ctx, rooms.SendRequest{RoomID: room, Sender: alice, Type: "m.room.message",
					Content: content, TxnDevice: "DEV", TxnID: fmt.Sprintf("t%d-%d", s, i)})
				if body == "bad" {
					if !errors.Is(err, errBad) {
						t.Errorf("bad event: got %v, want the hook's error", err)
					}
					failures.Add(1)
					continue
				}
				if err != nil {
					t.Errorf("send %s: %v", body, err)
					continue
				}
				acked[s] = append(acked[s], sent{res.EventID, res.StreamPos})
			}
		}()
	}
	close(start)
	wg.Wait()
	if t.Failed() {
		return
	}
	if failures.Load() == 0 {
		t.Fatal("no failing event was sent")
	}

	// Acknowledged means committed: restart and read everything back.
	srv.Restart()
	db := srv.Srv.DB
	total := 0
	for s := range nSenders {
		var last int64
		for _, a := range acked[s] {
			ev, err := db.GetEvent(ctx, a.eventID)
			if err != nil {
				t.Fatalf("acknowledged event %s lost: %v", a.eventID, err)
			}
			if ev.StreamPos != a.pos || ev.StreamPos <= last {
				t.Fatalf("sender %d: event %s at %d after %d (acknowledged at %d)", s, a.eventID, ev.StreamPos, last, a.pos)
			}
			last = ev.StreamPos
			total++
		}
	}
	for _, roomID := range roomIDs {
		evs, err := db.RoomEvents(ctx, roomID, 0, 1<<62, 10000, false)
		if err != nil {
			t.Fatal(err)
		}
		room, err := db.GetRoom(ctx, roomID)
		if err != nil {
			t.Fatal(err)
		}
		// One chain: each event's only prev event is the one before it.
		for i := 1; i < len(evs); i++ {
			var fed struct {
				PrevEvents []string `json:"prev_events"`
				Depth      int64    `json:"depth"`
			}
			if err := json.Unmarshal(evs[i].JSON, &fed); err != nil {
				t.Fatal(err)
			}
			if len(fed.PrevEvents) != 1 || fed.PrevEvents[0] != evs[i-1].EventID || fed.Depth != evs[i-1].Depth+1 {
				t.Fatalf("room %s: event %d (%s) has prev_events %v depth %d, want [%s] depth %d", roomID, i, evs[i].EventID,
					fed.PrevEvents, fed.Depth, evs[i-1].EventID, evs[i-1].Depth+1)
			}
			if strings.Contains(string(evs[i].JSON), `"bad"`) {
				t.Fatalf("room %s: a refused event was stored", roomID)
			}
		}
		if last := evs[len(evs)-1]; room.LatestEventID != last.EventID || room.Depth != last.Depth {
			t.Fatalf("room %s: head %s/%d, last event %s/%d", roomID, room.LatestEventID, room.Depth, last.EventID, last.Depth)
		}
	}
	if want := nSenders*perSender - int(failures.Load()); total != want {
		t.Fatalf("%d acknowledged events, want %d", total, want)
	}

	// A retried transaction ID returns the first event, without a new one.
	a := acked[1][0]
	res, err := srv.Srv.Rooms.Send(ctx, rooms.SendRequest{RoomID: roomIDs[1], Sender: alice, Type: "m.room.message",
		Content: json.RawMessage(`{"msgtype":"m.text","body":"again"}`), TxnDevice: "DEV", TxnID: "t1-0"})
	if err != nil || res.EventID != a.eventID {
		t.Fatalf("retried txn: %v %v, want %s", res, err, a.eventID)
	}
}

// TestGroupCommitBatchIsolation checks Batch itself: units queued while a
// batch is running share the next transaction, and the one that fails does
// not fail the others.
func TestGroupCommitBatchIsolation(t *testing.T) {
	srv := testserver.Start(t)
	db := srv.Srv.DB
	ctx := context.Background()
	release := make(chan struct{})
	blocker := make(chan error, 1)
	go func() {
		blocker <- db.Batch(ctx, "", func(ctx context.Context, tx *storage.Tx) error {
			<-release
			return nil
		})
	}()
	time.Sleep(50 * time.Millisecond) // the blocker's batch is running
	const n = 30
	errs := make([]error, n)
	runs := make([]atomic.Int64, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			errs[i] = db.Batch(ctx, "", func(ctx context.Context, tx *storage.Tx) error {
				runs[i].Add(1)
				if err := tx.PutTxnResult(ctx, "@u:test", "D", "batch", fmt.Sprint(i), fmt.Sprintf("$%d", i), 1); err != nil {
					return err
				}
				if i == n/2 {
					return errors.New("unit fails")
				}
				return nil
			})
		}()
	}
	time.Sleep(200 * time.Millisecond) // all queued behind the blocker
	close(release)
	wg.Wait()
	if err := <-blocker; err != nil {
		t.Fatal(err)
	}
	for i := range n {
		got, err := db.TxnResult(ctx, "@u:test", "D", "batch", fmt.Sprint(i))
		if i == n/2 {
			if errs[i] == nil || !errors.Is(err, storage.ErrNotFound) {
				t.Fatalf("failing unit: Batch %v, stored %q %v", errs[i], got, err)
			}
			continue
		}
		if errs[i] != nil || err != nil || got != fmt.Sprintf("$%d", i) {
			t.Fatalf("unit %d: Batch %v, stored %q %v", i, errs[i], got, err)
		}
	}
	// On SQLite (one committer) they all shared the transaction after the
	// blocker's: the units queued before the failing one ran again when the
	// batch was replayed without it.
	var total int64
	for i := range runs {
		total += runs[i].Load()
	}
	if db.Dialect() == storage.SQLite && total <= n {
		t.Fatalf("%d runs of %d units: the batch was not shared", total, n)
	}
}
