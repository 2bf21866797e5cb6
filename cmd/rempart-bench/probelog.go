package main

import (
	"bufio"
	"fmt"
	"os"
	"slices"
	"sync"
	"time"
)

// probeLog records, per delivery probe, when it was sent, how long the
// send took and how long each delivery took, for --probe-log: a tail in
// the summary does not say whether slow deliveries come together (a
// stall of the server) or spread out, nor whether they follow slow sends.
type probeLog struct {
	mu    sync.Mutex
	at    []time.Duration // since the first probe was due
	send  []time.Duration
	deliv [][]time.Duration
}

func newProbeLog(n int) *probeLog {
	return &probeLog{at: make([]time.Duration, n), send: make([]time.Duration, n), deliv: make([][]time.Duration, n)}
}

func (p *probeLog) sent(seq int, at, took time.Duration) {
	p.mu.Lock()
	p.at[seq], p.send[seq] = at, took
	p.mu.Unlock()
}

func (p *probeLog) delivered(seq int64, took time.Duration) {
	p.mu.Lock()
	p.deliv[seq] = append(p.deliv[seq], took)
	p.mu.Unlock()
}

// write writes the CSV: seq, sent_ms, send_ms, slowest_delivery_ms,
// median_delivery_ms, deliveries.
func (p *probeLog) write(path string) error {
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	w := bufio.NewWriter(f)
	fmt.Fprintln(w, "seq,sent_ms,send_ms,slowest_delivery_ms,median_delivery_ms,deliveries")
	p.mu.Lock()
	for i := range p.at {
		d := slices.Clone(p.deliv[i])
		slices.Sort(d)
		var slowest, median time.Duration
		if len(d) > 0 {
			slowest, median = d[len(d)-1], d[len(d)/2]
		}
		fmt.Fprintf(w, "%d,%.1f,%.2f,%.2f,%.2f,%d\n", i, ms(p.at[i]), ms(p.send[i]), ms(slowest), ms(median), len(d))
	}
	p.mu.Unlock()
	if err := w.Flush(); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}
