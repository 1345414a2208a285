package bus_test

import (
	"testing"
	"time"

	wmsql "github.com/ThreeDotsLabs/watermill-sql/v4/pkg/sql"

	"handoff/pkg/bus"
	"handoff/pkg/sqldb/sqldbtest"
)

// TestCloseRollsBackAnOverrunningHandler closes a subscriber while its
// handler holds a message it never acks, after writing through the consume
// transaction. watermill-sql alone would commit that write without the ack;
// the bus waits out its grace and rolls it back, and the message comes back.
func TestCloseRollsBackAnOverrunningHandler(t *testing.T) {
	sqldbtest.Each(t, func(t *testing.T, url string) {
		b, db := newBus(t, url, bus.Options{}, "jobs")
		if _, err := db.Exec(`CREATE TABLE side_effects (id TEXT NOT NULL)`); err != nil {
			t.Fatal(err)
		}
		msgs, closeSub := openSub(t, b, "g", "jobs")
		publish(t, b, db, "jobs", "job")
		m := receiveNoAck(t, msgs)
		tx, ok := wmsql.TxFromContext(m.Context())
		if !ok {
			t.Fatal("no consume transaction")
		}
		if _, err := tx.ExecContext(m.Context(), db.Q(`INSERT INTO side_effects (id) VALUES ($1)`), "half done"); err != nil {
			t.Fatal(err)
		}
		closeSub()
		if m.Context().Err() == nil {
			t.Error("message context still live after Close")
		}
		var n int
		if err := db.QueryRow(`SELECT count(*) FROM side_effects`).Scan(&n); err != nil {
			t.Fatal(err)
		}
		if n != 0 {
			t.Errorf("%d writes of the unacked attempt committed", n)
		}
		again, _ := openSub(t, b, "g", "jobs")
		if m := receive(t, again, 10*time.Second); string(m.Payload) != "job" {
			t.Fatalf("redelivered %q", m.Payload)
		}
	})
}

// TestCloseKeepsAnAckGivenJustBefore acks a message and closes at once: the
// ack must be committed by the time Close returns, so the message is not
// delivered again.
func TestCloseKeepsAnAckGivenJustBefore(t *testing.T) {
	sqldbtest.Each(t, func(t *testing.T, url string) {
		b, db := newBus(t, url, bus.Options{}, "jobs")
		msgs, closeSub := openSub(t, b, "g", "jobs")
		publish(t, b, db, "jobs", "job")
		receive(t, msgs, 10*time.Second)
		closeSub()
		again, _ := openSub(t, b, "g", "jobs")
		read := startReading(again, 1)
		publish(t, b, db, "jobs", "marker")
		wantRead(t, read, "marker")
	})
}
