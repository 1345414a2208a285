package bus

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/ThreeDotsLabs/watermill"
	wmsql "github.com/ThreeDotsLabs/watermill-sql/v4/pkg/sql"
	"github.com/ThreeDotsLabs/watermill/message"

	"handoff/pkg/wmsqlite"
)

// Subscriber returns a subscriber for a consumer group. Each Subscribe call
// gets a watermill-sql subscriber and a wake-aware backoff of its own, since
// the backoff can only rule out a lost wake when it serves a single consume
// loop. Subscribe creates the topic's tables when missing, but topics should
// normally be created up-front with InitTopics.
//
// Every message is handed to the handler inside the subscriber's
// transaction (wmsql.TxFromContext), which commits with the ack. On SQLite
// that transaction holds the database's only write lock from the moment the
// message is fetched, so read the channel promptly and keep handlers short:
// an unread message stalls every publisher and subscriber of the database.
func (b *Bus) Subscriber(consumerGroup string) (message.Subscriber, error) {
	return &subscriber{bus: b, group: consumerGroup}, nil
}

type subscriber struct {
	bus   *Bus
	group string

	mu     sync.Mutex
	closed bool
	subs   []subscription
}

type subscription struct {
	sub     *wmsql.Subscriber
	backoff *wmsqlite.BackoffManager
}

func (s *subscriber) Subscribe(ctx context.Context, topic string) (<-chan *message.Message, error) {
	b := s.bus
	if err := b.validateTopic(topic); err != nil {
		return nil, err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return nil, wmsql.ErrSubscriberClosed
	}
	backoff := wmsqlite.NewBackoffManager(b.waker(topic), b.opts.PollInterval, b.opts.RetryInterval)
	var manager wmsql.BackoffManager = backoff
	if b.onIdle != nil {
		manager = observedBackoff{backoff, b.onIdle}
	}
	ackDeadline := b.opts.AckDeadline
	sub, err := wmsql.NewSubscriber(b.beginner, wmsql.SubscriberConfig{
		ConsumerGroup:    s.group,
		AckDeadline:      &ackDeadline,
		PollInterval:     b.opts.PollInterval,
		ResendInterval:   b.opts.ResendInterval,
		RetryInterval:    b.opts.RetryInterval,
		BackoffManager:   manager,
		SchemaAdapter:    b.schema,
		OffsetsAdapter:   b.offsets,
		InitializeSchema: true,
	}, b.logger)
	if err != nil {
		return nil, fmt.Errorf("bus: subscribe to %s: %w", topic, err)
	}
	msgs, err := sub.Subscribe(ctx, topic)
	if err != nil {
		_ = sub.Close()
		return nil, fmt.Errorf("bus: subscribe to %s: %w", topic, err)
	}
	s.subs = append(s.subs, subscription{sub, backoff})
	return msgs, nil
}

// SubscribeInitialize implements message.SubscribeInitializer.
func (s *subscriber) SubscribeInitialize(topic string) error {
	return s.bus.InitTopics(context.Background(), topic)
}

// Close stops every backoff first, so no consume loop is left waiting out
// its poll interval while Close waits for them one by one.
func (s *subscriber) Close() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return nil
	}
	s.closed = true
	for _, sub := range s.subs {
		sub.backoff.Stop()
	}
	var errs []error
	for _, sub := range s.subs {
		errs = append(errs, sub.sub.Close())
	}
	s.subs = nil
	return errors.Join(errs...)
}

// observedBackoff reports idleness to a test before waiting.
type observedBackoff struct {
	*wmsqlite.BackoffManager
	onIdle func()
}

func (o observedBackoff) HandleError(logger watermill.LoggerAdapter, noMsg bool, err error) time.Duration {
	if noMsg && err == nil {
		o.onIdle()
	}
	return o.BackoffManager.HandleError(logger, noMsg, err)
}
