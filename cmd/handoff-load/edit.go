package main

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"time"

	"github.com/coder/websocket"
	"github.com/google/uuid"
)

type editConfig struct {
	conns, drafts, rate, items int
	warmup, duration           time.Duration
}

type editDraft struct {
	id    string
	items []string
	rev   atomic.Int64 // highest revision any subscriber has seen
	socks []*editSock
}

// editSock is one member's socket; its reader goroutine alone touches ack
// and fan.
type editSock struct {
	idx   int
	ws    *websocket.Conn
	draft *editDraft
	ack   []time.Duration
	fan   []time.Duration
}

type editCounters struct {
	copies     atomic.Int64 // measured applied copies received, sender's included
	rejected   atomic.Int64
	errorMsgs  atomic.Int64
	readErrors atomic.Int64
	firstErr   atomic.Value // string
}

func runEdit(ctx context.Context, cfg config, backend string) error {
	ec := cfg.edit
	size := ec.conns / ec.drafts
	conns := size * ec.drafts
	srv, err := startChild(ctx, cfg, backend)
	if err != nil {
		return err
	}
	defer srv.Close()
	t0 := time.Now()

	pool := newAddrPool()
	teams, err := makeTeams(ctx, srv.Base, pool, ec.drafts, size)
	if err != nil {
		return err
	}
	skus, err := catalogSKUs(ctx, teams[0].members[0].c)
	if err != nil {
		return err
	}
	drafts := make([]*editDraft, len(teams))
	err = parallel(ctx, len(teams), 16, func(ctx context.Context, i int) error {
		d, err := teams[i].members[0].c.CreateDraft(ctx, fmt.Sprintf("Bench draft %d", i))
		if err != nil {
			return fmt.Errorf("create draft: %w", err)
		}
		drafts[i] = &editDraft{id: d.ID, socks: make([]*editSock, size)}
		return nil
	})
	if err != nil {
		return err
	}
	socks := make([]*editSock, conns)
	err = parallel(ctx, conns, 32, func(ctx context.Context, k int) error {
		d, m := drafts[k/size], teams[k/size].members[k%size]
		s, err := m.c.Dial(ctx)
		if err != nil {
			return err
		}
		if _, err := s.Subscribe(ctx, d.id); err != nil {
			s.WS.CloseNow()
			return fmt.Errorf("subscribe: %w", err)
		}
		socks[k] = &editSock{idx: k, ws: s.WS, draft: d}
		d.socks[k%size] = socks[k]
		return nil
	})
	defer func() {
		for _, s := range socks {
			if s != nil {
				s.ws.CloseNow()
			}
		}
	}()
	if err != nil {
		return err
	}
	pool.closeIdle()
	infof("%s/edit: %d teams, %d sockets subscribed in %.1fs", backend, len(teams), conns, time.Since(t0).Seconds())

	epoch := time.Now()
	var cnt editCounters
	rctx, cancelReaders := context.WithCancel(ctx)
	var readers sync.WaitGroup
	for _, s := range socks {
		readers.Add(1)
		go func() {
			defer readers.Done()
			s.read(rctx, epoch, &cnt)
		}()
	}
	defer func() { cancelReaders(); readers.Wait() }()

	// The items the ops update, added by each draft's first member.
	err = parallel(ctx, len(drafts), 16, func(ctx context.Context, i int) error {
		d := drafts[i]
		for j := range ec.items {
			id := uuid.NewString()
			d.items = append(d.items, id)
			frame := opFrame(d.id, fmt.Sprintf("setup-%d", j), int64(j), addItemOp(id, skus[(i+j)%len(skus)], 1))
			if err := d.socks[0].ws.Write(ctx, websocket.MessageText, frame); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return err
	}
	if err := waitFor(ctx, 30*time.Second, func() bool {
		for _, d := range drafts {
			if d.rev.Load() < int64(ec.items) {
				return false
			}
		}
		return true
	}); err != nil {
		return fmt.Errorf("setup items: %w (first error: %v)", err, cnt.firstErr.Load())
	}

	// Open loop: ops leave on schedule whatever the answers do.
	warmEnd := time.Now().Add(ec.warmup)
	measEnd := warmEnd.Add(ec.duration)
	var measured int64
	var cpuA, cpuB cpuSample
	var perf *perfRecorder
	var waits *waitSampler
	inWindow := false
	p := newPacer(ec.rate)
	var senders sync.WaitGroup
	var sendErrs atomic.Int64
	for ctx.Err() == nil {
		due := p.next()
		if !due.Before(measEnd) {
			break
		}
		m := !due.Before(warmEnd)
		if m && !inWindow {
			inWindow = true
			cpuA = takeCPU(srv.PID)
			perf = startPerf(cfg.perfDir, backend+"-edit", srv.PID)
			waits = startWaits(srv)
		}
		if m {
			measured++
		}
		s := socks[rand.IntN(len(socks))]
		item := s.draft.items[rand.IntN(len(s.draft.items))]
		qty := 1 + rand.IntN(100)
		senders.Add(1)
		go func() {
			defer senders.Done()
			sent := time.Since(epoch)
			frame := opFrame(s.draft.id, benchOpID(s.idx, m, int64(sent)), s.draft.rev.Load(), updateQuantityOp(item, qty))
			wctx, cancel := context.WithTimeout(ctx, 5*time.Second)
			defer cancel()
			if err := s.ws.Write(wctx, websocket.MessageText, frame); err != nil {
				sendErrs.Add(1)
			}
		}()
	}
	elapsed := time.Since(warmEnd)
	cpuB = takeCPU(srv.PID)
	perf.stop()
	pgWaits := waits.stop()
	senders.Wait()
	expected := measured * int64(size)
	_ = waitFor(ctx, 10*time.Second, func() bool { return cnt.copies.Load() >= expected })
	cancelReaders()
	for _, s := range socks {
		s.ws.CloseNow()
	}
	readers.Wait()
	if ctx.Err() != nil {
		return ctx.Err()
	}

	var ack, fan samples
	for _, s := range socks {
		ack.addAll(s.ack)
		fan.addAll(s.fan)
	}
	a, f := ack.summary(), fan.summary()
	benchf("backend=%s scenario=edit conns=%d drafts=%d ops_per_s=%d ack_p50_ms=%s ack_p99_ms=%s fanout_p50_ms=%s fanout_p99_ms=%s",
		backend, conns, len(drafts), ec.rate, ms(a.pct(50)), ms(a.pct(99)), ms(f.pct(50)), ms(f.pct(99)))
	infof("%s/edit: sent %d measured ops in %.1fs (%.0f/s), acks %d (lost %d), fan-out copies %d of %d, rejected %d, error msgs %d, send errors %d, read errors %d",
		backend, measured, elapsed.Seconds(), float64(measured)/elapsed.Seconds(), len(a), measured-int64(len(a)),
		len(f), measured*int64(size-1), cnt.rejected.Load(), cnt.errorMsgs.Load(), sendErrs.Load(), cnt.readErrors.Load())
	infof("%s/edit: ack    %s", backend, a.describe())
	infof("%s/edit: fanout %s", backend, f.describe())
	infof("%s/edit: %s", backend, cpuUse(cpuA, cpuB))
	if pgWaits != "" {
		infof("%s/edit: %s", backend, pgWaits)
	}
	if e := cnt.firstErr.Load(); e != nil {
		infof("%s/edit: first rejection or error: %v", backend, e)
	}
	if w, e := srv.LogErrors(); w+e > 0 {
		infof("%s/edit: server log has %d WARN and %d ERROR lines", backend, w, e)
	}
	if !srv.Alive() {
		return errStopped
	}
	if int64(len(a)) < measured {
		return fmt.Errorf("%d of %d measured ops were never acknowledged", measured-int64(len(a)), measured)
	}
	return nil
}

// read consumes the socket's messages until it fails or ctx ends.
func (s *editSock) read(ctx context.Context, epoch time.Time, cnt *editCounters) {
	for {
		_, data, err := s.ws.Read(ctx)
		if err != nil {
			if ctx.Err() == nil && !errors.Is(err, context.Canceled) {
				cnt.readErrors.Add(1)
				cnt.firstErr.CompareAndSwap(nil, fmt.Sprintf("socket %d read: %v", s.idx, err))
			}
			return
		}
		now := time.Since(epoch)
		m, err := decodeMsg(data)
		if err != nil {
			cnt.errorMsgs.Add(1)
			continue
		}
		switch m.Type {
		case "applied":
			for {
				cur := s.draft.rev.Load()
				if m.Revision <= cur || s.draft.rev.CompareAndSwap(cur, m.Revision) {
					break
				}
			}
			sender, measured, sent, ok := parseBenchOpID(m.ClientOpID)
			if !ok || !measured {
				continue
			}
			cnt.copies.Add(1)
			lat := now - time.Duration(sent)
			if sender == s.idx {
				s.ack = append(s.ack, lat)
			} else {
				s.fan = append(s.fan, lat)
			}
		case "rejected":
			cnt.rejected.Add(1)
			if m.Error != nil {
				cnt.firstErr.CompareAndSwap(nil, "rejected: "+m.Error.Code+": "+m.Error.Message)
			}
		case "error":
			cnt.errorMsgs.Add(1)
			if m.Error != nil {
				cnt.firstErr.CompareAndSwap(nil, "error: "+m.Error.Code+": "+m.Error.Message)
			}
		}
	}
}

// waitFor polls cond until it holds, ctx ends or within passes.
func waitFor(ctx context.Context, within time.Duration, cond func() bool) error {
	deadline := time.Now().Add(within)
	for !cond() {
		if time.Now().After(deadline) {
			return fmt.Errorf("not done within %v", within)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(10 * time.Millisecond):
		}
	}
	return nil
}
