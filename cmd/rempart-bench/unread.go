package main

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"time"
)

// unreadRounds is how many new messages the unread scenario measures the
// syncs of.
const unreadRounds = 50

// scenarioUnread measures what a busy room that its members never read
// costs their syncs. Backlog messages are sent into the first big room
// (its members send no receipts, so each has that many unread
// notifications there, plus those of earlier runs on a kept data set);
// then, unreadRounds times, a member sends one more message and Syncers of
// the room's members each make an incremental sync (filtered to the room,
// as a client with only that room changed would get it). A server that
// recounts a member's unread notifications at each sync pays for the
// backlog at every message; the figures are the syncs' latency and the
// server's CPU per sync.
func (b *bench) scenarioUnread(ctx context.Context) error {
	if err := b.ensureRooms(ctx, false); err != nil {
		return err
	}
	if len(b.bigRooms) == 0 || len(b.bigRooms[0].Members) < 2 {
		return fmt.Errorf("%w: no big room with two members", errSkipped)
	}
	r := b.bigRooms[0]
	// Half the members at most send (a sender is not notified of its own
	// messages); the others sync.
	senders := r.Members[:max(1, min(len(r.Members)/2, b.o.Concurrency))]
	start := time.Now()
	err := parallel(ctx, b.o.Backlog, b.o.Concurrency, func(ctx context.Context, i int) error {
		return b.c.send(ctx, senders[i%len(senders)], r.ID, fmt.Sprintf("%s-backlog-%s-%d", b.o.Prefix, b.runID, i),
			map[string]any{"msgtype": "m.text", "body": fmt.Sprintf("backlog %d", i)})
	})
	if err != nil {
		return err
	}
	b.logf("  %d backlog messages sent in %s", b.o.Backlog, time.Since(start).Round(time.Millisecond))
	syncers := r.Members[len(senders):]
	syncers = syncers[:min(len(syncers), b.o.Syncers)]
	filter := syncFilter(true, 10, []string{r.ID})
	since := make([]string, len(syncers))
	unread := make([]int, len(syncers))
	err = parallel(ctx, len(syncers), b.o.Concurrency, func(ctx context.Context, i int) error {
		resp, _, err := b.c.sync(ctx, syncers[i], "", filter, 0)
		if err != nil {
			return err
		}
		since[i] = resp.NextBatch
		return nil
	})
	if err != nil {
		return err
	}
	var lat latencies
	var syncs int
	var cpu time.Duration
	for round := range unreadRounds {
		if err := b.c.send(ctx, senders[round%len(senders)], r.ID, fmt.Sprintf("%s-unread-%s-%d", b.o.Prefix, b.runID, round),
			map[string]any{"msgtype": "m.text", "body": "new"}); err != nil {
			return err
		}
		cpu0 := b.serverCPU()
		err := parallel(ctx, len(syncers), b.o.Concurrency, func(ctx context.Context, i int) error {
			t := time.Now()
			resp, _, err := b.c.sync(ctx, syncers[i], since[i], filter, 0)
			if err != nil {
				return err
			}
			lat.add(time.Since(t))
			jr, ok := resp.Rooms.Join[r.ID]
			if !ok || len(jr.Timeline.Events) == 0 {
				return errors.New("an incremental sync after a new message does not list the room's message")
			}
			if c := jr.UnreadNotifications.NotificationCount; c != nil {
				unread[i] = *c
			}
			since[i] = resp.NextBatch
			return nil
		})
		if err != nil {
			return err
		}
		cpu += b.serverCPU() - cpu0
		syncs += len(syncers)
	}
	s := lat.summary()
	slices.Sort(unread)
	b.rep.add("unread", "room members", float64(len(r.Members)), "members")
	b.rep.add("unread", "syncing members", float64(len(syncers)), "members")
	b.rep.add("unread", "unread notifications per syncing member (median)", float64(unread[len(unread)/2]), "notifications")
	if unread[len(unread)/2] < b.o.Backlog {
		return fmt.Errorf("the syncing members' median unread count is %d, below the %d messages of the backlog", unread[len(unread)/2], b.o.Backlog)
	}
	b.rep.add("unread", "incremental sync after a new message p50", s.P50, "ms")
	b.rep.add("unread", "incremental sync after a new message p99", s.P99, "ms")
	if b.proc != nil {
		b.rep.add("unread", "server cpu per sync", ms(cpu)/float64(syncs), "ms")
	}
	return nil
}
