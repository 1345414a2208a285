package interior_test

// Benchmarks of the interior through its exported API (see
// docs/benchmarks.md).

import (
	"context"
	"database/sql"
	"fmt"
	"io"
	"log/slog"
	"slices"
	"testing"
	"time"

	"github.com/ThreeDotsLabs/watermill"
	wmsql "github.com/ThreeDotsLabs/watermill-sql/v4/pkg/sql"
	"github.com/ThreeDotsLabs/watermill/message"

	"handoff/interior"
	"handoff/pkg/bus"
	"handoff/pkg/catalog"
	"handoff/pkg/envelope"
	"handoff/pkg/sqldb"
	"handoff/pkg/sqldb/sqldbtest"
)

// BenchmarkPrice is validation and pricing of a ten-line order.
func BenchmarkPrice(b *testing.B) {
	cat := catalog.Default()
	order := envelope.OrderSubmitted{OperationID: "op"}
	for i := range 10 {
		order.Lines = append(order.Lines, envelope.Line{SKU: cat.Products[i%len(cat.Products)].SKU, Quantity: 1 + i})
	}
	b.ReportAllocs()
	for b.Loop() {
		if _, reason := interior.Price(cat, order); reason != nil {
			b.Fatal(reason)
		}
	}
}

// BenchmarkWorkflow is one submitted order at a time through the whole
// interior: OrderSubmitted published in a committed transaction, then every
// step of the workflow (validate and price, reserve stock, the payment
// outside the consume transaction with the simulated provider at zero
// latency, confirm), until the completed status event is received on
// operation.status, the hop the edge's projection makes. ns/op is
// submit-to-completed without the edge.
func BenchmarkWorkflow(b *testing.B) {
	run := func(b *testing.B, url string) {
		ctx := context.Background()
		db := sqldbtest.MustOpen(b, url)
		bs, err := bus.New(db, watermill.NopLogger{}, bus.Options{})
		if err != nil {
			b.Fatal(err)
		}
		b.Cleanup(func() { bs.Close() })
		if err := interior.Migrate(ctx, db, bs); err != nil {
			b.Fatal(err)
		}
		// The catalog seeds a few thousand units of stock; a long run would
		// use them up and fail its orders as out of stock.
		if _, err := db.ExecContext(ctx, `UPDATE stock SET available = 1000000000`); err != nil {
			b.Fatal(err)
		}
		in, err := interior.New(db, bs, slog.New(slog.NewTextHandler(io.Discard, nil)), interior.Config{})
		if err != nil {
			b.Fatal(err)
		}
		done := make(chan error, 1)
		go func() { done <- in.Run(ctx) }()
		b.Cleanup(func() { in.Close(); <-done })
		select {
		case <-in.Running():
		case err := <-done:
			b.Fatalf("interior stopped: %v", err)
		}
		sub, err := bs.Subscriber("bench.watch")
		if err != nil {
			b.Fatal(err)
		}
		defer sub.Close()
		statuses, err := sub.Subscribe(ctx, envelope.TopicOperationStatus)
		if err != nil {
			b.Fatal(err)
		}
		order := func(i int) time.Duration {
			opID := fmt.Sprintf("bench-op-%d", i)
			msg, err := envelope.New(envelope.SubmitID(opID, 1), envelope.TypeOrderSubmitted, opID, envelope.OrderSubmitted{
				OperationID: opID, DraftID: "draft-" + opID, TeamID: "team", Revision: 1,
				Lines: []envelope.Line{{SKU: "COF-ESP-1KG", Quantity: 2}, {SKU: "MLK-OAT-1L", Quantity: 3}},
			})
			if err != nil {
				b.Fatal(err)
			}
			start := time.Now()
			benchPublishTx(b, db, bs, envelope.TopicOrderSubmitted, msg)
			timeout := time.After(10 * time.Second)
			for {
				select {
				case m := <-statuses:
					var ev envelope.StatusChanged
					if err := envelope.Decode(m, envelope.TypeStatusChanged, &ev); err != nil {
						b.Fatal(err)
					}
					m.Ack()
					if ev.OperationID != opID || ev.Outcome == "" {
						continue
					}
					if ev.Outcome != envelope.OpCompleted {
						b.Fatalf("operation %s: %+v", opID, ev)
					}
					return time.Since(start)
				case <-timeout:
					b.Fatalf("operation %s did not complete within 10s", opID)
				}
			}
		}
		order(-1) // warm-up
		lat := make([]time.Duration, 0, b.N)
		b.ResetTimer()
		for i := 0; i < b.N; i++ {
			lat = append(lat, order(i))
		}
		b.StopTimer()
		slices.Sort(lat)
		b.ReportMetric(float64(lat[(len(lat)-1)/2])/1e3, "p50-µs")
		b.ReportMetric(float64(lat[(len(lat)-1)*99/100])/1e3, "p99-µs")
	}
	b.Run("sqlite", func(b *testing.B) { run(b, sqldbtest.SQLiteURL(b)) })
	b.Run("postgres", func(b *testing.B) { run(b, sqldbtest.PostgresURL(b)) })
}

func benchPublishTx(b *testing.B, db *sqldb.DB, bs *bus.Bus, topic string, msgs ...*message.Message) {
	err := db.InTx(context.Background(), func(tx *sql.Tx) error {
		pub, err := bs.Publisher(wmsql.TxFromStdSQL(tx))
		if err != nil {
			return err
		}
		return pub.Publish(topic, msgs...)
	})
	if err != nil {
		b.Fatal(err)
	}
}
