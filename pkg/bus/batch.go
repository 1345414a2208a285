package bus

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"time"

	"github.com/ThreeDotsLabs/watermill"
	wmsql "github.com/ThreeDotsLabs/watermill-sql/v4/pkg/sql"
	"github.com/ThreeDotsLabs/watermill/message"

	"handoff/pkg/sqldb"
	"handoff/pkg/wmsqlite"
)

// BatchHandler handles a run of a topic's messages, in offset order, read in
// one transaction. What it writes through tx commits together with the
// run's ack, or not at all. The function it may return runs after the
// commit: the place for effects outside the database, such as pushes to
// clients, which then never show what a rollback undid.
type BatchHandler func(ctx context.Context, tx *sql.Tx, msgs []*message.Message) (afterCommit func(), err error)

// BatchConfig describes one batch consumer.
type BatchConfig struct {
	Topic, Group string
	Handle       BatchHandler
	// MaxAttempts is how often one message is tried alone, after its batch
	// failed, before GiveUp is called and the message acked; default 5.
	MaxAttempts int
	// GiveUp is told of a message that kept failing; it is then skipped, so
	// it never holds back the messages behind it. Nil only logs.
	GiveUp func(msg *message.Message, err error)
	// Ready, if set, is called once the group's offsets are in place and the
	// first read is about to start.
	Ready func()
}

// ConsumeBatches reads the topic for the consumer group and hands up to
// BatchSize messages at a time to Handle, until ctx ends. It is for
// consumers whose per-message cost is mostly round trips to the database:
// one transaction, one read and one ack serve the whole run, and the
// handler can load and write what the run touches in a few statements.
//
// The reads and acks are watermill-sql's own queries for the bus's schema
// and offsets adapters, so a batch consumer and a watermill subscriber of
// the same group take turns on the same offsets row, and a group can move
// from one to the other without reading anything twice or skipping it.
//
// A failed batch is rolled back and read again in a new transaction (on
// PostgreSQL a serialization failure needs exactly that), first alone: its
// first message is retried by itself, and after MaxAttempts failures in a
// row it is given up and acked unhandled.
func (b *Bus) ConsumeBatches(ctx context.Context, cfg BatchConfig) error {
	if err := b.validateTopic(cfg.Topic); err != nil {
		return err
	}
	if cfg.Handle == nil || cfg.Group == "" {
		return errors.New("bus: a batch consumer needs a group and a handler")
	}
	if cfg.MaxAttempts <= 0 {
		cfg.MaxAttempts = 5
	}
	if err := b.prepareGroup(ctx, cfg.Topic, cfg.Group); err != nil {
		return err
	}
	backoff := b.backoff(cfg.Topic)
	stop := context.AfterFunc(ctx, backoff.Stop)
	defer stop()
	logger := b.logger.With(watermill.LogFields{"topic": cfg.Topic, "consumer_group": cfg.Group})
	if cfg.Ready != nil {
		cfg.Ready()
	}
	var (
		failures int
		lastErr  error
	)
	for ctx.Err() == nil {
		limit := b.opts.BatchSize
		if failures > 0 {
			limit = 1
		}
		giveUp := failures >= cfg.MaxAttempts
		n, err := b.consumeBatch(ctx, cfg, limit, giveUp, lastErr)
		switch {
		case err != nil && ctx.Err() == nil:
			// A clash with another transaction (a serialization failure, a
			// busy database) is read again at once and never counts towards
			// giving up: the next transaction sees a new state.
			if !wmsqlite.IsContention(err) {
				failures++
			}
			lastErr = err
			logger.Debug("Batch failed; reading it again", watermill.LogFields{"err": err.Error(), "failures": failures})
		case err == nil:
			failures, lastErr = 0, nil
		}
		if wait := backoff.HandleError(logger, n == 0 && err == nil, err); wait > 0 {
			select {
			case <-ctx.Done():
			case <-time.After(wait):
			}
		}
	}
	return nil
}

// prepareGroup gives the consumer group its offsets row, as a watermill-sql
// subscriber does before it first reads.
func (b *Bus) prepareGroup(ctx context.Context, topic, group string) error {
	if b.db.Dialect == sqldb.SQLite {
		return b.registerGroup(ctx, topic, group)
	}
	queries, err := b.offsets.BeforeSubscribingQueries(wmsql.BeforeSubscribingQueriesParams{Topic: topic, ConsumerGroup: group})
	if err != nil {
		return fmt.Errorf("bus: prepare group %q on %s: %w", group, topic, err)
	}
	return b.db.InTx(ctx, func(tx *sql.Tx) error {
		for _, q := range queries {
			if _, err := tx.ExecContext(ctx, q.Query, q.Args...); err != nil {
				return fmt.Errorf("bus: prepare group %q on %s: %w", group, topic, err)
			}
		}
		return nil
	})
}

// consumeBatch reads, handles and acks one batch of at most limit messages
// and reports how many it read. With giveUp it hands the first message to
// GiveUp instead of the handler.
func (b *Bus) consumeBatch(ctx context.Context, cfg BatchConfig, limit int, giveUp bool, lastErr error) (n int, err error) {
	tx, err := b.db.BeginTx(ctx, &sql.TxOptions{Isolation: b.schema.SubscribeIsolationLevel()})
	if err != nil {
		return 0, fmt.Errorf("bus: begin batch: %w", err)
	}
	committed := false
	defer func() {
		if !committed {
			_ = tx.Rollback()
		}
	}()
	rows, err := b.readBatch(ctx, tx, cfg)
	if err != nil || len(rows) == 0 {
		return 0, err
	}
	if len(rows) > limit {
		rows = rows[:limit]
	}
	msgs := make([]*message.Message, len(rows))
	for i, r := range rows {
		r.Msg.SetContext(ctx)
		msgs[i] = r.Msg
	}
	var after func()
	if giveUp {
		if cfg.GiveUp != nil {
			cfg.GiveUp(msgs[0], lastErr)
		} else {
			b.logger.Error("Giving up on message", lastErr, watermill.LogFields{"topic": cfg.Topic, "consumer_group": cfg.Group, "message_uuid": msgs[0].UUID})
		}
	} else if after, err = cfg.Handle(ctx, tx, msgs); err != nil {
		return len(rows), err
	}
	for _, r := range rows {
		q, err := b.offsets.ConsumedMessageQuery(wmsql.ConsumedMessageQueryParams{Topic: cfg.Topic, Row: r, ConsumerGroup: cfg.Group})
		if err != nil {
			return len(rows), fmt.Errorf("bus: consumed query: %w", err)
		}
		if !q.IsZero() {
			if _, err := tx.ExecContext(ctx, q.Query, q.Args...); err != nil {
				return len(rows), fmt.Errorf("bus: mark consumed: %w", err)
			}
		}
	}
	ack, err := b.offsets.AckMessageQuery(wmsql.AckMessageQueryParams{Topic: cfg.Topic, LastRow: rows[len(rows)-1], Rows: rows, ConsumerGroup: cfg.Group})
	if err != nil {
		return len(rows), fmt.Errorf("bus: ack query: %w", err)
	}
	if _, err := tx.ExecContext(ctx, ack.Query, ack.Args...); err != nil {
		return len(rows), fmt.Errorf("bus: ack batch: %w", err)
	}
	if err := tx.Commit(); err != nil {
		return len(rows), fmt.Errorf("bus: commit batch: %w", err)
	}
	committed = true
	if after != nil {
		after()
	}
	return len(rows), nil
}

// readBatch runs the schema adapter's select for the group in tx.
func (b *Bus) readBatch(ctx context.Context, tx *sql.Tx, cfg BatchConfig) ([]wmsql.Row, error) {
	sel, err := b.schema.SelectQuery(wmsql.SelectQueryParams{Topic: cfg.Topic, ConsumerGroup: cfg.Group, OffsetsAdapter: b.offsets})
	if err != nil {
		return nil, fmt.Errorf("bus: select query: %w", err)
	}
	rs, err := tx.QueryContext(ctx, sel.Query, sel.Args...)
	if err != nil {
		return nil, fmt.Errorf("bus: read batch: %w", err)
	}
	defer rs.Close()
	var rows []wmsql.Row
	for rs.Next() {
		r, err := b.schema.UnmarshalMessage(wmsql.UnmarshalMessageParams{Row: rs})
		if err != nil {
			return nil, fmt.Errorf("bus: read batch: %w", err)
		}
		rows = append(rows, r)
	}
	if err := rs.Err(); err != nil {
		return nil, fmt.Errorf("bus: read batch: %w", err)
	}
	return rows, nil
}
