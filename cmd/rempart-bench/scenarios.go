package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math/rand/v2"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

var firstNames = []string{"Alice", "Bruno", "Camille", "Damien", "Elise", "Fabrice", "Gaelle", "Hugo", "Ines", "Jules",
	"Karine", "Louis", "Manon", "Nicolas", "Oceane", "Pierre", "Quentin", "Rose", "Sophie", "Thomas",
	"Ursule", "Victor", "Wendy", "Xavier", "Yasmine", "Zoe", "Antoine", "Brigitte", "Claire", "David"}

var lastNames = []string{"Martin", "Bernard", "Dubois", "Thomas", "Robert", "Richard", "Petit", "Durand", "Leroy", "Moreau",
	"Simon", "Laurent", "Lefebvre", "Michel", "Garcia", "David", "Bertrand", "Roux", "Vincent", "Fournier",
	"Morel", "Girard", "Andre", "Lefevre", "Mercier", "Dupont", "Lambert", "Bonnet", "Francois", "Martinez"}

// displayName gives user i a realistic, not unique, display name.
func displayName(i int) string {
	return firstNames[i%len(firstNames)] + " " + lastNames[(i/len(firstNames))%len(lastNames)]
}

func (b *bench) localpart(i int) string { return fmt.Sprintf("%s-u%07d", b.o.Prefix, i) }

// ensureUsers registers users until n exist, recording latencies in lat
// when not nil.
func (b *bench) ensureUsers(ctx context.Context, n int, lat *latencies) error {
	have := len(b.users)
	if have >= n {
		return nil
	}
	made := make([]*user, n-have)
	var done atomic.Int64
	lastLog := time.Now()
	var logMu sync.Mutex
	err := parallel(ctx, n-have, b.o.Concurrency, func(ctx context.Context, i int) error {
		t := time.Now()
		u, err := b.c.register(ctx, b.o.SharedSecret, b.localpart(have+i), displayName(have+i))
		if err != nil {
			return err
		}
		if lat != nil {
			lat.add(time.Since(t))
		}
		made[i] = u
		if d := done.Add(1); d%1000 == 0 {
			logMu.Lock()
			if time.Since(lastLog) > 10*time.Second {
				lastLog = time.Now()
				b.logf("  %d/%d users registered", have+int(d), n)
			}
			logMu.Unlock()
		}
		return nil
	})
	// Users are numbered: keep those before the first one an error or an
	// interruption left out (a later run logs in to the others).
	for _, u := range made {
		if u == nil {
			break
		}
		b.users = append(b.users, u)
	}
	return err
}

// extraUser registers one user outside the numbered pool.
func (b *bench) extraUser(ctx context.Context, name string) (*user, error) {
	return b.c.register(ctx, b.o.SharedSecret, b.o.Prefix+"-"+name, "Bench "+name)
}

func (b *bench) scenarioRegister(ctx context.Context) error {
	var lat latencies
	start := time.Now()
	before := len(b.users)
	if err := b.ensureUsers(ctx, b.o.Users, &lat); err != nil {
		return err
	}
	wall := time.Since(start)
	s := lat.summary()
	b.rep.add("register", "users registered", float64(len(b.users)-before), "users")
	b.rep.add("register", "registrations/s", float64(s.N)/wall.Seconds(), "users/s")
	b.rep.add("register", "latency p50", s.P50, "ms")
	b.rep.add("register", "latency p99", s.P99, "ms")
	return nil
}

// buildRoom creates a room with members (creator first) and joins the
// others, recording create and join latencies.
func (b *bench) buildRoom(ctx context.Context, name string, members []*user, conc int, createLat, joinLat *latencies) (*room, error) {
	t := time.Now()
	id, err := b.c.createRoom(ctx, members[0], name)
	if err != nil {
		return nil, err
	}
	if createLat != nil {
		createLat.add(time.Since(t))
	}
	r := &room{ID: id, Members: members}
	err = parallel(ctx, len(members)-1, conc, func(ctx context.Context, i int) error {
		t := time.Now()
		if err := b.c.join(ctx, members[i+1], id); err != nil {
			return err
		}
		if joinLat != nil {
			joinLat.add(time.Since(t))
		}
		return nil
	})
	return r, err
}

func (b *bench) bigRoomMembers(k int) []*user {
	n, off := b.o.BigRoomSize, (k*7919)%len(b.users)
	out := make([]*user, n)
	for j := range out {
		out[j] = b.users[(off+j)%len(b.users)]
	}
	return out
}

func (b *bench) smallRoomMembers(i int) []*user {
	n := 2 + i%5
	out := make([]*user, n)
	for j := range out {
		out[j] = b.users[(i*4+j)%len(b.users)]
	}
	return out
}

// ensureRooms builds the big rooms and the small rooms, recording
// latencies when lat is not nil.
func (b *bench) ensureRooms(ctx context.Context, measure bool) error {
	if err := b.ensureUsers(ctx, max(b.o.BigRoomSize, 6), nil); err != nil {
		return err
	}
	var createLat, smallJoin, bigJoin latencies
	var bigJoins, smallJoins int
	start := time.Now()
	for k := len(b.bigRooms); k < b.o.BigRooms; k++ {
		ms := b.bigRoomMembers(k)
		r, err := b.buildRoom(ctx, fmt.Sprintf("Big room %d", k), ms, b.o.Concurrency, &createLat, &bigJoin)
		if err != nil {
			return fmt.Errorf("big room %d: %w", k, err)
		}
		bigJoins += len(ms) - 1
		b.bigRooms = append(b.bigRooms, r)
	}
	bigWall := time.Since(start)
	start = time.Now()
	have := len(b.smallRooms)
	made := make([]*room, max(0, b.o.SmallRooms-have))
	var mu sync.Mutex
	err := parallel(ctx, len(made), b.o.Concurrency, func(ctx context.Context, i int) error {
		ms := b.smallRoomMembers(have + i)
		r, err := b.buildRoom(ctx, fmt.Sprintf("Room %d", have+i), ms, 1, &createLat, &smallJoin)
		if err != nil {
			return err
		}
		mu.Lock()
		made[i] = r
		smallJoins += len(ms) - 1
		mu.Unlock()
		return nil
	})
	for _, r := range made {
		if r != nil {
			b.smallRooms = append(b.smallRooms, r)
		}
	}
	if err != nil {
		return err
	}
	smallWall := time.Since(start)
	if measure {
		cs, sj, bj := createLat.summary(), smallJoin.summary(), bigJoin.summary()
		b.rep.add("rooms", "rooms created", float64(cs.N), "rooms")
		b.rep.add("rooms", "createRoom p50", cs.P50, "ms")
		b.rep.add("rooms", "createRoom p99", cs.P99, "ms")
		if bigJoins > 0 {
			b.rep.add("rooms", fmt.Sprintf("joins into %d-member rooms/s", b.o.BigRoomSize), float64(bigJoins)/bigWall.Seconds(), "joins/s")
			b.rep.add("rooms", "big-room join p50", bj.P50, "ms")
			b.rep.add("rooms", "big-room join p99", bj.P99, "ms")
		}
		if len(made) > 0 {
			b.rep.add("rooms", "small rooms built/s (create + joins)", float64(len(made))/smallWall.Seconds(), "rooms/s")
			b.rep.add("rooms", "small-room join p50", sj.P50, "ms")
			b.rep.add("rooms", "small-room join p99", sj.P99, "ms")
		}
	}
	return nil
}

func (b *bench) scenarioRooms(ctx context.Context) error {
	if err := b.ensureUsers(ctx, b.o.Users, nil); err != nil {
		return err
	}
	return b.ensureRooms(ctx, true)
}

// sendLoad runs senders closed-loop for d, each in its own room, and
// returns acknowledged sends and their latencies.
func (b *bench) sendLoad(ctx context.Context, rooms []*room, senders int, d time.Duration, tag string) (ok, failed int64, lat *latencies, wall time.Duration, worst worstSecond, firstErr error) {
	lat = &latencies{}
	var okN, failN atomic.Int64
	var errOnce sync.Once
	deadline := time.Now().Add(d)
	start := time.Now()
	// Acknowledgements per second of the run, for the worst second.
	perSecond := make([]atomic.Int64, int(d/time.Second)+2)
	var wg sync.WaitGroup
	for s := 0; s < senders; s++ {
		r := rooms[s%len(rooms)]
		u := r.Members[(s/len(rooms))%len(r.Members)]
		wg.Add(1)
		go func() {
			defer wg.Done()
			// Each sender on a connection of its own, written and read
			// directly (see rawConn), unless the URL is not plain http.
			rc := newRawConn(b.o.URL, b.o.Timeout)
			if rc != nil {
				defer rc.close()
			}
			var body []byte
			for n := 0; time.Now().Before(deadline) && ctx.Err() == nil; n++ {
				txnID := tag + "-" + strconv.Itoa(s) + "-" + strconv.Itoa(n)
				body = append(body[:0], `{"msgtype":"m.text","body":"benchmark message `...)
				body = strconv.AppendInt(body, int64(n), 10)
				body = append(body, " from sender "...)
				body = strconv.AppendInt(body, int64(s), 10)
				body = append(body, `"}`...)
				t := time.Now()
				var err error
				if rc != nil {
					err = rc.sendRaw(ctx, u, r.ID, txnID, body)
				} else {
					err = b.c.send(ctx, u, r.ID, txnID, json.RawMessage(body))
				}
				if err != nil {
					failN.Add(1)
					errOnce.Do(func() { firstErr = err })
					continue
				}
				lat.add(time.Since(t))
				okN.Add(1)
				if sec := int(time.Since(start) / time.Second); sec < len(perSecond) {
					perSecond[sec].Add(1)
				}
			}
		}()
	}
	wg.Wait()
	wall = time.Since(start)
	worst = worstSecond{events: -1}
	// Whole seconds of the run only (a send can end well after the deadline).
	for sec := 0; sec < min(int(wall/time.Second), len(perSecond)); sec++ {
		if n := perSecond[sec].Load(); worst.events < 0 || n < worst.events {
			worst = worstSecond{events: n, at: sec}
		}
	}
	return okN.Load(), failN.Load(), lat, wall, worst, firstErr
}

// worstSecond is the whole second of a send run with the fewest
// acknowledgements, and when it began (seconds into the run): a stall
// at the start is cold caches, one later something else.
type worstSecond struct {
	events int64
	at     int
}

func (b *bench) scenarioSend(ctx context.Context) error {
	if err := b.ensureRooms(ctx, false); err != nil {
		return err
	}
	cpu0, own0 := b.serverCPU(), ownCPU()
	ok, failed, lat, wall, worst, err := b.sendLoad(ctx, b.smallRooms, b.o.Senders, b.o.Duration, b.o.Prefix+"-send-"+b.runID)
	if cpu := b.serverCPU() - cpu0; cpu > 0 && ok > 0 {
		b.rep.add("send", "server cpu per acknowledged event", ms(cpu)/float64(ok), "ms")
	}
	// The client shares the machine: what it spends, the server cannot.
	if own := ownCPU() - own0; own > 0 && ok > 0 {
		b.rep.add("send", "benchmark client cpu per acknowledged event", ms(own)/float64(ok), "ms")
	}
	s := lat.summary()
	b.rep.add("send", "senders (small rooms)", float64(b.o.Senders), "senders")
	b.rep.add("send", "messages acknowledged", float64(ok), "events")
	b.rep.addTarget("send", "acknowledged events/s", float64(ok)/wall.Seconds(), "events/s", ">=", 5000)
	if worst.events >= 0 {
		b.rep.add("send", "worst whole second", float64(worst.events), "events/s")
		b.rep.add("send", "worst whole second began after", float64(worst.at), "s")
	}
	b.rep.add("send", "send latency p50", s.P50, "ms")
	b.rep.addTarget("send", "send latency p99", s.P99, "ms", "<=", 50)
	b.rep.add("send", "send latency max", s.Max, "ms")
	b.rep.add("send", "failed sends", float64(failed), "requests")
	if failed > 0 {
		return fmt.Errorf("%d sends failed, first: %w", failed, err)
	}
	if len(b.bigRooms) == 0 {
		return nil
	}
	bd := max(time.Second, b.o.Duration/4)
	ok, failed, lat, wall, _, err = b.sendLoad(ctx, b.bigRooms, b.o.Senders, bd, b.o.Prefix+"-sendbig-"+b.runID)
	s = lat.summary()
	name := fmt.Sprintf("(%d-member rooms)", b.o.BigRoomSize)
	b.rep.add("send", "acknowledged events/s "+name, float64(ok)/wall.Seconds(), "events/s")
	b.rep.add("send", "send latency p50 "+name, s.P50, "ms")
	b.rep.add("send", "send latency p99 "+name, s.P99, "ms")
	if failed > 0 {
		return fmt.Errorf("%d sends to big rooms failed, first: %w", failed, err)
	}
	return nil
}

// syncFilter builds an inline filter for /sync.
func syncFilter(lazy bool, limit int, roomIDs []string) string {
	rf := map[string]any{"timeline": map[string]any{"limit": limit}, "state": map[string]any{"lazy_load_members": lazy}}
	if roomIDs != nil {
		rf["rooms"] = roomIDs
	}
	b, _ := json.Marshal(map[string]any{"room": rf, "presence": map[string]any{"not_types": []string{"*"}}})
	return string(b)
}

// scenarioDelivery measures send→sync delivery latency: SyncClients
// long-polling clients (several per user when there are fewer users) in
// rooms of GroupSize members; a room member sends probes at SyncRate per
// second; every client of every member must see every probe.
func (b *bench) scenarioDelivery(ctx context.Context) error {
	nu := min(b.o.SyncClients, max(b.o.Users, b.o.GroupSize))
	if err := b.ensureUsers(ctx, nu, nil); err != nil {
		return err
	}
	users := b.users[:nu]
	g := b.o.GroupSize
	nRooms := (nu + g - 1) / g
	drooms := make([]*room, nRooms)
	b.logf("  building %d delivery rooms for %d users", nRooms, nu)
	err := parallel(ctx, nRooms, b.o.Concurrency, func(ctx context.Context, i int) error {
		ms := users[i*g : min(nu, (i+1)*g)]
		if len(ms) < 2 { // a lone last user joins the previous group's size
			ms = []*user{ms[0], users[0]}
		}
		r, err := b.buildRoom(ctx, fmt.Sprintf("Delivery %d", i), ms, 1, nil, nil)
		drooms[i] = r
		return err
	})
	if err != nil {
		return err
	}
	roomOf := map[string]*room{}
	userRoom := map[*user]*room{}
	for _, r := range drooms {
		roomOf[r.ID] = r
		for _, m := range r.Members {
			if userRoom[m] == nil {
				userRoom[m] = r
			}
		}
	}
	// Clients: client i syncs as users[i % nu], filtered to its room.
	nc := b.o.SyncClients
	expected := map[string]int64{}
	type syncClient struct {
		u     *user
		room  *room
		since string
		seen  map[int64]bool
	}
	clients := make([]*syncClient, nc)
	for i := range clients {
		u := users[i%nu]
		clients[i] = &syncClient{u: u, room: userRoom[u], seen: map[int64]bool{}}
	}
	// A user in two rooms (the lone last user) is filtered to its first room.
	for _, c := range clients {
		expected[c.room.ID]++
	}
	b.logf("  initial sync of %d clients", nc)
	err = parallel(ctx, nc, b.o.Concurrency, func(ctx context.Context, i int) error {
		c := clients[i]
		resp, _, err := b.c.sync(ctx, c.u, "", syncFilter(true, 1, []string{c.room.ID}), 0)
		if err != nil {
			return fmt.Errorf("initial sync: %w", err)
		}
		c.since = resp.NextBatch
		return nil
	})
	if err != nil {
		return err
	}
	dur := max(time.Second, b.o.Duration/3)
	total := int(dur.Seconds() * float64(b.o.SyncRate))
	sentAt := make([]atomic.Int64, total)
	delivered := make([]atomic.Int64, total)
	probes := newProbeLog(total)
	var lat latencies
	var wantTotal, gotTotal, dup, syncReqs atomic.Int64
	var pollErrs atomic.Int64
	var pollErr atomic.Value
	run := "delivery-" + b.o.Prefix + "-" + b.runID
	pctx, stopPolls := context.WithCancel(ctx)
	defer stopPolls()
	var pollers sync.WaitGroup
	var polling atomic.Int64
	for _, c := range clients {
		pollers.Add(1)
		go func() {
			defer pollers.Done()
			f := syncFilter(true, 100, []string{c.room.ID})
			first := true
			for pctx.Err() == nil {
				if first {
					polling.Add(1)
					first = false
				}
				rctx, cancel := context.WithTimeout(pctx, 90*time.Second)
				resp, _, err := b.lp.sync(rctx, c.u, c.since, f, 30*time.Second)
				cancel()
				if err != nil {
					if pctx.Err() != nil {
						return
					}
					pollErrs.Add(1)
					pollErr.CompareAndSwap(nil, err.Error())
					time.Sleep(100 * time.Millisecond)
					continue
				}
				now := time.Now()
				syncReqs.Add(1)
				c.since = resp.NextBatch
				for _, jr := range resp.Rooms.Join {
					for _, ev := range jr.Timeline.Events {
						if ev.Content.Run != run || ev.Content.Seq == nil {
							continue
						}
						seq := *ev.Content.Seq
						if seq < 0 || seq >= int64(total) {
							continue
						}
						if c.seen[seq] {
							dup.Add(1)
							continue
						}
						c.seen[seq] = true
						if t := sentAt[seq].Load(); t > 0 {
							lat.add(now.Sub(time.Unix(0, t)))
							probes.delivered(seq, now.Sub(time.Unix(0, t)))
						}
						delivered[seq].Add(1)
						gotTotal.Add(1)
					}
				}
			}
		}()
	}
	for polling.Load() < int64(nc) {
		time.Sleep(10 * time.Millisecond)
	}
	// Give the server time to register every long-poll: the fixed pause,
	// then until the machine is idle. A client counts as polling once its
	// request is sent; the server may still be answering thousands of
	// first long-polls (each an incremental sync to compute before it
	// parks), and probes sent into that burst measured the burst.
	settleStart := time.Now()
	time.Sleep(time.Second + time.Duration(nc)*200*time.Microsecond)
	waitMachineIdle(ctx, 30*time.Second)
	b.rep.add("delivery", "long-polls parked after", ms(time.Since(settleStart)), "ms")
	// One unmeasured message into each room first, at the probe rate: the
	// first message of a room the server has not sent into since it
	// started finds every cache empty (the room's state, its members'
	// push rules, the members to wake). Its send latency is reported on
	// its own; the probes then measure the steady state.
	var firstLat latencies
	if err := parallel(ctx, len(drooms), 8, func(ctx context.Context, i int) error {
		r := drooms[i]
		t := time.Now()
		err := b.c.send(ctx, r.Members[0], r.ID, fmt.Sprintf("%s-first-%d", run, i),
			map[string]any{"msgtype": "m.text", "body": "first message", "bench_run": run})
		firstLat.add(time.Since(t))
		return err
	}); err != nil {
		return fmt.Errorf("first messages: %w", err)
	}
	b.rep.add("delivery", "first send into each new room p99", firstLat.summary().P99, "ms")
	time.Sleep(500 * time.Millisecond)
	waitMachineIdle(ctx, 30*time.Second)
	syncReqs.Store(0) // count the probes' answers only
	b.logf("  %d clients long-polling; sending %d probes over %s", nc, total, dur)
	var sendLat latencies
	var sendFail atomic.Int64
	var sendErr atomic.Value
	sem := make(chan struct{}, 256)
	var senders sync.WaitGroup
	tick := time.Second / time.Duration(b.o.SyncRate)
	cpu0 := b.serverCPU()
	start := time.Now()
	for seq := 0; seq < total && ctx.Err() == nil; seq++ {
		if d := time.Until(start.Add(time.Duration(seq) * tick)); d > 0 {
			time.Sleep(d)
		}
		r := drooms[seq%len(drooms)]
		u := r.Members[(seq/len(drooms))%len(r.Members)]
		sem <- struct{}{}
		senders.Add(1)
		wantTotal.Add(expected[r.ID])
		go func() {
			defer func() { <-sem; senders.Done() }()
			t := time.Now()
			sentAt[seq].Store(t.UnixNano())
			err := b.c.send(ctx, u, r.ID, fmt.Sprintf("%s-%d", run, seq),
				map[string]any{"msgtype": "m.text", "body": "delivery probe", "bench_run": run, "bench_seq": seq})
			if err != nil {
				sendFail.Add(1)
				sendErr.CompareAndSwap(nil, err.Error())
				return
			}
			sendLat.add(time.Since(t))
			probes.sent(seq, t.Sub(start), time.Since(t))
		}()
	}
	senders.Wait()
	sendWall := time.Since(start)
	deliveryCPU := b.serverCPU() - cpu0
	// Drain: wait for the last probes (at most 10 s).
	drain := time.Now().Add(10 * time.Second)
	for gotTotal.Load() < wantTotal.Load()-expectedFailed(sendFail.Load(), drooms, expected) && time.Now().Before(drain) {
		time.Sleep(20 * time.Millisecond)
	}
	stopPolls()
	pollers.Wait()
	if b.o.ProbeLog != "" {
		if err := probes.write(b.o.ProbeLog); err != nil {
			return fmt.Errorf("probe log: %w", err)
		}
	}
	s := lat.summary()
	want := wantTotal.Load()
	frac := 0.0
	if want > 0 {
		frac = float64(gotTotal.Load()) / float64(want)
	}
	b.rep.add("delivery", "long-polling clients", float64(nc), "clients")
	b.rep.add("delivery", "users syncing", float64(nu), "users")
	b.rep.add("delivery", "probes sent", float64(total), "events")
	b.rep.add("delivery", "probe send rate", float64(total)/sendWall.Seconds(), "events/s")
	b.rep.add("delivery", "deliveries expected", float64(want), "deliveries")
	b.rep.addTarget("delivery", "fraction delivered", frac, "", ">=", 1)
	b.rep.add("delivery", "delivery latency p50", s.P50, "ms")
	b.rep.addTarget("delivery", "delivery latency p99", s.P99, "ms", "<=", 50)
	b.rep.add("delivery", "delivery latency max", s.Max, "ms")
	b.rep.add("delivery", "probe send latency p99", sendLat.summary().P99, "ms")
	b.rep.add("delivery", "sync responses/s", float64(syncReqs.Load())/sendWall.Seconds(), "responses/s")
	if n := syncReqs.Load(); deliveryCPU > 0 && n > 0 {
		b.rep.add("delivery", "server cpu per sync response (probe sends included)", ms(deliveryCPU)/float64(n), "ms")
	}
	b.rep.add("delivery", "duplicate deliveries", float64(dup.Load()), "deliveries")
	b.rep.add("delivery", "failed long-polls", float64(pollErrs.Load()), "requests")
	if n := sendFail.Load(); n > 0 {
		return fmt.Errorf("%d probe sends failed, first: %v", n, sendErr.Load())
	}
	if n := pollErrs.Load(); n > 0 {
		return fmt.Errorf("%d long-polls failed, first: %v", n, pollErr.Load())
	}
	return nil
}

// expectedFailed is the number of deliveries that failed sends would have
// caused (an upper bound, to end the drain early).
func expectedFailed(failed int64, _ []*room, expected map[string]int64) int64 {
	if failed == 0 {
		return 0
	}
	var most int64
	for _, e := range expected {
		most = max(most, e)
	}
	return failed * most
}

// scenarioInitialSync measures the initial sync of a user in InitRooms
// rooms (the big rooms included), with and without lazy-loaded members,
// and incremental syncs after it.
func (b *bench) scenarioInitialSync(ctx context.Context) error {
	if err := b.ensureRooms(ctx, false); err != nil {
		return err
	}
	// A new user each run, with fresh messages: a run on a kept data set
	// then measures what the first run measured.
	x, err := b.extraUser(ctx, "initsync-"+b.runID)
	if err != nil {
		return err
	}
	var rs []*room
	rs = append(rs, b.bigRooms...)
	for _, r := range b.smallRooms {
		if len(rs) >= b.o.InitRooms {
			break
		}
		rs = append(rs, r)
	}
	rs = rs[:min(len(rs), b.o.InitRooms)]
	joined := len(rs)
	for len(rs) < b.o.InitRooms {
		rs = append(rs, &room{Members: []*user{x}})
	}
	b.logf("  user joins %d rooms, creates %d", joined, len(rs)-joined)
	err = parallel(ctx, len(rs), b.o.Concurrency, func(ctx context.Context, i int) error {
		r := rs[i]
		if r.ID == "" {
			id, err := b.c.createRoom(ctx, x, fmt.Sprintf("Own room %d", i))
			r.ID = id
			return err
		}
		return b.c.join(ctx, x, r.ID)
	})
	if err != nil {
		return err
	}
	// Ten messages per room, from its members in turn, so that the
	// timeline is full and lazy loading has senders to include.
	err = parallel(ctx, len(rs)*10, b.o.Concurrency, func(ctx context.Context, i int) error {
		r := rs[i/10]
		u := r.Members[(i%10)%len(r.Members)]
		return b.c.send(ctx, u, r.ID, fmt.Sprintf("%s-fill-%s-%d", b.o.Prefix, b.runID, i), map[string]any{"msgtype": "m.text", "body": fmt.Sprintf("fill %d", i%10)})
	})
	if err != nil {
		return err
	}
	measure := func(label string, lazy bool, reps int) (string, error) {
		var lat latencies
		var size int
		var next string
		for i := 0; i < reps; i++ {
			t := time.Now()
			resp, n, err := b.c.sync(ctx, x, "", syncFilter(lazy, 10, nil), 0)
			if err != nil {
				return "", err
			}
			lat.add(time.Since(t))
			if got := len(resp.Rooms.Join); got != len(rs) {
				return "", fmt.Errorf("initial sync lists %d joined rooms, want %d", got, len(rs))
			}
			size, next = n, resp.NextBatch
		}
		s := lat.summary()
		name := fmt.Sprintf("initial sync %d rooms, %s", len(rs), label)
		if lazy {
			b.rep.addTarget("initsync", name+" p50", s.P50, "ms", "<=", 1000)
		} else {
			b.rep.add("initsync", name+" p50", s.P50, "ms")
		}
		b.rep.add("initsync", name+" max", s.Max, "ms")
		b.rep.add("initsync", name+" size", float64(size)/1024, "KiB")
		return next, nil
	}
	since, err := measure("lazy members, timeline 10", true, 5)
	if err != nil {
		return err
	}
	if _, err := measure("all members, timeline 10", false, 3); err != nil {
		return err
	}
	// Incremental: nothing new, then one new message per sync. A hundred
	// of each, so that p99 is not simply the slowest: the first sync to
	// read after the initial syncs above pays for them (a SQLite reader
	// connection frees the pages it cached once it sees a newer commit).
	var idle, one latencies
	f := syncFilter(true, 10, nil)
	for i := 0; i < incrementalSamples; i++ {
		t := time.Now()
		resp, _, err := b.c.sync(ctx, x, since, f, 0)
		if err != nil {
			return err
		}
		idle.add(time.Since(t))
		since = resp.NextBatch
	}
	for i := 0; i < incrementalSamples; i++ {
		r := rs[rand.IntN(len(rs))]
		if err := b.c.send(ctx, r.Members[0], r.ID, fmt.Sprintf("%s-inc-%s-%d", b.o.Prefix, b.runID, i), map[string]any{"msgtype": "m.text", "body": "incremental"}); err != nil {
			return err
		}
		t := time.Now()
		resp, _, err := b.c.sync(ctx, x, since, f, 0)
		if err != nil {
			return err
		}
		one.add(time.Since(t))
		if len(resp.Rooms.Join) == 0 {
			return errors.New("incremental sync after a new message lists no room")
		}
		since = resp.NextBatch
	}
	is, ones := idle.summary(), one.summary()
	b.rep.add("initsync", "incremental sync, nothing new p50", is.P50, "ms")
	b.rep.add("initsync", "incremental sync, nothing new p99", is.P99, "ms")
	b.rep.add("initsync", "incremental sync, one new event p50", ones.P50, "ms")
	b.rep.add("initsync", "incremental sync, one new event p99", ones.P99, "ms")
	b.rep.add("initsync", "incremental sync, one new event max", ones.Max, "ms")
	return nil
}

// incrementalSamples is how many incremental syncs the initsync scenario
// measures of each kind.
const incrementalSamples = 100

// scenarioDirectory measures user directory search over the registered
// users: searches by first-name prefix, by last name and by user ID prefix.
func (b *bench) scenarioDirectory(ctx context.Context) error {
	if err := b.ensureUsers(ctx, b.o.Users, nil); err != nil {
		return err
	}
	// The directory may only show users who share a room with the searcher
	// or are in public rooms: the searcher is a member of a big room.
	if err := b.ensureRooms(ctx, false); err != nil {
		return err
	}
	searcher := b.users[0]
	if len(b.bigRooms) > 0 {
		searcher = b.bigRooms[0].Members[0]
	}
	search := func(ctx context.Context, term string) (int, error) {
		var out struct {
			Results []json.RawMessage `json:"results"`
		}
		_, err := b.c.do(ctx, "POST", "/_matrix/client/v3/user_directory/search", searcher.Token,
			map[string]any{"search_term": term, "limit": 10}, &out)
		return len(out.Results), err
	}
	if _, err := search(ctx, "probe"); err != nil {
		if unsupported(err) {
			return fmt.Errorf("%w: the server has no user directory search (%v)", errSkipped, err)
		}
		return err
	}
	terms := make([]string, b.o.Searches)
	rng := rand.New(rand.NewPCG(1, 2))
	for i := range terms {
		j := rng.IntN(len(b.users))
		switch i % 3 {
		case 0:
			fn := firstNames[j%len(firstNames)]
			terms[i] = strings.ToLower(fn[:min(4, len(fn))])
		case 1:
			terms[i] = lastNames[(j/len(firstNames))%len(lastNames)]
		default:
			lp := b.localpart(j)
			terms[i] = lp[:len(lp)-2]
		}
	}
	var lat, alone latencies
	var hits, empty atomic.Int64
	run := func(terms []string, conc int, lat *latencies) error {
		return parallel(ctx, len(terms), conc, func(ctx context.Context, i int) error {
			t := time.Now()
			n, err := search(ctx, terms[i])
			if err != nil {
				return err
			}
			lat.add(time.Since(t))
			hits.Add(int64(n))
			if n == 0 {
				empty.Add(1)
			}
			return nil
		})
	}
	start := time.Now()
	if err := run(terms, min(4, b.o.Concurrency), &lat); err != nil {
		return err
	}
	wall := time.Since(start)
	// Then a quarter as many, one at a time: the concurrent searches keep
	// both cores busy (the benchmark client shares them), so their tail
	// is mostly waiting for a CPU; these give a search's own latency.
	if err := run(terms[:max(1, len(terms)/4)], 1, &alone); err != nil {
		return err
	}
	s, a := lat.summary(), alone.summary()
	b.rep.add("directory", "users", float64(len(b.users)), "users")
	b.rep.add("directory", "searches/s", float64(s.N)/wall.Seconds(), "searches/s")
	b.rep.add("directory", "search p50", s.P50, "ms")
	b.rep.addTarget("directory", "search p99", s.P99, "ms", "<=", 5)
	b.rep.add("directory", "search p50, one at a time", a.P50, "ms")
	b.rep.add("directory", "search p99, one at a time", a.P99, "ms")
	b.rep.add("directory", "mean results per search", float64(hits.Load())/float64(max(1, s.N+a.N)), "results")
	b.rep.add("directory", "searches with no result", float64(empty.Load()), "searches")
	if hits.Load() == 0 {
		return errors.New("no search found anyone: the figures would measure empty answers")
	}
	return nil
}

// scenarioJoin builds a room of JoinRoomSize members, then measures new
// users joining it.
func (b *bench) scenarioJoin(ctx context.Context) error {
	n := b.o.JoinRoomSize
	if err := b.ensureUsers(ctx, n, nil); err != nil {
		return err
	}
	start := time.Now()
	var buildLat latencies
	r, err := b.buildRoom(ctx, "Join target", b.users[:n], b.o.Concurrency, nil, &buildLat)
	if err != nil {
		return err
	}
	wall := time.Since(start)
	bs := buildLat.summary()
	b.rep.add("join", "members of the room", float64(n), "members")
	b.rep.add("join", "build: joins/s", float64(n-1)/wall.Seconds(), "joins/s")
	b.rep.add("join", "build: join p99", bs.P99, "ms")
	// Members who sync the room after each join, as its online members
	// would: each such sync carries the room's summary (member counts).
	watchers := r.Members[1:min(len(r.Members), 1+joinWatchers)]
	filter := syncFilter(true, 10, []string{r.ID})
	since := make([]string, len(watchers))
	err = parallel(ctx, len(watchers), b.o.Concurrency, func(ctx context.Context, i int) error {
		resp, _, err := b.c.sync(ctx, watchers[i], "", filter, 0)
		if err == nil {
			since[i] = resp.NextBatch
		}
		return err
	})
	if err != nil {
		return err
	}
	var lat, syncLat, watchLat latencies
	var watchCPU time.Duration
	for i := 0; i < 5; i++ {
		u, err := b.extraUser(ctx, fmt.Sprintf("joiner%d", i))
		if err != nil {
			return err
		}
		t := time.Now()
		if err := b.c.join(ctx, u, r.ID); err != nil {
			return err
		}
		lat.add(time.Since(t))
		t = time.Now()
		if _, _, err := b.c.sync(ctx, u, "", syncFilter(true, 10, nil), 0); err != nil {
			return err
		}
		syncLat.add(time.Since(t))
		cpu0 := b.serverCPU()
		err = parallel(ctx, len(watchers), b.o.Concurrency, func(ctx context.Context, k int) error {
			t := time.Now()
			resp, _, err := b.c.sync(ctx, watchers[k], since[k], filter, 0)
			if err != nil {
				return err
			}
			watchLat.add(time.Since(t))
			if _, ok := resp.Rooms.Join[r.ID]; !ok {
				return errors.New("a member's sync after a join does not list the room")
			}
			since[k] = resp.NextBatch
			return nil
		})
		if err != nil {
			return err
		}
		watchCPU += b.serverCPU() - cpu0
	}
	s := lat.summary()
	b.rep.add("join", fmt.Sprintf("join a %d-member room p50", n), s.P50, "ms")
	b.rep.add("join", fmt.Sprintf("join a %d-member room max", n), s.Max, "ms")
	b.rep.add("join", "joiner's first sync (lazy) p50", syncLat.summary().P50, "ms")
	ws := watchLat.summary()
	b.rep.add("join", "members syncing after each join", float64(len(watchers)), "members")
	b.rep.add("join", "member's sync after a join p50", ws.P50, "ms")
	b.rep.add("join", "member's sync after a join p99", ws.P99, "ms")
	if b.proc != nil {
		b.rep.add("join", "server cpu per member's sync after a join", ms(watchCPU)/float64(5*len(watchers)), "ms")
	}
	return nil
}

// joinWatchers is how many members of the joined room sync it after each
// join in the join scenario.
const joinWatchers = 100
