package main

import (
	"context"
	"errors"
	"fmt"
	"net/url"
	"sync/atomic"
	"time"
)

// publicRoomsRequests is how many GET /publicRooms the publicrooms
// scenario measures.
const publicRoomsRequests = 200

// scenarioPublicRooms measures the room directory: PublicRooms of the
// small rooms are published by their creators (PUT
// /directory/list/room/{roomId}; already published ones stay so), then
// users ask for the first page of GET /publicRooms, four at a time, as
// clients opening their room directory do.
func (b *bench) scenarioPublicRooms(ctx context.Context) error {
	if err := b.ensureRooms(ctx, false); err != nil {
		return err
	}
	rs := b.smallRooms[:min(len(b.smallRooms), b.o.PublicRooms)]
	if len(rs) == 0 {
		return fmt.Errorf("%w: no small room to publish", errSkipped)
	}
	err := parallel(ctx, len(rs), b.o.Concurrency, func(ctx context.Context, i int) error {
		_, err := b.c.do(ctx, "PUT", "/_matrix/client/v3/directory/list/room/"+url.PathEscape(rs[i].ID), rs[i].Members[0].Token,
			map[string]any{"visibility": "public"}, nil)
		return err
	})
	if err != nil {
		if unsupported(err) {
			return fmt.Errorf("%w: the server has no room directory (%v)", errSkipped, err)
		}
		return err
	}
	var lat latencies
	var listed atomic.Int64
	cpu0 := b.serverCPU()
	err = parallel(ctx, publicRoomsRequests, min(4, b.o.Concurrency), func(ctx context.Context, i int) error {
		u := b.users[i%len(b.users)]
		var out struct {
			Chunk    []map[string]any `json:"chunk"`
			Estimate int64            `json:"total_room_count_estimate"`
		}
		t := time.Now()
		if _, err := b.c.do(ctx, "GET", "/_matrix/client/v3/publicRooms?limit=20", u.Token, nil, &out); err != nil {
			return err
		}
		lat.add(time.Since(t))
		if len(out.Chunk) == 0 {
			return errors.New("GET /publicRooms lists no room after publishing some")
		}
		listed.Store(out.Estimate)
		return nil
	})
	if err != nil {
		return err
	}
	s := lat.summary()
	b.rep.add("publicrooms", "rooms in the directory", float64(listed.Load()), "rooms")
	b.rep.add("publicrooms", "first page (20 rooms) p50", s.P50, "ms")
	b.rep.add("publicrooms", "first page (20 rooms) p99", s.P99, "ms")
	if b.proc != nil {
		b.rep.add("publicrooms", "server cpu per request", ms(b.serverCPU()-cpu0)/float64(s.N), "ms")
	}
	return nil
}
