// Command rempart-walpages reports which tables and indexes the commits of
// a SQLite database wrote: for the transactions still in its write-ahead
// log, the distinct pages each wrote, by B-tree. On SQLite every page a
// transaction changes is written whole to the log and synced at its
// commit, so pages per commit is what a write costs the single writer.
//
//	rempart-walpages [--commits N] [--json] DATA_DIR/rempart.db
//
// It reads the log while the server runs (a reader like any other); the
// log holds the transactions since it last started again from its
// beginning (see internal/storage/checkpoint.go), so run it under the load
// to study. docs/BENCHMARKS.md shows its use.
package main

import (
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"os"
)

func main() {
	if err := run(os.Args[1:], os.Stdout); err != nil {
		fmt.Fprintln(os.Stderr, "rempart-walpages:", err)
		os.Exit(1)
	}
}

func run(args []string, out io.Writer) error {
	fs := flag.NewFlagSet("rempart-walpages", flag.ContinueOnError)
	n := fs.Int("commits", 0, "only the last N commits of the log (0: all)")
	asJSON := fs.Bool("json", false, "print JSON")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() != 1 {
		return fmt.Errorf("usage: rempart-walpages [--commits N] [--json] DATABASE")
	}
	dbPath := fs.Arg(0)
	// The log first: pages it lists were allocated before dbstat reads
	// the tree they belong to.
	pageSize, commits, err := readWAL(dbPath + "-wal")
	if err != nil {
		return err
	}
	owners, err := pageOwners(dbPath)
	if err != nil {
		return err
	}
	r := analyse(pageSize, commits, owners, *n)
	if *asJSON {
		enc := json.NewEncoder(out)
		enc.SetIndent("", "  ")
		return enc.Encode(r)
	}
	fmt.Fprintf(out, "%d commits, %.1f pages of %d bytes per commit\n", r.Commits, r.PagesPerCommit, r.PageSize)
	for _, t := range r.Trees {
		fmt.Fprintf(out, "%-40s %9.2f %6.1f%%\n", t.Name, t.PerCommit, 100*t.Share)
	}
	return nil
}
