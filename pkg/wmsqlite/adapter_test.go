package wmsqlite_test

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"path/filepath"
	"sort"
	"testing"
	"time"

	"github.com/ThreeDotsLabs/watermill"
	wmsql "github.com/ThreeDotsLabs/watermill-sql/v4/pkg/sql"
	"github.com/ThreeDotsLabs/watermill/message"

	"handoff/pkg/sqldb"
	"handoff/pkg/wmsqlite"
)

// fixture is one SQLite file with a waker, for tests that build their own
// publishers and subscribers.
type fixture struct {
	db       *sqldb.DB
	beginner wmsql.Beginner
	waker    *wmsqlite.Waker
	path     string
}

func newFixture(t *testing.T) *fixture {
	t.Helper()
	path := filepath.Join(t.TempDir(), "test.db")
	db, err := sqldb.Open(context.Background(), "sqlite:"+path)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	return &fixture{db: db, beginner: wmsql.BeginnerFromStdSQL(db.DB), waker: wmsqlite.NewWaker(), path: path}
}

type subConfig struct {
	group       string
	batchSize   int
	poll        time.Duration
	ackDeadline time.Duration
	backoff     wmsql.BackoffManager
}

func (f *fixture) subscribe(t *testing.T, topic string, c subConfig) (*wmsql.Subscriber, <-chan *message.Message) {
	t.Helper()
	if c.poll == 0 {
		c.poll = 100 * time.Millisecond
	}
	if c.ackDeadline == 0 {
		c.ackDeadline = 10 * time.Second
	}
	if c.backoff == nil {
		c.backoff = wmsqlite.NewBackoffManager(f.waker, c.poll, c.poll)
	}
	sub, err := wmsql.NewSubscriber(f.beginner, wmsql.SubscriberConfig{
		ConsumerGroup:    c.group,
		AckDeadline:      &c.ackDeadline,
		PollInterval:     c.poll,
		BackoffManager:   c.backoff,
		SchemaAdapter:    wmsqlite.SchemaAdapter{BatchSize: c.batchSize},
		OffsetsAdapter:   wmsqlite.OffsetsAdapter{},
		InitializeSchema: true,
	}, watermill.NopLogger{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = sub.Close() })
	msgs, err := sub.Subscribe(context.Background(), topic)
	if err != nil {
		t.Fatal(err)
	}
	return sub, msgs
}

func (f *fixture) publish(t *testing.T, topic string, payloads ...string) []*message.Message {
	t.Helper()
	pub, err := wmsql.NewPublisher(f.beginner, wmsql.PublisherConfig{
		SchemaAdapter:        wmsqlite.SchemaAdapter{},
		AutoInitializeSchema: true,
	}, watermill.NopLogger{})
	if err != nil {
		t.Fatal(err)
	}
	var msgs []*message.Message
	for _, p := range payloads {
		msgs = append(msgs, message.NewMessage(watermill.NewUUID(), []byte(p)))
	}
	if err := pub.Publish(topic, msgs...); err != nil {
		t.Fatal(err)
	}
	f.waker.Wake()
	return msgs
}

func receive(t *testing.T, msgs <-chan *message.Message, within time.Duration) *message.Message {
	t.Helper()
	select {
	case m, ok := <-msgs:
		if !ok {
			t.Fatal("messages channel closed")
		}
		return m
	case <-time.After(within):
		t.Fatalf("no message within %v", within)
		return nil
	}
}

// TestAckRecordsLastAckedRow checks that a batch cut short records the last
// message the handler acked, not the last one fetched: the queue adapters'
// way of acking the whole batch would lose messages 3 to 5 here.
func TestAckRecordsLastAckedRow(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	const topic = "ack-last"
	sent := f.publish(t, topic, "1", "2", "3", "4", "5")

	sub, msgs := f.subscribe(t, topic, subConfig{group: "g", batchSize: 5})
	for _, want := range sent[:2] {
		m := receive(t, msgs, 5*time.Second)
		if m.UUID != want.UUID {
			t.Fatalf("got %s, want %s", m.Payload, want.Payload)
		}
		m.Ack()
	}
	if m := receive(t, msgs, 5*time.Second); string(m.Payload) != "3" {
		t.Fatalf("third message is %q", m.Payload)
	}
	// Closing with message 3 unacked ends the batch; Close returns once
	// the consume transaction is over.
	if err := sub.Close(); err != nil {
		t.Fatal(err)
	}

	var acked, offsetOf2 int64
	if err := f.db.QueryRow(`SELECT offset_acked FROM ` + wmsqlite.OffsetsTable(topic) + ` WHERE consumer_group = 'g'`).Scan(&acked); err != nil {
		t.Fatal(err)
	}
	if err := f.db.QueryRow(`SELECT "offset" FROM `+wmsqlite.MessagesTable(topic)+` WHERE uuid = ?`, sent[1].UUID).Scan(&offsetOf2); err != nil {
		t.Fatal(err)
	}
	if acked != offsetOf2 {
		t.Fatalf("offset_acked = %d, want %d (message 2)", acked, offsetOf2)
	}

	_, msgs = f.subscribe(t, topic, subConfig{group: "g", batchSize: 5})
	for _, want := range []string{"3", "4", "5"} {
		m := receive(t, msgs, 5*time.Second)
		if string(m.Payload) != want {
			t.Fatalf("after restart got %q, want %q", m.Payload, want)
		}
		m.Ack()
	}
}

// observedBackoff tells the test when the subscriber has found nothing and
// is about to wait, so a publish can be aimed at the idle subscriber.
type observedBackoff struct {
	*wmsqlite.BackoffManager
	idle chan struct{}
}

func (o observedBackoff) HandleError(l watermill.LoggerAdapter, noMsg bool, err error) time.Duration {
	if noMsg && err == nil {
		select {
		case o.idle <- struct{}{}:
		default:
		}
	}
	return o.BackoffManager.HandleError(l, noMsg, err)
}

// TestWakeOnWrite publishes to an idle subscriber whose poll interval is
// long and expects every hop to arrive far sooner. The publish lands just
// as the subscriber starts to wait, which is where a lost wake would show.
func TestWakeOnWrite(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	const (
		topic = "wake"
		poll  = 5 * time.Second
		hops  = 20
	)
	// Buffered, so the signal is kept while the test is still acking.
	ob := observedBackoff{wmsqlite.NewBackoffManager(f.waker, poll, poll), make(chan struct{}, 1)}
	_, msgs := f.subscribe(t, topic, subConfig{poll: poll, backoff: ob})

	var took []time.Duration
	for i := range hops {
		select {
		case <-ob.idle:
		case <-time.After(2 * poll):
			t.Fatal("subscriber never went idle")
		}
		start := time.Now()
		f.publish(t, topic, fmt.Sprint(i))
		m := receive(t, msgs, poll)
		took = append(took, time.Since(start))
		m.Ack()
		if string(m.Payload) != fmt.Sprint(i) {
			t.Fatalf("hop %d got %q", i, m.Payload)
		}
	}
	sort.Slice(took, func(i, j int) bool { return took[i] < took[j] })
	t.Logf("hop latency p50 %v, max %v (poll interval %v)", took[len(took)/2], took[len(took)-1], poll)
	if took[len(took)-1] > poll/5 {
		t.Fatalf("slowest hop took %v; with a %v poll interval the wake did not work", took[len(took)-1], poll)
	}
}

// TestBackoffKeepsEarlyWake is the lost-wake race made deterministic: the
// wake comes after the previous HandleError returned but before the next
// one starts waiting, and must still cut the wait short.
func TestBackoffKeepsEarlyWake(t *testing.T) {
	t.Parallel()
	w := wmsqlite.NewWaker()
	m := wmsqlite.NewBackoffManager(w, time.Minute, time.Minute)
	log := watermill.NopLogger{}
	if d := m.HandleError(log, false, nil); d != 0 {
		t.Fatalf("after messages: backoff %v, want 0", d)
	}
	w.Wake() // lands "during the query"
	done := make(chan time.Duration, 1)
	go func() { done <- m.HandleError(log, true, nil) }()
	select {
	case d := <-done:
		if d != 0 {
			t.Fatalf("woken: backoff %v, want 0", d)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("a wake before the wait began was lost")
	}

	// Nothing new since that return: it must really wait, until Stop.
	go func() { done <- m.HandleError(log, true, nil) }()
	select {
	case d := <-done:
		t.Fatalf("returned %v without a wake", d)
	case <-time.After(50 * time.Millisecond):
	}
	m.Stop()
	select {
	case d := <-done:
		if d != time.Minute {
			t.Fatalf("stopped: backoff %v, want the poll interval for the library's interruptible sleep", d)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Stop did not end the wait")
	}
}

// TestBackoffErrors checks the three answers to an error: at once for lock
// contention, the retry interval for anything else.
func TestBackoffErrors(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	// A second pool on the same file with no busy timeout, so the lock
	// clash surfaces at once as the real driver error.
	other, err := sql.Open("sqlite", "file:"+f.path+"?_txlock=immediate&_pragma=busy_timeout(0)")
	if err != nil {
		t.Fatal(err)
	}
	defer other.Close()
	holder, err := f.db.Begin()
	if err != nil {
		t.Fatal(err)
	}
	defer holder.Rollback()
	_, busyErr := other.Begin()
	if busyErr == nil {
		t.Fatal("second writer began while the first held the lock")
	}
	wrapped := fmt.Errorf("could not begin tx for querying: %w", busyErr)

	m := wmsqlite.NewBackoffManager(nil, time.Second, 3*time.Second)
	log := watermill.NopLogger{}
	if !wmsqlite.IsContention(wrapped) {
		t.Fatalf("IsContention(%v) = false", wrapped)
	}
	if d := m.HandleError(log, false, wrapped); d != 0 {
		t.Fatalf("busy: backoff %v, want 0", d)
	}
	if d := m.HandleError(log, false, errors.New("no such table")); d != 3*time.Second {
		t.Fatalf("other error: backoff %v, want the retry interval", d)
	}
	if d := m.HandleError(log, true, nil); d != time.Second {
		t.Fatalf("no waker: backoff %v, want the poll interval", d)
	}
}

// TestTopicNames checks that topics differing only in case, or using every
// character watermill allows, get tables of their own.
func TestTopicNames(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	f.publish(t, "Orders", "upper")
	f.publish(t, "orders", "lower")
	f.publish(t, "a-b$c:d.e_F9", "odd")

	// Each message is acked at once: an unacked one keeps the write lock.
	for topic, want := range map[string]string{"orders": "lower", "Orders": "upper", "a-b$c:d.e_F9": "odd"} {
		_, msgs := f.subscribe(t, topic, subConfig{})
		m := receive(t, msgs, 5*time.Second)
		m.Ack()
		if string(m.Payload) != want {
			t.Fatalf("%q received %q, want %q", topic, m.Payload, want)
		}
	}
	if _, err := (wmsqlite.SchemaAdapter{}).InsertQuery(wmsql.InsertQueryParams{Topic: `x"; DROP TABLE y; --`}); !errors.Is(err, wmsqlite.ErrInvalidTopic) {
		t.Fatalf("invalid topic: err = %v", err)
	}
}

// TestPublishLimits checks the largest publish SQLite accepts in one
// statement, the clear error one beyond it, and that an empty publish is a
// no-op rather than a syntax error.
func TestPublishLimits(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	pub, err := wmsql.NewPublisher(f.beginner, wmsql.PublisherConfig{SchemaAdapter: wmsqlite.SchemaAdapter{}, AutoInitializeSchema: true}, nil)
	if err != nil {
		t.Fatal(err)
	}
	batch := func(n int) []*message.Message {
		msgs := make([]*message.Message, n)
		for i := range msgs {
			msgs[i] = message.NewMessage(watermill.NewUUID(), []byte("x"))
		}
		return msgs
	}
	if err := pub.Publish("limits", batch(wmsqlite.MaxMessagesPerPublish)...); err != nil {
		t.Fatalf("publish %d: %v", wmsqlite.MaxMessagesPerPublish, err)
	}
	if err := pub.Publish("limits", batch(wmsqlite.MaxMessagesPerPublish+1)...); err == nil {
		t.Fatal("publish beyond the limit succeeded")
	}
	if err := pub.Publish("limits"); err != nil {
		t.Fatalf("empty publish: %v", err)
	}
	var n int
	if err := f.db.QueryRow(`SELECT count(*) FROM ` + wmsqlite.MessagesTable("limits")).Scan(&n); err != nil {
		t.Fatal(err)
	}
	if n != wmsqlite.MaxMessagesPerPublish {
		t.Fatalf("%d rows, want %d", n, wmsqlite.MaxMessagesPerPublish)
	}
}

// TestRoundTrip checks payload bytes and metadata survive storage, including
// bytes that are not valid UTF-8 and an empty payload.
func TestRoundTrip(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	pub, err := wmsql.NewPublisher(f.beginner, wmsql.PublisherConfig{SchemaAdapter: wmsqlite.SchemaAdapter{}, AutoInitializeSchema: true}, nil)
	if err != nil {
		t.Fatal(err)
	}
	binary := message.NewMessage(watermill.NewUUID(), []byte{0, 0xff, 0xfe, '"', 0})
	binary.Metadata.Set("k", "v ü")
	empty := message.NewMessage(watermill.NewUUID(), nil)
	if err := pub.Publish("roundtrip", binary, empty); err != nil {
		t.Fatal(err)
	}
	_, msgs := f.subscribe(t, "roundtrip", subConfig{})
	got := receive(t, msgs, 5*time.Second)
	got.Ack()
	if got.UUID != binary.UUID || string(got.Payload) != string(binary.Payload) || got.Metadata.Get("k") != "v ü" {
		t.Fatalf("got %s %q %v", got.UUID, got.Payload, got.Metadata)
	}
	got = receive(t, msgs, 5*time.Second)
	got.Ack()
	if got.UUID != empty.UUID || len(got.Payload) != 0 {
		t.Fatalf("got %s %q", got.UUID, got.Payload)
	}
}
