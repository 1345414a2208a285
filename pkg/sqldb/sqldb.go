// Package sqldb opens the project's database from one URL and hides the few
// differences between SQLite and PostgreSQL that the stores care about.
package sqldb

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strings"

	_ "github.com/jackc/pgx/v5/stdlib" // registers the "pgx" driver
	_ "modernc.org/sqlite"             // registers the "sqlite" driver
)

// Dialect names the SQL engine behind a DB.
type Dialect string

// The supported dialects.
const (
	SQLite   Dialect = "sqlite"
	Postgres Dialect = "postgres"
)

// DB is a connection pool together with the dialect it speaks.
type DB struct {
	*sql.DB
	Dialect Dialect
	// URL is the URL the pool was opened from.
	URL string
}

// Open opens the database named by url: "sqlite:path/to/file.db" or
// "postgres://...". A SQLite file's directory is created when missing.
func Open(ctx context.Context, url string) (*DB, error) {
	switch {
	case strings.HasPrefix(url, "sqlite:"):
		return openSQLite(ctx, url)
	case strings.HasPrefix(url, "postgres://"), strings.HasPrefix(url, "postgresql://"):
		return openPostgres(ctx, url)
	default:
		return nil, fmt.Errorf("open database: unsupported URL %q (want sqlite:PATH or postgres://...)", url)
	}
}

// SQLiteDSN returns the driver DSN for a SQLite file: immediate write
// transactions (a deferred read-to-write upgrade fails at once with
// SQLITE_BUSY), a busy timeout instead of instant failure, WAL so readers
// never block the writer.
func SQLiteDSN(path string) string {
	return "file:" + path + "?_txlock=immediate&_pragma=busy_timeout(10000)&_pragma=journal_mode(WAL)&_pragma=synchronous(NORMAL)&_pragma=foreign_keys(ON)"
}

// SQLitePath returns the file a sqlite: URL names, and false for any other
// URL.
func SQLitePath(url string) (string, bool) {
	if !strings.HasPrefix(url, "sqlite:") {
		return "", false
	}
	return strings.TrimPrefix(strings.TrimPrefix(url, "sqlite:"), "//"), true
}

func openSQLite(ctx context.Context, url string) (*DB, error) {
	path, _ := SQLitePath(url)
	if path == "" {
		return nil, errors.New("open database: empty SQLite path")
	}
	if dir := filepath.Dir(path); dir != "." {
		if err := os.MkdirAll(dir, 0o755); err != nil {
			return nil, fmt.Errorf("open database: create %s: %w", dir, err)
		}
	}
	pool, err := sql.Open("sqlite", SQLiteDSN(path))
	if err != nil {
		return nil, fmt.Errorf("open database %s: %w", path, err)
	}
	// WAL is a property of the file: set it once on one connection before
	// anything runs concurrently.
	if _, err := pool.ExecContext(ctx, "PRAGMA journal_mode=WAL"); err != nil {
		pool.Close()
		return nil, fmt.Errorf("open database %s: %w", path, err)
	}
	return &DB{DB: pool, Dialect: SQLite, URL: url}, nil
}

func openPostgres(ctx context.Context, url string) (*DB, error) {
	pool, err := sql.Open("pgx", url)
	if err != nil {
		return nil, fmt.Errorf("open database: %w", err)
	}
	// Several processes share one server's connection limit (100 by
	// default), so each keeps a modest pool.
	pool.SetMaxOpenConns(16)
	pool.SetMaxIdleConns(16)
	if err := pool.PingContext(ctx); err != nil {
		pool.Close()
		return nil, fmt.Errorf("open database: %w", err)
	}
	return &DB{DB: pool, Dialect: Postgres, URL: url}, nil
}

var dollarParam = regexp.MustCompile(`\$(\d+)`)

// Q adapts a query written with PostgreSQL's $1 placeholders to the DB's
// dialect. SQLite's ?NNN is positional too, so the numbering carries over.
func (db *DB) Q(query string) string {
	return db.Dialect.Q(query)
}

// Q adapts a query written with $1 placeholders to the dialect.
func (d Dialect) Q(query string) string {
	if d == SQLite {
		return dollarParam.ReplaceAllString(query, "?$1")
	}
	return query
}

// InTx runs fn in a transaction, committing when fn returns nil and rolling
// back otherwise.
func (db *DB) InTx(ctx context.Context, fn func(tx *sql.Tx) error) (err error) {
	tx, err := db.BeginTx(ctx, nil)
	if err != nil {
		return fmt.Errorf("begin: %w", err)
	}
	defer func() {
		if err != nil {
			_ = tx.Rollback()
		}
	}()
	if err = fn(tx); err != nil {
		return err
	}
	if err = tx.Commit(); err != nil {
		return fmt.Errorf("commit: %w", err)
	}
	return nil
}

// NowMillis is an SQL expression for the database's clock in Unix
// milliseconds: retention and leases are measured in database time, so
// processes with skewed clocks agree.
func (d Dialect) NowMillis() string {
	if d == SQLite {
		return `CAST((julianday('now') - 2440587.5) * 86400000 AS INTEGER)`
	}
	return `CAST(EXTRACT(EPOCH FROM clock_timestamp()) * 1000 AS BIGINT)`
}
