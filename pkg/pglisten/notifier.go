package pglisten

import (
	"context"
	"database/sql"
	"sync"
)

// A NOTIFY sent from a transaction costs it a cluster-wide lock, taken at
// commit and held until the commit is on disk, so every notifying
// transaction of the server queues behind the one being flushed: under
// load that lock, not the work, bounds the throughput. A Notifier sends
// notifications after the commit instead, in one short transaction that
// does not wait for its flush (synchronous_commit off for it alone), with
// whatever accumulated while the previous send was in flight. The change
// it tells of is committed before it is sent; a notification lost to a
// crash in between is what listeners must survive anyway (a dropped LISTEN
// connection loses them too), so they keep a fallback: a poll, a resync.

// Notifier sends notifications in the background.
type Notifier struct {
	db  *sql.DB
	log Logger

	mu      sync.Mutex
	pending []note
	queued  map[note]bool
	signal  chan struct{}
	done    chan struct{}
	stop    context.CancelFunc
}

type note struct{ channel, payload string }

// MaxPayload is the longest payload PostgreSQL accepts (shorter than 8000
// bytes); Notify drops a longer one, with an error in the log.
const MaxPayload = 7999

// StartNotifier starts a Notifier that sends through db; Close stops it.
func StartNotifier(db *sql.DB, log Logger) *Notifier {
	ctx, stop := context.WithCancel(context.Background())
	n := &Notifier{db: db, log: log, queued: map[note]bool{}, signal: make(chan struct{}, 1), done: make(chan struct{}), stop: stop}
	go n.run(ctx)
	return n
}

// Notify queues a notification; one equal to a notification still queued
// is sent once (PostgreSQL folds equal notifications of a transaction
// likewise). It never blocks.
func (n *Notifier) Notify(channel, payload string) {
	if len(payload) > MaxPayload {
		n.log.Error("notification too long for PostgreSQL; dropped", "channel", channel, "bytes", len(payload))
		return
	}
	k := note{channel, payload}
	n.mu.Lock()
	if !n.queued[k] {
		n.queued[k] = true
		n.pending = append(n.pending, k)
	}
	n.mu.Unlock()
	select {
	case n.signal <- struct{}{}:
	default:
	}
}

func (n *Notifier) run(ctx context.Context) {
	defer close(n.done)
	for {
		select {
		case <-ctx.Done():
			return
		case <-n.signal:
		}
		n.mu.Lock()
		batch := n.pending
		n.pending = nil
		clear(n.queued)
		n.mu.Unlock()
		if len(batch) == 0 {
			continue
		}
		if err := n.send(ctx, batch); err != nil && len(batch) > 1 && ctx.Err() == nil {
			// One bad notification must not take the others with it.
			for _, k := range batch {
				_ = n.send(ctx, []note{k})
			}
		}
	}
}

// send sends notes in one statement, its own transaction; set_config with
// is_local turns synchronous commit off for that transaction alone. Order
// is kept: unnest yields the rows as given.
func (n *Notifier) send(ctx context.Context, batch []note) error {
	channels, payloads := make([]string, len(batch)), make([]string, len(batch))
	for i, k := range batch {
		channels[i], payloads[i] = k.channel, k.payload
	}
	_, err := n.db.ExecContext(ctx, `SELECT set_config('synchronous_commit', 'off', true), pg_notify(c, p) FROM unnest($1::text[], $2::text[]) AS x(c, p)`,
		channels, payloads)
	if err != nil && ctx.Err() == nil {
		n.log.Error("notify after commit failed; listeners fall back to polling or resync", "notifications", len(batch), "err", err)
	}
	return err
}

// Close stops the Notifier; what is still queued is dropped.
func (n *Notifier) Close() {
	n.stop()
	<-n.done
}
