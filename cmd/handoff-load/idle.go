package main

import (
	"context"
	"fmt"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"github.com/coder/websocket"
)

type idleConfig struct {
	conns, members int
	backend        string
	settle         time.Duration
}

// runIdle opens conns authenticated sockets that only answer pings and
// reads the server's VmRSS before and after. The members are signed in
// first and their HTTP connections closed, so the growth is the sockets'.
func runIdle(ctx context.Context, cfg config) error {
	ic := cfg.idle
	srv, err := startChild(ctx, cfg, ic.backend)
	if err != nil {
		return err
	}
	defer srv.Close()
	pool := newAddrPool()
	size := 10
	nTeams := (ic.members + size - 1) / size
	teams, err := makeTeams(ctx, srv.Base, pool, nTeams, size)
	if err != nil {
		return err
	}
	var members []*member
	for _, t := range teams {
		members = append(members, t.members...)
	}
	pool.closeIdle()
	time.Sleep(ic.settle)
	before, err := srv.RSSKiB()
	if err != nil {
		return err
	}

	t0 := time.Now()
	socks := make([]*websocket.Conn, ic.conns)
	rctx, cancel := context.WithCancel(context.Background())
	var readers sync.WaitGroup
	var dropped atomic.Int64
	var firstDrop atomic.Value
	defer func() {
		cancel()
		for _, ws := range socks {
			if ws != nil {
				ws.CloseNow()
			}
		}
		readers.Wait()
	}()
	err = parallel(ctx, ic.conns, 64, func(ctx context.Context, i int) error {
		s, err := members[i%len(members)].c.Dial(ctx)
		if err != nil {
			return fmt.Errorf("socket %d: %w", i, err)
		}
		socks[i] = s.WS
		readers.Add(1)
		go func() {
			defer readers.Done()
			// Reading is what answers the server's pings.
			for {
				if _, _, err := s.WS.Read(rctx); err != nil {
					if rctx.Err() == nil {
						dropped.Add(1)
						firstDrop.CompareAndSwap(nil, err.Error())
					}
					return
				}
			}
		}()
		return nil
	})
	if err != nil {
		return err
	}
	opened := time.Since(t0)
	pool.closeIdle()
	time.Sleep(ic.settle)
	after, err := srv.RSSKiB()
	if err != nil {
		return err
	}
	hwm, _ := procStatusKiB(srv.PID, "VmHWM:")
	if n := dropped.Load(); n > 0 {
		return fmt.Errorf("%d of %d sockets dropped while idle: %v", n, ic.conns, firstDrop.Load())
	}
	perConn := float64(after-before) / float64(ic.conns)
	benchf("scenario=idle conns=%d kib_per_conn=%.1f", ic.conns, perConn)
	infof("idle: backend=%s members=%d sockets opened in %.1fs; server VmRSS %d KiB before, %d KiB after (VmHWM %d KiB); loadgen VmRSS %s KiB",
		ic.backend, len(members), opened.Seconds(), before, after, hwm, selfRSS())
	return nil
}

func selfRSS() string {
	v, err := procStatusKiB(os.Getpid(), "VmRSS:")
	if err != nil {
		return "?"
	}
	return fmt.Sprint(v)
}
