package pglisten_test

import (
	"context"
	"fmt"
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
	got := make(chan string, 100)
	l, err := pglisten.Start(context.Background(), pglisten.Config{
		URL: url, Channels: []string{"notifier_test"}, Name: "notifier-test",
		OnNotify: func(_, payload string) { got <- payload },
	})
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
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
