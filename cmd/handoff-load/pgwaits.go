package main

import (
	"context"
	"database/sql"
	"fmt"
	"slices"
	"strings"
	"sync"
	"time"
)

// waitSampler samples what the server's PostgreSQL sessions are doing
// (pg_stat_activity wait events of sessions in a transaction or running a
// statement) every 100 ms during a measured window: where the database
// side of the latency goes, without touching the server.
type waitSampler struct {
	cancel context.CancelFunc
	done   chan struct{}
	mu     sync.Mutex
	counts map[string]int
	polls  int
	// foreign counts the polls that found another database's transaction
	// holding back the xmin horizon.
	foreign int
}

// startWaits samples the database at url; nil for SQLite.
func startWaits(c *child) *waitSampler {
	if c.Backend != "postgres" {
		return nil
	}
	db, err := sql.Open("pgx", c.DBURL)
	if err != nil {
		return nil
	}
	ctx, cancel := context.WithCancel(context.Background())
	w := &waitSampler{cancel: cancel, done: make(chan struct{}), counts: map[string]int{}}
	go func() {
		defer close(w.done)
		defer db.Close()
		db.SetMaxOpenConns(1)
		t := time.NewTicker(100 * time.Millisecond)
		defer t.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case <-t.C:
			}
			rows, err := db.QueryContext(ctx, `SELECT coalesce(wait_event_type, 'CPU'), coalesce(wait_event, 'running'), state
				FROM pg_stat_activity WHERE datname = current_database() AND pid <> pg_backend_pid()
				AND backend_type = 'client backend' AND state IN ('active', 'idle in transaction')`)
			if err != nil {
				continue
			}
			w.mu.Lock()
			w.polls++
			for rows.Next() {
				var typ, ev, state string
				if rows.Scan(&typ, &ev, &state) == nil {
					if state == "idle in transaction" {
						ev += "(in tx)"
					}
					w.counts[typ+":"+ev]++
				}
			}
			w.mu.Unlock()
			rows.Close()
			// Transactions of other databases older than 100 ms hold back
			// the cluster-wide xmin horizon that watermill-sql delivers by.
			var foreign int
			if db.QueryRowContext(ctx, `SELECT count(*) FROM pg_stat_activity WHERE datname IS DISTINCT FROM current_database()
				AND (backend_xid IS NOT NULL OR backend_xmin IS NOT NULL) AND xact_start < now() - interval '100 milliseconds'`).Scan(&foreign) == nil && foreign > 0 {
				w.mu.Lock()
				w.foreign++
				w.mu.Unlock()
			}
		}
	}()
	return w
}

// stop ends the sampling and describes it: the average number of sessions
// in each wait state over the window, busiest first.
func (w *waitSampler) stop() string {
	if w == nil {
		return ""
	}
	w.cancel()
	<-w.done
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.polls == 0 {
		return ""
	}
	type kv struct {
		k string
		n int
	}
	var all []kv
	total := 0
	for k, n := range w.counts {
		all = append(all, kv{k, n})
		total += n
	}
	slices.SortFunc(all, func(a, b kv) int { return b.n - a.n })
	var parts []string
	for i, e := range all {
		if i == 8 {
			break
		}
		parts = append(parts, fmt.Sprintf("%s=%.2f", e.k, float64(e.n)/float64(w.polls)))
	}
	out := fmt.Sprintf("pg sessions busy on average %.2f: %s", float64(total)/float64(w.polls), strings.Join(parts, " "))
	if w.foreign > 0 {
		out += fmt.Sprintf("; other databases' transactions held the xmin horizon in %.0f%% of samples", 100*float64(w.foreign)/float64(w.polls))
	}
	return out
}

// horizonHolders describes the transactions of other databases on the same
// PostgreSQL server that have been open for over a second. watermill-sql's
// default PostgreSQL schema delivers only rows older than the snapshot's
// xmin, which is cluster-wide: one such transaction anywhere holds back
// every handoff subscriber until it ends, and the figures with it.
func horizonHolders(ctx context.Context, c *child) string {
	return withPG(ctx, c, func(qctx context.Context, db *sql.DB) string {
		rows, err := db.QueryContext(qctx, `SELECT pid, coalesce(datname, ''), coalesce(application_name, ''), coalesce(state, ''),
			extract(epoch FROM now() - xact_start)::float8
		FROM pg_stat_activity
		WHERE datname IS DISTINCT FROM current_database() AND (backend_xid IS NOT NULL OR backend_xmin IS NOT NULL)
		AND xact_start < now() - interval '1 second' ORDER BY xact_start LIMIT 3`)
		if err != nil {
			return ""
		}
		defer rows.Close()
		var out []string
		for rows.Next() {
			var pid int
			var db, app, state string
			var age float64
			if rows.Scan(&pid, &db, &app, &state, &age) == nil {
				out = append(out, fmt.Sprintf("pid %d (database %s, %s, %s) open %.0fs", pid, db, app, state, age))
			}
		}
		if len(out) == 0 {
			return ""
		}
		return "transactions of other databases hold back the cluster's xmin horizon: " + strings.Join(out, "; ")
	})
}

// pgBacklog counts, for every consumer group of every topic, the messages
// not yet acknowledged: taken at the end of a step it shows which stage of
// the pipeline falls behind.
func pgBacklog(ctx context.Context, c *child) string {
	return withPG(ctx, c, func(qctx context.Context, db *sql.DB) string {
		rows, err := db.QueryContext(qctx, `SELECT substr(tablename, length('watermill_offsets_') + 1) FROM pg_tables
		WHERE schemaname = current_schema() AND tablename LIKE 'watermill\_offsets\_%' ORDER BY 1`)
		if err != nil {
			return ""
		}
		var topics []string
		for rows.Next() {
			var t string
			if rows.Scan(&t) == nil {
				topics = append(topics, t)
			}
		}
		rows.Close()
		var parts []string
		for _, t := range topics {
			q := fmt.Sprintf(`SELECT o.consumer_group, (SELECT count(*) FROM %q m WHERE m."offset" > o.offset_acked)
			FROM %q o ORDER BY 1`, "watermill_"+t, "watermill_offsets_"+t)
			r, err := db.QueryContext(qctx, q)
			if err != nil {
				continue
			}
			for r.Next() {
				var group string
				var n int64
				if r.Scan(&group, &n) == nil {
					parts = append(parts, fmt.Sprintf("%s/%s=%d", t, group, n))
				}
			}
			r.Close()
		}
		if len(parts) == 0 {
			return ""
		}
		return "unacked messages at the end of the step: " + strings.Join(parts, " ")
	})
}

// withPG runs fn with a connection to a PostgreSQL child's database and a
// 5 s deadline; it returns "" for a SQLite child or when the database
// cannot be opened.
func withPG(ctx context.Context, c *child, fn func(ctx context.Context, db *sql.DB) string) string {
	if c.Backend != "postgres" {
		return ""
	}
	db, err := sql.Open("pgx", c.DBURL)
	if err != nil {
		return ""
	}
	defer db.Close()
	qctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	return fn(qctx, db)
}
