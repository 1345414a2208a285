package wmsqlite_test

import (
	"context"
	"log"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/ThreeDotsLabs/watermill"
	wmsql "github.com/ThreeDotsLabs/watermill-sql/v4/pkg/sql"
	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/ThreeDotsLabs/watermill/pubsub/tests"

	"handoff/pkg/sqldb"
	"handoff/pkg/wmsqlite"
)

// TestPubSub runs Watermill's universal suite with every feature the
// adapter claims.
func TestPubSub(t *testing.T) {
	t.Parallel()
	tests.TestPubSub(t, tests.Features{
		ConsumerGroups:      true,
		ExactlyOnceDelivery: true,
		GuaranteedOrder:     true,
		Persistent:          true,
	}, newPubSub, newConsumerGroupPubSub)
}

// TestPubSubAtLeastOnce runs the suite again without ExactlyOnceDelivery,
// because with it on the suite skips its two close tests.
func TestPubSubAtLeastOnce(t *testing.T) {
	t.Parallel()
	tests.TestPubSub(t, tests.Features{
		ConsumerGroups:      true,
		ExactlyOnceDelivery: false,
		GuaranteedOrder:     true,
		Persistent:          true,
	}, newPubSub, newConsumerGroupPubSub)
}

// suiteEnv is what every publisher and subscriber of one suite test shares:
// the test calls the constructor many times and expects one persistent
// Pub/Sub behind them.
type suiteEnv struct {
	beginner wmsql.Beginner
	waker    *wmsqlite.Waker
}

var (
	envsMu sync.Mutex
	envs   = map[*testing.T]*suiteEnv{}
)

func envFor(t *testing.T) *suiteEnv {
	envsMu.Lock()
	defer envsMu.Unlock()
	if env, ok := envs[t]; ok {
		return env
	}
	db, err := sqldb.Open(context.Background(), "sqlite:"+filepath.Join(t.TempDir(), "suite.db"))
	if err != nil {
		t.Fatal(err)
	}
	env := &suiteEnv{beginner: wmsql.BeginnerFromStdSQL(db.DB), waker: wmsqlite.NewWaker()}
	envs[t] = env
	// Registered after TempDir's cleanup, so it runs before the file goes.
	t.Cleanup(func() {
		envsMu.Lock()
		delete(envs, t)
		envsMu.Unlock()
		db.Close()
	})
	return env
}

func newPubSub(t *testing.T) (message.Publisher, message.Subscriber) {
	return newConsumerGroupPubSub(t, "")
}

func newConsumerGroupPubSub(t *testing.T, group string) (message.Publisher, message.Subscriber) {
	env := envFor(t)
	logger := errorLogger{}
	pub, err := wmsql.NewPublisher(env.beginner, wmsql.PublisherConfig{
		SchemaAdapter:        wmsqlite.SchemaAdapter{},
		AutoInitializeSchema: true,
	}, logger)
	if err != nil {
		t.Fatal(err)
	}
	const poll = 100 * time.Millisecond
	sub, err := wmsql.NewSubscriber(env.beginner, wmsql.SubscriberConfig{
		ConsumerGroup: group,
		// Short, so a message the suite leaves unread on a channel (it
		// holds the write lock) is given up soon instead of stalling the
		// test's other subscribers for the default 30s.
		AckDeadline:      ptr(2 * time.Second),
		PollInterval:     poll,
		ResendInterval:   10 * time.Millisecond,
		BackoffManager:   wmsqlite.NewBackoffManager(env.waker, poll, poll),
		SchemaAdapter:    wmsqlite.SchemaAdapter{},
		OffsetsAdapter:   wmsqlite.OffsetsAdapter{},
		InitializeSchema: true,
	}, logger)
	if err != nil {
		t.Fatal(err)
	}
	// Some suite tests never close what they build; closing here keeps
	// their loops from touching a database that cleanup is deleting.
	t.Cleanup(func() { _ = sub.Close() })
	return wakingPublisher{pub, env.waker}, &closingSubscriber{Subscriber: sub}
}

// closingSubscriber returns from Close only once every channel it handed
// out is closed. watermill-sql closes them from another goroutine after its
// own Close has returned, which the suite's close tests (rightly) count as
// a failure now and then; the bus package relays messages the same way.
type closingSubscriber struct {
	message.Subscriber
	relays  sync.WaitGroup
	once    sync.Once
	shut    sync.Once
	closing chan struct{}
}

func (s *closingSubscriber) Subscribe(ctx context.Context, topic string) (<-chan *message.Message, error) {
	in, err := s.Subscriber.Subscribe(ctx, topic)
	if err != nil {
		return nil, err
	}
	s.once.Do(func() { s.closing = make(chan struct{}) })
	out := make(chan *message.Message)
	s.relays.Add(1)
	go func() {
		defer s.relays.Done()
		defer close(out)
		for m := range in {
			select {
			case out <- m:
			case <-s.closing:
				m.Nack() // nobody reads any more: redelivered to the next subscriber
			}
		}
	}()
	return out, nil
}

func (s *closingSubscriber) Close() error {
	s.once.Do(func() { s.closing = make(chan struct{}) })
	s.shut.Do(func() { close(s.closing) })
	err := s.Subscriber.Close()
	s.relays.Wait()
	return err
}

// SubscribeInitialize passes schema initialisation through.
func (s *closingSubscriber) SubscribeInitialize(topic string) error {
	if init, ok := s.Subscriber.(message.SubscribeInitializer); ok {
		return init.SubscribeInitialize(topic)
	}
	return nil
}

// wakingPublisher wakes the test's subscribers after each publish, as the
// bus package does in the application.
type wakingPublisher struct {
	message.Publisher
	waker *wmsqlite.Waker
}

func (p wakingPublisher) Publish(topic string, msgs ...*message.Message) error {
	if err := p.Publisher.Publish(topic, msgs...); err != nil {
		return err
	}
	p.waker.Wake()
	return nil
}

func ptr[T any](v T) *T { return &v }

// errorLogger prints only errors: the suite is noisy enough on its own, and
// an error from the subscriber loop is what explains a failed test.
type errorLogger struct{ watermill.NopLogger }

func (errorLogger) Error(msg string, err error, fields watermill.LogFields) {
	log.Printf("watermill error: %s: %v %v", msg, err, fields)
}

func (l errorLogger) With(watermill.LogFields) watermill.LoggerAdapter { return l }
