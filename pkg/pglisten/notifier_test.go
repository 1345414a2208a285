package pglisten_test

import (
	"context"
	"fmt"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"handoff/pkg/pglisten"
	"handoff/pkg/sqldb/sqldbtest"
)

// Notifications queued on a Notifier reach a listener in the order they
// were queued; equal ones still waiting are sent once.
func TestNotifierDeliversInOrder(t *testing.T) {
	url := sqldbtest.PostgresURL(t)
	db := sqldbtest.MustOpen(t, url)
	got := listen(t, url)
	n := pglisten.StartNotifier(db.DB, testLog{t})
	defer n.Close()
	var want []string
	for i := range 20 {
		want = append(want, fmt.Sprint(i))
		n.Notify("notifier_test", fmt.Sprint(i))
	}
	n.Notify("notifier_test", "end")
	n.Notify("notifier_test", "end")
	want = append(want, "end")
	for _, w := range want {
		select {
		case p := <-got:
			if p != w && p != "end" {
				t.Fatalf("received %q, want %q", p, w)
			}
			if p == "end" {
				if w != "end" {
					t.Fatalf("end arrived before %q", w)
				}
			}
		case <-time.After(10 * time.Second):
			t.Fatalf("no notification %q within 10s", w)
		}
	}
	// Two "end"s were queued; a second one arrives only if the first had
	// already been sent when the second was queued. Either way no other
	// payload may follow.
	n.Notify("notifier_test", "last")
	for {
		select {
		case p := <-got:
			if p == "last" {
				return
			}
			if p != "end" {
				t.Fatalf("unexpected %q", p)
			}
		case <-time.After(10 * time.Second):
			t.Fatal("no final notification within 10s")
		}
	}
}

type testLog struct{ t *testing.T }

func (l testLog) Error(msg string, args ...any) { l.t.Errorf("%s %v", msg, args) }
func (l testLog) Info(msg string, args ...any)  { l.t.Logf("%s %v", msg, args) }

// A payload too long for PostgreSQL is dropped with an error in the log;
// the notifications around it are still sent.
func TestNotifierDropsAnOversizedPayloadAlone(t *testing.T) {
	url := sqldbtest.PostgresURL(t)
	db := sqldbtest.MustOpen(t, url)
	got := listen(t, url)
	log := &countingLog{}
	n := pglisten.StartNotifier(db.DB, log)
	defer n.Close()
	n.Notify("notifier_test", "before")
	n.Notify("notifier_test", strings.Repeat("x", pglisten.MaxPayload+1))
	n.Notify("notifier_test", "after")
	for _, w := range []string{"before", "after"} {
		select {
		case p := <-got:
			if p != w {
				t.Fatalf("received %.20q, want %q", p, w)
			}
		case <-time.After(10 * time.Second):
			t.Fatalf("no notification %q within 10s", w)
		}
	}
	if log.errors.Load() != 1 {
		t.Fatalf("%d errors logged, want 1 for the oversized payload", log.errors.Load())
	}
}

type countingLog struct{ errors atomic.Int32 }

func (l *countingLog) Error(string, ...any) { l.errors.Add(1) }
func (l *countingLog) Info(string, ...any)  {}

// listen returns the payloads notified on "notifier_test" from now on.
func listen(t *testing.T, url string) <-chan string {
	t.Helper()
	got := make(chan string, 100)
	l, err := pglisten.Start(context.Background(), pglisten.Config{
		URL: url, Channels: []string{"notifier_test"}, Name: "notifier-test",
		OnNotify: func(_, payload string) { got <- payload },
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(l.Close)
	return got
}
