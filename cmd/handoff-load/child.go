package main

import (
	"bufio"
	"context"
	"crypto/rand"
	"database/sql"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"net/http"
	neturl "net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	_ "github.com/jackc/pgx/v5/stdlib" // the "pgx" driver, for CREATE/DROP DATABASE

	"handoff/pkg/sqldb"
)

// child is a `handoff serve` started for one scenario, with a database of
// its own.
type child struct {
	Base    string // http://127.0.0.1:PORT
	Backend string
	DBURL   string
	PID     int
	dir     string
	logPath string
	cmd     *exec.Cmd
	exited  chan error
	dropDB  func() error
	keep    bool
}

// startChild creates a fresh database, starts the server on a free port and
// waits until it answers /readyz.
func startChild(ctx context.Context, cfg config, backend string) (*child, error) {
	dir, err := os.MkdirTemp("", "handoff-load-")
	if err != nil {
		return nil, err
	}
	c := &child{Backend: backend, dir: dir, logPath: filepath.Join(dir, "server.log"), keep: cfg.keep, dropDB: func() error { return nil }}
	ok := false
	defer func() {
		if !ok {
			c.cleanup()
		}
	}()
	switch backend {
	case "sqlite":
		c.DBURL = "sqlite:" + filepath.Join(dir, "h.db")
	case "postgres":
		url, drop, err := createPostgresDB(ctx, cfg.pgAdmin)
		if err != nil {
			return nil, err
		}
		c.DBURL, c.dropDB = url, drop
	default:
		return nil, fmt.Errorf("unknown backend %q", backend)
	}
	var lastErr error
	for attempt := 0; attempt < 3; attempt++ {
		if lastErr = c.launch(ctx, cfg); lastErr == nil {
			ok = true
			if h := horizonHolders(ctx, c); h != "" {
				infof("warning: %s", h)
			}
			return c, nil
		}
	}
	return nil, lastErr
}

func (c *child) launch(ctx context.Context, cfg config) error {
	port, err := freePort()
	if err != nil {
		return err
	}
	addr := "127.0.0.1:" + strconv.Itoa(port)
	logFile, err := os.OpenFile(c.logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return err
	}
	defer logFile.Close()
	bin, err := filepath.Abs(cfg.bin)
	if err != nil {
		return err
	}
	cmd := exec.Command(bin, "serve", "--addr", addr, "--database", c.DBURL, "--log-level", cfg.logLevel)
	cmd.Stdout, cmd.Stderr = logFile, logFile
	cmd.Dir = c.dir
	// The server as shipped: no HANDOFF_* settings leak in from this
	// environment (the simulated provider's latency, pool sizes, ...).
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "HANDOFF_") {
			cmd.Env = append(cmd.Env, kv)
		}
	}
	// The server must not outlive the load generator.
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("start %s: %w", bin, err)
	}
	c.cmd, c.PID, c.Base = cmd, cmd.Process.Pid, "http://"+addr
	c.exited = make(chan error, 1)
	go func() { c.exited <- cmd.Wait() }()
	deadline := time.Now().Add(60 * time.Second)
	hc := &http.Client{Timeout: 2 * time.Second}
	for time.Now().Before(deadline) {
		select {
		case err := <-c.exited:
			c.exited <- err
			return fmt.Errorf("server exited before it was ready (%v); log:\n%s", err, c.logTail(20))
		case <-ctx.Done():
			c.stop()
			return ctx.Err()
		case <-time.After(50 * time.Millisecond):
		}
		resp, err := hc.Get(c.Base + "/readyz")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return nil
			}
		}
	}
	c.stop()
	return fmt.Errorf("server not ready within 60s; log:\n%s", c.logTail(20))
}

// Alive reports whether the server process is still running.
func (c *child) Alive() bool {
	select {
	case err := <-c.exited:
		c.exited <- err
		return false
	default:
		return true
	}
}

// Close stops the server, drops its database and removes its directory.
func (c *child) Close() {
	c.stop()
	c.cleanup()
}

func (c *child) stop() {
	if c.cmd == nil || c.cmd.Process == nil {
		return
	}
	_ = c.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-c.exited:
	case <-time.After(20 * time.Second):
		_ = c.cmd.Process.Kill()
		<-c.exited
	}
	c.cmd = nil
}

func (c *child) cleanup() {
	if c.keep {
		infof("kept %s (database %s)", c.dir, redactURL(c.DBURL))
		return
	}
	if err := c.dropDB(); err != nil {
		infof("drop database: %v", err)
	}
	_ = os.RemoveAll(c.dir)
}

// logTail returns the last n lines of the server's log.
func (c *child) logTail(n int) string {
	data, err := os.ReadFile(c.logPath)
	if err != nil {
		return ""
	}
	lines := strings.Split(strings.TrimRight(string(data), "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

// Restock raises every product's stock in the server's database. The
// catalog seeds about 5,000 units in all, which a few thousand benchmark
// orders would use up, failing the rest as out of stock; this is the one
// write the load generator makes outside the public API, into a database
// of its own, while the server is idle.
func (c *child) Restock(ctx context.Context) error {
	db, err := sqldb.Open(ctx, c.DBURL)
	if err != nil {
		return err
	}
	defer db.Close()
	res, err := db.ExecContext(ctx, `UPDATE stock SET available = 1000000000`)
	if err != nil {
		return fmt.Errorf("restock: %w", err)
	}
	if n, _ := res.RowsAffected(); n == 0 {
		return errors.New("restock: no stock rows")
	}
	return nil
}

// LogErrors counts the server's log lines at level ERROR or WARN.
func (c *child) LogErrors() (warn, errs int) {
	f, err := os.Open(c.logPath)
	if err != nil {
		return 0, 0
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		switch {
		case strings.Contains(line, `"level":"ERROR"`):
			errs++
		case strings.Contains(line, `"level":"WARN"`):
			warn++
		}
	}
	return warn, errs
}

// RSSKiB reads VmRSS of the server from /proc.
func (c *child) RSSKiB() (int64, error) {
	return procStatusKiB(c.PID, "VmRSS:")
}

func procStatusKiB(pid int, field string) (int64, error) {
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0, err
	}
	for _, line := range strings.Split(string(data), "\n") {
		if rest, ok := strings.CutPrefix(line, field); ok {
			f := strings.Fields(rest)
			if len(f) == 0 {
				break
			}
			return strconv.ParseInt(f[0], 10, 64)
		}
	}
	return 0, fmt.Errorf("no %s in /proc/%d/status", field, pid)
}

func freePort() (int, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port, nil
}

// createPostgresDB creates a database with a random name next to the admin
// URL's and returns its URL and a function that drops it.
func createPostgresDB(ctx context.Context, adminURL string) (string, func() error, error) {
	u, err := neturl.Parse(adminURL)
	if err != nil {
		return "", nil, fmt.Errorf("-pg: %w", err)
	}
	admin, err := sql.Open("pgx", adminURL)
	if err != nil {
		return "", nil, err
	}
	var b [6]byte
	_, _ = rand.Read(b[:])
	name := "handoff_bench_" + hex.EncodeToString(b[:])
	cctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	if _, err := admin.ExecContext(cctx, "CREATE DATABASE "+name); err != nil {
		admin.Close()
		return "", nil, fmt.Errorf("create database %s at %s: %w", name, redactURL(adminURL), err)
	}
	u.Path = "/" + name
	drop := func() error {
		defer admin.Close()
		dctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		_, err := admin.ExecContext(dctx, "DROP DATABASE IF EXISTS "+name+" WITH (FORCE)")
		return err
	}
	return u.String(), drop, nil
}

func redactURL(raw string) string {
	u, err := neturl.Parse(raw)
	if err != nil || u.User == nil {
		return raw
	}
	return u.Redacted()
}

var errStopped = errors.New("server stopped")
