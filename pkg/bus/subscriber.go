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

	"handoff/pkg/sqldb"
	"handoff/pkg/wmsqlite"
)

// closeGrace bounds how long a subscription's Close waits, in all, for the
// handler of a delivered message to ack or nack it and for the consume loop
// to stop. Past it the subscription's context is cancelled, which rolls the
// consume transaction back instead of committing it. Handlers are short
// (consume transactions stall delivery while open), so this only catches
// the exceptional one.
const closeGrace = 2 * time.Second

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
//
// Close waits (up to a few seconds) for a delivered message to be acked or
// nacked before it stops the consume loop, and returns only once every
// channel it handed out is closed. watermill-sql alone would commit the
// consume transaction at once, with whatever a running handler had written
// so far and without its ack, and could return while a loop still waited
// on another process's lock.
func (b *Bus) Subscriber(consumerGroup string) (message.Subscriber, error) {
	return &subscriber{bus: b, group: consumerGroup}, nil
}

type subscriber struct {
	bus   *Bus
	group string

	mu     sync.Mutex
	closed bool
	subs   []*subscription
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
	if b.db.Dialect == sqldb.SQLite {
		if err := b.registerGroup(ctx, topic, s.group); err != nil {
			return nil, err
		}
	}
	backoff := b.backoff(topic)
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
	ctx, cancel := context.WithCancel(ctx)
	in, err := sub.Subscribe(ctx, topic)
	if err != nil {
		cancel()
		_ = sub.Close()
		return nil, fmt.Errorf("bus: subscribe to %s: %w", topic, err)
	}
	sn := &subscription{
		sub:     sub,
		backoff: backoff,
		cancel:  cancel,
		closing: make(chan struct{}),
		quiet:   make(chan struct{}),
		done:    make(chan struct{}),
	}
	out := make(chan *message.Message)
	go sn.forward(ctx, in, out)
	s.subs = append(s.subs, sn)
	return out, nil
}

// SubscribeInitialize implements message.SubscribeInitializer.
func (s *subscriber) SubscribeInitialize(topic string) error {
	return s.bus.InitTopics(context.Background(), topic)
}

// Close closes every subscription at once: closed one after another, a
// loop waiting on the consumer group's lock could wait for a sibling that
// is not closed yet.
func (s *subscriber) Close() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return nil
	}
	s.closed = true
	errs := make([]error, len(s.subs))
	var wg sync.WaitGroup
	for i, sn := range s.subs {
		wg.Go(func() { errs[i] = sn.close() })
	}
	wg.Wait()
	s.subs = nil
	return errors.Join(errs...)
}

// subscription is one consume loop and the goroutine that relays its
// messages to the caller, which is what lets Close see whether a delivered
// message is still being handled.
type subscription struct {
	sub     *wmsql.Subscriber
	backoff *wmsqlite.BackoffManager
	cancel  context.CancelFunc
	closing chan struct{} // closed when Close begins: deliver nothing more
	quiet   chan struct{} // closed once closing and no delivered message is unresolved
	done    chan struct{} // closed once the caller's channel is closed
}

// forward relays messages from the consume loop to the caller. After each
// delivery it waits for the message's verdict before taking the next one;
// the loop would not send another before that anyway.
func (sn *subscription) forward(ctx context.Context, in <-chan *message.Message, out chan<- *message.Message) {
	defer close(sn.done)
	defer close(out)
	var quietOnce sync.Once
	markQuiet := func() { quietOnce.Do(func() { close(sn.quiet) }) }
	defer markQuiet()
	for {
		select {
		case <-sn.closing:
			markQuiet()
			// Whatever the loop still sends is dropped unacked; it sees
			// Close too and discards it.
			for range in {
			}
			return
		case m, ok := <-in:
			if !ok {
				return
			}
			// Taken before the handoff: a handler may replace the message's
			// context, and this one ends when the loop gives up on the
			// message (ack deadline, Close).
			mctx := m.Context()
			if sn.isClosing() {
				continue
			}
			select {
			case out <- m:
			case <-sn.closing:
				continue
			case <-ctx.Done():
				continue
			}
			select {
			case <-m.Acked():
				// The loop ends the message's context once it has taken
				// the ack into its batch; only then can Close no longer
				// lose it.
				<-mctx.Done()
			case <-m.Nacked():
				// The loop sends a copy again after ResendInterval.
			case <-mctx.Done():
			}
		}
	}
}

func (sn *subscription) isClosing() bool {
	select {
	case <-sn.closing:
		return true
	default:
		return false
	}
}

// close stops the subscription. A handler still running after closeGrace
// has its transaction rolled back by the cancel, not committed half done;
// the message is delivered again later, as after any shutdown.
func (sn *subscription) close() error {
	sn.backoff.Stop()
	close(sn.closing)
	grace := time.NewTimer(closeGrace)
	defer grace.Stop()
	select {
	case <-sn.quiet:
	case <-grace.C:
		sn.cancel()
	}
	closed := make(chan error, 1)
	go func() { closed <- sn.sub.Close() }()
	var err error
	select {
	case err = <-closed:
	case <-grace.C:
		// Stuck in a query, typically a lock wait behind another process's
		// consumer of the same group, which Close alone cannot interrupt.
		sn.cancel()
		err = <-closed
	}
	sn.cancel()
	<-sn.done
	return err
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
