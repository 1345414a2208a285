package wmsqlite

import (
	"sync"
	"time"
)

// Waker is a broadcast signal from publishers to idle subscribers: Wake
// releases every current waiter at once. The zero value is ready to use.
//
// Wakes are counted rather than queued. A waiter passes the count it last
// saw, so a wake that lands before it starts waiting is not lost: Wait
// returns at once when the count has moved on. Publishers wake after their
// insert, never before it (see BackoffManager for why that is enough).
type Waker struct {
	mu  sync.Mutex
	gen uint64
	// ch is closed by the next Wake; nil while nobody waits, so a busy
	// publisher does not allocate a channel per message.
	ch chan struct{}
}

// NewWaker returns a ready Waker.
func NewWaker() *Waker { return &Waker{} }

// Wake releases every goroutine blocked in Wait and makes every later Wait
// whose count predates this call return at once.
func (w *Waker) Wake() {
	w.mu.Lock()
	w.gen++
	if w.ch != nil {
		close(w.ch)
		w.ch = nil
	}
	w.mu.Unlock()
}

// Count returns how many times Wake has been called; pass it to Wait to wait
// only for wakes that come after this moment.
func (w *Waker) Count() uint64 {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.gen
}

// Wait blocks until Wake has been called more than seen times in total, until
// timeout has passed or until done is closed, and reports whether it was
// woken. A nil done never fires. The timeout is what lets a caller that
// cannot be interrupted otherwise (a watermill subscriber loop) still notice
// that it is being closed.
func (w *Waker) Wait(seen uint64, timeout time.Duration, done <-chan struct{}) bool {
	w.mu.Lock()
	if w.gen > seen {
		w.mu.Unlock()
		return true
	}
	if w.ch == nil {
		w.ch = make(chan struct{})
	}
	ch := w.ch
	w.mu.Unlock()

	timer := time.NewTimer(timeout)
	defer timer.Stop()
	select {
	case <-ch:
		return true
	case <-timer.C:
		return false
	case <-done:
		return false
	}
}
