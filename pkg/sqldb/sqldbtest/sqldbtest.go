// Package sqldbtest gives tests a database of their own on each backend.
package sqldbtest

import (
	"context"
	"crypto/rand"
	"database/sql"
	"encoding/hex"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"handoff/pkg/sqldb"
)

// DefaultPostgresURL is used when TEST_DATABASE_URL is not set.
const DefaultPostgresURL = "postgres://postgres@127.0.0.1:5432/test?sslmode=disable"

// Each runs fn once per backend, as subtests named "sqlite" and "postgres",
// each with a database URL of its own.
func Each(t *testing.T, fn func(t *testing.T, url string)) {
	t.Helper()
	t.Run("sqlite", func(t *testing.T) { fn(t, SQLiteURL(t)) })
	t.Run("postgres", func(t *testing.T) { fn(t, PostgresURL(t)) })
}

// SQLiteURL returns the URL of a fresh SQLite file in the test's temp dir.
func SQLiteURL(tb testing.TB) string {
	tb.Helper()
	return "sqlite:" + filepath.Join(tb.TempDir(), "test.db")
}

var (
	pgOnce sync.Once
	pgErr  error
)

// PostgresURL creates a schema of the test's own on the test PostgreSQL and
// returns a URL whose connections use it; the schema is dropped at cleanup.
// Without PostgreSQL the test skips with one loud line, except under CI
// (CI=true), where it fails.
func PostgresURL(tb testing.TB) string {
	tb.Helper()
	base := os.Getenv("TEST_DATABASE_URL")
	if base == "" {
		base = DefaultPostgresURL
	}
	admin, err := sql.Open("pgx", base)
	if err == nil {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		err = admin.PingContext(ctx)
		cancel()
	}
	if err != nil {
		pgOnce.Do(func() { pgErr = err })
		if os.Getenv("CI") == "true" {
			tb.Fatalf("PostgreSQL unreachable at %s under CI: %v", base, err)
		}
		tb.Skipf("SKIPPING POSTGRESQL TEST: unreachable at %s (%v); set TEST_DATABASE_URL", base, pgErr)
	}
	var b [6]byte
	_, _ = rand.Read(b[:])
	schema := "t_" + hex.EncodeToString(b[:])
	if _, err := admin.Exec("CREATE SCHEMA " + schema); err != nil {
		admin.Close()
		tb.Fatalf("create schema: %v", err)
	}
	tb.Cleanup(func() {
		_, _ = admin.Exec("DROP SCHEMA " + schema + " CASCADE")
		admin.Close()
	})
	sep := "?"
	if strings.Contains(base, "?") {
		sep = "&"
	}
	return fmt.Sprintf("%s%ssearch_path=%s", base, sep, schema)
}

// MustOpen opens url and closes it at cleanup.
func MustOpen(tb testing.TB, url string) *sqldb.DB {
	tb.Helper()
	db, err := sqldb.Open(context.Background(), url)
	if err != nil {
		tb.Fatalf("open %s: %v", url, err)
	}
	// Tests run side by side on one PostgreSQL server: keep pools small.
	db.SetMaxOpenConns(4)
	db.SetMaxIdleConns(4)
	tb.Cleanup(func() { db.Close() })
	return db
}
