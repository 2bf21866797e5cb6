package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"strings"
	"sync"
	"syscall"
	"time"
)

// bench holds a run's state: the accounts and rooms built so far, which
// later scenarios reuse.
type bench struct {
	o    options
	c    *client // ordinary requests, bounded by --request-timeout
	lp   *client // long-polls, bounded per request
	log  io.Writer
	proc *procStats
	srv  *exec.Cmd
	rep  *report

	users      []*user
	bigRooms   []*room
	smallRooms []*room
	// runID tells this run's transaction IDs apart from those of earlier
	// runs reusing the same accounts (--state): a repeated transaction ID
	// is answered from the server's idempotency record without storing
	// anything, which would count as a send that did no work.
	runID string
	// saved are the numbers of users, big and small rooms last read from
	// or written to --state.
	saved [3]int
}

// room is a room the benchmark built, with its members (creator first).
type room struct {
	ID      string
	Members []*user
}

func newBench(o options, log io.Writer) *bench {
	b := &bench{o: o, c: newClient(o.URL, o.Timeout), lp: newClient(o.URL, 0), log: log,
		rep: &report{Started: time.Now().UTC(), Options: o}, runID: randomHex(4)}
	if o.PID > 0 {
		b.proc = &procStats{pid: o.PID}
	}
	return b
}

func (b *bench) logf(format string, args ...any) {
	fmt.Fprintf(b.log, "%s "+format+"\n", append([]any{time.Now().Format("15:04:05")}, args...)...)
}

// run executes the selected scenarios in their fixed order. A scenario the
// server does not implement is skipped; a failing one is recorded and the
// next one runs.
func (b *bench) run(ctx context.Context) (*report, error) {
	if b.o.ServerCmd != "" {
		d, err := b.startServer(ctx)
		if err != nil {
			return b.rep, err
		}
		b.rep.addTarget("startup", "start-up time (first start)", ms(d), "ms", "<=", 2000)
		defer b.stopServer()
	} else if err := b.c.waitReady(ctx, 10*time.Second); err != nil {
		return b.rep, err
	}
	if err := b.loadState(); err != nil {
		return b.rep, err
	}
	if b.proc != nil {
		time.Sleep(time.Second)
		if cur, _, err := b.proc.rss(); err == nil {
			b.rep.add("memory", "rss at start", mib(cur), "MiB")
		}
	}
	selected := map[string]bool{}
	for _, s := range b.o.Scenarios {
		selected[s] = true
	}
	steps := map[string]func(context.Context) error{
		"register": b.scenarioRegister, "rooms": b.scenarioRooms, "send": b.scenarioSend,
		"delivery": b.scenarioDelivery, "initsync": b.scenarioInitialSync, "unread": b.scenarioUnread, "directory": b.scenarioDirectory, "publicrooms": b.scenarioPublicRooms,
		"join": b.scenarioJoin, "memory": b.scenarioMemory, "restart": b.scenarioRestart,
	}
	for _, name := range allScenarios {
		if !selected[name] {
			continue
		}
		if ctx.Err() != nil {
			return b.rep, ctx.Err()
		}
		b.logf("scenario %s", name)
		var s *sampler
		var cpu0 time.Duration
		if b.proc != nil && name != "restart" {
			s = startSampler(*b.proc)
			cpu0, _ = b.proc.cpu()
		}
		nMetrics := len(b.rep.Metrics)
		self := procStats{pid: os.Getpid()}
		selfCPU0, _ := self.cpu()
		start := time.Now()
		err := steps[name](ctx)
		wall := time.Since(start)
		if serr := b.saveState(); serr != nil {
			b.rep.Failures = append(b.rep.Failures, fmt.Sprintf("save state: %v", serr))
		}
		// The benchmark shares the machine with the server: its own CPU use
		// says how much of the machine the server did not get.
		if selfCPU1, cerr := self.cpu(); cerr == nil && err == nil && (b.proc == nil || b.proc.pid != self.pid) {
			b.rep.add(name, "benchmark client cpu (cores busy)", (selfCPU1-selfCPU0).Seconds()/wall.Seconds(), "cores")
		}
		if s != nil {
			peak := s.finish()
			if cpu1, cerr := b.proc.cpu(); cerr == nil && err == nil {
				b.rep.add(name, "server cpu (cores busy)", (cpu1-cpu0).Seconds()/wall.Seconds(), "cores")
				b.rep.add(name, "server peak rss", mib(peak), "MiB")
			}
		}
		for _, m := range b.rep.Metrics[nMetrics:] {
			target := ""
			if m.Target != "" {
				target = " (target " + m.Target + ")"
			}
			b.logf("  %s: %s %s%s", m.Name, formatValue(m.Value), m.Unit, target)
		}
		switch {
		case err == nil:
			b.rep.add(name, "wall time", wall.Seconds(), "s")
		case errors.Is(err, errSkipped):
			b.rep.Skipped = append(b.rep.Skipped, fmt.Sprintf("%s: %v", name, err))
			b.logf("scenario %s skipped: %v", name, err)
		default:
			b.rep.Failures = append(b.rep.Failures, fmt.Sprintf("%s: %v", name, err))
			b.logf("scenario %s failed: %v", name, err)
		}
	}
	if len(b.rep.Failures) > 0 {
		return b.rep, fmt.Errorf("%d scenario(s) failed", len(b.rep.Failures))
	}
	return b.rep, nil
}

var errSkipped = errors.New("skipped")

// serverCPU returns the server's CPU time so far (0 without a PID).
func (b *bench) serverCPU() time.Duration {
	if b.proc == nil {
		return 0
	}
	d, _ := b.proc.cpu()
	return d
}

// ownCPU returns the CPU time this benchmark process has used so far.
func ownCPU() time.Duration {
	d, _ := procStats{pid: os.Getpid()}.cpu()
	return d
}

func mib(n int64) float64 { return float64(n) / (1 << 20) }

// parallel runs f(0..n-1) on conc workers and returns the first error.
func parallel(ctx context.Context, n, conc int, f func(ctx context.Context, i int) error) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var (
		mu       sync.Mutex
		firstErr error
		next     int
		wg       sync.WaitGroup
	)
	for w := 0; w < min(conc, n); w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				mu.Lock()
				if firstErr != nil || next >= n {
					mu.Unlock()
					return
				}
				i := next
				next++
				mu.Unlock()
				if err := f(ctx, i); err != nil {
					mu.Lock()
					if firstErr == nil {
						firstErr = err
						cancel()
					}
					mu.Unlock()
					return
				}
			}
		}()
	}
	wg.Wait()
	if firstErr == nil {
		firstErr = ctx.Err()
	}
	return firstErr
}

// startServer runs --server-cmd and returns the time until the server
// answered GET /_matrix/client/versions.
func (b *bench) startServer(ctx context.Context) (time.Duration, error) {
	args := strings.Fields(b.o.ServerCmd)
	cmd := exec.Command(args[0], args[1:]...)
	if b.o.ServerLog != "" {
		f, err := os.OpenFile(b.o.ServerLog, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
		if err != nil {
			return 0, err
		}
		cmd.Stdout, cmd.Stderr = f, f
	}
	start := time.Now()
	if err := cmd.Start(); err != nil {
		return 0, fmt.Errorf("start server: %w", err)
	}
	b.srv = cmd
	b.proc = &procStats{pid: cmd.Process.Pid}
	if err := b.c.waitReady(ctx, 2*time.Minute); err != nil {
		b.stopServer()
		return 0, err
	}
	return time.Since(start), nil
}

// stopServer asks the server to stop (SIGTERM) and waits for it.
func (b *bench) stopServer() time.Duration {
	if b.srv == nil {
		return 0
	}
	start := time.Now()
	_ = b.srv.Process.Signal(syscall.SIGTERM)
	done := make(chan struct{})
	go func() { _ = b.srv.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(60 * time.Second):
		_ = b.srv.Process.Kill()
		<-done
	}
	b.srv = nil
	return time.Since(start)
}

// scenarioRestart stops and restarts a server started with --server-cmd and
// measures its start-up with the database the run has filled.
func (b *bench) scenarioRestart(ctx context.Context) error {
	if b.srv == nil {
		return fmt.Errorf("%w: needs --server-cmd", errSkipped)
	}
	stop := b.stopServer()
	b.rep.add("restart", "graceful shutdown", ms(stop), "ms")
	d, err := b.startServer(ctx)
	if err != nil {
		return err
	}
	b.rep.addTarget("restart", "start-up time (filled database)", ms(d), "ms", "<=", 2000)
	time.Sleep(3 * time.Second)
	if cur, _, err := b.proc.rss(); err == nil {
		b.rep.add("restart", "rss idle after restart", mib(cur), "MiB")
	}
	// Tokens survive a restart: one authenticated request proves it.
	if len(b.users) > 0 {
		if _, err := b.c.do(ctx, "GET", "/_matrix/client/v3/account/whoami", b.users[0].Token, nil, nil); err != nil {
			return fmt.Errorf("whoami after restart: %w", err)
		}
	}
	return nil
}

// scenarioMemory reads the server's RSS once idle, and its peak.
func (b *bench) scenarioMemory(ctx context.Context) error {
	if b.proc == nil {
		return fmt.Errorf("%w: needs --pid or --server-cmd", errSkipped)
	}
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-time.After(3 * time.Second):
	}
	cur, peak, err := b.proc.rss()
	if err != nil {
		return err
	}
	b.rep.add("memory", "rss idle after load", mib(cur), "MiB")
	b.rep.addTarget("memory", "peak rss (VmHWM)", mib(peak), "MiB", "<=", 1024)
	b.rep.add("memory", "users in the data set", float64(len(b.users)), "users")
	b.rep.add("memory", "rooms in the data set", float64(len(b.bigRooms)+len(b.smallRooms)), "rooms")
	return nil
}
