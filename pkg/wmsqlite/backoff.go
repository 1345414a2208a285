package wmsqlite

import (
	"context"
	"errors"
	"strings"
	"sync"
	"time"

	"github.com/ThreeDotsLabs/watermill"
	"modernc.org/sqlite"
	sqlite3 "modernc.org/sqlite/lib"
)

// BackoffManager is a watermill-sql BackoffManager that turns the
// subscriber's poll into a wait on a Waker, so a published message is picked
// up at once instead of at the next poll.
//
// watermill-sql sleeps for whatever HandleError returns and cannot be
// interrupted while it sleeps, so when a query found nothing HandleError
// itself blocks on the Waker, at most for the poll interval, and then
// returns 0 to make the subscriber query again straight away.
//
// The lost wake (a Wake landing after the subscriber's empty SELECT but
// before it starts waiting) is closed by counting: HandleError remembers the
// Waker's count when it returns, which is before the subscriber begins its
// next transaction, and the next wait returns at once if the count has moved
// since. Any wake after that moment therefore causes one more query, which
// at worst finds nothing. A wake before it is safe to forget when the
// publisher wakes only after its insert: on SQLite it then holds the write
// lock until its commit, so the subscriber's BEGIN IMMEDIATE waits for that
// commit and the query sees the rows; on PostgreSQL the notification comes
// after the commit, so the rows are in the subscriber's snapshot. What
// remains:
//
//   - The guarantee needs one BackoffManager per subscription (per consume
//     loop). Shared by several loops, the remembered count is whichever loop
//     returned last, and a wake can then be missed for up to one poll
//     interval.
//   - On PostgreSQL a committed row can stay invisible to the subscriber
//     while an older transaction is open (the default schema's
//     pg_snapshot_xmin filter); its notification has already been used, so
//     the row waits for the poll interval.
//   - A wake that never arrives (a notification connection that is down, a
//     process that publishes without waking) costs at most the poll
//     interval too.
type BackoffManager struct {
	waker         *Waker
	pollInterval  time.Duration
	retryInterval time.Duration

	mu   sync.Mutex
	seen uint64

	// rechecks are the short pauses before querying again after a wake
	// that found nothing (SetRechecks); recheck counts those used since.
	rechecks []time.Duration
	recheck  int
	woken    bool

	stopOnce sync.Once
	stop     chan struct{}
}

// NewBackoffManager returns a BackoffManager that waits on waker for at most
// pollInterval when there is nothing to read, and retryInterval after an
// error other than lock contention. A nil waker makes it a plain poller.
func NewBackoffManager(waker *Waker, pollInterval, retryInterval time.Duration) *BackoffManager {
	if pollInterval <= 0 {
		pollInterval = 100 * time.Millisecond
	}
	if retryInterval <= 0 {
		retryInterval = time.Second
	}
	m := &BackoffManager{
		waker:         waker,
		pollInterval:  pollInterval,
		retryInterval: retryInterval,
		stop:          make(chan struct{}),
	}
	if waker != nil {
		m.seen = waker.Count()
	}
	return m
}

// HandleError implements watermill-sql's BackoffManager.
func (m *BackoffManager) HandleError(logger watermill.LoggerAdapter, noMsg bool, err error) time.Duration {
	defer m.remember()
	switch {
	case err != nil && IsContention(err):
		logger.Debug("Lock contention while querying for messages, retrying at once", watermill.LogFields{"err": err.Error()})
		return 0
	case err != nil && (errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded)):
		// The subscription is ending; the loop sees that before it queries again.
		logger.Debug("Querying for messages interrupted", watermill.LogFields{"err": err.Error()})
		return m.retryInterval
	case err != nil:
		logger.Error("Error querying for messages", err, watermill.LogFields{"wait_time": m.retryInterval})
		return m.retryInterval
	case !noMsg:
		m.mu.Lock()
		m.woken = false // the wake found its row; an empty query now means caught up
		m.mu.Unlock()
		return 0
	}
	if m.waker == nil {
		return m.pollInterval
	}
	m.mu.Lock()
	seen := m.seen
	if m.woken && m.recheck < len(m.rechecks) {
		// Woken, yet nothing visible: the row may still be hidden behind an
		// older open transaction (PostgreSQL's xmin horizon). Look again
		// shortly instead of waiting for the next wake or the poll.
		d := m.rechecks[m.recheck]
		m.recheck++
		m.mu.Unlock()
		return d
	}
	m.mu.Unlock()
	woken := m.waker.Wait(seen, m.pollInterval, m.stop)
	m.mu.Lock()
	m.woken, m.recheck = woken, 0
	m.mu.Unlock()
	if m.stopped() {
		// The library's own sleep is the one place it watches for Close, so
		// sleep there instead of spinning until Close arrives.
		return m.pollInterval
	}
	return 0
}

// SetRechecks makes the manager query again after each of these pauses
// when a query that followed a wake found nothing, before it waits for the
// next wake. For PostgreSQL's default schema, where a woken subscriber can
// miss a committed row for as long as an older transaction stays open;
// call it before the subscriber starts.
func (m *BackoffManager) SetRechecks(pauses ...time.Duration) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.rechecks = pauses
}

// Stop ends the current wait and makes later ones fall back to the
// library's interruptible sleep; call it just before closing the subscriber
// so Close does not wait out a poll interval.
func (m *BackoffManager) Stop() {
	m.stopOnce.Do(func() { close(m.stop) })
}

func (m *BackoffManager) stopped() bool {
	select {
	case <-m.stop:
		return true
	default:
		return false
	}
}

func (m *BackoffManager) remember() {
	if m.waker == nil {
		return
	}
	n := m.waker.Count()
	m.mu.Lock()
	m.seen = n
	m.mu.Unlock()
}

// IsContention reports whether err is a transient clash with another
// transaction that is worth retrying at once: SQLite's SQLITE_BUSY or
// SQLITE_LOCKED ("database is locked"), or PostgreSQL's serialization
// failure and deadlock (what two subscribers of one consumer group get).
func IsContention(err error) bool {
	if err == nil {
		return false
	}
	var se *sqlite.Error
	if errors.As(err, &se) {
		// Extended result codes keep the primary code in the low byte.
		switch se.Code() & 0xff {
		case sqlite3.SQLITE_BUSY, sqlite3.SQLITE_LOCKED:
			return true
		}
	}
	var pg interface{ SQLState() string }
	if errors.As(err, &pg) {
		switch pg.SQLState() {
		case "40001", "40P01":
			return true
		}
	}
	msg := strings.ToLower(err.Error())
	for _, s := range []string{"database is locked", "database table is locked", "sqlite_busy", "deadlock", "concurrent update"} {
		if strings.Contains(msg, s) {
			return true
		}
	}
	return false
}
