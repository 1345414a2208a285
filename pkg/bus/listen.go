package bus

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/ThreeDotsLabs/watermill"
	"github.com/jackc/pgx/v5"
)

const (
	listenMinBackoff = 100 * time.Millisecond
	listenMaxBackoff = 10 * time.Second
	// listenCheckEvery is how long the LISTEN connection may stay silent
	// before it is pinged: a peer that vanished without closing the socket
	// would otherwise leave the wait blocked for good.
	listenCheckEvery = 30 * time.Second
	listenTimeout    = 10 * time.Second
)

// startListening opens the first LISTEN connection synchronously, so New
// fails loudly on a bad URL and no commit after New is missed, then hands
// it to the goroutine that keeps it alive.
func (b *Bus) startListening() error {
	ctx, cancel := context.WithTimeout(context.Background(), listenTimeout)
	conn, err := b.connectListener(ctx)
	cancel()
	if err != nil {
		return err
	}
	ctx, b.cancel = context.WithCancel(context.Background())
	b.done = make(chan struct{})
	go b.listen(ctx, conn)
	return nil
}

func (b *Bus) connectListener(ctx context.Context) (*pgx.Conn, error) {
	cfg, err := pgx.ParseConfig(b.db.URL)
	if err != nil {
		return nil, fmt.Errorf("bus: listen: %w", err)
	}
	cfg.RuntimeParams["application_name"] = "handoff-bus-listener"
	conn, err := pgx.ConnectConfig(ctx, cfg)
	if err != nil {
		return nil, fmt.Errorf("bus: listen: %w", err)
	}
	if _, err := conn.Exec(ctx, "LISTEN "+NotifyChannel); err != nil {
		closeQuietly(conn)
		return nil, fmt.Errorf("bus: listen: %w", err)
	}
	b.listenPID.Store(conn.PgConn().PID())
	b.listening.Wake()
	return conn, nil
}

// listen turns notifications into wakes until ctx ends, reconnecting with
// backoff whenever the connection fails.
func (b *Bus) listen(ctx context.Context, conn *pgx.Conn) {
	defer close(b.done)
	for {
		err := b.receive(ctx, conn)
		closeQuietly(conn)
		if ctx.Err() != nil {
			return
		}
		b.logger.Error("bus: LISTEN connection lost, reconnecting", err, nil)
		if conn = b.reconnect(ctx); conn == nil {
			return
		}
		b.logger.Info("bus: LISTEN connection restored", nil)
		// Whatever was committed while the connection was down announced
		// itself to nobody.
		b.Wake()
	}
}

func (b *Bus) receive(ctx context.Context, conn *pgx.Conn) error {
	for {
		waitCtx, cancel := context.WithTimeout(ctx, listenCheckEvery)
		n, err := conn.WaitForNotification(waitCtx)
		cancel()
		switch {
		case err == nil:
			b.wakeTopic(n.Payload)
		case ctx.Err() != nil:
			return ctx.Err()
		case errors.Is(err, context.DeadlineExceeded):
			// Silence is normal; make sure it is not a dead peer.
			pingCtx, cancel := context.WithTimeout(ctx, listenTimeout)
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

// reconnect returns a new listening connection, or nil once ctx ends.
func (b *Bus) reconnect(ctx context.Context) *pgx.Conn {
	backoff := listenMinBackoff
	for {
		timer := time.NewTimer(backoff)
		select {
		case <-ctx.Done():
			timer.Stop()
			return nil
		case <-timer.C:
		}
		attemptCtx, cancel := context.WithTimeout(ctx, listenTimeout)
		conn, err := b.connectListener(attemptCtx)
		cancel()
		if err == nil {
			return conn
		}
		if ctx.Err() != nil {
			return nil
		}
		backoff = min(2*backoff, listenMaxBackoff)
		b.logger.Error("bus: LISTEN reconnect failed", err, watermill.LogFields{"retry_in": backoff})
	}
}

func closeQuietly(conn *pgx.Conn) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	_ = conn.Close(ctx)
}
