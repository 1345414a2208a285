package wmx

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"regexp"
	"time"

	"handoff/pkg/sqldb"
)

var tableName = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_]*$`)

// PruneDedup deletes the keys of a dedup table that are older than
// olderThan by the database's clock, at most batch rows per transaction,
// and returns how many it deleted.
//
// The window must outlast any redelivery of a message: a key pruned while
// its message can still come back lets the duplicate through. Messages come
// back until they are acked, and by id when a producer repeats itself (a
// resubmitted draft revision), so keep the window well above the ack
// deadline and above the time a client may retry.
func PruneDedup(ctx context.Context, db *sqldb.DB, table string, olderThan time.Duration, batch int) (int64, error) {
	if !tableName.MatchString(table) {
		return 0, fmt.Errorf("prune dedup: invalid table name %q", table)
	}
	if olderThan < 0 {
		return 0, errors.New("prune dedup: negative age")
	}
	if batch <= 0 {
		return 0, errors.New("prune dedup: batch must be positive")
	}
	// Batches keep each transaction short: on SQLite it holds the only
	// write lock, on PostgreSQL its transaction id holds back the delivery
	// of every topic.
	query := db.Q(`DELETE FROM ` + table + ` WHERE key IN (
		SELECT key FROM ` + table + ` WHERE processed_at < ` + db.Dialect.NowMillis() + ` - $1 LIMIT $2)`)
	var deleted int64
	for {
		var n int64
		err := db.InTx(ctx, func(tx *sql.Tx) error {
			res, err := tx.ExecContext(ctx, query, olderThan.Milliseconds(), batch)
			if err != nil {
				return err
			}
			n, err = res.RowsAffected()
			return err
		})
		if err != nil {
			return deleted, fmt.Errorf("prune dedup %s: %w", table, err)
		}
		deleted += n
		if n < int64(batch) {
			return deleted, nil
		}
	}
}
