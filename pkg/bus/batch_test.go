package bus_test

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/ThreeDotsLabs/watermill/message"

	"handoff/pkg/bus"
	"handoff/pkg/sqldb"
	"handoff/pkg/sqldb/sqldbtest"
)

// batchRun is one running batch consumer whose handler records every
// payload it handled through the batch's transaction.
type batchRun struct {
	handled chan string // payloads, sent after their batch committed
	sizes   chan int    // batch sizes, sent after commit
	givenUp chan string
	stop    func()
}

// startBatches runs a batch consumer of topic for group; fail, when set,
// decides whether a batch fails after its writes.
func startBatches(t *testing.T, b *bus.Bus, db *sqldb.DB, group, topic string, fail func(payloads []string) error) *batchRun {
	t.Helper()
	if _, err := db.Exec(`CREATE TABLE IF NOT EXISTS handled (payload TEXT NOT NULL)`); err != nil {
		t.Fatal(err)
	}
	r := &batchRun{handled: make(chan string, 1000), sizes: make(chan int, 1000), givenUp: make(chan string, 10)}
	ctx, cancel := context.WithCancel(context.Background())
	ready, done := make(chan struct{}), make(chan error, 1)
	go func() {
		done <- b.ConsumeBatches(ctx, bus.BatchConfig{
			Topic: topic, Group: group,
			Handle: func(ctx context.Context, tx *sql.Tx, msgs []*message.Message) (func(), error) {
				var payloads []string
				for _, m := range msgs {
					if _, err := tx.ExecContext(ctx, db.Q(`INSERT INTO handled (payload) VALUES ($1)`), string(m.Payload)); err != nil {
						return nil, err
					}
					payloads = append(payloads, string(m.Payload))
				}
				if fail != nil {
					if err := fail(payloads); err != nil {
						return nil, err
					}
				}
				return func() {
					r.sizes <- len(payloads)
					for _, p := range payloads {
						r.handled <- p
					}
				}, nil
			},
			MaxAttempts: 3,
			GiveUp:      func(m *message.Message, err error) { r.givenUp <- string(m.Payload) },
			Ready:       func() { close(ready) },
		})
	}()
	select {
	case <-ready:
	case err := <-done:
		t.Fatalf("batch consumer ended: %v", err)
	}
	var once sync.Once
	r.stop = func() {
		once.Do(func() {
			cancel()
			if err := <-done; err != nil {
				t.Errorf("batch consumer: %v", err)
			}
		})
	}
	t.Cleanup(r.stop)
	return r
}

func (r *batchRun) next(t *testing.T) string {
	t.Helper()
	select {
	case p := <-r.handled:
		return p
	case <-time.After(10 * time.Second):
		t.Fatal("nothing handled within 10s")
		return ""
	}
}

func countHandled(t *testing.T, db *sqldb.DB, payload string) int {
	t.Helper()
	var n int
	if err := db.QueryRow(db.Q(`SELECT count(*) FROM handled WHERE payload = $1`), payload).Scan(&n); err != nil {
		t.Fatal(err)
	}
	return n
}

// A backlog is read in batches, in order, each message once, and what the
// handler wrote commits with the ack: a new consumer of the group starts
// after the last batch.
func TestBatchesReadABacklogInOrderOnce(t *testing.T) {
	sqldbtest.Each(t, func(t *testing.T, url string) {
		b, db := newBus(t, url, bus.Options{BatchSize: 50}, "events")
		var want []string
		for i := range 120 {
			want = append(want, fmt.Sprintf("m%03d", i))
		}
		publishTx(t, b, db, "events", true, want...)
		r := startBatches(t, b, db, "g", "events", nil)
		for _, w := range want {
			if got := r.next(t); got != w {
				t.Fatalf("handled %s, want %s", got, w)
			}
		}
		r.stop()
		biggest := 0
		for len(r.sizes) > 0 {
			biggest = max(biggest, <-r.sizes)
		}
		if biggest < 2 || biggest > 50 {
			t.Errorf("largest batch %d, want 2..50", biggest)
		}
		publishTx(t, b, db, "events", true, "after")
		again := startBatches(t, b, db, "g", "events", nil)
		if got := again.next(t); got != "after" {
			t.Fatalf("a new consumer of the group read %s first, want only the new message", got)
		}
		for _, w := range append(want, "after") {
			if n := countHandled(t, db, w); n != 1 {
				t.Fatalf("%s handled %d times", w, n)
			}
		}
	})
}

// A batch whose handler fails is rolled back, its writes with it, and read
// again until it succeeds.
func TestFailedBatchIsRolledBackAndReadAgain(t *testing.T) {
	sqldbtest.Each(t, func(t *testing.T, url string) {
		b, db := newBus(t, url, bus.Options{RetryInterval: time.Millisecond}, "events")
		var mu sync.Mutex
		failures := 0
		r := startBatches(t, b, db, "g", "events", func([]string) error {
			mu.Lock()
			defer mu.Unlock()
			if failures < 2 {
				failures++
				return errors.New("transient")
			}
			return nil
		})
		publishTx(t, b, db, "events", true, "a", "b")
		got := []string{r.next(t), r.next(t)}
		if got[0] != "a" || got[1] != "b" {
			t.Fatalf("handled %v", got)
		}
		r.stop()
		for _, p := range got {
			if n := countHandled(t, db, p); n != 1 {
				t.Errorf("%s written %d times; failed batches must leave nothing", p, n)
			}
		}
	})
}

// A message that keeps failing is tried alone, given up after MaxAttempts
// and skipped; the messages around it are handled once each.
func TestPoisonMessageIsGivenUpAndSkipped(t *testing.T) {
	sqldbtest.Each(t, func(t *testing.T, url string) {
		b, db := newBus(t, url, bus.Options{RetryInterval: time.Millisecond}, "events")
		r := startBatches(t, b, db, "g", "events", func(payloads []string) error {
			for _, p := range payloads {
				if p == "poison" {
					return errors.New("cannot handle poison")
				}
			}
			return nil
		})
		publishTx(t, b, db, "events", true, "before", "poison", "after")
		if got := r.next(t); got != "before" {
			t.Fatalf("handled %s first", got)
		}
		select {
		case p := <-r.givenUp:
			if p != "poison" {
				t.Fatalf("gave up on %s", p)
			}
		case <-time.After(10 * time.Second):
			t.Fatal("the poison message was never given up")
		}
		if got := r.next(t); got != "after" {
			t.Fatalf("handled %s after the poison", got)
		}
		r.stop()
		if n := countHandled(t, db, "poison"); n != 0 {
			t.Errorf("poison written %d times", n)
		}
		if n := countHandled(t, db, "before") + countHandled(t, db, "after"); n != 2 {
			t.Errorf("the healthy messages were written %d times, want 2", n)
		}
	})
}

// A group read by a watermill subscriber can be taken over by a batch
// consumer: it starts after the subscriber's last ack.
func TestBatchConsumerTakesOverASubscribersGroup(t *testing.T) {
	sqldbtest.Each(t, func(t *testing.T, url string) {
		b, db := newBus(t, url, bus.Options{}, "events")
		publishTx(t, b, db, "events", true, "one", "two", "three")
		msgs, closeSub := openSub(t, b, "g", "events")
		if m := receive(t, msgs, 10*time.Second); string(m.Payload) != "one" {
			t.Fatalf("subscriber got %s", m.Payload)
		}
		closeSub()
		r := startBatches(t, b, db, "g", "events", nil)
		if got := []string{r.next(t), r.next(t)}; got[0] != "two" || got[1] != "three" {
			t.Fatalf("batch consumer handled %v, want [two three]", got)
		}
	})
}

// A batch that keeps clashing with other transactions (serialization
// failures, a busy database) is read again until it goes through; clashes
// never make it give a message up.
func TestContentionNeverGivesUp(t *testing.T) {
	sqldbtest.Each(t, func(t *testing.T, url string) {
		b, db := newBus(t, url, bus.Options{RetryInterval: time.Millisecond}, "events")
		var mu sync.Mutex
		clashes := 0
		r := startBatches(t, b, db, "g", "events", func([]string) error {
			mu.Lock()
			defer mu.Unlock()
			if clashes < 10 { // more than MaxAttempts (3)
				clashes++
				return errors.New("could not serialize access due to concurrent update")
			}
			return nil
		})
		publishTx(t, b, db, "events", true, "a")
		if got := r.next(t); got != "a" {
			t.Fatalf("handled %s", got)
		}
		select {
		case p := <-r.givenUp:
			t.Fatalf("gave up on %s after clashes", p)
		default:
		}
	})
}
