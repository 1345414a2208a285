package sqldb

import (
	"context"
	"database/sql"
	"database/sql/driver"
	"errors"
	"fmt"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"modernc.org/sqlite"
	sqlite3 "modernc.org/sqlite/lib"

	"handoff/pkg/wmsqlite"
)

// gateFile is a fresh SQLite file with a table t, opened through Open.
type gateFile struct {
	path string
	db   *DB
	gate *writeGate
}

func newGateFile(t *testing.T) *gateFile {
	t.Helper()
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "gate.db")
	db, err := Open(ctx, "sqlite:"+path)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	if _, err := db.ExecContext(ctx, `CREATE TABLE t (id INTEGER PRIMARY KEY, v INTEGER NOT NULL)`); err != nil {
		t.Fatal(err)
	}
	if _, err := db.ExecContext(ctx, `INSERT INTO t (id, v) VALUES (1, 0)`); err != nil {
		t.Fatal(err)
	}
	g, err := gateFor(SQLiteDSN(path))
	if err != nil {
		t.Fatal(err)
	}
	return &gateFile{path: path, db: db, gate: g}
}

func (f *gateFile) held() bool { return len(f.gate.ch) == 1 }

func (f *gateFile) requireFree(t *testing.T, when string) {
	t.Helper()
	if f.held() {
		t.Fatalf("write gate still held %s", when)
	}
}

// requireKept fails unless the pool still has open connections it had:
// released only by closing the connection (the safety net for a
// transaction nobody ended) would discard it.
func (f *gateFile) requireKept(t *testing.T, open int, when string) {
	t.Helper()
	if got := f.db.Stats().OpenConnections; got != open {
		t.Fatalf("%d connections open %s, had %d: a connection was discarded", got, when, open)
	}
}

// Drivers for noWaitPool.
const (
	ungated = "sqlite" // modernc.org/sqlite's own
	gated   = SQLiteDriver
)

// noWaitPool opens another pool on the file whose connections fail at once
// with SQLITE_BUSY instead of waiting in the busy handler: any write that
// meets another one inside SQLite shows up as an error.
func (f *gateFile) noWaitPool(t *testing.T, driverName string) *sql.DB {
	t.Helper()
	db, err := sql.Open(driverName, "file:"+f.path+"?_txlock=immediate&_pragma=busy_timeout(0)")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	return db
}

func isSQLiteBusy(err error) bool {
	var se *sqlite.Error
	return errors.As(err, &se) && se.Code()&0xff == sqlite3.SQLITE_BUSY
}

// The control for the tests below: without the gate, a second writer on a
// no-wait pool fails at once with SQLITE_BUSY.
func TestUngatedSecondWriterIsBusy(t *testing.T) {
	f := newGateFile(t)
	ctx := context.Background()
	db := f.noWaitPool(t, ungated)
	tx, err := f.db.BeginTx(ctx, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer tx.Rollback()
	tx2, err := db.BeginTx(ctx, nil)
	if err == nil {
		tx2.Rollback()
		t.Fatal("second BEGIN IMMEDIATE without the gate succeeded while a write transaction was open")
	}
	if !isSQLiteBusy(err) {
		t.Fatalf("want SQLITE_BUSY, got %v", err)
	}
}

func TestGateSecondWriterWaits(t *testing.T) {
	f := newGateFile(t)
	ctx := context.Background()
	db := f.noWaitPool(t, gated)
	tx, err := f.db.BeginTx(ctx, nil)
	if err != nil {
		t.Fatal(err)
	}
	if !f.held() {
		t.Fatal("write gate not held by an open write transaction")
	}
	done := make(chan error, 1)
	go func() {
		tx2, err := db.BeginTx(ctx, nil)
		if err == nil {
			_, err = tx2.ExecContext(ctx, `UPDATE t SET v = v + 1 WHERE id = 1`)
			if err == nil {
				err = tx2.Commit()
			} else {
				tx2.Rollback()
			}
		}
		done <- err
	}()
	if _, err := tx.ExecContext(ctx, `UPDATE t SET v = v + 10 WHERE id = 1`); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-done:
		t.Fatalf("second writer finished while the first held the gate: %v", err)
	default:
	}
	if err := tx.Commit(); err != nil {
		t.Fatal(err)
	}
	if err := <-done; err != nil {
		t.Fatalf("second writer: %v", err)
	}
	var v int
	if err := f.db.QueryRowContext(ctx, `SELECT v FROM t WHERE id = 1`).Scan(&v); err != nil {
		t.Fatal(err)
	}
	if v != 11 {
		t.Fatalf("v = %d, want 11", v)
	}
	f.requireFree(t, "after both commits")
}

// Many goroutines write at once through two pools, one of them unable to
// wait in SQLite's busy handler: every write must succeed, so none of them
// met another inside SQLite.
func TestGateConcurrentWriters(t *testing.T) {
	f := newGateFile(t)
	ctx := context.Background()
	noWait := f.noWaitPool(t, gated)
	const workers, rounds = 16, 40
	var wg sync.WaitGroup
	errs := make(chan error, workers*rounds)
	for w := 0; w < workers; w++ {
		wg.Add(1)
		go func(w int) {
			defer wg.Done()
			db := noWait
			if w%4 == 0 {
				db = f.db.DB
			}
			stmt, err := noWait.PrepareContext(ctx, `INSERT INTO t (v) VALUES (?)`)
			if err != nil {
				errs <- err
				return
			}
			defer stmt.Close()
			for r := 0; r < rounds; r++ {
				var err error
				switch r % 4 {
				case 0, 1: // read-modify-write transaction
					err = func() error {
						tx, err := db.BeginTx(ctx, nil)
						if err != nil {
							return fmt.Errorf("begin: %w", err)
						}
						defer tx.Rollback()
						var v int
						if err := tx.QueryRowContext(ctx, `SELECT v FROM t WHERE id = 1`).Scan(&v); err != nil {
							return err
						}
						if _, err := tx.ExecContext(ctx, `UPDATE t SET v = ? WHERE id = 1`, v+1); err != nil {
							return err
						}
						return tx.Commit()
					}()
				case 2: // autocommit write
					_, err = db.ExecContext(ctx, `INSERT INTO t (v) VALUES (?)`, -1)
				case 3: // prepared autocommit write, and a read outside a transaction
					if _, err = stmt.ExecContext(ctx, -2); err == nil {
						var n int
						err = noWait.QueryRowContext(ctx, `SELECT count(*) FROM t`).Scan(&n)
					}
				}
				if err != nil {
					errs <- fmt.Errorf("worker %d round %d: %w", w, r, err)
				}
			}
		}(w)
	}
	wg.Wait()
	close(errs)
	n := 0
	for err := range errs {
		if n++; n <= 5 {
			t.Error(err)
		}
	}
	if n > 0 {
		t.Fatalf("%d writes failed", n)
	}
	var v, rows int
	if err := f.db.QueryRowContext(ctx, `SELECT v FROM t WHERE id = 1`).Scan(&v); err != nil {
		t.Fatal(err)
	}
	if want := workers * rounds / 2; v != want {
		t.Fatalf("counter = %d, want %d (lost updates)", v, want)
	}
	if err := f.db.QueryRowContext(ctx, `SELECT count(*) FROM t WHERE id <> 1`).Scan(&rows); err != nil {
		t.Fatal(err)
	}
	if want := workers * rounds / 2; rows != want {
		t.Fatalf("autocommit rows = %d, want %d", rows, want)
	}
	f.requireFree(t, "after all writers")
}

func TestGateReleased(t *testing.T) {
	ctx := context.Background()

	t.Run("commit", func(t *testing.T) {
		f := newGateFile(t)
		open := f.db.Stats().OpenConnections
		tx, err := f.db.BeginTx(ctx, nil)
		if err != nil {
			t.Fatal(err)
		}
		if !f.held() {
			t.Fatal("gate not held after begin")
		}
		if err := tx.Commit(); err != nil {
			t.Fatal(err)
		}
		f.requireFree(t, "after Commit")
		f.requireKept(t, open, "after Commit")
	})

	t.Run("rollback", func(t *testing.T) {
		f := newGateFile(t)
		open := f.db.Stats().OpenConnections
		tx, err := f.db.BeginTx(ctx, nil)
		if err != nil {
			t.Fatal(err)
		}
		if err := tx.Rollback(); err != nil {
			t.Fatal(err)
		}
		f.requireFree(t, "after Rollback")
		f.requireKept(t, open, "after Rollback")
	})

	t.Run("failed statement", func(t *testing.T) {
		f := newGateFile(t)
		open := f.db.Stats().OpenConnections
		err := f.db.InTx(ctx, func(tx *sql.Tx) error {
			_, err := tx.ExecContext(ctx, `INSERT INTO missing (v) VALUES (1)`)
			return err
		})
		if err == nil {
			t.Fatal("insert into a missing table succeeded")
		}
		f.requireFree(t, "after a transaction whose statement failed")
		f.requireKept(t, open, "after a transaction whose statement failed")
		if _, err := f.db.ExecContext(ctx, `INSERT INTO missing (v) VALUES (1)`); err == nil {
			t.Fatal("autocommit insert into a missing table succeeded")
		}
		f.requireFree(t, "after a failed autocommit Exec")
	})

	t.Run("failed commit", func(t *testing.T) {
		f := newGateFile(t)
		if _, err := f.db.ExecContext(ctx, `CREATE TABLE child (p INTEGER REFERENCES t (id) DEFERRABLE INITIALLY DEFERRED)`); err != nil {
			t.Fatal(err)
		}
		open := f.db.Stats().OpenConnections
		tx, err := f.db.BeginTx(ctx, nil)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := tx.ExecContext(ctx, `INSERT INTO child (p) VALUES (99)`); err != nil {
			t.Fatal(err)
		}
		if err := tx.Commit(); err == nil {
			t.Fatal("commit with a deferred foreign key violation succeeded")
		}
		f.requireFree(t, "after a failed Commit")
		f.requireKept(t, open, "after a failed Commit")
		if err := f.db.InTx(ctx, func(tx *sql.Tx) error { return nil }); err != nil {
			t.Fatalf("transaction after the failed commit: %v", err)
		}
	})

	t.Run("context canceled", func(t *testing.T) {
		f := newGateFile(t)
		txCtx, cancel := context.WithCancel(ctx)
		tx, err := f.db.BeginTx(txCtx, nil)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := tx.ExecContext(txCtx, `INSERT INTO t (v) VALUES (7)`); err != nil {
			t.Fatal(err)
		}
		cancel()
		// database/sql rolls back in the background once the context is
		// done; the next writer waits for exactly that.
		waitCtx, stop := context.WithTimeout(ctx, 5*time.Second)
		defer stop()
		if err := f.db.InTx(waitCtx, func(tx *sql.Tx) error { return nil }); err != nil {
			t.Fatalf("writer after the canceled transaction: %v", err)
		}
		f.requireFree(t, "after the canceled transaction was rolled back")
		if err := tx.Commit(); err == nil {
			t.Fatal("commit of a canceled transaction succeeded")
		}
		var n int
		if err := f.db.QueryRowContext(ctx, `SELECT count(*) FROM t WHERE v = 7`).Scan(&n); err != nil {
			t.Fatal(err)
		}
		if n != 0 {
			t.Fatal("the canceled transaction's insert was committed")
		}
	})
}

// Closing or resetting a connection with its transaction open, which
// database/sql does not do, must not leak the gate.
func TestGateConnEndsTransaction(t *testing.T) {
	ctx := context.Background()
	open := func(t *testing.T, f *gateFile) *gatedConn {
		t.Helper()
		c, err := gatedDriver{}.Open(SQLiteDSN(f.path))
		if err != nil {
			t.Fatal(err)
		}
		gc, ok := c.(*gatedConn)
		if !ok {
			t.Fatalf("driver returned %T, want *gatedConn", c)
		}
		t.Cleanup(func() { gc.Close() })
		return gc
	}
	begin := func(t *testing.T, f *gateFile, c *gatedConn) driver.Tx {
		t.Helper()
		tx, err := c.BeginTx(ctx, driver.TxOptions{})
		if err != nil {
			t.Fatal(err)
		}
		if !f.held() {
			t.Fatal("gate not held after begin")
		}
		if c.IsValid() {
			t.Fatal("connection with a transaction open reports itself valid for the pool")
		}
		return tx
	}

	t.Run("close", func(t *testing.T) {
		f := newGateFile(t)
		c := open(t, f)
		begin(t, f, c)
		if err := c.Close(); err != nil {
			t.Fatal(err)
		}
		f.requireFree(t, "after Close")
	})

	t.Run("reset", func(t *testing.T) {
		f := newGateFile(t)
		c := open(t, f)
		begin(t, f, c)
		if err := c.ResetSession(ctx); !errors.Is(err, driver.ErrBadConn) {
			t.Fatalf("ResetSession with a transaction open: %v, want ErrBadConn", err)
		}
		f.requireFree(t, "after ResetSession")
	})

	t.Run("release once", func(t *testing.T) {
		f := newGateFile(t)
		c1, c2 := open(t, f), open(t, f)
		tx1 := begin(t, f, c1)
		if err := tx1.Commit(); err != nil {
			t.Fatal(err)
		}
		tx2 := begin(t, f, c2)
		_ = tx1.Rollback() // a second end of tx1 must not release tx2's gate
		_ = tx1.Commit()
		if !f.held() {
			t.Fatal("a finished transaction released the gate held by another")
		}
		if err := tx2.Rollback(); err != nil {
			t.Fatal(err)
		}
		f.requireFree(t, "after the second transaction")
	})

	t.Run("read-only transaction", func(t *testing.T) {
		f := newGateFile(t)
		c1, c2 := open(t, f), open(t, f)
		w := begin(t, f, c1)
		defer w.Rollback()
		r, err := c2.BeginTx(ctx, driver.TxOptions{ReadOnly: true})
		if err != nil {
			t.Fatalf("read-only transaction while a writer holds the gate: %v", err)
		}
		if err := r.Commit(); err != nil {
			t.Fatal(err)
		}
		if !f.held() {
			t.Fatal("ending a read-only transaction released the writer's gate")
		}
	})
}

func TestGateWaitHonoursContext(t *testing.T) {
	f := newGateFile(t)
	ctx := context.Background()
	tx, err := f.db.BeginTx(ctx, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer tx.Rollback()

	short, stop := context.WithTimeout(ctx, 50*time.Millisecond)
	defer stop()
	if _, err := f.db.BeginTx(short, nil); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("BeginTx while the gate is held: %v, want context.DeadlineExceeded", err)
	}

	canceled, cancel := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() {
		_, err := f.db.ExecContext(canceled, `INSERT INTO t (v) VALUES (1)`)
		done <- err
	}()
	cancel()
	if err := <-done; !errors.Is(err, context.Canceled) {
		t.Fatalf("Exec while the gate is held: %v, want context.Canceled", err)
	}
	if !f.held() {
		t.Fatal("a waiter that gave up took the gate from its holder")
	}
}

func TestGateTimeoutIsContention(t *testing.T) {
	f := newGateFile(t)
	ctx := context.Background()
	conn := func() *gatedConn {
		c, err := (&gatedConnector{inner: mustConnector(t, SQLiteDSN(f.path)), gate: f.gate, wait: 20 * time.Millisecond}).Connect(ctx)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { c.Close() })
		return c.(*gatedConn)
	}
	c1, c2 := conn(), conn()
	tx, err := c1.BeginTx(ctx, driver.TxOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer tx.Rollback()
	_, err = c2.BeginTx(ctx, driver.TxOptions{})
	if !errors.Is(err, errGateBusy) {
		t.Fatalf("BeginTx past the gate's wait: %v, want the gate's busy error", err)
	}
	if !strings.Contains(err.Error(), "database is locked") || !wmsqlite.IsContention(err) {
		t.Fatalf("gate timeout %q is not recognised as lock contention", err)
	}
}

func mustConnector(t *testing.T, dsn string) driver.Connector {
	t.Helper()
	c, err := sqlite.NewConnector(dsn)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func TestGateSharedByPools(t *testing.T) {
	f := newGateFile(t)
	ctx := context.Background()
	other, err := Open(ctx, "sqlite:"+f.path)
	if err != nil {
		t.Fatal(err)
	}
	defer other.Close()
	rel, err := gateFor(SQLiteDSN(relPath(t, f.path)))
	if err != nil {
		t.Fatal(err)
	}
	if rel != f.gate {
		t.Fatal("a relative path to the same file got a gate of its own")
	}

	tx, err := f.db.BeginTx(ctx, nil)
	if err != nil {
		t.Fatal(err)
	}
	short, stop := context.WithTimeout(ctx, 50*time.Millisecond)
	defer stop()
	if _, err := other.BeginTx(short, nil); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("second pool's BeginTx while the first holds the gate: %v, want context.DeadlineExceeded", err)
	}
	if err := tx.Commit(); err != nil {
		t.Fatal(err)
	}
	if err := other.InTx(ctx, func(tx *sql.Tx) error { return nil }); err != nil {
		t.Fatal(err)
	}
}

func relPath(t *testing.T, path string) string {
	t.Helper()
	wd, err := filepath.Abs(".")
	if err != nil {
		t.Fatal(err)
	}
	rel, err := filepath.Rel(wd, path)
	if err != nil {
		t.Fatal(err)
	}
	return rel
}

// An autocommit Exec, plain or prepared, queues for the gate: on a pool
// that cannot wait in the busy handler it waits for the context instead of
// failing with SQLITE_BUSY.
func TestGateAutocommitExec(t *testing.T) {
	f := newGateFile(t)
	ctx := context.Background()
	db := f.noWaitPool(t, gated)
	stmt, err := db.PrepareContext(ctx, `INSERT INTO t (v) VALUES (?)`)
	if err != nil {
		t.Fatal(err)
	}
	defer stmt.Close()
	tx, err := f.db.BeginTx(ctx, nil)
	if err != nil {
		t.Fatal(err)
	}
	for name, exec := range map[string]func(context.Context) error{
		"exec": func(ctx context.Context) error {
			_, err := db.ExecContext(ctx, `INSERT INTO t (v) VALUES (1)`)
			return err
		},
		"prepared": func(ctx context.Context) error {
			_, err := stmt.ExecContext(ctx, 1)
			return err
		},
	} {
		short, stop := context.WithTimeout(ctx, 50*time.Millisecond)
		err := exec(short)
		stop()
		if !errors.Is(err, context.DeadlineExceeded) {
			t.Errorf("%s while the gate is held: %v, want context.DeadlineExceeded", name, err)
		}
	}
	if err := tx.Commit(); err != nil {
		t.Fatal(err)
	}
	if _, err := stmt.ExecContext(ctx, 2); err != nil {
		t.Fatal(err)
	}
	f.requireFree(t, "after a prepared autocommit Exec")
}

// Statements other than DML run with Exec outside a transaction are not
// gated: a CREATE TABLE IF NOT EXISTS of a table that exists, as
// watermill-sql's Subscribe runs, takes no lock and must not wait for a
// holder of the gate (a subscriber whose fetched message waits unread);
// DDL that does write meets the holder inside SQLite, as before the gate.
func TestGateDDLNotGated(t *testing.T) {
	f := newGateFile(t)
	ctx, stop := context.WithTimeout(context.Background(), 5*time.Second)
	defer stop()
	tx, err := f.db.BeginTx(ctx, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer tx.Rollback()
	if _, err := f.db.ExecContext(ctx, `CREATE TABLE IF NOT EXISTS t (id INTEGER PRIMARY KEY, v INTEGER NOT NULL)`); err != nil {
		t.Fatalf("no-op CREATE TABLE while the gate is held: %v", err)
	}
	db := f.noWaitPool(t, gated)
	if _, err := db.ExecContext(ctx, `CREATE TABLE u (id INTEGER PRIMARY KEY)`); !isSQLiteBusy(err) {
		t.Fatalf("CREATE TABLE while a write transaction is open: %v, want SQLITE_BUSY", err)
	}
	if !f.held() {
		t.Fatal("an ungated Exec released the holder's gate")
	}
}

func TestIsDML(t *testing.T) {
	for q, want := range map[string]bool{
		"INSERT INTO t VALUES (1)":             true,
		"  \n\tupdate t SET v = 1":             true,
		"-- note\nDELETE FROM t":               true,
		"/* a */ /* b */Replace INTO t (v)":    true,
		"insert":                               true,
		"INSERTED":                             false,
		"SELECT 1":                             false,
		"WITH x AS (SELECT 1) SELECT * FROM x": false,
		"CREATE TABLE IF NOT EXISTS t (v)":     false,
		"PRAGMA journal_mode=WAL":              false,
		"BEGIN IMMEDIATE":                      false,
		"-- only a comment":                    false,
		"/* unterminated INSERT":               false,
		"":                                     false,
	} {
		if got := isDML(q); got != want {
			t.Errorf("isDML(%q) = %t, want %t", q, got, want)
		}
	}
}

// Reads outside a transaction do not wait for the gate.
func TestGateReadsNotBlocked(t *testing.T) {
	f := newGateFile(t)
	ctx := context.Background()
	tx, err := f.db.BeginTx(ctx, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer tx.Rollback()
	if _, err := tx.ExecContext(ctx, `UPDATE t SET v = 5 WHERE id = 1`); err != nil {
		t.Fatal(err)
	}
	readCtx, stop := context.WithTimeout(ctx, 5*time.Second)
	defer stop()
	var v int
	if err := f.db.QueryRowContext(readCtx, `SELECT v FROM t WHERE id = 1`).Scan(&v); err != nil {
		t.Fatalf("read while a write transaction is open: %v", err)
	}
	if v != 0 {
		t.Fatalf("read saw the open transaction's write: v = %d", v)
	}
	stmt, err := f.db.PrepareContext(readCtx, `SELECT count(*) FROM t`)
	if err != nil {
		t.Fatal(err)
	}
	defer stmt.Close()
	var n int
	if err := stmt.QueryRowContext(readCtx).Scan(&n); err != nil {
		t.Fatalf("prepared read while a write transaction is open: %v", err)
	}
	if err := f.db.PingContext(readCtx); err != nil {
		t.Fatalf("ping while a write transaction is open: %v", err)
	}
	if !f.held() {
		t.Fatal("gate not held by the open write transaction")
	}
}

// The wrapper keeps sqlite.Limit working: it unwraps to the driver's conn.
func TestGateUnwrap(t *testing.T) {
	f := newGateFile(t)
	conn, err := f.db.Conn(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	if _, err := sqlite.Limit(conn, sqlite3.SQLITE_LIMIT_LENGTH, -1); err != nil {
		t.Fatalf("sqlite.Limit through the gated connection: %v", err)
	}
}
