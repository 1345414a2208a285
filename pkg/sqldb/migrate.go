package sqldb

import (
	"context"
	"database/sql"
	"fmt"
	"io/fs"
	"path"
	"sort"
	"strconv"
	"strings"
)

// Migrate applies, in version order, the migrations of one owner (a package
// that owns tables) that the database has not seen yet. Files live in
// fsys under "<dialect>/NNN_name.sql"; each runs in its own transaction
// together with the row that records it, so a crash never half-applies one.
func (db *DB) Migrate(ctx context.Context, owner string, fsys fs.FS) error {
	if err := db.ensureMigrationsTable(ctx); err != nil {
		return err
	}
	dir := string(db.Dialect)
	entries, err := fs.ReadDir(fsys, dir)
	if err != nil {
		return fmt.Errorf("migrate %s: %w", owner, err)
	}
	type file struct {
		version int
		name    string
	}
	var files []file
	for _, e := range entries {
		if e.IsDir() || !strings.HasSuffix(e.Name(), ".sql") {
			continue
		}
		num, _, _ := strings.Cut(e.Name(), "_")
		v, err := strconv.Atoi(num)
		if err != nil {
			return fmt.Errorf("migrate %s: file %s does not start with a version number", owner, e.Name())
		}
		files = append(files, file{v, e.Name()})
	}
	sort.Slice(files, func(i, j int) bool { return files[i].version < files[j].version })
	for _, f := range files {
		body, err := fs.ReadFile(fsys, path.Join(dir, f.name))
		if err != nil {
			return fmt.Errorf("migrate %s: %w", owner, err)
		}
		if err := db.applyMigration(ctx, owner, f.version, string(body)); err != nil {
			return fmt.Errorf("migrate %s %s: %w", owner, f.name, err)
		}
	}
	return nil
}

func (db *DB) ensureMigrationsTable(ctx context.Context) error {
	_, err := db.ExecContext(ctx, `CREATE TABLE IF NOT EXISTS schema_migrations (
		owner TEXT NOT NULL, version INTEGER NOT NULL, PRIMARY KEY (owner, version))`)
	if err != nil {
		return fmt.Errorf("create schema_migrations: %w", err)
	}
	return nil
}

func (db *DB) applyMigration(ctx context.Context, owner string, version int, body string) error {
	return db.InTx(ctx, func(tx *sql.Tx) error {
		if db.Dialect == Postgres {
			// Several processes may start at once; one applies, the others wait.
			if _, err := tx.ExecContext(ctx, `SELECT pg_advisory_xact_lock(7311)`); err != nil {
				return err
			}
		}
		var n int
		err := tx.QueryRowContext(ctx, db.Q(`SELECT count(*) FROM schema_migrations WHERE owner = $1 AND version = $2`), owner, version).Scan(&n)
		if err != nil {
			return err
		}
		if n > 0 {
			return nil
		}
		if _, err := tx.ExecContext(ctx, body); err != nil {
			return err
		}
		_, err = tx.ExecContext(ctx, db.Q(`INSERT INTO schema_migrations (owner, version) VALUES ($1, $2)`), owner, version)
		return err
	})
}
