package bus

import (
	"context"
	"database/sql"
	"sync"

	wmsql "github.com/ThreeDotsLabs/watermill-sql/v4/pkg/sql"
)

// The transactions the bus begins (watermill-sql's consume transactions)
// and those handed to Defer run what waits for their commit (AfterCommit)
// once committed. On PostgreSQL they also do not NOTIFY themselves, which
// would queue their commits on the server's notify lock (see
// pglisten.Notifier): they remember the topics published through them and,
// once committed, wake this process's subscribers at once and have the
// bus's Notifier tell the other processes. A notification lost to a crash
// in between costs the other processes at most a poll interval; the
// messages themselves are committed.

// busTx is a transaction begun by the bus's beginner.
type busTx struct {
	wmsql.Tx
	bus    *Bus
	mu     sync.Mutex
	topics []string
	after  []func()
}

// Unwrap returns the underlying transaction (for wmx.StdTx).
func (t *busTx) Unwrap() wmsql.Tx { return t.Tx }

// publishedTo records a topic to announce after the commit.
func (t *busTx) publishedTo(topic string) {
	t.mu.Lock()
	defer t.mu.Unlock()
	for _, have := range t.topics {
		if have == topic {
			return
		}
	}
	t.topics = append(t.topics, topic)
}

func (t *busTx) Commit() error {
	err := t.Tx.Commit()
	if err == nil {
		t.committed()
	} else {
		t.forget()
	}
	return err
}

func (t *busTx) Rollback() error {
	t.forget()
	return t.Tx.Rollback()
}

// committed announces the topics and runs what waited for the commit.
func (t *busTx) committed() {
	t.mu.Lock()
	topics, after := t.topics, t.after
	t.topics, t.after = nil, nil
	t.mu.Unlock()
	if len(topics) > 0 {
		t.bus.announce(topics)
	}
	for _, fn := range after {
		fn()
	}
}

func (t *busTx) forget() {
	t.mu.Lock()
	t.topics, t.after = nil, nil
	t.mu.Unlock()
}

// AfterCommit runs fn once exec has committed, when exec is a transaction
// the bus began (a consume transaction) or a Deferred's; it reports false
// for any other exec.
func AfterCommit(exec wmsql.ContextExecutor, fn func()) bool {
	t, ok := exec.(*busTx)
	if !ok {
		return false
	}
	t.mu.Lock()
	t.after = append(t.after, fn)
	t.mu.Unlock()
	return true
}

// Notify sends a notification on PostgreSQL through the bus's Notifier,
// without waiting; elsewhere it does nothing.
func (b *Bus) Notify(channel, payload string) {
	if b.notifier != nil {
		b.notifier.Notify(channel, payload)
	}
}

// beginner begins busTx transactions.
type beginner struct {
	wmsql.Beginner
	bus *Bus
}

func (b beginner) BeginTx(ctx context.Context, opts *sql.TxOptions) (wmsql.Tx, error) {
	tx, err := b.Beginner.BeginTx(ctx, opts)
	if err != nil {
		return nil, err
	}
	return &busTx{Tx: tx, bus: b.bus}, nil
}

// announce wakes this process's subscribers of the topics and has the
// notifier tell the other processes.
func (b *Bus) announce(topics []string) {
	for _, topic := range topics {
		b.wakeTopic(topic)
		if b.notifier != nil {
			b.notifier.Notify(NotifyChannel, topic)
		}
	}
}

// Deferred is a transaction the caller commits itself whose publishes wake
// their subscribers only when Committed is called after the commit.
type Deferred struct{ tx *busTx }

// Defer wraps tx for Publisher; call Committed once tx has committed.
func (b *Bus) Defer(tx *sql.Tx) *Deferred {
	return &Deferred{&busTx{Tx: wmsql.TxFromStdSQL(tx), bus: b}}
}

// Exec is the transaction to publish through (Publisher) and to write with.
func (d *Deferred) Exec() wmsql.Tx { return d.tx }

// Committed announces what was published through the transaction and
// runs what waited for its commit.
func (d *Deferred) Committed() { d.tx.committed() }
