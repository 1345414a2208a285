// Package bustest helps tests look at what the bus holds.
package bustest

import (
	"context"
	"database/sql"
	"fmt"
	"testing"
	"time"

	wmsql "github.com/ThreeDotsLabs/watermill-sql/v4/pkg/sql"
	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/google/uuid"

	"handoff/pkg/bus"
	"handoff/pkg/sqldb"
)

// Drain returns every message on a topic up to now, from its start: it
// reads as a new consumer group while it writes a marker, and stops at the
// marker. Reading goes on while the marker is written, because on SQLite a
// fetched message holds the write lock until it is read.
func Drain(tb testing.TB, b *bus.Bus, db *sqldb.DB, topic string) []*message.Message {
	tb.Helper()
	sub, err := b.Subscriber("drain-" + uuid.NewString())
	if err != nil {
		tb.Fatal(err)
	}
	defer sub.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	ch, err := sub.Subscribe(ctx, topic)
	if err != nil {
		tb.Fatal(err)
	}
	marker := message.NewMessage(uuid.NewString(), []byte(`{}`))
	got := make(chan []*message.Message, 1)
	go func() {
		var out []*message.Message
		for {
			select {
			case m := <-ch:
				m.Ack()
				if m.UUID == marker.UUID {
					got <- out
					return
				}
				out = append(out, m)
			case <-ctx.Done():
				got <- nil
				return
			}
		}
	}()
	Publish(tb, b, db, topic, marker)
	out := <-got
	if out == nil && ctx.Err() != nil {
		tb.Fatalf("the marker never arrived on %s", topic)
	}
	return out
}

// Publish writes msgs to a topic in one transaction of their own.
func Publish(tb testing.TB, b *bus.Bus, db *sqldb.DB, topic string, msgs ...*message.Message) {
	tb.Helper()
	err := db.InTx(context.Background(), func(tx *sql.Tx) error {
		pub, err := b.Publisher(wmsql.TxFromStdSQL(tx))
		if err != nil {
			return err
		}
		return pub.Publish(topic, msgs...)
	})
	if err != nil {
		tb.Fatal(fmt.Errorf("publish to %s: %w", topic, err))
	}
}
