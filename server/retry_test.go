package server_test

import (
	"testing"
	"time"

	"handoff/pkg/bus/bustest"
	"handoff/pkg/envelope"
)

// interiorSays publishes a status event as the interior would.
func (e *edge) interiorSays(t *testing.T, id string, ev envelope.StatusChanged) {
	t.Helper()
	ev.At = time.Now().UTC().Format(time.RFC3339Nano)
	msg, err := envelope.New(id, envelope.TypeStatusChanged, ev.OperationID, ev)
	if err != nil {
		t.Fatal(err)
	}
	bustest.Publish(t, e.bus, e.db, envelope.TopicOperationStatus, msg)
}

// submittedDraft makes a one-item draft, submits it and returns the draft
// id, the operation and a subscribed socket.
func submittedDraft(t *testing.T, c *client) (string, map[string]any, *socket) {
	draft := c.newDraft("Order")
	ws := c.dial()
	ws.subscribe(draft)
	ws.op(draft, "add", 0, addItemOp(item1, "PEN-BLU-10", 1))
	ws.next("applied")
	op := c.must(202, "POST", "/api/drafts/"+draft+"/submit", map[string]int{"revision": 1})["operation"].(map[string]any)
	return draft, op, ws
}

func nextOperation(ws *socket, status string) map[string]any {
	for {
		o := ws.next("operation")["operation"].(map[string]any)
		if o["status"] == status {
			return o
		}
	}
}

func TestRetryOfATransientFailure(t *testing.T) {
	eachBackend(t, func(t *testing.T, e *edge) {
		alice := e.client()
		alice.createTeam("A", "Alice")
		draft, op, ws := submittedDraft(t, alice)
		id := op["id"].(string)
		e.interiorSays(t, "ev-1", envelope.StatusChanged{OperationID: id, Step: envelope.StepPayment, StepStatus: envelope.StepFailed, Attempts: 5,
			Outcome: envelope.OpFailed, Error: &envelope.Error{Code: "payment_unavailable", Message: "down", Retryable: true}})
		failed := nextOperation(ws, "failed")
		if failed["retryable"] != true {
			t.Fatalf("failed operation: %v", failed)
		}
		if snap := ws.next("snapshot")["draft"].(map[string]any); snap["state"] != "editing" || snap["revision"] != float64(2) {
			t.Fatalf("draft after the failure: %v", snap)
		}
		r := alice.do("POST", "/api/operations/"+id+"/retry", nil)
		if r.status != 202 {
			t.Fatalf("retry: %d %s", r.status, r.raw)
		}
		again := r.body["operation"].(map[string]any)
		if again["status"] != "pending" || again["attempt"] != float64(1) || again["seq"].(float64) <= failed["seq"].(float64) {
			t.Fatalf("retried operation: %v", again)
		}
		if r := alice.do("POST", "/api/operations/"+id+"/retry", `{}`); r.status != 200 {
			t.Fatalf("second retry while the first runs: %d %s", r.status, r.raw)
		}
		found := false
		for _, m := range e.outbox(t, envelope.TopicOrderSubmitted) {
			if m.UUID == envelope.RetryID(op["message_id"].(string), 1) && m.Metadata.Get(envelope.MetaAttempt) == "1" {
				found = true
			}
		}
		if !found {
			t.Fatal("the retry's message is not in the outbox")
		}
		// An event of the first run arriving late changes nothing.
		e.interiorSays(t, "ev-late", envelope.StatusChanged{OperationID: id, Step: envelope.StepConfirm, StepStatus: envelope.StepDone, Outcome: envelope.OpCompleted})
		e.interiorSays(t, "ev-2", envelope.StatusChanged{OperationID: id, Attempt: 1, Step: envelope.StepConfirm, StepStatus: envelope.StepDone,
			Outcome: envelope.OpCompleted, Result: &envelope.Result{OrderNumber: "HO-000001", TotalCents: 450, Currency: "EUR"}})
		done := nextOperation(ws, "completed")
		if done["result"].(map[string]any)["order_number"] != "HO-000001" {
			t.Fatalf("completed: %v", done)
		}
		if d := alice.must(200, "GET", "/api/drafts/"+draft, nil); d["state"] != "submitted" {
			t.Fatalf("draft after the retry: %v", d)
		}
	})
}

func TestEditTakesRetryAway(t *testing.T) {
	e := startEdge(t, sqldbtestURL(t), serverConfig())
	alice := e.client()
	token := alice.createTeam("A", "Alice")
	bob := e.client()
	bob.join(token, "Bob")
	wb := bob.dial()
	draft, op, ws := submittedDraft(t, alice)
	id := op["id"].(string)
	e.interiorSays(t, "ev-1", envelope.StatusChanged{OperationID: id, Step: envelope.StepPayment, StepStatus: envelope.StepFailed,
		Outcome: envelope.OpFailed, Error: &envelope.Error{Code: "payment_unavailable", Message: "down", Retryable: true}})
	nextOperation(wb, "failed")
	ws.next("snapshot")
	ws.op(draft, "edit", 2, map[string]any{"kind": "set_title", "title": "Changed"})
	// Bob, who is not in the draft, hears that Retry is gone.
	if o := nextOperation(wb, "failed"); o["retryable"] != false {
		t.Fatalf("after the edit: %v", o)
	}
	if r := alice.do("POST", "/api/operations/"+id+"/retry", nil); r.status != 409 || r.errCode() != "not_retryable" {
		t.Fatalf("retry after an edit: %d %s", r.status, r.raw)
	}
}
