package sqldb

import (
	"context"
	"database/sql"
	"fmt"
	"path/filepath"
	"runtime"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// BenchmarkWriteTx runs small write transactions (an insert and an update,
// like an edit) through the write gate and without it, where writers meet in
// SQLite's sleeping busy handler instead. Besides ns/op it reports the p50
// and p99 of one transaction, BEGIN to COMMIT.
//
//   - serial: one goroutine, the cost of the wrapper itself;
//   - closed: every goroutine writes back to back, the database saturated;
//   - paced: the goroutines together start 4000 transactions a second, a
//     fraction of what the file takes, as the edge's load does; this is
//     where a collision that sleeps in the busy handler shows in the p99.
func BenchmarkWriteTx(b *testing.B) {
	for _, gated := range []bool{true, false} {
		b.Run(fmt.Sprintf("serial/gated=%t", gated), func(b *testing.B) { benchWriteTx(b, gated, 0, 0) })
	}
	for _, par := range []int{1, 4, 16} {
		for _, gated := range []bool{true, false} {
			name := fmt.Sprintf("closed/writers=%d/gated=%t", par*runtime.GOMAXPROCS(0), gated)
			b.Run(name, func(b *testing.B) { benchWriteTx(b, gated, par, 0) })
		}
	}
	for _, par := range []int{4, 16} {
		for _, gated := range []bool{true, false} {
			name := fmt.Sprintf("paced/writers=%d/gated=%t", par*runtime.GOMAXPROCS(0), gated)
			b.Run(name, func(b *testing.B) { benchWriteTx(b, gated, par, 4000) })
		}
	}
}

// benchWriteTx runs b.N transactions: from one goroutine when par is 0,
// else from par*GOMAXPROCS goroutines, together starting rate a second when
// rate is above 0 and back to back otherwise.
func benchWriteTx(b *testing.B, gated bool, par, rate int) {
	ctx := context.Background()
	path := filepath.Join(b.TempDir(), "bench.db")
	driverName := "sqlite"
	if gated {
		driverName = SQLiteDriver
	}
	db, err := sql.Open(driverName, SQLiteDSN(path))
	if err != nil {
		b.Fatal(err)
	}
	defer db.Close()
	for _, q := range []string{
		`PRAGMA journal_mode=WAL`,
		`CREATE TABLE drafts (id INTEGER PRIMARY KEY, revision INTEGER NOT NULL)`,
		`CREATE TABLE ops (id INTEGER PRIMARY KEY AUTOINCREMENT, draft INTEGER NOT NULL, body TEXT NOT NULL)`,
		`WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 100) INSERT INTO drafts (id, revision) SELECT i, 0 FROM n`,
	} {
		if _, err := db.ExecContext(ctx, q); err != nil {
			b.Fatal(err)
		}
	}

	writeTx := func(n int) error {
		draft := n%100 + 1
		tx, err := db.BeginTx(ctx, nil)
		if err != nil {
			return err
		}
		defer tx.Rollback()
		if _, err := tx.ExecContext(ctx, `INSERT INTO ops (draft, body) VALUES (?, ?)`, draft, "hello"); err != nil {
			return err
		}
		if _, err := tx.ExecContext(ctx, `UPDATE drafts SET revision = revision + 1 WHERE id = ?`, draft); err != nil {
			return err
		}
		return tx.Commit()
	}

	var (
		mu   sync.Mutex
		lats []time.Duration
		fail error
	)
	b.ResetTimer()
	if par == 0 {
		lats = make([]time.Duration, 0, b.N)
		for n := 0; n < b.N; n++ {
			start := time.Now()
			if err := writeTx(n); err != nil {
				b.Fatal(err)
			}
			lats = append(lats, time.Since(start))
		}
	} else {
		writers := par * runtime.GOMAXPROCS(0)
		var interval time.Duration
		if rate > 0 {
			interval = time.Duration(writers) * time.Second / time.Duration(rate)
		}
		var started atomic.Int64
		b.SetParallelism(par)
		b.RunParallel(func(pb *testing.PB) {
			var mine []time.Duration
			// Spread the goroutines' schedules over one interval.
			next := time.Now().Add(time.Duration(started.Add(1)) * interval / time.Duration(writers))
			for n := 0; pb.Next(); n++ {
				if interval > 0 {
					time.Sleep(time.Until(next)) // pacing, returns at once when behind
					next = next.Add(interval)
				}
				start := time.Now()
				err := writeTx(n)
				mine = append(mine, time.Since(start))
				if err != nil {
					mu.Lock()
					fail = err
					mu.Unlock()
					return
				}
			}
			mu.Lock()
			lats = append(lats, mine...)
			mu.Unlock()
		})
	}
	b.StopTimer()
	if fail != nil {
		b.Fatal(fail)
	}
	slices.Sort(lats)
	if len(lats) > 0 {
		b.ReportMetric(float64(lats[len(lats)/2].Microseconds()), "p50-µs")
		b.ReportMetric(float64(lats[len(lats)*99/100].Microseconds()), "p99-µs")
	}
}
