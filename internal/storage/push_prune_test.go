package storage_test

import (
	"context"
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/rempart-hs/rempart/internal/storage"
)

// TestPrunePushActions checks that the pruner deletes exactly the push
// actions older than the retention that their user has read (up to the
// unthreaded read position, and a thread's rows up to that thread's
// position), and keeps the unread ones whatever their age and the recent
// ones read or not: unread counts are the same before and after, and the
// notification list loses only the deleted rows.
//
// It runs with pages of one receipt and of the default size, so that pairs
// with several receipts span pages.
func TestPrunePushActions(t *testing.T) {
	for _, page := range []int{1, 0} {
		t.Run(fmt.Sprintf("page=%d", page), func(t *testing.T) {
			if page > 0 {
				defer storage.SetPushPrunePage(page, 0)()
			}
			testPrunePushActions(t)
		})
	}
}

func testPrunePushActions(t *testing.T) {
	f := newPushFixture(t, 2)
	ctx := context.Background()
	a, b := f.rooms[0], f.rooms[1]
	thread := func(root string) string {
		return `{"msgtype":"m.text","body":"in thread","m.relates_to":{"rel_type":"m.thread","event_id":"` + root + `"}}`
	}
	const msg = `{"msgtype":"m.text","body":"hello"}`

	// Old: room A's root, a reply in its thread, two messages and another
	// reply; room B's two messages.
	e1 := f.send(a, msg)
	t1 := f.send(a, thread(e1))
	e2 := f.send(a, msg)
	e3 := f.send(a, msg)
	t2 := f.send(a, thread(e1))
	b1 := f.send(b, msg)
	b2 := f.send(b, msg)
	time.Sleep(5 * time.Millisecond)
	mid := time.Now()
	time.Sleep(5 * time.Millisecond)
	// Recent.
	e4 := f.send(a, msg)
	b3 := f.send(b, msg)
	b4 := f.send(b, msg)

	// Alice read room A up to e2, its thread up to t2, and room B up to
	// the recent b3.
	f.receipt(a, "m.read", "", e2)
	f.receipt(a, "m.read", e1, t2)
	f.receipt(b, "m.read.private", "", b3)
	if _, err := f.db.MoveStagedPushActions(ctx); err != nil {
		t.Fatal(err)
	}

	if n, err := f.db.PrunePushActions(ctx, time.Now()); err != nil || n != 0 {
		t.Fatalf("nothing is a month old yet: pruned %d, %v", n, err)
	}
	counts := func() []map[string]storage.NotificationCounts {
		var out []map[string]storage.NotificationCounts
		for _, r := range f.rooms {
			c, err := f.db.UnreadCounts(ctx, r, f.alice)
			if err != nil {
				t.Fatal(err)
			}
			out = append(out, c)
		}
		return out
	}
	listed := func() []string {
		ns, err := f.db.Notifications(ctx, f.alice, 0, false, 100)
		if err != nil {
			t.Fatal(err)
		}
		var ids []string
		for _, n := range ns {
			ids = append(ids, n.Event.EventID)
		}
		slices.Sort(ids)
		return ids
	}
	before := counts()
	all := []string{e1, t1, e2, e3, t2, b1, b2, e4, b3, b4}
	slices.Sort(all)
	if got := listed(); !slices.Equal(got, all) {
		t.Fatalf("notifications before pruning: %v, want %v", got, all)
	}

	n, err := f.db.PrunePushActions(ctx, mid.Add(storage.NotificationRetention))
	if err != nil {
		t.Fatal(err)
	}
	if n != 6 {
		t.Errorf("pruned %d push actions, want 6 (e1, t1, e2, t2, b1, b2)", n)
	}
	want := []string{e3, e4, b3, b4}
	slices.Sort(want)
	if got := listed(); !slices.Equal(got, want) {
		t.Errorf("notifications after pruning: %v, want %v", got, want)
	}
	after := counts()
	for i := range before {
		if len(before[i]) != len(after[i]) {
			t.Fatalf("room %d: unread counts %v before pruning, %v after", i, before[i], after[i])
		}
		for k, v := range before[i] {
			if after[i][k] != v {
				t.Errorf("room %d thread %s: unread counts %v before pruning, %v after", i, k, v, after[i][k])
			}
		}
	}
	if before[0]["main"].Notifications != 2 || before[1]["main"].Notifications != 1 {
		t.Errorf("unread counts %v: want 2 in room A (e3, e4) and 1 in room B (b4)", before)
	}
	if n, err := f.db.PrunePushActions(ctx, mid.Add(storage.NotificationRetention)); err != nil || n != 0 {
		t.Errorf("second pass pruned %d, %v; want 0", n, err)
	}
}
