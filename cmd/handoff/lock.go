package main

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"syscall"

	"handoff/pkg/sqldb"
)

// lockSQLiteEdge makes this process the only edge of a SQLite file. Edges
// tell each other of changes through PostgreSQL notifications, which SQLite
// does not have, so a second edge on the file would serve its members a
// draft that the first edge's members change unseen. The lock is an flock
// on a file beside the database: the kernel releases it when the process
// ends, however it ends.
func lockSQLiteEdge(url string) (unlock func(), err error) {
	path, ok := sqldb.SQLitePath(url)
	if !ok || path == "" {
		return func() {}, nil
	}
	// Named after the file's real path, so a symlink to it finds the same
	// lock. (A hard link would not; SQLite itself is not safe with those.)
	real, err := realPath(path)
	if err != nil {
		return nil, fmt.Errorf("lock %s: %w", path, err)
	}
	lockPath := real + ".edge-lock"
	if err := os.MkdirAll(filepath.Dir(lockPath), 0o755); err != nil {
		return nil, fmt.Errorf("lock %s: %w", lockPath, err)
	}
	f, err := os.OpenFile(lockPath, os.O_CREATE|os.O_RDWR, 0o644)
	if errors.Is(err, os.ErrPermission) {
		f, err = os.Open(lockPath) // an flock needs no write access
	}
	if err != nil {
		return nil, fmt.Errorf("lock %s: %w", lockPath, err)
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		f.Close()
		if errors.Is(err, syscall.EWOULDBLOCK) {
			return nil, fmt.Errorf("another handoff edge is already serving %s; one edge process per SQLite file "+
				"(stop the other one, give this one its own --database, or use PostgreSQL for several edges)", path)
		}
		return nil, fmt.Errorf("lock %s: %w", lockPath, err)
	}
	return func() { f.Close() }, nil
}

// realPath resolves the symlinks of path, or of its directory when the file
// does not exist yet.
func realPath(path string) (string, error) {
	if real, err := filepath.EvalSymlinks(path); err == nil {
		return real, nil
	} else if !errors.Is(err, os.ErrNotExist) {
		return "", err
	}
	dir, err := filepath.EvalSymlinks(filepath.Dir(path))
	if errors.Is(err, os.ErrNotExist) {
		return filepath.Abs(path) // nothing to resolve yet: created below
	}
	if err != nil {
		return "", err
	}
	return filepath.Join(dir, filepath.Base(path)), nil
}
