package bus_test

import (
	"context"
	"fmt"
	"slices"
	"sort"
	"sync"
	"testing"
	"time"

	"github.com/ThreeDotsLabs/watermill"
	wmsql "github.com/ThreeDotsLabs/watermill-sql/v4/pkg/sql"
	"github.com/ThreeDotsLabs/watermill/message"

	"handoff/pkg/bus"
	"handoff/pkg/sqldb"
	"handoff/pkg/sqldb/sqldbtest"
	"handoff/pkg/wmsqlite"
)

// testLogger sends the bus's errors to the test log, where they explain a
// failure and stay quiet otherwise.
type testLogger struct {
	watermill.NopLogger
	tb testing.TB
}

func (l testLogger) Error(msg string, err error, fields watermill.LogFields) {
	l.tb.Logf("ERROR %s: %v %v", msg, err, fields)
}

func (l testLogger) With(watermill.LogFields) watermill.LoggerAdapter { return l }

func newBus(tb testing.TB, url string, opts bus.Options, topics ...string) (*bus.Bus, *sqldb.DB) {
	tb.Helper()
	db := sqldbtest.MustOpen(tb, url)
	b, err := bus.New(db, testLogger{tb: tb}, opts)
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { _ = b.Close() })
	if err := b.InitTopics(context.Background(), topics...); err != nil {
		tb.Fatal(err)
	}
	return b, db
}

func subscribe(tb testing.TB, b *bus.Bus, group, topic string) <-chan *message.Message {
	tb.Helper()
	msgs, _ := openSub(tb, b, group, topic)
	return msgs
}

// publishTx publishes payloads in one transaction and commits it or rolls it
// back; it returns the messages' ids.
func publishTx(tb testing.TB, b *bus.Bus, db *sqldb.DB, topic string, commit bool, payloads ...string) []string {
	tb.Helper()
	tx, err := db.Begin()
	if err != nil {
		tb.Fatal(err)
	}
	defer func() { _ = tx.Rollback() }()
	pub, err := b.Publisher(wmsql.TxFromStdSQL(tx))
	if err != nil {
		tb.Fatal(err)
	}
	var ids []string
	for _, p := range payloads {
		id := watermill.NewUUID()
		if err := pub.Publish(topic, message.NewMessage(id, []byte(p))); err != nil {
			tb.Fatal(err)
		}
		ids = append(ids, id)
	}
	if !commit {
		return ids
	}
	if err := tx.Commit(); err != nil {
		tb.Fatal(err)
	}
	return ids
}

// receive acks and returns the next message, failing after within.
func receive(tb testing.TB, msgs <-chan *message.Message, within time.Duration) *message.Message {
	tb.Helper()
	m := await(tb, msgs, within)
	m.Ack()
	return m
}

// await returns the next message without acking it, failing after within.
func await(tb testing.TB, msgs <-chan *message.Message, within time.Duration) *message.Message {
	tb.Helper()
	select {
	case m, ok := <-msgs:
		if !ok {
			tb.Fatal("messages channel closed")
		}
		return m
	case <-time.After(within):
		tb.Fatalf("no message within %v", within)
		return nil
	}
}

func payloads(msgs []*message.Message) []string {
	var out []string
	for _, m := range msgs {
		out = append(out, string(m.Payload))
	}
	return out
}

func TestCommittedPublishIsReceived(t *testing.T) {
	sqldbtest.Each(t, func(t *testing.T, url string) {
		b, db := newBus(t, url, bus.Options{}, "orders")
		msgs := subscribe(t, b, "g", "orders")
		publishTx(t, b, db, "orders", true, "one", "two")
		// Not JSON on purpose: both backends store any bytes.
		if got := []string{string(receive(t, msgs, 5*time.Second).Payload), string(receive(t, msgs, 5*time.Second).Payload)}; !slices.Equal(got, []string{"one", "two"}) {
			t.Fatalf("received %q", got)
		}
	})
}

// TestRolledBackPublishIsNeverReceived publishes in a transaction that rolls
// back, then a marker in one that commits. Delivery is in commit order, so
// if the first message were ever delivered it would come before the marker.
func TestRolledBackPublishIsNeverReceived(t *testing.T) {
	sqldbtest.Each(t, func(t *testing.T, url string) {
		b, db := newBus(t, url, bus.Options{}, "orders")
		msgs := subscribe(t, b, "g", "orders")
		publishTx(t, b, db, "orders", false, "ghost")
		publishTx(t, b, db, "orders", true, "marker")
		if m := receive(t, msgs, 5*time.Second); string(m.Payload) != "marker" {
			t.Fatalf("first message is %q, want the marker", m.Payload)
		}
		var n int
		if err := db.QueryRow(`SELECT count(*) FROM ` + messagesTable(db, "orders")).Scan(&n); err != nil {
			t.Fatal(err)
		}
		if n != 1 {
			t.Fatalf("%d rows stored, want only the marker", n)
		}
	})
}

func messagesTable(db *sqldb.DB, topic string) string {
	if db.Dialect == sqldb.SQLite {
		return wmsqlite.MessagesTable(topic)
	}
	return `"watermill_` + topic + `"`
}

// TestWakeOnWrite sets a poll interval far above the asserted latency, so
// only a working wake can deliver in time, and publishes each hop once the
// subscriber has found nothing and is going to wait.
func TestWakeOnWrite(t *testing.T) {
	sqldbtest.Each(t, func(t *testing.T, url string) {
		const poll = 2 * time.Second
		b, db := newBus(t, url, bus.Options{PollInterval: poll}, "hops")
		idle := make(chan struct{}, 1)
		bus.SetIdleHook(b, func() {
			select {
			case idle <- struct{}{}:
			default:
			}
		})
		msgs := subscribe(t, b, "g", "hops")
		for i := range 10 {
			select {
			case <-idle:
			case <-time.After(2 * poll):
				t.Fatal("subscriber never went idle")
			}
			start := time.Now()
			publishTx(t, b, db, "hops", true, fmt.Sprint(i))
			m := receive(t, msgs, poll)
			if took := time.Since(start); took > 500*time.Millisecond {
				t.Fatalf("hop %d took %v with a %v poll interval: the wake did not arrive", i, took, poll)
			}
			if string(m.Payload) != fmt.Sprint(i) {
				t.Fatalf("hop %d received %q", i, m.Payload)
			}
		}
	})
}

// TestPublishInHandler relays a message the way interior handlers do: the
// outgoing message is published in the consume transaction and must be
// woken for when that transaction commits with the ack, in this process
// and, on PostgreSQL, in another one (a second Bus on the same database;
// SQLite has no wake between processes, they poll).
func TestPublishInHandler(t *testing.T) {
	each := map[string]func(*testing.T, func(*testing.T, string)){
		"same process": sqldbtest.Each,
		"other process": func(t *testing.T, fn func(*testing.T, string)) {
			t.Run("postgres", func(t *testing.T) { fn(t, sqldbtest.PostgresURL(t)) })
		},
	}
	for _, where := range []string{"same process", "other process"} {
		t.Run(where, func(t *testing.T) {
			each[where](t, func(t *testing.T, url string) {
				const poll = 2 * time.Second
				b, db := newBus(t, url, bus.Options{PollInterval: poll}, "in", "out")
				receiver := b
				if where == "other process" {
					receiver, _ = newBus(t, url, bus.Options{PollInterval: poll}, "out")
				}
				in := subscribe(t, b, "relay", "in")
				out := subscribe(t, receiver, "g", "out")
				relayed := make(chan error, 1)
				go func() {
					m, ok := <-in
					if !ok {
						relayed <- fmt.Errorf("input closed")
						return
					}
					tx, _ := wmsql.TxFromContext(m.Context())
					pub, err := b.Publisher(tx)
					if err == nil {
						err = pub.Publish("out", message.NewMessage(watermill.NewUUID(), append([]byte("relayed "), m.Payload...)))
					}
					if err != nil {
						m.Nack()
					} else {
						m.Ack()
					}
					relayed <- err
				}()
				publishTx(t, b, db, "in", true, "x")
				start := time.Now()
				if err := <-relayed; err != nil {
					t.Fatal(err)
				}
				m := receive(t, out, poll)
				if took := time.Since(start); took > 500*time.Millisecond {
					t.Fatalf("relayed hop took %v with a %v poll interval", took, poll)
				}
				if string(m.Payload) != "relayed x" {
					t.Fatalf("received %q", m.Payload)
				}
			})
		})
	}
}

// TestConsumerGroupsEachGetEveryMessage checks that two groups each get
// every message, in order.
func TestConsumerGroupsEachGetEveryMessage(t *testing.T) {
	sqldbtest.Each(t, func(t *testing.T, url string) {
		b, db := newBus(t, url, bus.Options{}, "fanout")
		var want []string
		for i := range 20 {
			want = append(want, fmt.Sprint(i))
		}
		groups := map[string]<-chan *message.Message{"a": subscribe(t, b, "a", "fanout"), "b": subscribe(t, b, "b", "fanout")}

		// Readers first: on SQLite a fetched message waiting on its channel
		// keeps the write lock, and the second publish would wait for it.
		var wg sync.WaitGroup
		got := map[string][]string{}
		var mu sync.Mutex
		for name, msgs := range groups {
			wg.Go(func() {
				var recv []string
				for range want {
					select {
					case m := <-msgs:
						m.Ack()
						recv = append(recv, string(m.Payload))
					case <-time.After(10 * time.Second):
					}
				}
				mu.Lock()
				got[name] = recv
				mu.Unlock()
			})
		}
		publishTx(t, b, db, "fanout", true, want[:10]...)
		publishTx(t, b, db, "fanout", true, want[10:]...)
		wg.Wait()
		for name := range groups {
			if !slices.Equal(got[name], want) {
				t.Errorf("group %s received %q, want %q", name, got[name], want)
			}
		}
	})
}

// TestCompetingConsumersShareWork runs two subscribers of one group, as two
// processes would, and expects every message exactly once between them.
func TestCompetingConsumersShareWork(t *testing.T) {
	sqldbtest.Each(t, func(t *testing.T, url string) {
		b, db := newBus(t, url, bus.Options{BatchSize: 5}, "work")
		const n = 60
		var (
			mu   sync.Mutex
			seen = map[string]int{}
			got  = make(chan struct{}, 2*n)
			wg   sync.WaitGroup
		)
		for range 2 {
			msgs := subscribe(t, b, "workers", "work")
			wg.Go(func() {
				for m := range msgs {
					mu.Lock()
					seen[string(m.Payload)]++
					mu.Unlock()
					m.Ack()
					got <- struct{}{}
				}
			})
		}
		for i := range n / 10 {
			var batch []string
			for j := range 10 {
				batch = append(batch, fmt.Sprint(i*10+j))
			}
			publishTx(t, b, db, "work", true, batch...)
		}
		for i := range n {
			select {
			case <-got:
			case <-time.After(10 * time.Second):
				t.Fatalf("only %d of %d messages delivered", i, n)
			}
		}
		// Then a marker: the group is read one transaction at a time in
		// offset order, so a duplicate of an earlier message would be
		// counted before the marker arrives.
		publishTx(t, b, db, "work", true, "marker")
		select {
		case <-got:
		case <-time.After(10 * time.Second):
			t.Fatal("marker not delivered")
		}
		mu.Lock()
		defer mu.Unlock()
		for i := range n {
			if c := seen[fmt.Sprint(i)]; c != 1 {
				t.Errorf("message %d delivered %d times", i, c)
			}
		}
		if len(seen) != n+1 {
			t.Errorf("%d distinct messages, want %d", len(seen), n+1)
		}
	})
}

// TestInitTopicsConcurrently creates the same topics from several pools at
// once, as processes starting together would.
func TestInitTopicsConcurrently(t *testing.T) {
	sqldbtest.Each(t, func(t *testing.T, url string) {
		var buses []*bus.Bus
		for range 4 {
			b, _ := newBus(t, url, bus.Options{})
			buses = append(buses, b)
		}
		errs := make(chan error, len(buses))
		for _, b := range buses {
			go func() { errs <- b.InitTopics(context.Background(), "t1", "t2", "t3") }()
		}
		for range buses {
			if err := <-errs; err != nil {
				t.Fatal(err)
			}
		}
		if err := buses[0].InitTopics(context.Background(), "t1"); err != nil {
			t.Fatalf("again: %v", err)
		}
	})
}

func TestTopicValidation(t *testing.T) {
	sqldbtest.Each(t, func(t *testing.T, url string) {
		b, db := newBus(t, url, bus.Options{})
		pub, err := b.Publisher(wmsql.BeginnerFromStdSQL(db.DB))
		if err != nil {
			t.Fatal(err)
		}
		for _, topic := range []string{"", "a b", `x";--`} {
			if err := pub.Publish(topic, message.NewMessage(watermill.NewUUID(), nil)); err == nil {
				t.Errorf("published to %q", topic)
			}
			if err := b.InitTopics(context.Background(), topic); err == nil {
				t.Errorf("created %q", topic)
			}
		}
		long := "t" + string(slices.Repeat([]byte("x"), 60))
		err = b.InitTopics(context.Background(), long)
		if db.Dialect == sqldb.Postgres && err == nil {
			t.Errorf("created a %d-byte topic on PostgreSQL", len(long))
		}
		if db.Dialect == sqldb.SQLite && err != nil {
			t.Errorf("long topic on SQLite: %v", err)
		}
	})
}

// TestCloseIsPrompt checks that closing an idle subscriber does not wait out
// its poll interval.
func TestCloseIsPrompt(t *testing.T) {
	sqldbtest.Each(t, func(t *testing.T, url string) {
		const poll = 5 * time.Second
		b, db := newBus(t, url, bus.Options{PollInterval: poll}, "idle")
		sub, err := b.Subscriber("g")
		if err != nil {
			t.Fatal(err)
		}
		msgs, err := sub.Subscribe(context.Background(), "idle")
		if err != nil {
			t.Fatal(err)
		}
		// One hop first, so the loop has certainly started and gone idle.
		publishTx(t, b, db, "idle", true, "x")
		receive(t, msgs, poll)
		start := time.Now()
		if err := sub.Close(); err != nil {
			t.Fatal(err)
		}
		if took := time.Since(start); took > poll/5 {
			t.Fatalf("Close took %v with a %v poll interval", took, poll)
		}
		// Closed by the time Close returns, not soon after: watermill-sql
		// alone closes it from another goroutine after Close has returned.
		select {
		case _, open := <-msgs:
			if open {
				t.Fatal("message delivered after Close")
			}
		default:
			t.Fatal("messages channel still open after Close")
		}
	})
}

// TestListenReconnect cuts the LISTEN connection and expects the bus to
// restore it and keep waking subscribers.
func TestListenReconnect(t *testing.T) {
	url := sqldbtest.PostgresURL(t)
	const poll = 5 * time.Second
	b, db := newBus(t, url, bus.Options{PollInterval: poll}, "r")
	msgs := subscribe(t, b, "g", "r")
	publishTx(t, b, db, "r", true, "before")
	receive(t, msgs, poll)

	seen := bus.ListenCount(b)
	var killed bool
	if err := db.QueryRow(`SELECT pg_terminate_backend($1)`, int64(bus.ListenerPID(b))).Scan(&killed); err != nil || !killed {
		t.Fatalf("terminate LISTEN backend: %v %v", killed, err)
	}
	if !bus.WaitListen(b, seen, 10*time.Second) {
		t.Fatal("LISTEN connection not restored")
	}
	start := time.Now()
	publishTx(t, b, db, "r", true, "after")
	if m := receive(t, msgs, poll); string(m.Payload) != "after" {
		t.Fatalf("received %q", m.Payload)
	}
	if took := time.Since(start); took > poll/5 {
		t.Fatalf("hop after reconnect took %v: notifications not restored", took)
	}
}

// BenchmarkHop measures one hop per backend: from the publishing
// transaction's commit to the subscriber holding the message.
func BenchmarkHop(b *testing.B) {
	run := func(b *testing.B, url string) {
		bs, db := newBus(b, url, bus.Options{}, "bench")
		msgs := subscribe(b, bs, "g", "bench")
		var lat []time.Duration
		for b.Loop() {
			tx, err := db.Begin()
			if err != nil {
				b.Fatal(err)
			}
			pub, err := bs.Publisher(wmsql.TxFromStdSQL(tx))
			if err != nil {
				b.Fatal(err)
			}
			if err := pub.Publish("bench", message.NewMessage(watermill.NewUUID(), []byte("{}"))); err != nil {
				b.Fatal(err)
			}
			start := time.Now()
			if err := tx.Commit(); err != nil {
				b.Fatal(err)
			}
			receive(b, msgs, 10*time.Second)
			lat = append(lat, time.Since(start))
		}
		sort.Slice(lat, func(i, j int) bool { return lat[i] < lat[j] })
		b.ReportMetric(float64(lat[len(lat)/2].Microseconds()), "p50-µs")
		b.ReportMetric(float64(lat[len(lat)*99/100].Microseconds()), "p99-µs")
	}
	b.Run("sqlite", func(b *testing.B) { run(b, sqldbtest.SQLiteURL(b)) })
	b.Run("postgres", func(b *testing.B) { run(b, sqldbtest.PostgresURL(b)) })
}
