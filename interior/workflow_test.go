package interior_test

import (
	"strings"
	"testing"
	"time"

	"handoff/interior"
	"handoff/pkg/envelope"
	"handoff/pkg/sqldb/sqldbtest"
)

func (r *rig) stock(sku string) int {
	return r.count(`SELECT available + COALESCE((SELECT sum(quantity) FROM stock_releases r WHERE r.sku = stock.sku), 0) FROM stock WHERE sku = $1`, sku)
}

func last(evs []envelope.StatusChanged) envelope.StatusChanged { return evs[len(evs)-1] }

// stepEvents returns the events of one step.
func stepEvents(evs []envelope.StatusChanged, step string) []envelope.StatusChanged {
	var out []envelope.StatusChanged
	for _, ev := range evs {
		if ev.Step == step {
			out = append(out, ev)
		}
	}
	return out
}

func TestOutOfStockReservesNothing(t *testing.T) {
	sqldbtest.Each(t, func(t *testing.T, url string) {
		t.Parallel()
		r := startInterior(t, url, interior.Config{})
		before := r.stock("MLK-OAT-1L")
		r.publish(envelope.TopicOrderSubmitted, submitted(t, "op-short",
			envelope.Line{SKU: "MLK-OAT-1L", Quantity: 3}, envelope.Line{SKU: "FRT-BOX-5KG", Quantity: 41}))
		ev := last(r.statuses("op-short")["op-short"])
		if ev.Outcome != envelope.OpFailed || ev.Step != envelope.StepReserve || ev.Error.Code != "out_of_stock" ||
			!strings.Contains(ev.Error.Message, "Fruit box, 5 kg: 41 wanted, 40 left") {
			t.Fatalf("%+v %+v", ev, ev.Error)
		}
		if got := r.stock("MLK-OAT-1L"); got != before {
			t.Fatalf("oat milk stock %d, want %d: a short order reserved a line", got, before)
		}
	})
}

func TestLastStockGoesToOneOrder(t *testing.T) {
	sqldbtest.Each(t, func(t *testing.T, url string) {
		t.Parallel()
		r := startInterior(t, url, interior.Config{})
		line := envelope.Line{SKU: "FRT-BOX-5KG", Quantity: 30}
		r.publish(envelope.TopicOrderSubmitted, submitted(t, "op-1", line), submitted(t, "op-2", line))
		got := r.statuses("op-1", "op-2")
		outcomes := last(got["op-1"]).Outcome + "," + last(got["op-2"]).Outcome
		if outcomes != "completed,failed" && outcomes != "failed,completed" {
			t.Fatalf("outcomes %s, want one of each", outcomes)
		}
		if left := r.stock("FRT-BOX-5KG"); left != 10 {
			t.Fatalf("%d fruit boxes left, want 10", left)
		}
	})
}

func TestDeclinedPaymentReleasesStock(t *testing.T) {
	sqldbtest.Each(t, func(t *testing.T, url string) {
		t.Parallel()
		r := startInterior(t, url, interior.Config{Sim: interior.SimConfig{DeclineAboveCents: 10000}})
		before := r.stock("COF-ESP-1KG")
		r.publish(envelope.TopicOrderSubmitted, submitted(t, "op-big", envelope.Line{SKU: "COF-ESP-1KG", Quantity: 10}))
		ev := last(r.statuses("op-big")["op-big"])
		if ev.Outcome != envelope.OpFailed || ev.Step != envelope.StepPayment || ev.Error.Code != "payment_declined" || ev.Error.Retryable {
			t.Fatalf("%+v %+v", ev, ev.Error)
		}
		if got := r.stock("COF-ESP-1KG"); got != before {
			t.Fatalf("stock %d after a decline, want %d restored", got, before)
		}
		if n := r.count(`SELECT count(*) FROM sim_charges`); n != 0 {
			t.Fatalf("%d charges for a declined payment", n)
		}
	})
}

func TestTransientPaymentErrorsAreRetried(t *testing.T) {
	sqldbtest.Each(t, func(t *testing.T, url string) {
		t.Parallel()
		r := startInterior(t, url, interior.Config{Sim: interior.SimConfig{FailFirst: 2}, PaymentBackoff: time.Millisecond})
		r.publish(envelope.TopicOrderSubmitted, submitted(t, "op-flaky", envelope.Line{SKU: "PEN-BLU-10", Quantity: 2}))
		evs := r.statuses("op-flaky")["op-flaky"]
		if ev := last(evs); ev.Outcome != envelope.OpCompleted {
			t.Fatalf("%+v", ev)
		}
		pay := stepEvents(evs, envelope.StepPayment)
		if done := last(pay); done.StepStatus != envelope.StepDone || done.Attempts != 3 {
			t.Fatalf("payment step ended %+v, want done after 3 attempts", done)
		}
		if n := r.count(`SELECT count(*) FROM sim_charges`); n != 1 {
			t.Fatalf("%d charges, want 1", n)
		}
	})
}

func TestPaymentThatKeepsFailingIsRetryable(t *testing.T) {
	sqldbtest.Each(t, func(t *testing.T, url string) {
		t.Parallel()
		r := startInterior(t, url, interior.Config{Sim: interior.SimConfig{FailFirst: 100}, PaymentMaxTries: 3, PaymentBackoff: time.Millisecond})
		before := r.stock("PEN-BLU-10")
		r.publish(envelope.TopicOrderSubmitted, submitted(t, "op-down", envelope.Line{SKU: "PEN-BLU-10", Quantity: 2}))
		ev := last(r.statuses("op-down")["op-down"])
		if ev.Outcome != envelope.OpFailed || ev.Error.Code != "payment_unavailable" || !ev.Error.Retryable || ev.Attempts != 3 {
			t.Fatalf("%+v %+v", ev, ev.Error)
		}
		if got := r.stock("PEN-BLU-10"); got != before {
			t.Fatalf("stock %d, want %d restored", got, before)
		}
	})
}

// A call that charged but never answered is made again with the same key:
// one charge, and the order completes.
func TestTimedOutChargeIsChargedOnce(t *testing.T) {
	sqldbtest.Each(t, func(t *testing.T, url string) {
		t.Parallel()
		r := startInterior(t, url, interior.Config{Sim: interior.SimConfig{TimeoutFirst: 1}, PaymentTimeout: 50 * time.Millisecond, PaymentBackoff: time.Millisecond})
		r.publish(envelope.TopicOrderSubmitted, submitted(t, "op-slow", envelope.Line{SKU: "PEN-BLU-10", Quantity: 1}))
		if ev := last(r.statuses("op-slow")["op-slow"]); ev.Outcome != envelope.OpCompleted {
			t.Fatalf("%+v", ev)
		}
		if n := r.count(`SELECT count(*) FROM sim_charges`); n != 1 {
			t.Fatalf("%d charges, want 1", n)
		}
	})
}

// Calls that charged but never answered, then a manual retry: the retry
// gets the first charge back instead of charging again.
func TestRetryAfterAmbiguousChargeChargesOnce(t *testing.T) {
	sqldbtest.Each(t, func(t *testing.T, url string) {
		t.Parallel()
		r := startInterior(t, url, interior.Config{Sim: interior.SimConfig{TimeoutFirst: 2}, PaymentMaxTries: 2,
			PaymentTimeout: 50 * time.Millisecond, PaymentBackoff: time.Millisecond})
		line := envelope.Line{SKU: "PEN-BLU-10", Quantity: 1}
		first := submitted(t, "op-amb", line)
		r.publish(envelope.TopicOrderSubmitted, first)
		if ev := last(r.statuses("op-amb")["op-amb"]); ev.Outcome != envelope.OpFailed || !ev.Error.Retryable {
			t.Fatalf("first run: %+v", ev)
		}
		retry, err := envelope.New(envelope.RetryID(first.UUID, 1), envelope.TypeOrderSubmitted, "op-amb",
			envelope.OrderSubmitted{OperationID: "op-amb", DraftID: "draft-op-amb", TeamID: "team", Revision: 1, Lines: []envelope.Line{line}})
		if err != nil {
			t.Fatal(err)
		}
		retry.Metadata.Set(envelope.MetaAttempt, "1")
		r.publish(envelope.TopicOrderSubmitted, retry)
		if ev := r.outcome("op-amb", 1); ev.Outcome != envelope.OpCompleted {
			t.Fatalf("retry: %+v", ev)
		}
		if n := r.count(`SELECT count(*) FROM sim_charges`); n != 1 {
			t.Fatalf("%d charges, want 1", n)
		}
	})
}
