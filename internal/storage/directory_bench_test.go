package storage_test

import (
	"context"
	"database/sql"
	"fmt"
	"os"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/rempart-hs/rempart/internal/storage"
)

var benchFirst = []string{"Alice", "Bruno", "Camille", "Damien", "Elise", "Fabrice", "Gaelle", "Hugo", "Ines", "Jules",
	"Karim", "Lea", "Manon", "Nicolas", "Oceane", "Pierre", "Quentin", "Rose", "Sophie", "Theo"}
var benchLast = []string{"Martin", "Bernard", "Dubois", "Thomas", "Robert", "Richard", "Petit", "Durand", "Leroy", "Moreau",
	"Simon", "Laurent", "Lefebvre", "Michel", "Garcia", "David", "Bertrand", "Roux", "Vincent", "Fournier"}

// directoryBenchSizes are the user counts BenchmarkSearchUsers runs at:
// REMPART_BENCH_DIRECTORY_USERS (comma-separated, e.g. 10000,300000: the
// 300,000-user database takes a few minutes to seed), else 10,000 and
// 100,000 (1,000 and 10,000 with -short).
func directoryBenchSizes() []int {
	spec := os.Getenv("REMPART_BENCH_DIRECTORY_USERS")
	if spec == "" {
		spec = "10000,100000"
		if testing.Short() {
			spec = "1000,10000"
		}
	}
	var out []int
	for _, f := range strings.Split(spec, ",") {
		if n, err := strconv.Atoi(strings.TrimSpace(f)); err == nil && n > 0 {
			out = append(out, n)
		}
	}
	return out
}

// BenchmarkSearchUsers measures user directory search as the number of
// accounts grows: the cost must follow what the searcher may find (a
// 1,000-member room), not the server's size. Users get realistic,
// repeating names (20 first names × 20 last names).
func BenchmarkSearchUsers(b *testing.B) {
	for _, n := range directoryBenchSizes() {
		b.Run(fmt.Sprintf("users=%d", n), func(b *testing.B) {
			db := seedDirectory(b, n, 1000)
			searches := []storage.UserSearch{}
			for i := range 40 {
				fn := benchFirst[i%len(benchFirst)]
				term := strings.ToLower(fn[:min(4, len(fn))])
				if i%2 == 1 {
					term = strings.ToLower(benchLast[i%len(benchLast)])
				}
				searches = append(searches, storage.UserSearch{Terms: []string{term}, SharedWith: "@u0:bench", Exclude: "@u0:bench", Limit: 11})
			}
			for _, scope := range []string{"shared-rooms", "all-users"} {
				b.Run(scope, func(b *testing.B) {
					ctx := context.Background()
					found := 0
					cpu0 := processCPU()
					for i := 0; b.Loop(); i++ {
						s := searches[i%len(searches)]
						if scope == "all-users" {
							s.SharedWith = ""
						}
						res, err := db.SearchUsers(ctx, s)
						if err != nil {
							b.Fatal(err)
						}
						found += len(res)
					}
					// On a shared machine the CPU time per search says more
					// than the wall time (on PostgreSQL it leaves out the
					// server's share).
					b.ReportMetric(float64((processCPU()-cpu0).Nanoseconds())/float64(b.N), "cpu-ns/op")
					if found == 0 {
						b.Fatal("no search found anyone")
					}
				})
			}
		})
	}
}

// processCPU is the CPU time this process has used.
func processCPU() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// seedDirectory creates n accounts, the first roomSize of them joined to
// one room, directly through storage (registration through the API is
// bound by password hashing).
func seedDirectory(b *testing.B, n, roomSize int) *storage.DB {
	b.Helper()
	ctx := context.Background()
	db, url := openTestDB(b)
	for start := 0; start < n; start += 5000 {
		err := db.WithTx(ctx, func(tx *storage.Tx) error {
			for i := start; i < min(start+5000, n); i++ {
				lp := fmt.Sprintf("u%d", i)
				dn := benchFirst[i%len(benchFirst)] + " " + benchLast[(i/len(benchFirst))%len(benchLast)]
				if err := tx.CreateUser(ctx, storage.User{UserID: "@" + lp + ":bench", Localpart: lp, CreatedTS: 1, DisplayName: dn}); err != nil {
					return err
				}
			}
			return nil
		})
		if err != nil {
			b.Fatal(err)
		}
	}
	driver, dsn := "sqlite", "file:"+url
	if strings.HasPrefix(url, "postgres") {
		driver, dsn = "pgx", url
	}
	raw, err := sql.Open(driver, dsn)
	if err != nil {
		b.Fatal(err)
	}
	defer raw.Close()
	var vals []string
	for i := range min(roomSize, n) {
		vals = append(vals, fmt.Sprintf("('!big:bench', '@u%d:bench', 'join', '$e%d', %d)", i, i, i+1))
	}
	if _, err := raw.Exec(`INSERT INTO memberships (room_id, user_id, membership, event_id, stream_pos) VALUES ` + strings.Join(vals, ",")); err != nil {
		b.Fatal(err)
	}
	// Other users are in small rooms of their own.
	vals = vals[:0]
	for i := roomSize; i < n; i++ {
		vals = append(vals, fmt.Sprintf("('!r%d:bench', '@u%d:bench', 'join', '$f%d', %d)", i/4, i, i, i+1))
		if len(vals) == 2000 || i == n-1 {
			if _, err := raw.Exec(`INSERT INTO memberships (room_id, user_id, membership, event_id, stream_pos) VALUES ` + strings.Join(vals, ",")); err != nil {
				b.Fatal(err)
			}
			vals = vals[:0]
		}
	}
	if _, err := raw.Exec(`ANALYZE`); err != nil {
		b.Fatal(err)
	}
	return db
}
