package wmx_test

import (
	"context"
	"slices"
	"testing"
	"time"

	"github.com/ThreeDotsLabs/watermill"
	wmsql "github.com/ThreeDotsLabs/watermill-sql/v4/pkg/sql"
	"github.com/ThreeDotsLabs/watermill/message"

	"handoff/pkg/bus"
	"handoff/pkg/sqldb"
	"handoff/pkg/sqldb/sqldbtest"
	"handoff/pkg/wmx"
)

const dedupTable = "test_dedup"

// TestPruneDedup records two keys, ages one past the window and prunes:
// the old key is gone, so its message would count as new, while a
// duplicate of the recent one is still caught.
func TestPruneDedup(t *testing.T) {
	sqldbtest.Each(t, func(t *testing.T, url string) {
		ctx := context.Background()
		db := sqldbtest.MustOpen(t, url)
		if _, err := db.Exec(wmx.DedupTableSQL(dedupTable)); err != nil {
			t.Fatal(err)
		}
		repo := wmx.DedupRepository{Dialect: db.Dialect, Table: dedupTable}
		consume := consumer(t, db)

		consume(func(ctx context.Context) {
			for _, key := range []string{"h/old", "h/recent"} {
				if dup, err := repo.IsDuplicate(ctx, key); err != nil || dup {
					t.Fatalf("first %s: duplicate %v, %v", key, dup, err)
				}
			}
		})
		// Written by the database's clock: as old as the database says now.
		var skew int64
		if err := db.QueryRow(`SELECT max(processed_at) - ` + db.Dialect.NowMillis() + ` FROM ` + dedupTable).Scan(&skew); err != nil {
			t.Fatal(err)
		}
		if skew < -5000 || skew > 0 {
			t.Errorf("processed_at is %dms from the database's clock", skew)
		}

		if _, err := db.Exec(db.Q(`UPDATE `+dedupTable+` SET processed_at = processed_at - $1 WHERE key = $2`), (2 * time.Hour).Milliseconds(), "h/old"); err != nil {
			t.Fatal(err)
		}
		deleted, err := wmx.PruneDedup(ctx, db, dedupTable, time.Hour, 1)
		if err != nil || deleted != 1 {
			t.Fatalf("pruned %d (%v), want the old key", deleted, err)
		}
		if got := keys(t, db); !slices.Equal(got, []string{"h/recent"}) {
			t.Fatalf("keys left: %q", got)
		}

		consume(func(ctx context.Context) {
			if dup, err := repo.IsDuplicate(ctx, "h/recent"); err != nil || !dup {
				t.Errorf("duplicate inside the window not caught: %v, %v", dup, err)
			}
			if dup, err := repo.IsDuplicate(ctx, "h/old"); err != nil || dup {
				t.Errorf("key older than the window still there: %v, %v", dup, err)
			}
		})
	})
}

// TestPruneDedupInBatches deletes more keys than one batch holds.
func TestPruneDedupInBatches(t *testing.T) {
	sqldbtest.Each(t, func(t *testing.T, url string) {
		db := sqldbtest.MustOpen(t, url)
		if _, err := db.Exec(wmx.DedupTableSQL(dedupTable)); err != nil {
			t.Fatal(err)
		}
		for range 25 {
			if _, err := db.Exec(db.Q(`INSERT INTO `+dedupTable+` (key, processed_at) VALUES ($1, 0)`), watermill.NewUUID()); err != nil {
				t.Fatal(err)
			}
		}
		if _, err := db.Exec(`INSERT INTO ` + dedupTable + ` (key, processed_at) VALUES ('fresh', ` + db.Dialect.NowMillis() + `)`); err != nil {
			t.Fatal(err)
		}
		deleted, err := wmx.PruneDedup(context.Background(), db, dedupTable, time.Hour, 10)
		if err != nil || deleted != 25 {
			t.Fatalf("pruned %d (%v), want 25", deleted, err)
		}
		if got := keys(t, db); !slices.Equal(got, []string{"fresh"}) {
			t.Fatalf("keys left: %q", got)
		}
	})
}

func TestPruneDedupRejectsBadArguments(t *testing.T) {
	db := sqldbtest.MustOpen(t, sqldbtest.SQLiteURL(t))
	ctx := context.Background()
	for _, table := range []string{"", "x; DROP TABLE y", `"quoted"`} {
		if _, err := wmx.PruneDedup(ctx, db, table, time.Hour, 10); err == nil {
			t.Errorf("table %q accepted", table)
		}
	}
	if _, err := wmx.PruneDedup(ctx, db, dedupTable, -time.Hour, 10); err == nil {
		t.Error("negative age accepted")
	}
	if _, err := wmx.PruneDedup(ctx, db, dedupTable, time.Hour, 0); err == nil {
		t.Error("zero batch accepted")
	}
}

// consumer returns a function that runs fn inside the consume transaction
// of a fresh message, as the Deduplicator does, and returns once that
// transaction has committed.
func consumer(t *testing.T, db *sqldb.DB) func(fn func(ctx context.Context)) {
	b, err := bus.New(db, watermill.NopLogger{}, bus.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = b.Close() })
	if err := b.InitTopics(context.Background(), "dedup"); err != nil {
		t.Fatal(err)
	}
	pub, err := b.Publisher(wmsql.BeginnerFromStdSQL(db.DB))
	if err != nil {
		t.Fatal(err)
	}
	return func(fn func(ctx context.Context)) {
		sub, err := b.Subscriber("g")
		if err != nil {
			t.Fatal(err)
		}
		defer func() { _ = sub.Close() }()
		msgs, err := sub.Subscribe(context.Background(), "dedup")
		if err != nil {
			t.Fatal(err)
		}
		if err := pub.Publish("dedup", message.NewMessage(watermill.NewUUID(), []byte("{}"))); err != nil {
			t.Fatal(err)
		}
		select {
		case m := <-msgs:
			fn(m.Context())
			m.Ack()
		case <-time.After(10 * time.Second):
			t.Fatal("no message to consume")
		}
		// Close returns once the acked batch has committed.
		if err := sub.Close(); err != nil {
			t.Fatal(err)
		}
	}
}

func keys(t *testing.T, db *sqldb.DB) []string {
	t.Helper()
	rows, err := db.Query(`SELECT key FROM ` + dedupTable + ` ORDER BY key`)
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	var out []string
	for rows.Next() {
		var k string
		if err := rows.Scan(&k); err != nil {
			t.Fatal(err)
		}
		out = append(out, k)
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	return out
}
