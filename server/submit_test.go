package server_test

import (
	"sync"
	"testing"

	"github.com/ThreeDotsLabs/watermill/message"

	"handoff/pkg/bus/bustest"
	"handoff/pkg/envelope"
)

// outbox returns every message on a topic up to now.
func (e *edge) outbox(t *testing.T, topic string) []*message.Message {
	t.Helper()
	return bustest.Drain(t, e.bus, e.db, topic)
}

func TestConcurrentIdenticalSubmitsMakeOneSubmission(t *testing.T) {
	eachBackend(t, func(t *testing.T, e *edge) {
		alice := e.client()
		token := alice.createTeam("Buyers", "Alice")
		bob := e.client()
		bob.join(token, "Bob")
		draft := alice.newDraft("Coffee")
		ws := alice.dial()
		ws.subscribe(draft)
		ws.op(draft, "op-1", 0, addItemOp(item1, "COF-ESP-1KG", 2))
		if m := ws.next("applied"); m["revision"] != float64(1) {
			t.Fatalf("applied: %v", m)
		}

		const n = 20
		replies := make([]reply, n)
		var wg sync.WaitGroup
		for i := 0; i < n; i++ {
			wg.Add(1)
			go func(i int) {
				defer wg.Done()
				c := alice
				if i%2 == 1 {
					c = bob
				}
				replies[i] = c.do("POST", "/api/drafts/"+draft+"/submit", map[string]int{"revision": 1})
			}(i)
		}
		wg.Wait()
		created, opID := 0, ""
		for i, r := range replies {
			switch r.status {
			case 202:
				created++
			case 200:
			default:
				t.Fatalf("submit %d: %d %s", i, r.status, r.raw)
			}
			op := r.body["operation"].(map[string]any)
			if opID == "" {
				opID = op["id"].(string)
			}
			if op["id"] != opID || op["message_id"] != envelope.SubmitID(draft, 1) {
				t.Fatalf("submit %d answered another operation: %v", i, op)
			}
		}
		if created != 1 {
			t.Fatalf("%d submits answered 202, want exactly 1", created)
		}
		ops := alice.must(200, "GET", "/api/operations", nil)["operations"].([]any)
		if len(ops) != 1 {
			t.Fatalf("%d operations, want 1", len(ops))
		}
		op := ops[0].(map[string]any)
		if op["status"] != "pending" || op["seq"] != float64(1) || op["revision"] != float64(1) || op["draft_title"] != "Coffee" {
			t.Fatalf("operation: %v", op)
		}
		msgs := e.outbox(t, envelope.TopicOrderSubmitted)
		if len(msgs) != 1 || msgs[0].UUID != envelope.SubmitID(draft, 1) {
			t.Fatalf("outbox holds %d messages, want the one submit", len(msgs))
		}
		d := alice.must(200, "GET", "/api/drafts/"+draft, nil)
		if d["state"] != "submitted" || d["submission"].(map[string]any)["operation_id"] != opID {
			t.Fatalf("draft after submit: %v", d)
		}
		// The socket heard the operation and the frozen draft.
		if m := ws.next("operation"); m["operation"].(map[string]any)["id"] != opID {
			t.Fatalf("operation message: %v", m)
		}
		if r := alice.do("POST", "/api/drafts/"+draft+"/submit", map[string]int{"revision": 0}); r.status != 409 || r.errCode() != "already_submitted" || r.errField("operation") == nil {
			t.Fatalf("submit at another revision after submitting: %d %s", r.status, r.raw)
		}
		ws.op(draft, "op-2", 1, map[string]any{"kind": "set_title", "title": "late"})
		if m := ws.next("rejected"); m["error"].(map[string]any)["code"] != "draft_submitted" {
			t.Fatalf("op on submitted draft: %v", m)
		}
	})
}
