package bus_test

import (
	"context"
	"log"
	"sync"
	"testing"

	"github.com/ThreeDotsLabs/watermill"
	wmsql "github.com/ThreeDotsLabs/watermill-sql/v4/pkg/sql"
	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/ThreeDotsLabs/watermill/pubsub/tests"

	"handoff/pkg/bus"
	"handoff/pkg/sqldb"
	"handoff/pkg/sqldb/sqldbtest"
)

// postgresFeatures are what the bus claims on PostgreSQL. ForceShort runs
// the suite's small message counts: the full counts (50 subscribers, each
// a Bus with its own LISTEN connection, next to a 16-connection pool, two
// tests at a time) exceed the test server's 100 connections and took ten
// minutes when tried; the short counts take the same code paths.
var postgresFeatures = tests.Features{
	ConsumerGroups:      true,
	ExactlyOnceDelivery: true,
	GuaranteedOrder:     true,
	Persistent:          true,
	ForceShort:          true,
}

// TestPubSubPostgres runs Watermill's universal suite against the bus on
// PostgreSQL, built exactly as the application builds it: bus.New with the
// default Options (DefaultPostgreSQLSchema with a BYTEA payload,
// DefaultPostgreSQLOffsetsAdapter, LISTEN/NOTIFY wake-ups, 250ms poll, 30s
// ack deadline, batches of 100).
func TestPubSubPostgres(t *testing.T) {
	t.Parallel()
	tests.TestPubSub(t, postgresFeatures, newPostgresPubSub, newPostgresConsumerGroupPubSub)
}

// TestPubSubPostgresAtLeastOnce runs the suite again without
// ExactlyOnceDelivery, because with it on the suite skips its two close
// tests (TestContinueAfterSubscribeClose, TestConcurrentClose).
func TestPubSubPostgresAtLeastOnce(t *testing.T) {
	t.Parallel()
	features := postgresFeatures
	features.ExactlyOnceDelivery = false
	tests.TestPubSub(t, features, newPostgresPubSub, newPostgresConsumerGroupPubSub)
}

var (
	suiteDBsMu sync.Mutex
	suiteDBs   = map[*testing.T]*sqldb.DB{}
)

// suiteDB returns the database of one suite test: the suite calls the
// constructor many times per test and expects one persistent Pub/Sub behind
// all of them, while parallel tests each get a schema of their own.
func suiteDB(t *testing.T) *sqldb.DB {
	suiteDBsMu.Lock()
	defer suiteDBsMu.Unlock()
	if db, ok := suiteDBs[t]; ok {
		return db
	}
	// sqldb.Open, not sqldbtest.MustOpen: the suite runs with the
	// application's pool size. MustOpen's pool of 4 deadlocks
	// TestConcurrentSubscribe until the ack deadline: its ten subscribers
	// of one group start consuming before the test reads anything, the
	// first holds the group's lock with an unread message and the others
	// hold every connection waiting for that lock, so the last Subscribe
	// cannot get one.
	db, err := sqldb.Open(context.Background(), sqldbtest.PostgresURL(t))
	if err != nil {
		t.Fatal(err)
	}
	suiteDBs[t] = db
	t.Cleanup(func() {
		suiteDBsMu.Lock()
		delete(suiteDBs, t)
		suiteDBsMu.Unlock()
		db.Close()
	})
	return db
}

func newPostgresPubSub(t *testing.T) (message.Publisher, message.Subscriber) {
	return newPostgresConsumerGroupPubSub(t, "")
}

// newPostgresConsumerGroupPubSub builds one "instance" of the Pub/Sub: a Bus
// of its own, as a separate process would have, so wake-ups cross between
// instances through PostgreSQL's NOTIFY just as they do between processes.
func newPostgresConsumerGroupPubSub(t *testing.T, group string) (message.Publisher, message.Subscriber) {
	db := suiteDB(t)
	b, err := bus.New(db, suiteLogger{}, bus.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = b.Close() })
	// Not bound to a transaction: each Publish commits on its own, as the
	// suite expects of a publisher.
	pub, err := b.Publisher(wmsql.BeginnerFromStdSQL(db.DB))
	if err != nil {
		t.Fatal(err)
	}
	sub, err := b.Subscriber(group)
	if err != nil {
		t.Fatal(err)
	}
	// Some suite tests never close what they build; this stops their
	// consume loops before the schema is dropped.
	t.Cleanup(func() { _ = sub.Close() })
	return pub, sub
}

// suiteLogger prints only errors, through the log package rather than
// t.Log: a suite test's subscribers may log after the subtest that built
// them has finished, and the error is what explains a failure.
type suiteLogger struct{ watermill.NopLogger }

func (suiteLogger) Error(msg string, err error, fields watermill.LogFields) {
	log.Printf("watermill error: %s: %v %v", msg, err, fields)
}

func (l suiteLogger) With(watermill.LogFields) watermill.LoggerAdapter { return l }
