package bus

import (
	"context"
	"errors"
	"fmt"

	"github.com/ThreeDotsLabs/watermill"
	wmsql "github.com/ThreeDotsLabs/watermill-sql/v4/pkg/sql"
	"github.com/ThreeDotsLabs/watermill/message"

	"handoff/pkg/sqldb"
)

// Publisher returns a publisher bound to exec: a transaction
// (wmsql.TxFromStdSQL(tx), or the tx from wmsql.TxFromContext inside a
// handler), whose commit publishes the messages and whose rollback discards
// them. It creates no tables, since a CREATE TABLE could commit the
// transaction; use InitTopics.
//
// Each publish also arranges the wake-up that the commit deserves. On SQLite
// it wakes this process's subscribers at once: the publishing transaction
// holds the write lock, so a woken subscriber's BEGIN IMMEDIATE waits for
// the commit and then sees the rows (after a rollback it finds nothing and
// waits again). On PostgreSQL it queues pg_notify on exec, which PostgreSQL
// delivers at commit, and never after a rollback, to every Bus listening,
// in any process.
func (b *Bus) Publisher(exec wmsql.ContextExecutor) (message.Publisher, error) {
	if exec == nil {
		return nil, errors.New("bus: nil executor")
	}
	inner, err := wmsql.NewPublisher(exec, wmsql.PublisherConfig{SchemaAdapter: b.schema}, b.logger)
	if err != nil {
		return nil, fmt.Errorf("bus: %w", err)
	}
	_, inTx := exec.(interface {
		Commit() error
		Rollback() error
	})
	return &publisher{bus: b, inner: inner, exec: exec, inTx: inTx}, nil
}

type publisher struct {
	bus   *Bus
	inner *wmsql.Publisher
	exec  wmsql.ContextExecutor
	inTx  bool
}

func (p *publisher) Publish(topic string, msgs ...*message.Message) error {
	if err := p.bus.validateTopic(topic); err != nil {
		return err
	}
	if len(msgs) == 0 {
		return nil
	}
	if err := p.inner.Publish(topic, msgs...); err != nil {
		return fmt.Errorf("bus: publish to %s: %w", topic, err)
	}
	if p.bus.db.Dialect == sqldb.SQLite {
		p.bus.wakeTopic(topic)
		return nil
	}
	return p.notify(msgs[0].Context(), topic)
}

func (p *publisher) notify(ctx context.Context, topic string) error {
	if tx, ok := p.exec.(*busTx); ok {
		tx.publishedTo(topic)
		return nil
	}
	_, err := p.exec.ExecContext(ctx, `SELECT pg_notify($1, $2)`, NotifyChannel, topic)
	if err == nil {
		return nil
	}
	if p.inTx {
		// The failed statement has aborted the transaction; the caller
		// must learn that its commit cannot succeed.
		return fmt.Errorf("bus: notify %s: %w", topic, err)
	}
	// Without a transaction the rows are already committed: failing now
	// would invite a duplicate publish, and a subscriber finds the rows
	// at its next poll anyway.
	p.bus.logger.Error("bus: notify after publish failed; subscribers will poll", err, watermill.LogFields{"topic": topic})
	return nil
}

func (p *publisher) Close() error { return p.inner.Close() }
