package main

import (
	"fmt"
	"math"
	"slices"
	"sync"
	"time"
)

// samples collects latencies from many goroutines.
type samples struct {
	mu sync.Mutex
	d  []time.Duration
}

func (s *samples) add(d time.Duration) {
	s.mu.Lock()
	s.d = append(s.d, d)
	s.mu.Unlock()
}

func (s *samples) addAll(d []time.Duration) {
	s.mu.Lock()
	s.d = append(s.d, d...)
	s.mu.Unlock()
}

// summary is a sorted copy of the samples.
type summary []time.Duration

func (s *samples) summary() summary {
	s.mu.Lock()
	out := slices.Clone(s.d)
	s.mu.Unlock()
	slices.Sort(out)
	return summary(out)
}

// pct is the nearest-rank percentile p (0 < p <= 100); 0 with no samples.
func (s summary) pct(p float64) time.Duration {
	if len(s) == 0 {
		return 0
	}
	rank := int(math.Ceil(p / 100 * float64(len(s))))
	return s[max(rank, 1)-1]
}

func (s summary) max() time.Duration {
	if len(s) == 0 {
		return 0
	}
	return s[len(s)-1]
}

func (s summary) mean() time.Duration {
	if len(s) == 0 {
		return 0
	}
	var sum time.Duration
	for _, d := range s {
		sum += d
	}
	return sum / time.Duration(len(s))
}

// ms formats a duration in milliseconds with two decimals.
func ms(d time.Duration) string {
	return fmt.Sprintf("%.2f", float64(d)/float64(time.Millisecond))
}

// describe is a one-line distribution for info lines.
func (s summary) describe() string {
	return fmt.Sprintf("n=%d p50=%sms p90=%sms p99=%sms p99.9=%sms max=%sms", len(s), ms(s.pct(50)), ms(s.pct(90)), ms(s.pct(99)), ms(s.pct(99.9)), ms(s.max()))
}

// pacer spreads n events per second evenly: wait returns when the next one
// is due, or false when ctx ends or until has passed. It does not skip
// events it is late for, so a stall shows up as a burst, not a gap.
type pacer struct {
	start    time.Time
	interval time.Duration
	i        int64
}

func newPacer(rate int) *pacer {
	return &pacer{start: time.Now(), interval: time.Second / time.Duration(rate)}
}

// next sleeps until event i is due and returns its due time.
func (p *pacer) next() time.Time {
	due := p.start.Add(time.Duration(p.i) * p.interval)
	p.i++
	if d := time.Until(due); d > 0 {
		time.Sleep(d)
	}
	return due
}
