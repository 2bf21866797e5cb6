package main

import (
	"bytes"
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/rempart-hs/rempart/internal/testserver"
)

// testWriter sends the benchmark's progress log to the test log.
type testWriter struct{ t *testing.T }

func (w testWriter) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimRight(string(p), "\n"))
	return len(p), nil
}

// TestBenchSmoke runs every scenario at tiny scale against a real server
// (in this process, so /proc/self gives its memory and CPU) and checks that
// the figures are sane: every send acknowledged, every probe delivered to
// every long-polling client, syncs listing every room.
func TestBenchSmoke(t *testing.T) {
	srv := testserver.Start(t)
	o, err := parseOptions([]string{
		"--url", srv.URL, "--shared-secret", srv.Config.Registration.SharedSecret,
		"--users", "30", "--big-rooms", "1", "--big-room-members", "12", "--small-rooms", "10",
		"--join-room-members", "15", "--senders", "4", "--duration", "1500ms",
		"--sync-clients", "40", "--delivery-rate", "40", "--delivery-room-members", "5",
		"--initial-sync-rooms", "14", "--unread-backlog", "40", "--unread-syncers", "4",
		"--searches", "30", "--concurrency", "8",
		"--pid", "0", "--probe-log", filepath.Join(t.TempDir(), "probes.csv"),
	}, os.Stderr)
	if err != nil {
		t.Fatal(err)
	}
	o.PID = os.Getpid()
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	rep, err := newBench(o, testWriter{t}).run(ctx)
	var table bytes.Buffer
	if rep != nil {
		rep.writeTable(&table)
		t.Log("\n" + table.String())
	}
	if err != nil {
		t.Fatalf("benchmark: %v", err)
	}
	want := func(scenario, name string, ok func(float64) bool) {
		t.Helper()
		v, found := rep.get(scenario, name)
		if !found {
			t.Errorf("%s / %s: not measured", scenario, name)
			return
		}
		if !ok(v) {
			t.Errorf("%s / %s = %v: not sane", scenario, name, v)
		}
	}
	positive := func(v float64) bool { return v > 0 }
	want("register", "users registered", func(v float64) bool { return v == 30 })
	want("register", "latency p99", positive)
	want("rooms", "rooms created", func(v float64) bool { return v == 11 })
	want("send", "messages acknowledged", positive)
	want("send", "failed sends", func(v float64) bool { return v == 0 })
	want("send", "send latency p99", positive)
	want("delivery", "probes sent", func(v float64) bool { return v >= 20 })
	want("delivery", "fraction delivered", func(v float64) bool { return v == 1 })
	want("delivery", "duplicate deliveries", func(v float64) bool { return v == 0 })
	want("delivery", "delivery latency p99", positive)
	want("initsync", "initial sync 14 rooms, lazy members, timeline 10 p50", positive)
	want("initsync", "incremental sync, one new event p99", positive)
	want("unread", "syncing members", func(v float64) bool { return v == 4 })
	want("unread", "unread notifications per syncing member (median)", func(v float64) bool { return v >= 40 })
	want("unread", "incremental sync after a new message p99", positive)
	want("unread", "server cpu per sync", positive)
	want("publicrooms", "rooms in the directory", func(v float64) bool { return v == 10 })
	want("publicrooms", "first page (20 rooms) p99", positive)
	want("publicrooms", "server cpu per request", positive)
	want("join", "join a 15-member room max", positive)
	want("join", "members syncing after each join", func(v float64) bool { return v == 14 })
	want("join", "member's sync after a join p99", positive)
	want("join", "server cpu per member's sync after a join", positive)
	want("memory", "peak rss (VmHWM)", positive)
	want("send", "server cpu (cores busy)", positive)
	// A lazy-loaded initial sync must be smaller than a full one: the big
	// room's 12 members are not all sent.
	lazy, _ := rep.get("initsync", "initial sync 14 rooms, lazy members, timeline 10 size")
	full, _ := rep.get("initsync", "initial sync 14 rooms, all members, timeline 10 size")
	if !(lazy > 0 && lazy < full) {
		t.Errorf("lazy initial sync %.1f KiB, full %.1f KiB: lazy loading should send less", lazy, full)
	}
	// The directory scenario runs when the server has the endpoint.
	if _, ok := rep.get("directory", "search p99"); !ok {
		found := false
		for _, s := range rep.Skipped {
			found = found || strings.HasPrefix(s, "directory:")
		}
		if !found {
			t.Errorf("directory scenario neither measured nor skipped")
		}
	} else {
		want("directory", "mean results per search", positive)
		want("directory", "search p99, one at a time", positive)
	}
	for _, s := range rep.Skipped {
		if !strings.HasPrefix(s, "directory:") && !strings.HasPrefix(s, "restart:") {
			t.Errorf("unexpected skip: %s", s)
		}
	}
	if !strings.Contains(table.String(), "acknowledged events/s") {
		t.Errorf("table lacks the send figures")
	}
	// The probe log: a header, then one line per probe, each delivered.
	log, err := os.ReadFile(o.ProbeLog)
	if err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(strings.TrimSpace(string(log)), "\n")
	probes, _ := rep.get("delivery", "probes sent")
	if len(lines) != int(probes)+1 || !strings.HasPrefix(lines[0], "seq,sent_ms,send_ms,") {
		t.Fatalf("probe log: %d lines for %v probes, header %q", len(lines), probes, lines[0])
	}
	for _, l := range lines[1:] {
		f := strings.Split(l, ",")
		if len(f) != 6 || f[5] == "0" || f[3] == "0.00" {
			t.Errorf("probe log line %q: want six fields and deliveries", l)
		}
	}
}

// TestBenchCLI drives the command line: open registration, JSON output.
func TestBenchCLI(t *testing.T) {
	srv := testserver.Start(t)
	var stdout, stderr bytes.Buffer
	code := run([]string{"--url", srv.URL, "--shared-secret", "", "--scenarios", "register", "--users", "3", "--json", "-"}, &stdout, &stderr)
	if code != 0 {
		t.Fatalf("exit %d: %s", code, stderr.String())
	}
	var rep report
	if err := json.Unmarshal(stdout.Bytes(), &rep); err != nil {
		t.Fatalf("JSON output: %v\n%s", err, stdout.String())
	}
	if v, _ := rep.get("register", "users registered"); v != 3 {
		t.Errorf("users registered = %v, want 3", v)
	}
	if code := run([]string{"--scenarios", "nope"}, &stdout, &stderr); code != 2 {
		t.Errorf("unknown scenario: exit %d, want 2", code)
	}
	if code := run([]string{"--url", srv.URL, "--shared-secret", "wrong", "--scenarios", "register", "--users", "1"}, &stdout, &stderr); code != 1 {
		t.Errorf("wrong shared secret: exit %d, want 1", code)
	}
}

// TestBenchState checks that --state keeps a data set between runs: a
// second run with the same prefix reuses the accounts and rooms (their
// tokens still work: the directory scenario searches with them) and only
// registers what a larger size adds, logging in to accounts an interrupted
// run registered; another prefix is refused.
func TestBenchState(t *testing.T) {
	srv := testserver.Start(t)
	state := t.TempDir() + "/state.json"
	args := func(users string, extra ...string) []string {
		return append([]string{"--url", srv.URL, "--shared-secret", srv.Config.Registration.SharedSecret,
			"--prefix", "st", "--state", state, "--users", users, "--big-rooms", "1", "--big-room-members", "5",
			"--small-rooms", "3", "--searches", "5", "--json", "-"}, extra...)
	}
	runJSON := func(a []string) report {
		t.Helper()
		var stdout, stderr bytes.Buffer
		if code := run(a, &stdout, &stderr); code != 0 {
			t.Fatalf("exit %d: %s", code, stderr.String())
		}
		var rep report
		if err := json.Unmarshal(stdout.Bytes(), &rep); err != nil {
			t.Fatalf("JSON output: %v\n%s", err, stdout.String())
		}
		return rep
	}
	rep := runJSON(args("8", "--scenarios", "register,rooms"))
	if v, _ := rep.get("register", "users registered"); v != 8 {
		t.Fatalf("first run registered %v users, want 8", v)
	}
	if v, _ := rep.get("rooms", "rooms created"); v != 4 {
		t.Fatalf("first run created %v rooms, want 4", v)
	}
	// An interrupted run registered the next account without keeping its
	// token: the next run logs in to it.
	if _, err := newClient(srv.URL, time.Minute).register(context.Background(), srv.Config.Registration.SharedSecret, "st-u0000008", "Lost"); err != nil {
		t.Fatal(err)
	}
	rep = runJSON(args("10", "--scenarios", "register,rooms,directory"))
	if v, _ := rep.get("register", "users registered"); v != 2 {
		t.Errorf("second run registered %v users, want the 2 the larger size adds", v)
	}
	if v, ok := rep.get("rooms", "rooms created"); ok && v != 0 {
		t.Errorf("second run created %v rooms, want none", v)
	}
	if v, _ := rep.get("directory", "users"); v != 10 {
		t.Errorf("directory over %v users, want 10", v)
	}
	if len(rep.Failures) > 0 {
		t.Errorf("failures: %v", rep.Failures)
	}
	var stdout, stderr bytes.Buffer
	a := args("10", "--scenarios", "register")
	a[5] = "other" // --prefix
	if code := run(a, &stdout, &stderr); code != 1 || !strings.Contains(stderr.String(), "prefix") {
		t.Errorf("state of another prefix: exit %d, %q", code, stderr.String())
	}
}
