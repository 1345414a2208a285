// Package bus builds watermill-sql publishers and subscribers for the
// project's database, SQLite or PostgreSQL, so no other package chooses
// adapters, and wakes subscribers when a message is committed instead of
// leaving them to poll.
//
// The message tables are the outbox: a publisher is bound to a transaction,
// its messages commit or vanish with it, and only a commit wakes anyone.
package bus

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/ThreeDotsLabs/watermill"
	wmsql "github.com/ThreeDotsLabs/watermill-sql/v4/pkg/sql"

	"handoff/pkg/pglisten"
	"handoff/pkg/sqldb"
	"handoff/pkg/wmsqlite"
)

// NotifyChannel is the PostgreSQL LISTEN/NOTIFY channel on which publishers
// announce a topic's new messages; the payload is the topic.
const NotifyChannel = "handoff_bus"

// maxPostgresTopic keeps "watermill_offsets_<topic>" within PostgreSQL's
// 63-byte identifier limit; beyond it names are silently truncated and two
// long topics would share tables.
const maxPostgresTopic = 63 - len("watermill_offsets_")

// Options tunes a Bus; the zero value gives the defaults.
type Options struct {
	// PollInterval is the fallback poll when no wake arrives; default
	// 100ms on SQLite, 250ms on PostgreSQL. It bounds the delay of a wake
	// that is lost (see wmsqlite.BackoffManager) and how long Close waits.
	PollInterval time.Duration
	// AckDeadline is how long a handler may hold a message before it is
	// given up and redelivered; default 30s. It must stay above a
	// handler's total retry time, because expiry commits whatever the
	// handler wrote so far.
	AckDeadline time.Duration
	// BatchSize is how many messages a subscriber reads per transaction;
	// default 100.
	BatchSize int
	// ResendInterval is the pause before a nacked message is delivered
	// again; default PollInterval. It is short because on SQLite the
	// consume transaction, and with it the database's write lock, stays
	// open during the pause.
	ResendInterval time.Duration
	// RetryInterval is the pause after a failed query other than lock
	// contention; default 1s.
	RetryInterval time.Duration
}

func (o Options) withDefaults(d sqldb.Dialect) (Options, error) {
	if o.PollInterval < 0 || o.AckDeadline < 0 || o.BatchSize < 0 || o.ResendInterval < 0 || o.RetryInterval < 0 {
		return o, errors.New("bus: options must not be negative")
	}
	if o.PollInterval == 0 {
		o.PollInterval = 100 * time.Millisecond
		if d == sqldb.Postgres {
			o.PollInterval = 250 * time.Millisecond
		}
	}
	if o.AckDeadline == 0 {
		o.AckDeadline = 30 * time.Second
	}
	if o.BatchSize == 0 {
		o.BatchSize = 100
	}
	if o.ResendInterval == 0 {
		o.ResendInterval = o.PollInterval
	}
	if o.RetryInterval == 0 {
		o.RetryInterval = time.Second
	}
	return o, nil
}

// Bus makes publishers and subscribers for one database and carries the
// wake-ups between them.
type Bus struct {
	db       *sqldb.DB
	logger   watermill.LoggerAdapter
	opts     Options
	beginner wmsql.Beginner
	schema   wmsql.SchemaAdapter
	offsets  wmsql.OffsetsAdapter

	mu     sync.Mutex
	wakers map[string]*wmsqlite.Waker // per topic, so a publish wakes only its topic's subscribers

	// PostgreSQL only: the LISTEN connection, and the notifier of commits
	// made by consume transactions.
	notifier  *pglisten.Notifier
	listener  *pglisten.Listener
	closeOnce sync.Once
	listenPID atomic.Uint32  // backend pid of the LISTEN connection, for tests
	listening wmsqlite.Waker // woken after every successful LISTEN, for tests

	// onIdle, set only by tests, is called when a subscription found
	// nothing and is about to wait for a wake.
	onIdle func()
}

// New returns a Bus for db. On PostgreSQL it opens its LISTEN connection
// before returning, so no commit after New goes unnoticed; Close stops it.
func New(db *sqldb.DB, logger watermill.LoggerAdapter, opts Options) (*Bus, error) {
	if db == nil || db.DB == nil {
		return nil, errors.New("bus: nil database")
	}
	if logger == nil {
		logger = watermill.NopLogger{}
	}
	opts, err := opts.withDefaults(db.Dialect)
	if err != nil {
		return nil, err
	}
	b := &Bus{db: db, logger: logger, opts: opts, wakers: map[string]*wmsqlite.Waker{}}
	// Consume transactions are the bus's own, on both dialects, so work can
	// wait for their commit (AfterCommit).
	b.beginner = beginner{Beginner: wmsql.BeginnerFromStdSQL(db.DB), bus: b}
	switch db.Dialect {
	case sqldb.SQLite:
		b.schema = wmsqlite.SchemaAdapter{BatchSize: opts.BatchSize}
		b.offsets = wmsqlite.OffsetsAdapter{}
	case sqldb.Postgres:
		// Not the queue adapters: they ack every fetched row, so a batch cut
		// short loses its tail.
		b.schema = wmsql.DefaultPostgreSQLSchema{
			SubscribeBatchSize: opts.BatchSize,
			// Any bytes, as on SQLite; the default JSON column refuses a
			// payload that is not JSON.
			GeneratePayloadType: func(string) string { return "BYTEA" },
		}
		b.offsets = wmsql.DefaultPostgreSQLOffsetsAdapter{}
		if err := b.startListening(); err != nil {
			return nil, err
		}
		b.notifier = pglisten.StartNotifier(db.DB, busLog{logger})
	default:
		return nil, fmt.Errorf("bus: unsupported dialect %q", db.Dialect)
	}
	return b, nil
}

// InitTopics creates the message and offsets tables of the topics. It is
// idempotent and safe from several processes at once: everything runs in
// one transaction, which on SQLite holds the write lock and on PostgreSQL
// takes watermill's schema advisory lock first.
func (b *Bus) InitTopics(ctx context.Context, topics ...string) error {
	var queries []wmsql.Query
	for _, topic := range topics {
		if err := b.validateTopic(topic); err != nil {
			return err
		}
		qs, err := b.schema.SchemaInitializingQueries(wmsql.SchemaInitializingQueriesParams{Topic: topic})
		if err != nil {
			return fmt.Errorf("bus: init topic %s: %w", topic, err)
		}
		queries = append(queries, qs...)
		qs, err = b.offsets.SchemaInitializingQueries(wmsql.OffsetsSchemaInitializingQueriesParams{Topic: topic})
		if err != nil {
			return fmt.Errorf("bus: init topic %s: %w", topic, err)
		}
		queries = append(queries, qs...)
	}
	tx, err := b.db.BeginTx(ctx, nil)
	if err != nil {
		return fmt.Errorf("bus: init topics: %w", err)
	}
	defer func() { _ = tx.Rollback() }()
	for _, q := range queries {
		if _, err := tx.ExecContext(ctx, q.Query, q.Args...); err != nil {
			return fmt.Errorf("bus: init topics %v: %w", topics, err)
		}
	}
	if err := tx.Commit(); err != nil {
		return fmt.Errorf("bus: init topics %v: %w", topics, err)
	}
	return nil
}

// Wake wakes this process's subscribers now, on every topic.
func (b *Bus) Wake() {
	b.mu.Lock()
	defer b.mu.Unlock()
	for _, w := range b.wakers {
		w.Wake()
	}
}

// Close stops the LISTEN goroutine. Publishers and subscribers made by the
// Bus are the caller's to close; a subscriber left open falls back to
// polling.
func (b *Bus) Close() error {
	b.closeOnce.Do(func() {
		if b.listener != nil {
			b.listener.Close()
		}
		if b.notifier != nil {
			b.notifier.Close()
		}
	})
	return nil
}

// pgRechecks are the pauses after a wake whose query found nothing on
// PostgreSQL: the default schema shows a committed row only once every
// older transaction has ended, and consume transactions last milliseconds.
var pgRechecks = []time.Duration{3 * time.Millisecond, 10 * time.Millisecond, 30 * time.Millisecond}

// backoff returns the wake-aware backoff of one consume loop of topic.
func (b *Bus) backoff(topic string) *wmsqlite.BackoffManager {
	m := wmsqlite.NewBackoffManager(b.waker(topic), b.opts.PollInterval, b.opts.RetryInterval)
	if b.db.Dialect == sqldb.Postgres {
		m.SetRechecks(pgRechecks...)
	}
	return m
}

// waker returns the topic's waker, creating it for a new subscription.
func (b *Bus) waker(topic string) *wmsqlite.Waker {
	b.mu.Lock()
	defer b.mu.Unlock()
	w, ok := b.wakers[topic]
	if !ok {
		w = wmsqlite.NewWaker()
		b.wakers[topic] = w
	}
	return w
}

// wakeTopic wakes the topic's subscribers, if this process has any.
func (b *Bus) wakeTopic(topic string) {
	b.mu.Lock()
	w := b.wakers[topic]
	b.mu.Unlock()
	if w != nil {
		w.Wake()
	}
}

func (b *Bus) validateTopic(topic string) error {
	if err := wmsqlite.ValidateTopic(topic); err != nil {
		return fmt.Errorf("bus: %w", err)
	}
	if b.db.Dialect == sqldb.Postgres && len(topic) > maxPostgresTopic {
		return fmt.Errorf("bus: topic %q is longer than %d bytes, too long for PostgreSQL table names", topic, maxPostgresTopic)
	}
	return nil
}
