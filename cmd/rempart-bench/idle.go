package main

import (
	"bufio"
	"context"
	"os"
	"runtime"
	"strconv"
	"strings"
	"time"
)

// idleBusyCores is the machine-wide CPU use (in cores) under which the
// machine counts as idle: parked long-polls cost nothing, answering them
// costs the server (and its database) most of a core or more.
const idleBusyCores = 0.25

// waitMachineIdle returns once this machine's CPU use over a quarter of a
// second falls under idleBusyCores, or after at most max. It reads
// /proc/stat, so it sees the server and a database on this machine; for a
// server elsewhere (or without /proc) it returns at once.
func waitMachineIdle(ctx context.Context, max time.Duration) {
	deadline := time.Now().Add(max)
	busy0, total0, ok := procStatCPU()
	if !ok {
		return
	}
	for time.Now().Before(deadline) && ctx.Err() == nil {
		time.Sleep(250 * time.Millisecond)
		busy1, total1, ok := procStatCPU()
		if !ok || total1 <= total0 {
			return
		}
		cores := float64(busy1-busy0) / float64(total1-total0) * float64(runtime.NumCPU())
		if cores < idleBusyCores {
			return
		}
		busy0, total0 = busy1, total1
	}
}

// procStatCPU returns the machine's busy and total CPU time in ticks from
// the first line of /proc/stat: user to steal (guest time is counted in
// user already); idle and iowait are not busy.
func procStatCPU() (busy, total int64, ok bool) {
	f, err := os.Open("/proc/stat")
	if err != nil {
		return 0, 0, false
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	if !sc.Scan() {
		return 0, 0, false
	}
	fields := strings.Fields(sc.Text())
	if len(fields) < 9 || fields[0] != "cpu" {
		return 0, 0, false
	}
	for i, v := range fields[1:9] {
		n, err := strconv.ParseInt(v, 10, 64)
		if err != nil {
			return 0, 0, false
		}
		total += n
		if i != 3 && i != 4 { // idle, iowait
			busy += n
		}
	}
	return busy, total, true
}
