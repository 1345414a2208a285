// Package pglisten keeps a PostgreSQL LISTEN connection alive and hands its
// notifications to a callback, reconnecting with backoff when it drops.
package pglisten

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"
)

const (
	minBackoff = 100 * time.Millisecond
	maxBackoff = 10 * time.Second
	// checkEvery is how long the connection may stay silent before it is
	// pinged: a peer that vanished without closing the socket would
	// otherwise leave the wait blocked for good.
	checkEvery = 30 * time.Second
	opTimeout  = 10 * time.Second
)

// Config says what to listen to and what to do with it.
type Config struct {
	// URL is the PostgreSQL URL to connect to.
	URL string
	// Channels are LISTENed to on every connection.
	Channels []string
	// Name is the application_name of the connection, for pg_stat_activity.
	Name string
	// OnNotify receives every notification, one at a time, in order.
	OnNotify func(channel, payload string)
	// OnReconnect runs after a lost connection was restored: whatever was
	// notified meanwhile reached nobody, so callers resynchronise here.
	OnReconnect func()
	// OnListen, when set, runs after every successful LISTEN with the
	// connection's backend pid.
	OnListen func(pid uint32)
	Log      Logger
}

// Logger is what the listener logs through; *slog.Logger is one.
type Logger interface {
	Error(msg string, args ...any)
	Info(msg string, args ...any)
}

// Listener is a running LISTEN connection.
type Listener struct {
	cfg    Config
	cancel context.CancelFunc
	done   chan struct{}
	once   sync.Once
}

// Start connects (so a bad URL fails here, and nothing notified after Start
// returns is missed) and listens in the background until Close.
func Start(ctx context.Context, cfg Config) (*Listener, error) {
	if cfg.Log == nil {
		cfg.Log = slog.Default()
	}
	if cfg.OnListen == nil {
		cfg.OnListen = func(uint32) {}
	}
	cctx, cancel := context.WithTimeout(ctx, opTimeout)
	conn, err := connect(cctx, cfg)
	cancel()
	if err != nil {
		return nil, err
	}
	l := &Listener{cfg: cfg, done: make(chan struct{})}
	var runCtx context.Context
	runCtx, l.cancel = context.WithCancel(context.Background())
	go l.run(runCtx, conn)
	return l, nil
}

// Close stops listening and waits for the callback to return.
func (l *Listener) Close() {
	l.once.Do(func() {
		l.cancel()
		<-l.done
	})
}

func connect(ctx context.Context, cfg Config) (*pgx.Conn, error) {
	pc, err := pgx.ParseConfig(cfg.URL)
	if err != nil {
		return nil, fmt.Errorf("listen: %w", err)
	}
	if cfg.Name != "" {
		pc.RuntimeParams["application_name"] = cfg.Name
	}
	conn, err := pgx.ConnectConfig(ctx, pc)
	if err != nil {
		return nil, fmt.Errorf("listen: %w", err)
	}
	for _, ch := range cfg.Channels {
		if _, err := conn.Exec(ctx, "LISTEN "+pgx.Identifier{ch}.Sanitize()); err != nil {
			closeQuietly(conn)
			return nil, fmt.Errorf("listen %s: %w", ch, err)
		}
	}
	cfg.OnListen(conn.PgConn().PID())
	return conn, nil
}

func (l *Listener) run(ctx context.Context, conn *pgx.Conn) {
	defer close(l.done)
	for {
		err := l.receive(ctx, conn)
		closeQuietly(conn)
		if ctx.Err() != nil {
			return
		}
		l.cfg.Log.Error("LISTEN connection lost, reconnecting", "name", l.cfg.Name, "err", err)
		if conn = l.reconnect(ctx); conn == nil {
			return
		}
		l.cfg.Log.Info("LISTEN connection restored", "name", l.cfg.Name)
		if l.cfg.OnReconnect != nil {
			l.cfg.OnReconnect()
		}
	}
}

func (l *Listener) receive(ctx context.Context, conn *pgx.Conn) error {
	for {
		waitCtx, cancel := context.WithTimeout(ctx, checkEvery)
		n, err := conn.WaitForNotification(waitCtx)
		cancel()
		switch {
		case err == nil:
			l.cfg.OnNotify(n.Channel, n.Payload)
		case ctx.Err() != nil:
			return ctx.Err()
		case errors.Is(err, context.DeadlineExceeded):
			pingCtx, cancel := context.WithTimeout(ctx, opTimeout)
			err = conn.Ping(pingCtx)
			cancel()
			if err != nil {
				return err
			}
		default:
			return err
		}
	}
}

func (l *Listener) reconnect(ctx context.Context) *pgx.Conn {
	backoff := minBackoff
	for {
		timer := time.NewTimer(backoff)
		select {
		case <-ctx.Done():
			timer.Stop()
			return nil
		case <-timer.C:
		}
		attemptCtx, cancel := context.WithTimeout(ctx, opTimeout)
		conn, err := connect(attemptCtx, l.cfg)
		cancel()
		if err == nil {
			return conn
		}
		if ctx.Err() != nil {
			return nil
		}
		backoff = min(2*backoff, maxBackoff)
		l.cfg.Log.Error("LISTEN reconnect failed", "name", l.cfg.Name, "err", err, "retry_in", backoff)
	}
}

func closeQuietly(conn *pgx.Conn) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	_ = conn.Close(ctx)
}
