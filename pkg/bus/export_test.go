package bus

import "time"

// ListenerPID returns the backend pid of the Bus's LISTEN connection, so a
// test can cut it.
func ListenerPID(b *Bus) uint32 { return b.listenPID.Load() }

// ListenCount returns how many times the Bus has issued LISTEN.
func ListenCount(b *Bus) uint64 { return b.listening.Count() }

// WaitListen waits until the Bus has issued LISTEN more than seen times.
func WaitListen(b *Bus, seen uint64, timeout time.Duration) bool {
	return b.listening.Wait(seen, timeout, nil)
}

// SetIdleHook makes later subscriptions call f each time they find nothing
// and are about to wait for a wake.
func SetIdleHook(b *Bus, f func()) { b.onIdle = f }
