package bus_test

// Benchmarks of one interior hop through the exported API: publish in a
// transaction, commit, receive on a subscriber of another consumer group
// (see docs/benchmarks.md).

import (
	"context"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/ThreeDotsLabs/watermill"
	wmsql "github.com/ThreeDotsLabs/watermill-sql/v4/pkg/sql"
	"github.com/ThreeDotsLabs/watermill/message"

	"handoff/pkg/bus"
	"handoff/pkg/sqldb"
	"handoff/pkg/sqldb/sqldbtest"
)

// benchPayload is about the size of an OrderSubmitted with one line.
var benchPayload = []byte(`{"operation_id":"` + strings.Repeat("x", 36) + `","lines":[{"sku":"COF-ESP-1KG","quantity":2,"note":"` + strings.Repeat("n", 150) + `"}]}`)

func benchEach(b *testing.B, fn func(b *testing.B, db *sqldb.DB)) {
	b.Run("sqlite", func(b *testing.B) { fn(b, sqldbtest.MustOpen(b, sqldbtest.SQLiteURL(b))) })
	b.Run("postgres", func(b *testing.B) { fn(b, sqldbtest.MustOpen(b, sqldbtest.PostgresURL(b))) })
}

func benchBus(b *testing.B, db *sqldb.DB, topic string) *bus.Bus {
	b.Helper()
	bs, err := bus.New(db, watermill.NopLogger{}, bus.Options{})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { bs.Close() })
	if err := bs.InitTopics(context.Background(), topic); err != nil {
		b.Fatal(err)
	}
	return bs
}

func benchPublish(b *testing.B, bs *bus.Bus, db *sqldb.DB, topic string) {
	tx, err := db.Begin()
	if err != nil {
		b.Fatal(err)
	}
	pub, err := bs.Publisher(wmsql.TxFromStdSQL(tx))
	if err != nil {
		b.Fatal(err)
	}
	if err := pub.Publish(topic, message.NewMessage(watermill.NewUUID(), benchPayload)); err != nil {
		_ = tx.Rollback()
		b.Fatal(err)
	}
	if err := tx.Commit(); err != nil {
		b.Fatal(err)
	}
}

// BenchmarkTxHop is one message at a time from BEGIN of the publishing
// transaction (publish, commit) to its arrival and ack: the whole hop as a
// handler or the submit boundary pays it, with the bus's default options
// (wake-on-write; on PostgreSQL LISTEN/NOTIFY). BenchmarkHop in
// bus_test.go times from the commit instead.
func BenchmarkTxHop(b *testing.B) {
	benchEach(b, func(b *testing.B, db *sqldb.DB) {
		const topic = "bench_hop"
		bs := benchBus(b, db, topic)
		sub, err := bs.Subscriber("bench")
		if err != nil {
			b.Fatal(err)
		}
		defer sub.Close()
		msgs, err := sub.Subscribe(context.Background(), topic)
		if err != nil {
			b.Fatal(err)
		}
		hop := func() time.Duration {
			start := time.Now()
			benchPublish(b, bs, db, topic)
			select {
			case m := <-msgs:
				m.Ack()
			case <-time.After(10 * time.Second):
				b.Fatal("no message within 10s")
			}
			return time.Since(start)
		}
		hop() // warm-up: connections, prepared plans
		lat := make([]time.Duration, 0, b.N)
		b.ResetTimer()
		for i := 0; i < b.N; i++ {
			lat = append(lat, hop())
		}
		b.StopTimer()
		slices.Sort(lat)
		b.ReportMetric(float64(lat[(len(lat)-1)/2])/1e3, "p50-µs")
		b.ReportMetric(float64(lat[(len(lat)-1)*99/100])/1e3, "p99-µs")
	})
}

// BenchmarkPublishTx is the publishing side alone: one transaction with
// one message per op, no subscriber.
func BenchmarkPublishTx(b *testing.B) {
	benchEach(b, func(b *testing.B, db *sqldb.DB) {
		const topic = "bench_publish"
		bs := benchBus(b, db, topic)
		benchPublish(b, bs, db, topic)
		b.ReportAllocs()
		b.ResetTimer()
		for i := 0; i < b.N; i++ {
			benchPublish(b, bs, db, topic)
		}
	})
}
