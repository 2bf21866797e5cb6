// Command rempart-bench measures a Matrix homeserver over the Client-Server
// API, so it can be pointed at Rempart or at any other server for
// comparison. It registers users, builds rooms with a skewed membership
// (a few rooms of 1,000+ members, many small ones), then measures sustained
// message sending, send→sync delivery to many long-polling clients,
// initial and incremental sync, user directory search, joining a large
// room, and the server's resident memory and CPU (read from /proc when its
// PID is given, or when the benchmark starts the server itself with
// --server-cmd). It prints a table, and JSON with --json.
//
//	rempart-bench --url http://127.0.0.1:8008 --shared-secret S --scale 0.05 --pid 1234
//	rempart-bench --server-cmd "rempart serve --config bench.yaml" --url … --shared-secret S
//
// Sizes default to the full benchmark (300,000 users, 10,000 rooms, 5,000
// sync clients…) multiplied by --scale; each can be set on its own.
package main

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"text/tabwriter"
	"time"
)

func main() {
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}

// options are the benchmark's parameters.
type options struct {
	URL          string        `json:"url"`
	SharedSecret string        `json:"-"`
	Prefix       string        `json:"prefix"`
	Scenarios    []string      `json:"scenarios"`
	Scale        float64       `json:"scale"`
	Users        int           `json:"users"`
	BigRooms     int           `json:"big_rooms"`
	BigRoomSize  int           `json:"big_room_members"`
	SmallRooms   int           `json:"small_rooms"`
	JoinRoomSize int           `json:"join_room_members"`
	Senders      int           `json:"senders"`
	Duration     time.Duration `json:"duration_ns"`
	SyncClients  int           `json:"sync_clients"`
	SyncRate     int           `json:"delivery_messages_per_s"`
	GroupSize    int           `json:"delivery_room_members"`
	InitRooms    int           `json:"initial_sync_rooms"`
	Backlog      int           `json:"unread_backlog"`
	Syncers      int           `json:"unread_syncers"`
	PublicRooms  int           `json:"public_rooms"`
	Searches     int           `json:"searches"`
	Concurrency  int           `json:"concurrency"`
	PID          int           `json:"pid"`
	ServerCmd    string        `json:"server_cmd,omitempty"`
	ServerLog    string        `json:"server_log,omitempty"`
	Timeout      time.Duration `json:"request_timeout_ns"`
	JSONPath     string        `json:"-"`
	StatePath    string        `json:"state,omitempty"`
	ProbeLog     string        `json:"probe_log,omitempty"`
}

// Full-scale sizes, multiplied by --scale.
const (
	fullUsers       = 300000
	fullBigRooms    = 3
	fullBigRoomSize = 1000
	fullSmallRooms  = 10000
	fullJoinRoom    = 10000
	fullSenders     = 100
	fullSyncClients = 5000
	fullInitRooms   = 500
	fullSearches    = 2000
)

var allScenarios = []string{"register", "rooms", "send", "delivery", "initsync", "unread", "directory", "publicrooms", "join", "memory", "restart"}

func scaled(v int, scale float64, floor int) int {
	return max(floor, int(float64(v)*scale+0.5))
}

func parseOptions(args []string, stderr io.Writer) (options, error) {
	fs := flag.NewFlagSet("rempart-bench", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var o options
	var scenarios string
	fs.StringVar(&o.URL, "url", "http://127.0.0.1:8008", "base URL of the homeserver's Client-Server API")
	fs.StringVar(&o.SharedSecret, "shared-secret", os.Getenv("REMPART_BENCH_SHARED_SECRET"),
		"registration shared secret (POST /_synapse/admin/v1/register); empty: open registration (env REMPART_BENCH_SHARED_SECRET)")
	fs.StringVar(&o.Prefix, "prefix", "", "localpart prefix of the accounts made by this run (default: random)")
	fs.StringVar(&scenarios, "scenarios", strings.Join(allScenarios, ","), "comma-separated scenarios to run: "+strings.Join(allScenarios, ","))
	fs.Float64Var(&o.Scale, "scale", 0.01, "multiplier of the full-scale sizes (1 = 300,000 users, 10,000 small rooms, 5,000 sync clients…)")
	fs.IntVar(&o.Users, "users", 0, "users to register (default 300,000 × scale)")
	fs.IntVar(&o.BigRooms, "big-rooms", 0, "rooms with --big-room-members members (default 3)")
	fs.IntVar(&o.BigRoomSize, "big-room-members", 0, "members of each big room (default 1,000 × scale)")
	fs.IntVar(&o.SmallRooms, "small-rooms", 0, "rooms of 2–6 members (default 10,000 × scale)")
	fs.IntVar(&o.JoinRoomSize, "join-room-members", 0, "members of the room joined by the join scenario (default 10,000 × scale)")
	fs.IntVar(&o.Senders, "senders", 0, "concurrent senders in the send scenario (default 100)")
	fs.DurationVar(&o.Duration, "duration", time.Minute, "duration of the send scenario (the delivery scenario runs a third of it)")
	fs.IntVar(&o.SyncClients, "sync-clients", 0, "concurrent long-polling /sync clients (default 5,000 × scale)")
	fs.IntVar(&o.SyncRate, "delivery-rate", 50, "messages per second sent during the delivery scenario")
	fs.IntVar(&o.GroupSize, "delivery-room-members", 10, "members of each room of the delivery scenario")
	fs.IntVar(&o.InitRooms, "initial-sync-rooms", 0, "rooms of the initial-sync user (default 500)")
	fs.IntVar(&o.Backlog, "unread-backlog", 2000, "messages sent into the first big room before the unread scenario measures its members' syncs")
	fs.IntVar(&o.Syncers, "unread-syncers", 100, "members of the first big room whose syncs the unread scenario measures (at most its members)")
	fs.IntVar(&o.PublicRooms, "public-rooms", 1000, "small rooms the publicrooms scenario publishes in the room directory (at most --small-rooms)")
	fs.IntVar(&o.Searches, "searches", 0, "user directory searches (default 2,000 × scale, at least 200)")
	fs.IntVar(&o.Concurrency, "concurrency", 16, "concurrent requests while building users and rooms")
	fs.IntVar(&o.PID, "pid", 0, "server process ID, to read its RSS and CPU time from /proc")
	fs.StringVar(&o.ServerCmd, "server-cmd", "", "start the server with this command (split on spaces), measure its start-up, and stop it at the end")
	fs.StringVar(&o.ServerLog, "server-log", "", "file for the output of --server-cmd (default: discarded)")
	fs.DurationVar(&o.Timeout, "request-timeout", 2*time.Minute, "timeout of each request (long-polls excepted)")
	fs.StringVar(&o.JSONPath, "json", "", "also write the results as JSON to this file (\"-\": standard output, instead of the table)")
	fs.StringVar(&o.ProbeLog, "probe-log", "", "write one CSV line per delivery probe to this file: when it was sent (ms from the first), its send latency, its slowest and median delivery (ms), deliveries")
	fs.StringVar(&o.StatePath, "state", "", "file keeping the accounts (with tokens) and rooms built, read at start and written after each scenario: a later run with the same --prefix against the same database reuses them (and builds only what larger sizes add)")
	if err := fs.Parse(args); err != nil {
		return o, err
	}
	if fs.NArg() > 0 {
		return o, fmt.Errorf("unexpected argument %q", fs.Arg(0))
	}
	s := o.Scale
	if s <= 0 {
		return o, fmt.Errorf("--scale must be positive")
	}
	def := func(p *int, v int) {
		if *p <= 0 {
			*p = v
		}
	}
	def(&o.Users, scaled(fullUsers, s, 20))
	def(&o.BigRooms, fullBigRooms)
	def(&o.BigRoomSize, scaled(fullBigRoomSize, s, 10))
	def(&o.SmallRooms, scaled(fullSmallRooms, s, 10))
	def(&o.JoinRoomSize, scaled(fullJoinRoom, s, 10))
	def(&o.Senders, fullSenders)
	def(&o.SyncClients, scaled(fullSyncClients, s, 10))
	def(&o.InitRooms, fullInitRooms)
	def(&o.Searches, scaled(fullSearches, s, 200))
	def(&o.GroupSize, 10)
	def(&o.SyncRate, 50)
	def(&o.Concurrency, 16)
	o.BigRoomSize = min(o.BigRoomSize, o.Users)
	o.JoinRoomSize = min(o.JoinRoomSize, o.Users)
	o.GroupSize = max(2, o.GroupSize)
	if o.Prefix == "" {
		o.Prefix = "bench" + randomHex(3)
	}
	for _, sc := range strings.Split(scenarios, ",") {
		sc = strings.TrimSpace(sc)
		if sc == "" {
			continue
		}
		if sc == "all" {
			o.Scenarios = append(o.Scenarios, allScenarios...)
			continue
		}
		known := false
		for _, a := range allScenarios {
			known = known || a == sc
		}
		if !known {
			return o, fmt.Errorf("unknown scenario %q (known: %s)", sc, strings.Join(allScenarios, ", "))
		}
		o.Scenarios = append(o.Scenarios, sc)
	}
	return o, nil
}

func run(args []string, stdout, stderr io.Writer) int {
	o, err := parseOptions(args, stderr)
	if err != nil {
		if err != flag.ErrHelp {
			fmt.Fprintln(stderr, "rempart-bench:", err)
		}
		return 2
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	b := newBench(o, stderr)
	rep, err := b.run(ctx)
	if rep != nil {
		if o.JSONPath == "-" {
			enc := json.NewEncoder(stdout)
			enc.SetIndent("", "  ")
			_ = enc.Encode(rep)
		} else {
			rep.writeTable(stdout)
			if o.JSONPath != "" {
				f, ferr := os.Create(o.JSONPath)
				if ferr == nil {
					enc := json.NewEncoder(f)
					enc.SetIndent("", "  ")
					ferr = enc.Encode(rep)
					if cerr := f.Close(); ferr == nil {
						ferr = cerr
					}
				}
				if ferr != nil {
					fmt.Fprintln(stderr, "rempart-bench: write JSON:", ferr)
					return 1
				}
			}
		}
	}
	if err != nil {
		fmt.Fprintln(stderr, "rempart-bench:", err)
		return 1
	}
	return 0
}

// metric is one measured figure.
type metric struct {
	Scenario string  `json:"scenario"`
	Name     string  `json:"name"`
	Value    float64 `json:"value"`
	Unit     string  `json:"unit"`
	Target   string  `json:"target,omitempty"`
	Met      *bool   `json:"met,omitempty"`
}

// report is the benchmark's output.
type report struct {
	Started  time.Time `json:"started"`
	Options  options   `json:"options"`
	Metrics  []metric  `json:"metrics"`
	Skipped  []string  `json:"skipped,omitempty"`
	Failures []string  `json:"failures,omitempty"`
}

func (r *report) add(scenario, name string, v float64, unit string) {
	r.Metrics = append(r.Metrics, metric{Scenario: scenario, Name: name, Value: v, Unit: unit})
}

// addTarget records v with a target: op is "<=" or ">=".
func (r *report) addTarget(scenario, name string, v float64, unit, op string, target float64) {
	met := v <= target
	if op == ">=" {
		met = v >= target
	}
	r.Metrics = append(r.Metrics, metric{Scenario: scenario, Name: name, Value: v, Unit: unit,
		Target: fmt.Sprintf("%s %g", op, target), Met: &met})
}

// get returns a metric's value (for tests).
func (r *report) get(scenario, name string) (float64, bool) {
	for _, m := range r.Metrics {
		if m.Scenario == scenario && m.Name == name {
			return m.Value, true
		}
	}
	return 0, false
}

func (r *report) writeTable(w io.Writer) {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintf(tw, "SCENARIO\tMETRIC\tVALUE\tUNIT\tTARGET\tMET\n")
	for _, m := range r.Metrics {
		met := ""
		if m.Met != nil {
			met = "yes"
			if !*m.Met {
				met = "NO"
			}
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\n", m.Scenario, m.Name, formatValue(m.Value), m.Unit, m.Target, met)
	}
	_ = tw.Flush()
	for _, s := range r.Skipped {
		fmt.Fprintln(w, "skipped:", s)
	}
	for _, f := range r.Failures {
		fmt.Fprintln(w, "FAILED:", f)
	}
}

func formatValue(v float64) string {
	switch {
	case v == float64(int64(v)):
		return fmt.Sprintf("%d", int64(v))
	case v >= 100:
		return fmt.Sprintf("%.0f", v)
	case v >= 1:
		return fmt.Sprintf("%.2f", v)
	default:
		return fmt.Sprintf("%.3f", v)
	}
}

// randomHex returns n random bytes in hexadecimal.
func randomHex(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}
