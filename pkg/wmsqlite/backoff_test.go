package wmsqlite_test

import (
	"testing"
	"time"

	"github.com/ThreeDotsLabs/watermill"

	"handoff/pkg/wmsqlite"
)

// A wake whose query finds nothing is followed by the short rechecks, once
// each, before the manager waits again; a query that found a message, or a
// wait that timed out, earns none.
func TestBackoffRechecksAfterAnEmptyWake(t *testing.T) {
	w := wmsqlite.NewWaker()
	const poll = 20 * time.Millisecond
	m := wmsqlite.NewBackoffManager(w, poll, time.Second)
	m.SetRechecks(time.Millisecond, 2*time.Millisecond)
	log := watermill.NopLogger{}
	step := func(noMsg bool, want time.Duration, what string) {
		t.Helper()
		if got := m.HandleError(log, noMsg, nil); got != want {
			t.Fatalf("%s: backoff %v, want %v", what, got, want)
		}
	}
	w.Wake()
	step(true, 0, "woken")
	step(true, time.Millisecond, "first recheck")
	step(true, 2*time.Millisecond, "second recheck")
	w.Wake()
	step(true, 0, "rechecks used up: wait, woken again")
	step(false, 0, "the wake found a message")
	step(true, 0, "caught up: wait, timed out")
	step(true, 0, "after a timeout no recheck: wait again")
}
