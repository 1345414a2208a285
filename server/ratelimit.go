package server

import (
	"math"
	"net"
	"net/http"
	"sync"
	"time"
)

// rateLimiter is a token bucket per client address, for the endpoints that
// need no session (and so could be hammered to guess invite tokens).
type rateLimiter struct {
	mu      sync.Mutex
	rate    float64 // tokens per second
	burst   float64
	buckets map[string]*bucket
	lastGC  time.Time
}

type bucket struct {
	tokens float64
	last   time.Time
}

func newRateLimiter(perWindow int, window time.Duration) *rateLimiter {
	return &rateLimiter{rate: float64(perWindow) / window.Seconds(), burst: float64(perWindow), buckets: map[string]*bucket{}}
}

// allow takes a token for key, or says how long until one is there.
func (l *rateLimiter) allow(key string, now time.Time) (bool, time.Duration) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if now.Sub(l.lastGC) > time.Minute {
		for k, b := range l.buckets {
			if now.Sub(b.last).Seconds()*l.rate >= l.burst {
				delete(l.buckets, k)
			}
		}
		l.lastGC = now
	}
	b := l.buckets[key]
	if b == nil {
		b = &bucket{tokens: l.burst, last: now}
		l.buckets[key] = b
	}
	b.tokens = math.Min(l.burst, b.tokens+now.Sub(b.last).Seconds()*l.rate)
	b.last = now
	if b.tokens < 1 {
		return false, time.Duration((1 - b.tokens) / l.rate * float64(time.Second))
	}
	b.tokens--
	return true, 0
}

func (s *Server) limitAuth(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		host, _, err := net.SplitHostPort(r.RemoteAddr)
		if err != nil {
			host = r.RemoteAddr
		}
		if ok, wait := s.limiter.allow(host, time.Now()); !ok {
			secs := int(math.Ceil(wait.Seconds()))
			s.writeError(w, r, &Error{Code: CodeRateLimited, Message: "Too many attempts; please wait a moment and try again.", Extra: map[string]any{"retry_after": secs}})
			return
		}
		next.ServeHTTP(w, r)
	})
}
