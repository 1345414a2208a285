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
	lockPath := path + ".edge-lock"
	if err := os.MkdirAll(filepath.Dir(lockPath), 0o755); err != nil {
		return nil, fmt.Errorf("lock %s: %w", lockPath, err)
	}
	f, err := os.OpenFile(lockPath, os.O_CREATE|os.O_RDWR, 0o644)
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
