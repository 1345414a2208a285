package bus

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"time"

	wmsql "github.com/ThreeDotsLabs/watermill-sql/v4/pkg/sql"

	"handoff/pkg/sqldb"
	"handoff/pkg/wmsqlite"
)

// Prune deletes, topic by topic, the messages that every consumer group of
// the topic has acknowledged and that are older than olderThan by the
// database's clock, at most batch rows per transaction, and returns how
// many it deleted. A topic without consumer groups keeps everything; a
// topic whose tables do not exist (see InitTopics) is an error.
//
// Each batch is a short transaction of its own: on SQLite a long one would
// hold the only write lock, and on PostgreSQL it would hold a transaction
// id and stall delivery on every topic. Only rows at or before every
// group's position are deleted, and a consume loop reads only past its
// group's position, so pruning can neither replay nor skip a message.
//
// Every group that ever subscribed to a topic holds its messages back,
// including one that is gone for good: delete a retired group's row from
// the topic's offsets table, or the topic is never pruned again. A group
// that first subscribes after a prune starts from what is left.
func (b *Bus) Prune(ctx context.Context, olderThan time.Duration, batch int, topics ...string) (deleted int64, err error) {
	if olderThan < 0 {
		return 0, errors.New("bus: prune: negative age")
	}
	if batch <= 0 {
		return 0, errors.New("bus: prune: batch must be positive")
	}
	for _, topic := range topics {
		if err := b.validateTopic(topic); err != nil {
			return deleted, err
		}
		query, args := b.pruneQuery(topic, olderThan, batch)
		for {
			n, err := b.pruneBatch(ctx, query, args)
			deleted += n
			if err != nil {
				return deleted, fmt.Errorf("bus: prune %s: %w", topic, err)
			}
			if n < int64(batch) {
				break
			}
		}
	}
	return deleted, nil
}

func (b *Bus) pruneBatch(ctx context.Context, query string, args []any) (int64, error) {
	var n int64
	err := b.db.InTx(ctx, func(tx *sql.Tx) error {
		res, err := tx.ExecContext(ctx, query, args...)
		if err != nil {
			return err
		}
		n, err = res.RowsAffected()
		return err
	})
	if err != nil {
		return 0, err
	}
	return n, nil
}

// pruneQuery returns the statement that deletes one batch of a topic.
func (b *Bus) pruneQuery(topic string, olderThan time.Duration, batch int) (string, []any) {
	if b.db.Dialect == sqldb.SQLite {
		// One writer and never-reused AUTOINCREMENT offsets make offset
		// order the consume order, and a group's row holds the offset of
		// the last message it acked (a group that has subscribed but not
		// acked has a row at 0, see registerGroup). created_at is UTC text
		// in a fixed-width format, so text order is time order.
		messages, offsets := wmsqlite.MessagesTable(topic), wmsqlite.OffsetsTable(topic)
		return `DELETE FROM ` + messages + ` WHERE "offset" IN (
			SELECT "offset" FROM ` + messages + `
			WHERE "offset" <= (SELECT min(offset_acked) FROM ` + offsets + `)
			AND created_at < strftime('%Y-%m-%dT%H:%M:%fZ', 'now', ?1)
			ORDER BY "offset" LIMIT ?2)`,
			[]any{fmt.Sprintf("-%.3f seconds", olderThan.Seconds()), batch}
	}
	// The default PostgreSQL schema consumes in (transaction_id, offset)
	// order, not offset order: a transaction that took its id early but
	// inserted late has higher offsets than rows delivered after it. So a
	// group's position is the pair (last_processed_transaction_id,
	// offset_acked), and a row is done for every group when it is at or
	// before the least of those pairs; comparing offsets alone would delete
	// rows some group has not read. A NULL offset sorts first, so such a
	// group holds back its whole transaction. No group row, no least pair,
	// a NULL comparison, nothing deleted.
	//
	// created_at is a TIMESTAMP that watermill fills with CURRENT_TIMESTAMP
	// in the session's time zone; LOCALTIMESTAMP is the same clock in the
	// same terms.
	schema := b.schema.(wmsql.DefaultPostgreSQLSchema)
	offsetsAdapter := b.offsets.(wmsql.DefaultPostgreSQLOffsetsAdapter)
	messages, offsets := schema.MessagesTable(topic), offsetsAdapter.MessagesOffsetsTable(topic)
	return `DELETE FROM ` + messages + ` WHERE (transaction_id, "offset") IN (
		SELECT transaction_id, "offset" FROM ` + messages + `
		WHERE (transaction_id, "offset") <= (
			SELECT last_processed_transaction_id, offset_acked FROM ` + offsets + `
			ORDER BY last_processed_transaction_id, offset_acked NULLS FIRST
			LIMIT 1)
		AND created_at < LOCALTIMESTAMP - make_interval(secs => $1)
		ORDER BY transaction_id, "offset"
		LIMIT $2)`,
		[]any{olderThan.Seconds(), batch}
}

// registerGroup gives a SQLite consumer group its offsets row (at 0) before
// it first consumes. The SQLite adapter adds the row only with the first
// ack, and until then Prune could not know the group and would delete
// messages it has not read; PostgreSQL's offsets adapter adds the row at
// subscribe time itself. The row is looked for first, so only a group's
// first subscription takes the write lock.
func (b *Bus) registerGroup(ctx context.Context, topic, group string) error {
	offsets := wmsqlite.OffsetsTable(topic)
	var one int
	err := b.db.QueryRowContext(ctx, `SELECT 1 FROM `+offsets+` WHERE consumer_group = ?`, group).Scan(&one)
	if err == nil {
		return nil
	}
	// Missing row or missing table: create both, idempotently.
	if err := b.InitTopics(ctx, topic); err != nil {
		return err
	}
	_, err = b.db.ExecContext(ctx, `INSERT INTO `+offsets+` (consumer_group, offset_acked) VALUES (?, 0) ON CONFLICT (consumer_group) DO NOTHING`, group)
	if err != nil {
		return fmt.Errorf("bus: register consumer group %q on %s: %w", group, topic, err)
	}
	return nil
}
