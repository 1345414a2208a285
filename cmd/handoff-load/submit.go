package main

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/coder/websocket"
	"github.com/google/uuid"
)

type submitConfig struct {
	rate, teams      int
	warmup, duration time.Duration
}

// submitRig is a server with teams of two: members[0] submits over HTTP,
// members[1] watches the team's operations on its socket.
type submitRig struct {
	srv     *child
	backend string
	teams   []*team
	skus    []string
	epoch   time.Time

	watchers []*websocket.Conn
	cancel   context.CancelFunc
	readers  sync.WaitGroup

	mu      sync.Mutex
	pending map[string]*pendingSubmit // by draft id
	next    int                       // drafts handed out so far
	ready   []readyDraft

	strayOps   atomic.Int64
	readErrors atomic.Int64
	firstErr   atomic.Value
}

type readyDraft struct {
	team int
	id   string
}

type pendingSubmit struct {
	start    time.Duration // since epoch, just before the request
	measured bool
	done     bool
	status   string
	lat      time.Duration
	errCode  string
}

// stepResult is one open-loop run at a fixed submit rate.
type stepResult struct {
	rate       int
	sent       int
	elapsed    time.Duration
	lat        summary // submit request -> completed, measured submits
	httpLat    summary // submit request -> 202 answer
	completed  int
	failed     int
	missing    int // neither completed nor failed in time
	httpErrors int
	notCreated int // answered 200 instead of 202
	firstErr   string
	cpu        string
	waits      string
	backlog    string
	growing    bool // the latency kept rising through the step
}

// ok is the verdict of a submit_max step: every operation completed, p99
// under the bound, the rate was really offered, and the latency did not
// keep rising, the sign of a backlog that a longer hold would grow past
// the bound.
func (r stepResult) ok(p99 time.Duration) bool {
	return r.failed == 0 && r.missing == 0 && r.httpErrors == 0 && r.notCreated == 0 && !r.growing &&
		r.lat.pct(99) < p99 && float64(r.sent) >= 0.95*float64(r.rate)*r.elapsed.Seconds()
}

// rising reports whether the median latency of the last quarter of the
// submits (in sending order) is over twice, and 50 ms above, that of the
// first quarter.
func rising(byStart []timedLat) bool {
	if len(byStart) < 40 {
		return false
	}
	slices.SortFunc(byStart, func(a, b timedLat) int { return cmp.Compare(a.start, b.start) })
	q := len(byStart) / 4
	med := func(part []timedLat) time.Duration {
		var s samples
		for _, p := range part {
			s.add(p.lat)
		}
		return s.summary().pct(50)
	}
	first, last := med(byStart[:q]), med(byStart[len(byStart)-q:])
	return last > 2*first && last-first > 50*time.Millisecond
}

type timedLat struct{ start, lat time.Duration }

func (r stepResult) String() string {
	s := fmt.Sprintf("rate %d/s: sent %d in %.1fs (%.0f/s), completed %d, failed %d, missing %d, http errors %d, not created %d; completed %s; http %s; %s",
		r.rate, r.sent, r.elapsed.Seconds(), float64(r.sent)/r.elapsed.Seconds(), r.completed, r.failed, r.missing, r.httpErrors, r.notCreated,
		r.lat.describe(), r.httpLat.describe(), r.cpu)
	if r.waits != "" {
		s += "; " + r.waits
	}
	if r.backlog != "" {
		s += "; " + r.backlog
	}
	if r.growing {
		s += "; latency rising through the step (a growing backlog)"
	}
	if r.firstErr != "" {
		s += "; first error: " + r.firstErr
	}
	return s
}

func runSubmit(ctx context.Context, cfg config, backend string) error {
	sc := cfg.submit
	rig, err := newSubmitRig(ctx, cfg, backend, sc.teams)
	if err != nil {
		return err
	}
	defer rig.close()
	n := int(float64(sc.rate)*(sc.warmup+sc.duration).Seconds()*1.05) + sc.teams
	t0 := time.Now()
	if err := rig.prepare(ctx, n); err != nil {
		return err
	}
	infof("%s/submit: %d drafts ready in %.1fs", backend, n, time.Since(t0).Seconds())
	res, err := rig.step(ctx, cfg, sc.rate, sc.warmup, sc.duration, backend+"-submit")
	if err != nil {
		return err
	}
	benchf("backend=%s scenario=submit rate_per_s=%d submit_to_completed_p50_ms=%s submit_to_completed_p99_ms=%s",
		backend, sc.rate, ms(res.lat.pct(50)), ms(res.lat.pct(99)))
	infof("%s/submit: %s", backend, res)
	rig.logSummary("submit")
	if !rig.srv.Alive() {
		return errStopped
	}
	if res.failed+res.missing+res.httpErrors > 0 {
		return fmt.Errorf("%d failed, %d missing, %d http errors", res.failed, res.missing, res.httpErrors)
	}
	return nil
}

func newSubmitRig(ctx context.Context, cfg config, backend string, nTeams int) (*submitRig, error) {
	srv, err := startChild(ctx, cfg, backend)
	if err != nil {
		return nil, err
	}
	rig := &submitRig{srv: srv, backend: backend, pending: map[string]*pendingSubmit{}, epoch: time.Now()}
	ok := false
	defer func() {
		if !ok {
			rig.close()
		}
	}()
	if err := srv.Restock(ctx); err != nil {
		return nil, err
	}
	pool := newAddrPool()
	if rig.teams, err = makeTeams(ctx, srv.Base, pool, nTeams, 2); err != nil {
		return nil, err
	}
	if rig.skus, err = catalogSKUs(ctx, rig.teams[0].members[0].c); err != nil {
		return nil, err
	}
	rctx, cancel := context.WithCancel(context.Background())
	rig.cancel = cancel
	for _, t := range rig.teams {
		s, err := t.members[1].c.Dial(ctx)
		if err != nil {
			return nil, err
		}
		rig.watchers = append(rig.watchers, s.WS)
		rig.readers.Add(1)
		go func() {
			defer rig.readers.Done()
			rig.watch(rctx, s.WS)
		}()
	}
	ok = true
	return rig, nil
}

func (r *submitRig) close() {
	if r.cancel != nil {
		r.cancel()
	}
	for _, ws := range r.watchers {
		ws.CloseNow()
	}
	r.readers.Wait()
	r.srv.Close()
}

func (r *submitRig) logSummary(name string) {
	if n := r.strayOps.Load(); n > 0 {
		infof("%s/%s: %d operation messages for drafts not submitted by this run", r.backend, name, n)
	}
	if e := r.firstErr.Load(); e != nil {
		infof("%s/%s: watcher: %v (read errors %d)", r.backend, name, e, r.readErrors.Load())
	}
	if w, e := r.srv.LogErrors(); w+e > 0 {
		infof("%s/%s: server log has %d WARN and %d ERROR lines", r.backend, name, w, e)
	}
}

// watch records, for every submitted draft, when its operation completed or
// failed as seen on a member's socket.
func (r *submitRig) watch(ctx context.Context, ws *websocket.Conn) {
	for {
		_, data, err := ws.Read(ctx)
		if err != nil {
			if ctx.Err() == nil {
				r.readErrors.Add(1)
				r.firstErr.CompareAndSwap(nil, err.Error())
			}
			return
		}
		now := time.Since(r.epoch)
		m, err := decodeMsg(data)
		if err != nil || m.Type != "operation" || m.Operation == nil {
			continue
		}
		op := m.Operation
		if op.Status != "completed" && op.Status != "failed" {
			continue
		}
		r.mu.Lock()
		p := r.pending[op.DraftID]
		if p == nil {
			r.strayOps.Add(1)
		} else if !p.done {
			p.done, p.status, p.lat = true, op.Status, now-p.start
			if op.Error != nil {
				p.errCode = op.Error.Code + ": " + op.Error.Message
			}
		}
		r.mu.Unlock()
	}
}

// prepare creates n drafts with one item each, spread over the teams, ready
// to be submitted at revision 1.
func (r *submitRig) prepare(ctx context.Context, n int) error {
	perTeam := make([][]string, len(r.teams))
	ids := make([]string, n)
	err := parallel(ctx, n, 16, func(ctx context.Context, i int) error {
		d, err := r.teams[i%len(r.teams)].members[0].c.CreateDraft(ctx, fmt.Sprintf("Submit %d", i))
		if err != nil {
			return fmt.Errorf("create draft: %w", err)
		}
		ids[i] = d.ID
		return nil
	})
	if err != nil {
		return err
	}
	for i, id := range ids {
		perTeam[i%len(r.teams)] = append(perTeam[i%len(r.teams)], id)
	}
	// One add_item per draft, through short-lived sockets of the submitter
	// that each send at most 90 frames: within the server's burst of 100
	// frames per socket.
	const perSocket = 90
	type chunk struct {
		team int
		ids  []string
	}
	var chunks []chunk
	for t, list := range perTeam {
		for len(list) > 0 {
			k := min(perSocket, len(list))
			chunks = append(chunks, chunk{t, list[:k]})
			list = list[k:]
		}
	}
	err = parallel(ctx, len(chunks), 8, func(ctx context.Context, i int) error {
		c := chunks[i]
		s, err := r.teams[c.team].members[0].c.Dial(ctx)
		if err != nil {
			return err
		}
		defer s.WS.CloseNow()
		for j, id := range c.ids {
			frame := opFrame(id, "setup", 0, addItemOp(uuid.NewString(), r.skus[j%len(r.skus)], 1+j%5))
			if err := s.WS.Write(ctx, websocket.MessageText, frame); err != nil {
				return err
			}
		}
		rctx, cancel := context.WithTimeout(ctx, 60*time.Second)
		defer cancel()
		for acked := 0; acked < len(c.ids); {
			m, err := s.Read(rctx)
			if err != nil {
				return fmt.Errorf("setup socket: %w", err)
			}
			switch m.Type {
			case "applied":
				acked++
			case "rejected", "error":
				return fmt.Errorf("setup op %s: %+v", m.Type, m.Error)
			}
		}
		return s.Close()
	})
	if err != nil {
		return err
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	for i, id := range ids {
		r.ready = append(r.ready, readyDraft{team: i % len(r.teams), id: id})
	}
	return nil
}

// step submits rate drafts per second, open loop, for warmup+duration and
// waits for every operation to end; submits during the warm-up are not
// measured but must complete too.
func (r *submitRig) step(ctx context.Context, cfg config, rate int, warmup, duration time.Duration, name string) (stepResult, error) {
	res := stepResult{rate: rate}
	r.mu.Lock()
	avail := r.ready[r.next:]
	r.mu.Unlock()
	need := int(float64(rate)*(warmup+duration).Seconds()) + 1
	if len(avail) < need {
		return res, fmt.Errorf("step at %d/s needs %d drafts, %d prepared", rate, need, len(avail))
	}
	var (
		wg       sync.WaitGroup
		httpLat  samples
		httpErrs atomic.Int64
		notNew   atomic.Int64
		firstErr atomic.Value
		cpuA     cpuSample
		perf     *perfRecorder
		waits    *waitSampler
		mine     []string
	)
	warmEnd := time.Now().Add(warmup)
	end := warmEnd.Add(duration)
	if warmup == 0 {
		cpuA = takeCPU(r.srv.PID)
		perf = startPerf(cfg.perfDir, name, r.srv.PID)
		waits = startWaits(r.srv)
	}
	inWindow := warmup == 0
	p := newPacer(rate)
	i := 0
	for ctx.Err() == nil && i < len(avail) {
		due := p.next()
		if !due.Before(end) {
			break
		}
		measured := !due.Before(warmEnd)
		if measured && !inWindow {
			inWindow = true
			cpuA = takeCPU(r.srv.PID)
			perf = startPerf(cfg.perfDir, name, r.srv.PID)
			waits = startWaits(r.srv)
		}
		if measured {
			res.sent++
		}
		d := avail[i]
		i++
		mine = append(mine, d.id)
		c := r.teams[d.team].members[0].c
		wg.Add(1)
		go func() {
			defer wg.Done()
			ps := &pendingSubmit{measured: measured}
			r.mu.Lock()
			ps.start = time.Since(r.epoch)
			r.pending[d.id] = ps
			r.mu.Unlock()
			_, created, err := c.Submit(ctx, d.id, 1)
			took := time.Since(r.epoch) - ps.start
			if err != nil {
				httpErrs.Add(1)
				firstErr.CompareAndSwap(nil, err.Error())
				return
			}
			if !created {
				notNew.Add(1)
			}
			if measured {
				httpLat.add(took)
			}
		}()
	}
	res.elapsed = time.Since(warmEnd)
	if warmup == 0 || inWindow {
		res.cpu = cpuUse(cpuA, takeCPU(r.srv.PID))
	}
	perf.stop()
	res.waits = waits.stop()
	res.backlog = pgBacklog(ctx, r.srv)
	r.mu.Lock()
	r.next += i
	r.mu.Unlock()
	wg.Wait()
	// Every operation must end; give the tail a fixed grace period.
	_ = waitFor(ctx, 15*time.Second, func() bool {
		r.mu.Lock()
		defer r.mu.Unlock()
		for _, id := range mine {
			if p := r.pending[id]; p == nil || !p.done {
				return false
			}
		}
		return true
	})
	if ctx.Err() != nil {
		return res, ctx.Err()
	}
	var lat samples
	var timed []timedLat
	r.mu.Lock()
	for _, id := range mine {
		p := r.pending[id]
		switch {
		case p == nil || !p.done:
			res.missing++
		case p.status == "completed":
			res.completed++
			if p.measured {
				lat.add(p.lat)
				timed = append(timed, timedLat{p.start, p.lat})
			}
		default:
			res.failed++
			if res.firstErr == "" {
				res.firstErr = "operation failed: " + p.errCode
			}
		}
		delete(r.pending, id)
	}
	r.mu.Unlock()
	res.lat, res.httpLat = lat.summary(), httpLat.summary()
	res.growing = rising(timed)
	res.httpErrors, res.notCreated = int(httpErrs.Load()), int(notNew.Load())
	if e, _ := firstErr.Load().(string); e != "" && res.firstErr == "" {
		res.firstErr = "http: " + e
	}
	if res.missing > 0 {
		if h := horizonHolders(ctx, r.srv); h != "" {
			res.firstErr += " [" + h + "]"
		}
	}
	if !r.srv.Alive() {
		return res, errors.Join(errStopped, errors.New(r.srv.logTail(20)))
	}
	return res, nil
}
