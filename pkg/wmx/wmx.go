// Package wmx holds the Watermill middleware that makes a handler's work
// exactly-once on watermill-sql: a savepoint per attempt, SQL-backed
// deduplication through the message's transaction, and bounded retries that
// turn a poison message into a reported failure instead of a blocked topic.
package wmx

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"strings"
	"time"

	wmsql "github.com/ThreeDotsLabs/watermill-sql/v4/pkg/sql"
	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/ThreeDotsLabs/watermill/message/router/middleware"

	"handoff/pkg/sqldb"
)

// Tx returns the consume transaction of the message being handled.
func Tx(msg *message.Message) (wmsql.Tx, error) {
	tx, ok := wmsql.TxFromContext(msg.Context())
	if !ok {
		return nil, fmt.Errorf("message %s: no consume transaction in context", msg.UUID)
	}
	return tx, nil
}

// Savepoint runs each attempt of the handler inside a SAVEPOINT of the
// consume transaction. watermill-sql does not roll the transaction back on
// nack, so without this a failed attempt's writes (and its dedup key) would
// be committed along with the retry. On PostgreSQL the rollback also clears
// the aborted-transaction state a failed statement leaves behind.
func Savepoint(h message.HandlerFunc) message.HandlerFunc {
	return func(msg *message.Message) ([]*message.Message, error) {
		tx, err := Tx(msg)
		if err != nil {
			return nil, err
		}
		ctx := msg.Context()
		if _, err := tx.ExecContext(ctx, "SAVEPOINT attempt"); err != nil {
			return nil, fmt.Errorf("savepoint: %w", err)
		}
		out, herr := h(msg)
		if herr != nil {
			if _, err := tx.ExecContext(ctx, "ROLLBACK TO SAVEPOINT attempt"); err != nil {
				return nil, errors.Join(herr, fmt.Errorf("rollback to savepoint: %w", err))
			}
			_, _ = tx.ExecContext(ctx, "RELEASE SAVEPOINT attempt")
			return nil, herr
		}
		if _, err := tx.ExecContext(ctx, "RELEASE SAVEPOINT attempt"); err != nil {
			return nil, fmt.Errorf("release savepoint: %w", err)
		}
		return out, nil
	}
}

// DedupRepository is a middleware.ExpiringKeyRepository that records keys in
// a table through the message's own transaction, so the key commits with
// the handler's work and the ack, or not at all.
type DedupRepository struct {
	Dialect sqldb.Dialect
	// Table is the table of keys, created by MigrateDedup.
	Table string
}

// IsDuplicate records key and reports whether it was already there.
func (r DedupRepository) IsDuplicate(ctx context.Context, key string) (bool, error) {
	tx, ok := wmsql.TxFromContext(ctx)
	if !ok {
		return false, errors.New("dedup: no consume transaction in context")
	}
	// ON CONFLICT DO NOTHING never raises, so on PostgreSQL a duplicate
	// cannot abort the surrounding transaction. processed_at comes from the
	// database's clock, the one PruneDedup measures the window by, so
	// processes with skewed clocks agree on a key's age.
	res, err := tx.ExecContext(ctx, r.Dialect.Q(`INSERT INTO `+r.Table+` (key, processed_at) VALUES ($1, `+r.Dialect.NowMillis()+`) ON CONFLICT (key) DO NOTHING`),
		key)
	if err != nil {
		return false, fmt.Errorf("dedup %s: %w", key, err)
	}
	n, err := res.RowsAffected()
	if err != nil {
		return false, fmt.Errorf("dedup %s: %w", key, err)
	}
	return n == 0, nil
}

// Fresh records keys through tx, a consume transaction, in one statement
// and returns the ones that were not there yet: the batch form of
// IsDuplicate, under the same keys.
func (r DedupRepository) Fresh(ctx context.Context, tx *sql.Tx, keys []string) (map[string]bool, error) {
	fresh := make(map[string]bool, len(keys))
	if len(keys) == 0 {
		return fresh, nil
	}
	var q strings.Builder
	q.WriteString(`INSERT INTO ` + r.Table + ` (key, processed_at) VALUES `)
	args := make([]any, len(keys))
	for i, k := range keys {
		if i > 0 {
			q.WriteString(", ")
		}
		fmt.Fprintf(&q, "($%d, %s)", i+1, r.Dialect.NowMillis())
		args[i] = k
	}
	q.WriteString(` ON CONFLICT (key) DO NOTHING RETURNING key`)
	rows, err := tx.QueryContext(ctx, r.Dialect.Q(q.String()), args...)
	if err != nil {
		return nil, fmt.Errorf("dedup %d keys: %w", len(keys), err)
	}
	defer rows.Close()
	for rows.Next() {
		var k string
		if err := rows.Scan(&k); err != nil {
			return nil, fmt.Errorf("dedup %d keys: %w", len(keys), err)
		}
		fresh[k] = true
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("dedup %d keys: %w", len(keys), err)
	}
	return fresh, nil
}

// DedupTableSQL is the statement that creates a dedup table; owners put it in
// their migrations.
func DedupTableSQL(table string) string {
	return `CREATE TABLE IF NOT EXISTS ` + table + ` (key TEXT PRIMARY KEY, processed_at BIGINT NOT NULL)`
}

// Deduplicator returns Watermill's deduplication middleware for one handler,
// keyed by (handler, message id), never by a payload hash: two different
// messages with equal payloads are both processed.
func Deduplicator(repo middleware.ExpiringKeyRepository, handler string) message.HandlerMiddleware {
	d := &middleware.Deduplicator{
		KeyFactory: func(msg *message.Message) (string, error) { return handler + "/" + msg.UUID, nil },
		Repository: repo,
		Timeout:    10 * time.Second,
	}
	return d.Middleware
}

// Permanent marks an error that no retry can fix (a malformed message, a
// business rule); Retry gives up on it at once.
func Permanent(err error) error { return permanentError{err} }

type permanentError struct{ err error }

func (p permanentError) Error() string { return p.err.Error() }
func (p permanentError) Unwrap() error { return p.err }

// IsPermanent reports whether err was marked with Permanent.
func IsPermanent(err error) bool {
	var p permanentError
	return errors.As(err, &p)
}

// RetryPolicy bounds the attempts of a handler.
type RetryPolicy struct {
	// MaxAttempts is the number of attempts before a message is given up.
	MaxAttempts int
	// InitialBackoff doubles after each failed attempt. Attempts run inside
	// the consume transaction, so keep the total short.
	InitialBackoff time.Duration
	// OnFailedAttempt, when set, runs after an attempt failed and was rolled
	// back, with the attempt number; it may write through the transaction.
	OnFailedAttempt func(msg *message.Message, attempt int, err error)
	// OnGiveUp runs when attempts are exhausted or the error is permanent.
	// It writes the failure (through the transaction) so the message can be
	// acked and never blocks the messages behind it; if it returns an error
	// the message is nacked and redelivered.
	OnGiveUp func(msg *message.Message, attempts int, err error) ([]*message.Message, error)
}

// Retry returns the middleware that applies the policy. It must sit outside
// Savepoint so that each attempt starts from a clean savepoint.
func (p RetryPolicy) Retry(h message.HandlerFunc) message.HandlerFunc {
	return func(msg *message.Message) ([]*message.Message, error) {
		backoff := p.InitialBackoff
		var err error
		for attempt := 1; ; attempt++ {
			var out []*message.Message
			out, err = h(msg)
			if err == nil {
				return out, nil
			}
			if msg.Context().Err() != nil {
				return nil, err
			}
			if IsPermanent(err) || attempt >= p.MaxAttempts {
				if p.OnGiveUp == nil {
					return nil, err
				}
				return p.OnGiveUp(msg, attempt, err)
			}
			if p.OnFailedAttempt != nil {
				p.OnFailedAttempt(msg, attempt, err)
			}
			select {
			case <-time.After(backoff):
			case <-msg.Context().Done():
				return nil, err
			}
			backoff *= 2
		}
	}
}

// StdTx returns the consume transaction of the message as a *sql.Tx, for
// code that works with database/sql directly.
func StdTx(msg *message.Message) (*sql.Tx, error) {
	tx, err := Tx(msg)
	if err != nil {
		return nil, err
	}
	for {
		u, ok := tx.(interface{ Unwrap() wmsql.Tx })
		if !ok {
			break
		}
		tx = u.Unwrap()
	}
	std, ok := tx.(*wmsql.StdSQLTx)
	if !ok {
		return nil, fmt.Errorf("message %s: consume transaction is %T, not database/sql", msg.UUID, tx)
	}
	return std.Tx, nil
}
