package sqldb

import (
	"context"
	"database/sql"
	"database/sql/driver"
	"fmt"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"modernc.org/sqlite"
)

// SQLiteDriver is the database/sql driver name openSQLite uses:
// modernc.org/sqlite behind a process-wide write gate.
//
// SQLite has one writer per file. Two writers of one process used to meet
// in SQLite's busy handler, whose loser sleeps 1, 2, 5, 10 ... ms between
// tries, however soon the winner is done. The gate makes the writers of a
// process queue on a Go channel instead, which hands over in microseconds.
// busy_timeout stays in the DSN for writers of other processes sharing the
// file (an edge and an interior on one SQLite file).
//
// What takes the gate:
//   - a transaction that is not read-only, from BEGIN until Commit or
//     Rollback returns (either of which releases it once, also when it
//     fails), or until its connection is closed;
//   - an INSERT, UPDATE, DELETE or REPLACE run with Exec outside a
//     transaction, for the statement's duration. SQLite takes the write
//     lock for any of these, so waiting for the gate instead blocks
//     nothing that did not block before.
//
// Everything else runs as before, waiting in the busy handler if it writes:
// queries (under WAL readers never block; a write through Query, INSERT ...
// RETURNING, is not gated but still safe), and other statements run with
// Exec outside a transaction: DDL, PRAGMA, a BEGIN run by hand. These are
// rare, and some do not write at all: CREATE TABLE IF NOT EXISTS on a table
// that exists, which watermill-sql's Subscribe runs, takes no lock, so it
// must go through while a subscriber whose fetched message waits unread
// holds the lock (and, for as long as it waits, the gate).
//
// A goroutine that begins a second write transaction, or runs a gated Exec
// outside it, while it holds a write transaction now waits for itself.
// It did before too, in the busy handler, until busy_timeout; the gate
// gives up after the same time with the same "database is locked", so the
// behaviour does not change.
const SQLiteDriver = "sqlite-gated"

// busyTimeout is both SQLite's busy_timeout in SQLiteDSN and the longest
// wait for the write gate, so a writer gives up after the same time whether
// it queued behind this process or another one.
const busyTimeout = 10 * time.Second

// errGateBusy says "database is locked" like SQLITE_BUSY does, so code that
// retries contention by message (wmsqlite.IsContention) treats it the same.
var errGateBusy = fmt.Errorf("database is locked: waited %s for another writer of this process (sqldb write gate)", busyTimeout)

func init() {
	sql.Register(SQLiteDriver, gatedDriver{})
}

// writeGate admits one writer at a time. It is a channel with room for one
// token, held by whoever put it there: the wait can select on a context and
// a timer, and blocked senders are served in arrival order, the token going
// straight to the first of them on release, so a newcomer cannot barge in.
type writeGate struct {
	ch chan struct{}
}

// acquire takes the gate, giving up when ctx ends or after wait.
func (g *writeGate) acquire(ctx context.Context, wait time.Duration) error {
	select {
	case g.ch <- struct{}{}:
		return nil
	default:
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	t := time.NewTimer(wait)
	defer t.Stop()
	select {
	case g.ch <- struct{}{}:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return errGateBusy
	}
}

func (g *writeGate) release() {
	select {
	case <-g.ch:
	default:
		panic("sqldb: write gate released but not held")
	}
}

var (
	gatesMu sync.Mutex
	// gates holds one gate per database file, shared by every pool of the
	// process that opens it. Entries are never removed: one small struct
	// per file a process ever opened, and a pool closed while another still
	// has the file open must not leave the two with different gates.
	gates = map[string]*writeGate{}
)

// gateFor returns the gate of the file dsn names, or nil for an in-memory
// database, which has no other writer to queue behind.
func gateFor(dsn string) (*writeGate, error) {
	name, query, _ := strings.Cut(strings.TrimPrefix(dsn, "file:"), "?")
	if name == "" || name == ":memory:" || strings.Contains(query, "mode=memory") {
		return nil, nil
	}
	abs, err := filepath.Abs(name)
	if err != nil {
		return nil, err
	}
	gatesMu.Lock()
	defer gatesMu.Unlock()
	g := gates[abs]
	if g == nil {
		g = &writeGate{ch: make(chan struct{}, 1)}
		gates[abs] = g
	}
	return g, nil
}

type gatedDriver struct{}

func (d gatedDriver) Open(dsn string) (driver.Conn, error) {
	c, err := d.OpenConnector(dsn)
	if err != nil {
		return nil, err
	}
	return c.Connect(context.Background())
}

// OpenConnector lets database/sql look the gate up once per pool instead
// of once per connection.
func (gatedDriver) OpenConnector(dsn string) (driver.Connector, error) {
	inner, err := sqlite.NewConnector(dsn)
	if err != nil {
		return nil, err
	}
	g, err := gateFor(dsn)
	if err != nil {
		return nil, err
	}
	return &gatedConnector{inner: inner, gate: g, wait: busyTimeout}, nil
}

type gatedConnector struct {
	inner driver.Connector
	gate  *writeGate
	wait  time.Duration // the longest wait for the gate
}

// sqliteConn is what modernc.org/sqlite's connections implement and the
// wrapper forwards; dropping QueryerContext or ExecerContext would send
// database/sql through prepare+exec, ConnBeginTx its transaction options.
type sqliteConn interface {
	driver.Conn
	driver.ConnBeginTx
	driver.ConnPrepareContext
	driver.ExecerContext
	driver.QueryerContext
	driver.Pinger
	driver.SessionResetter
	driver.Validator
}

// sqliteStmt is what modernc.org/sqlite's statements implement.
type sqliteStmt interface {
	driver.Stmt
	driver.StmtExecContext
	driver.StmtQueryContext
}

func (c *gatedConnector) Connect(ctx context.Context) (driver.Conn, error) {
	conn, err := c.inner.Connect(ctx)
	if err != nil || c.gate == nil {
		return conn, err
	}
	sc, ok := conn.(sqliteConn)
	if !ok {
		conn.Close()
		return nil, fmt.Errorf("sqldb: %T lacks a driver interface the write gate forwards", conn)
	}
	return &gatedConn{inner: sc, gate: c.gate, wait: c.wait}, nil
}

func (c *gatedConnector) Driver() driver.Driver { return gatedDriver{} }

// gatedConn wraps one connection. database/sql never calls into one driver
// connection from two goroutines at once (it holds the connection's lock,
// also for the Rollback of a transaction whose context ended), so its
// fields need no lock of their own.
type gatedConn struct {
	inner sqliteConn
	gate  *writeGate
	wait  time.Duration
	tx    *gatedTx // the open transaction, nil outside one
}

// Unwrap returns the driver's own connection, as sqlite.Limit expects.
func (c *gatedConn) Unwrap() driver.Conn { return c.inner }

func (c *gatedConn) Begin() (driver.Tx, error) {
	return c.BeginTx(context.Background(), driver.TxOptions{})
}

func (c *gatedConn) BeginTx(ctx context.Context, opts driver.TxOptions) (driver.Tx, error) {
	// A read-only transaction is a deferred BEGIN: it takes no write lock.
	held := !opts.ReadOnly
	if held {
		if err := c.gate.acquire(ctx, c.wait); err != nil {
			return nil, err
		}
	}
	t, err := c.inner.BeginTx(ctx, opts)
	if err != nil {
		if held {
			c.gate.release()
		}
		return nil, err
	}
	c.tx = &gatedTx{inner: t, conn: c, held: held}
	return c.tx, nil
}

func (c *gatedConn) ExecContext(ctx context.Context, query string, args []driver.NamedValue) (driver.Result, error) {
	if c.tx != nil || !isDML(query) {
		return c.inner.ExecContext(ctx, query, args)
	}
	if err := c.gate.acquire(ctx, c.wait); err != nil {
		return nil, err
	}
	defer c.gate.release()
	return c.inner.ExecContext(ctx, query, args)
}

func (c *gatedConn) QueryContext(ctx context.Context, query string, args []driver.NamedValue) (driver.Rows, error) {
	return c.inner.QueryContext(ctx, query, args)
}

func (c *gatedConn) Prepare(query string) (driver.Stmt, error) {
	return c.PrepareContext(context.Background(), query)
}

func (c *gatedConn) PrepareContext(ctx context.Context, query string) (driver.Stmt, error) {
	s, err := c.inner.PrepareContext(ctx, query)
	if err != nil {
		return nil, err
	}
	ss, ok := s.(sqliteStmt)
	if !ok {
		s.Close()
		return nil, fmt.Errorf("sqldb: %T lacks a driver interface the write gate forwards", s)
	}
	return &gatedStmt{inner: ss, conn: c, dml: isDML(query)}, nil
}

func (c *gatedConn) Ping(ctx context.Context) error { return c.inner.Ping(ctx) }

// ResetSession discards a connection that comes back with a transaction
// still open, which database/sql does not do, rather than let it keep the
// gate.
func (c *gatedConn) ResetSession(ctx context.Context) error {
	if c.tx != nil {
		_ = c.tx.Rollback()
		return driver.ErrBadConn
	}
	return c.inner.ResetSession(ctx)
}

func (c *gatedConn) IsValid() bool { return c.tx == nil && c.inner.IsValid() }

// Close ends an open transaction with the connection: closing rolls it back
// in SQLite, and the gate is released after that.
func (c *gatedConn) Close() error {
	err := c.inner.Close()
	if c.tx != nil {
		c.tx.end()
	}
	return err
}

type gatedTx struct {
	inner driver.Tx
	conn  *gatedConn
	held  bool // the transaction holds the gate
}

// Commit releases the gate however the COMMIT went: when it fails the
// driver rolls the transaction back, so the write lock is gone either way.
func (t *gatedTx) Commit() error {
	defer t.end()
	return t.inner.Commit()
}

func (t *gatedTx) Rollback() error {
	defer t.end()
	return t.inner.Rollback()
}

// end detaches the transaction from its connection and releases the gate,
// once however often it is called.
func (t *gatedTx) end() {
	if t.conn.tx == t {
		t.conn.tx = nil
	}
	if t.held {
		t.held = false
		t.conn.gate.release()
	}
}

type gatedStmt struct {
	inner sqliteStmt
	conn  *gatedConn
	dml   bool // see isDML
}

func (s *gatedStmt) Close() error  { return s.inner.Close() }
func (s *gatedStmt) NumInput() int { return s.inner.NumInput() }

func (s *gatedStmt) Exec(args []driver.Value) (driver.Result, error) {
	return s.ExecContext(context.Background(), named(args))
}

func (s *gatedStmt) Query(args []driver.Value) (driver.Rows, error) {
	return s.QueryContext(context.Background(), named(args))
}

// ExecContext is gated like the connection's: a statement prepared outside
// a transaction may run inside or outside one.
func (s *gatedStmt) ExecContext(ctx context.Context, args []driver.NamedValue) (driver.Result, error) {
	if s.conn.tx != nil || !s.dml {
		return s.inner.ExecContext(ctx, args)
	}
	if err := s.conn.gate.acquire(ctx, s.conn.wait); err != nil {
		return nil, err
	}
	defer s.conn.gate.release()
	return s.inner.ExecContext(ctx, args)
}

func (s *gatedStmt) QueryContext(ctx context.Context, args []driver.NamedValue) (driver.Rows, error) {
	return s.inner.QueryContext(ctx, args)
}

// isDML reports whether query starts, after spaces and comments, with a
// keyword of a statement that always takes SQLite's write lock: INSERT,
// UPDATE, DELETE or REPLACE. (Not WITH, which may lead a SELECT.)
func isDML(query string) bool {
	q := query
	for {
		q = strings.TrimLeft(q, " \t\r\n\f")
		switch {
		case strings.HasPrefix(q, "--"):
			_, rest, ok := strings.Cut(q, "\n")
			if !ok {
				return false
			}
			q = rest
		case strings.HasPrefix(q, "/*"):
			_, rest, ok := strings.Cut(q[2:], "*/")
			if !ok {
				return false
			}
			q = rest
		default:
			end := strings.IndexFunc(q, func(r rune) bool {
				return !('a' <= r && r <= 'z' || 'A' <= r && r <= 'Z')
			})
			if end < 0 {
				end = len(q)
			}
			for _, kw := range [...]string{"INSERT", "UPDATE", "DELETE", "REPLACE"} {
				if strings.EqualFold(q[:end], kw) {
					return true
				}
			}
			return false
		}
	}
}

func named(args []driver.Value) []driver.NamedValue {
	nv := make([]driver.NamedValue, len(args))
	for i, v := range args {
		nv[i] = driver.NamedValue{Ordinal: i + 1, Value: v}
	}
	return nv
}

var (
	_ driver.DriverContext = gatedDriver{}
	_ sqliteConn           = (*gatedConn)(nil)
	_ sqliteStmt           = (*gatedStmt)(nil)
)
