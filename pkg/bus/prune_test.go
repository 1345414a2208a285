package bus_test

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
)

// TestPruneDeletesWhatEveryGroupAcked builds a topic holding every case:
// old messages acked by both groups, a recent one acked by both, old ones
// acked by one group only, an old one acked by nobody; and a topic without
// groups. Only the first kind may go, and both groups must carry on as if
// nothing had happened.
func TestPruneDeletesWhatEveryGroupAcked(t *testing.T) {
	sqldbtest.Each(t, func(t *testing.T, url string) {
		ctx := context.Background()
		b, db := newBus(t, url, bus.Options{}, "orders", "lonely")

		a, closeA := openSub(t, b, "a", "orders")
		g, closeG := openSub(t, b, "b", "orders")
		old := []string{"o0", "o1", "o2", "o3", "o4", "o5", "o6", "o7", "o8", "o9"}
		readA, readG := startReading(a, len(old)), startReading(g, len(old))
		oldIDs := publish(t, b, db, "orders", old...)
		wantRead(t, readA, old...)
		wantRead(t, readG, old...)

		readA, readG = startReading(a, 1), startReading(g, 1)
		publish(t, b, db, "orders", "recent")
		wantRead(t, readA, "recent")
		wantRead(t, readG, "recent")
		closeG() // commits its acks: group b stops after "recent"

		readA = startReading(a, 3)
		onlyAIDs := publish(t, b, db, "orders", "u0", "u1", "u2")
		wantRead(t, readA, "u0", "u1", "u2")
		closeA()
		nobodyIDs := publish(t, b, db, "orders", "n0")
		lonelyIDs := publish(t, b, db, "lonely", "l0", "l1")

		backdate(t, db, "orders", slices.Concat(oldIDs, onlyAIDs, nobodyIDs)...)
		backdate(t, db, "lonely", lonelyIDs...)
		deleted, err := b.Prune(ctx, time.Hour, 3, "orders", "lonely")
		if err != nil {
			t.Fatal(err)
		}
		if deleted != int64(len(old)) {
			t.Errorf("pruned %d messages, want the %d old ones acked by both groups", deleted, len(old))
		}
		wantStored(t, db, "orders", "recent", "u0", "u1", "u2", "n0")
		wantStored(t, db, "lonely", "l0", "l1")
		if deleted, err := b.Prune(ctx, time.Hour, 3, "orders", "lonely"); err != nil || deleted != 0 {
			t.Errorf("second prune deleted %d (%v), want 0", deleted, err)
		}

		// Each group resumes where it stopped: nothing pruned comes back,
		// nothing kept is skipped, and new messages follow.
		a, closeA = openSub(t, b, "a", "orders")
		g, closeG = openSub(t, b, "b", "orders")
		readA, readG = startReading(a, 2), startReading(g, 5)
		publish(t, b, db, "orders", "after")
		wantRead(t, readA, "n0", "after")
		wantRead(t, readG, "u0", "u1", "u2", "n0", "after")
		closeA()
		closeG()

		// Everything acked by both and old: the table empties, and the
		// offsets of deleted rows are never handed out again, so a new
		// message is not mistaken for one already acked.
		backdateAll(t, db, "orders")
		if deleted, err := b.Prune(ctx, time.Hour, 2, "orders"); err != nil || deleted != 6 {
			t.Errorf("pruned %d (%v), want all 6 left", deleted, err)
		}
		wantStored(t, db, "orders")
		a, _ = openSub(t, b, "a", "orders")
		readA = startReading(a, 1)
		publish(t, b, db, "orders", "last")
		wantRead(t, readA, "last")
	})
}

// TestPruneKeepsMessagesOfAGroupThatHasNotAcked subscribes a group that
// acks nothing before it goes away: its messages must wait for it, on
// SQLite too, where the adapter itself records a group only at its first
// ack.
func TestPruneKeepsMessagesOfAGroupThatHasNotAcked(t *testing.T) {
	sqldbtest.Each(t, func(t *testing.T, url string) {
		ctx := context.Background()
		b, db := newBus(t, url, bus.Options{}, "orders")
		_, closeIdle := openSub(t, b, "idle", "orders")
		closeIdle()
		a, closeA := openSub(t, b, "a", "orders")
		readA := startReading(a, 3)
		publish(t, b, db, "orders", "m0", "m1", "m2")
		wantRead(t, readA, "m0", "m1", "m2")
		closeA()

		backdateAll(t, db, "orders")
		if deleted, err := b.Prune(ctx, time.Hour, 10, "orders"); err != nil || deleted != 0 {
			t.Fatalf("pruned %d (%v) messages that group idle has not read", deleted, err)
		}
		idle, _ := openSub(t, b, "idle", "orders")
		wantRead(t, startReading(idle, 3), "m0", "m1", "m2")
	})
}

// TestPruneFollowsPostgresTransactionOrder makes the default PostgreSQL
// schema's consume order differ from offset order: a transaction takes its
// id, another publishes and commits, then the first publishes. The first
// one's row has the higher offset but is consumed first. A group that has
// acked it but not the other must keep the other, although its offset is
// lower than the group's offset_acked.
func TestPruneFollowsPostgresTransactionOrder(t *testing.T) {
	ctx := context.Background()
	b, db := newBus(t, sqldbtest.PostgresURL(t), bus.Options{BatchSize: 1}, "orders")
	early, err := db.Begin()
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = early.Rollback() }()
	if _, err := early.Exec(`SELECT pg_current_xact_id()`); err != nil {
		t.Fatal(err)
	}
	lateIDs := publish(t, b, db, "orders", "late")
	pub, err := b.Publisher(wmsql.TxFromStdSQL(early))
	if err != nil {
		t.Fatal(err)
	}
	earlyID := watermill.NewUUID()
	if err := pub.Publish("orders", message.NewMessage(earlyID, []byte("early"))); err != nil {
		t.Fatal(err)
	}
	if err := early.Commit(); err != nil {
		t.Fatal(err)
	}
	if offsetOf(t, db, earlyID) <= offsetOf(t, db, lateIDs[0]) {
		t.Fatal("setup: the early transaction's row does not have the higher offset")
	}

	msgs, closeSub := openSub(t, b, "g", "orders")
	if m := receive(t, msgs, 10*time.Second); string(m.Payload) != "early" {
		t.Fatalf("first delivery is %q, want the early transaction's", m.Payload)
	}
	// With batches of one, "early" was acked and committed before "late"
	// was fetched; "late" stays unacked while Prune runs.
	late := receiveNoAck(t, msgs)
	if string(late.Payload) != "late" {
		t.Fatalf("second delivery is %q", late.Payload)
	}
	backdateAll(t, db, "orders")
	if deleted, err := b.Prune(ctx, time.Hour, 10, "orders"); err != nil || deleted != 1 {
		t.Fatalf("pruned %d (%v), want only the early row", deleted, err)
	}
	wantStored(t, db, "orders", "late")
	late.Ack()
	closeSub()
	if deleted, err := b.Prune(ctx, time.Hour, 10, "orders"); err != nil || deleted != 1 {
		t.Fatalf("pruned %d (%v) after the ack, want the late row", deleted, err)
	}
	wantStored(t, db, "orders")
}

func TestPruneRejectsBadArguments(t *testing.T) {
	b, _ := newBus(t, sqldbtest.SQLiteURL(t), bus.Options{}, "orders")
	ctx := context.Background()
	if _, err := b.Prune(ctx, -time.Second, 10, "orders"); err == nil {
		t.Error("negative age accepted")
	}
	if _, err := b.Prune(ctx, time.Hour, 0, "orders"); err == nil {
		t.Error("zero batch accepted")
	}
	if _, err := b.Prune(ctx, time.Hour, 10, `x";--`); err == nil {
		t.Error("invalid topic accepted")
	}
}

// openSub subscribes group to topic and returns the messages and a close
// function; closing commits the acks so far. Cleanup closes it too.
func openSub(tb testing.TB, b *bus.Bus, group, topic string) (<-chan *message.Message, func()) {
	tb.Helper()
	sub, err := b.Subscriber(group)
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { _ = sub.Close() })
	msgs, err := sub.Subscribe(context.Background(), topic)
	if err != nil {
		tb.Fatal(err)
	}
	return msgs, func() {
		if err := sub.Close(); err != nil {
			tb.Error(err)
		}
	}
}

// startReading acks and collects up to n payloads in the background. Readers
// start before publishing: on SQLite a fetched message that nobody reads
// keeps the write lock and the publish would wait for it.
func startReading(msgs <-chan *message.Message, n int) <-chan []string {
	done := make(chan []string, 1)
	go func() {
		var got []string
		timeout := time.After(10 * time.Second)
		for len(got) < n {
			select {
			case m, ok := <-msgs:
				if !ok {
					done <- got
					return
				}
				m.Ack()
				got = append(got, string(m.Payload))
			case <-timeout:
				done <- got
				return
			}
		}
		done <- got
	}()
	return done
}

func wantRead(tb testing.TB, read <-chan []string, want ...string) {
	tb.Helper()
	if got := <-read; !slices.Equal(got, want) {
		tb.Fatalf("received %q, want %q", got, want)
	}
}

func receiveNoAck(tb testing.TB, msgs <-chan *message.Message) *message.Message {
	tb.Helper()
	return await(tb, msgs, 10*time.Second)
}

// publish commits the payloads in one transaction and returns their ids.
func publish(tb testing.TB, b *bus.Bus, db *sqldb.DB, topic string, payloads ...string) []string {
	tb.Helper()
	return publishTx(tb, b, db, topic, true, payloads...)
}

// backdate makes messages two hours old in the database's terms.
func backdate(tb testing.TB, db *sqldb.DB, topic string, ids ...string) {
	tb.Helper()
	for _, id := range ids {
		if _, err := db.Exec(backdateSQL(db, topic)+db.Q(` WHERE uuid = $1`), id); err != nil {
			tb.Fatal(err)
		}
	}
}

func backdateAll(tb testing.TB, db *sqldb.DB, topic string) {
	tb.Helper()
	if _, err := db.Exec(backdateSQL(db, topic)); err != nil {
		tb.Fatal(err)
	}
}

func backdateSQL(db *sqldb.DB, topic string) string {
	if db.Dialect == sqldb.SQLite {
		return `UPDATE ` + messagesTable(db, topic) + ` SET created_at = strftime('%Y-%m-%dT%H:%M:%fZ', created_at, '-2 hours')`
	}
	return `UPDATE ` + messagesTable(db, topic) + ` SET created_at = created_at - interval '2 hours'`
}

// wantStored checks the payloads left in a topic's table, in consume order.
func wantStored(tb testing.TB, db *sqldb.DB, topic string, want ...string) {
	tb.Helper()
	order := `"offset"`
	if db.Dialect == sqldb.Postgres {
		order = `transaction_id, "offset"`
	}
	rows, err := db.Query(`SELECT payload FROM ` + messagesTable(db, topic) + ` ORDER BY ` + order)
	if err != nil {
		tb.Fatal(err)
	}
	defer rows.Close()
	var got []string
	for rows.Next() {
		var p []byte
		if err := rows.Scan(&p); err != nil {
			tb.Fatal(err)
		}
		got = append(got, string(p))
	}
	if err := rows.Err(); err != nil {
		tb.Fatal(err)
	}
	if !slices.Equal(got, want) {
		tb.Fatalf("%s holds %q, want %q", topic, got, want)
	}
}

func offsetOf(tb testing.TB, db *sqldb.DB, id string) int64 {
	tb.Helper()
	var off int64
	if err := db.QueryRow(`SELECT "offset" FROM `+messagesTable(db, "orders")+db.Q(` WHERE uuid = $1`), id).Scan(&off); err != nil {
		tb.Fatal(err)
	}
	return off
}
