package main

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"sync"
	"time"

	"handoff/pkg/client"
)

// The server allows 30 sign-ups, joins and invite look-ups per client
// address per minute (server.Config.AuthRate). Every address in 127/8 is
// loopback on Linux, so the load generator spreads its members over source
// addresses 127.0.X.Y, at most authPerAddr auth requests each; the server
// listens on 127.0.0.1 and sees them as distinct clients.
const authPerAddr = 25

// addrPool hands out HTTP transports bound to successive loopback source
// addresses. Members share a transport (the cookie jar is per client, not
// per transport), and their sockets dial from the same address.
type addrPool struct {
	mu    sync.Mutex
	n     int // addresses used so far
	used  int // auth requests on the current address
	cur   *http.Transport
	all   []*http.Transport
	first byte
}

func newAddrPool() *addrPool { return &addrPool{} }

// take returns the transport for the next auth request.
func (p *addrPool) take() *http.Transport {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.cur == nil || p.used >= authPerAddr {
		// 127.0.1.10 onwards: never 127.0.0.1, the server's own address.
		ip := net.IPv4(127, 0, byte(1+p.n/200), byte(10+p.n%200))
		p.n++
		p.used = 0
		p.cur = newTransport(ip)
		p.all = append(p.all, p.cur)
	}
	p.used++
	return p.cur
}

// closeIdle closes every pooled keep-alive connection, so that idle HTTP
// connections do not count as socket memory on the server.
func (p *addrPool) closeIdle() {
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, t := range p.all {
		t.CloseIdleConnections()
	}
}

func newTransport(ip net.IP) *http.Transport {
	d := &net.Dialer{LocalAddr: &net.TCPAddr{IP: ip}, Timeout: 10 * time.Second, KeepAlive: 30 * time.Second}
	return &http.Transport{
		DialContext:         d.DialContext,
		MaxIdleConns:        0,
		MaxIdleConnsPerHost: 256,
		IdleConnTimeout:     90 * time.Second,
		ForceAttemptHTTP2:   false,
	}
}

// member is one signed-in browser.
type member struct {
	c       *client.Client
	session client.Session
}

// team is a team of members; members[0] created it.
type team struct {
	id      string
	invite  string
	members []*member
}

func newMember(base string, tr *http.Transport) *member {
	c := client.New(base)
	c.HTTP.Transport = tr
	return &member{c: c}
}

// makeTeams signs up n teams of size members each.
func makeTeams(ctx context.Context, base string, pool *addrPool, n, size int) ([]*team, error) {
	teams := make([]*team, n)
	err := parallel(ctx, n, 16, func(ctx context.Context, i int) error {
		m := newMember(base, pool.take())
		s, err := m.c.CreateTeam(ctx, fmt.Sprintf("Bench team %d", i), fmt.Sprintf("m%d-0", i))
		if err != nil {
			return fmt.Errorf("create team %d: %w", i, err)
		}
		m.session = s
		teams[i] = &team{id: s.Team.ID, invite: s.InviteToken, members: make([]*member, size)}
		teams[i].members[0] = m
		return nil
	})
	if err != nil || size < 2 {
		return teams, err
	}
	joins := size - 1
	err = parallel(ctx, n*joins, 16, func(ctx context.Context, k int) error {
		t, j := teams[k/joins], 1+k%joins
		m := newMember(base, pool.take())
		s, err := m.c.Join(ctx, t.invite, fmt.Sprintf("m%d-%d", k/joins, j))
		if err != nil {
			return fmt.Errorf("join team %d: %w", k/joins, err)
		}
		m.session = s
		t.members[j] = m
		return nil
	})
	return teams, err
}

// parallel runs fn(ctx, i) for i in [0, n) on at most limit goroutines and
// returns the first error; the others then see ctx cancelled.
func parallel(ctx context.Context, n, limit int, fn func(ctx context.Context, i int) error) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var (
		wg    sync.WaitGroup
		once  sync.Once
		first error
		next  = make(chan int)
	)
	for range min(n, limit) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range next {
				if err := fn(ctx, i); err != nil {
					once.Do(func() { first = err; cancel() })
				}
			}
		}()
	}
	for i := 0; i < n && ctx.Err() == nil; i++ {
		select {
		case next <- i:
		case <-ctx.Done():
		}
	}
	close(next)
	wg.Wait()
	if first == nil {
		first = ctx.Err() // the caller's context ended
	}
	return first
}
