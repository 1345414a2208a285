package interior_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"sync"
	"testing"
	"time"

	"github.com/ThreeDotsLabs/watermill"
	"github.com/ThreeDotsLabs/watermill/message"

	"handoff/interior"
	"handoff/pkg/bus"
	"handoff/pkg/bus/bustest"
	"handoff/pkg/catalog"
	"handoff/pkg/envelope"
	"handoff/pkg/sqldb"
	"handoff/pkg/sqldb/sqldbtest"
)

func TestPrice(t *testing.T) {
	cat := catalog.Default()
	ok := envelope.OrderSubmitted{OperationID: "op", Lines: []envelope.Line{{SKU: "COF-ESP-1KG", Quantity: 2}, {SKU: "MLK-OAT-1L", Quantity: 3}}}
	priced, reason := interior.Price(cat, ok)
	if reason != nil || priced.TotalCents != 2*2450+3*229 || priced.Currency != "EUR" || len(priced.Lines) != 2 {
		t.Fatalf("priced %+v, reason %v", priced, reason)
	}
	for name, tc := range map[string]struct {
		order envelope.OrderSubmitted
		code  string
	}{
		"empty":         {envelope.OrderSubmitted{}, "empty_order"},
		"unknown sku":   {envelope.OrderSubmitted{Lines: []envelope.Line{{SKU: "GONE", Quantity: 1}}}, "unknown_product"},
		"zero quantity": {envelope.OrderSubmitted{Lines: []envelope.Line{{SKU: "COF-ESP-1KG", Quantity: 0}}}, "bad_quantity"},
		"huge quantity": {envelope.OrderSubmitted{Lines: []envelope.Line{{SKU: "COF-ESP-1KG", Quantity: 10001}}}, "bad_quantity"},
	} {
		if _, reason := interior.Price(cat, tc.order); reason == nil || reason.Code != tc.code || reason.Message == "" {
			t.Errorf("%s: reason %v, want %s", name, reason, tc.code)
		}
	}
}

type rig struct {
	t   *testing.T
	db  *sqldb.DB
	bus *bus.Bus
	in  *interior.Interior
}

func startInterior(t *testing.T, url string, cfg interior.Config) *rig {
	t.Helper()
	db := sqldbtest.MustOpen(t, url)
	b, err := bus.New(db, watermill.NopLogger{}, bus.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { b.Close() })
	if err := interior.Migrate(context.Background(), db, b); err != nil {
		t.Fatal(err)
	}
	in, err := interior.New(db, b, slog.New(slog.NewTextHandler(io.Discard, nil)), cfg)
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- in.Run(context.Background()) }()
	t.Cleanup(func() { in.Close(); <-done })
	select {
	case <-in.Running():
	case err := <-done:
		t.Fatalf("interior stopped: %v", err)
	}
	return &rig{t: t, db: db, bus: b, in: in}
}

func (r *rig) publish(topic string, msgs ...*message.Message) {
	r.t.Helper()
	bustest.Publish(r.t, r.bus, r.db, topic, msgs...)
}

// outcome waits for the outcome of one run of an operation.
func (r *rig) outcome(op string, attempt int) envelope.StatusChanged {
	r.t.Helper()
	var got envelope.StatusChanged
	r.statusesUntil(func(ev envelope.StatusChanged) bool {
		if ev.OperationID == op && ev.Attempt == attempt && ev.Outcome != "" {
			got = ev
			return true
		}
		return false
	})
	return got
}

// statuses collects status events until one with an outcome arrives for
// every operation in ops.
func (r *rig) statuses(ops ...string) map[string][]envelope.StatusChanged {
	r.t.Helper()
	open := map[string]bool{}
	for _, op := range ops {
		open[op] = true
	}
	return r.statusesUntil(func(ev envelope.StatusChanged) bool {
		if ev.Outcome != "" {
			delete(open, ev.OperationID)
		}
		return len(open) == 0
	})
}

// statusesUntil collects status events, by operation, until done says so.
func (r *rig) statusesUntil(done func(envelope.StatusChanged) bool) map[string][]envelope.StatusChanged {
	r.t.Helper()
	sub, err := r.bus.Subscriber(fmt.Sprintf("test-%d", time.Now().UnixNano()))
	if err != nil {
		r.t.Fatal(err)
	}
	defer sub.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	ch, err := sub.Subscribe(ctx, envelope.TopicOperationStatus)
	if err != nil {
		r.t.Fatal(err)
	}
	out := map[string][]envelope.StatusChanged{}
	for {
		select {
		case m := <-ch:
			var ev envelope.StatusChanged
			if err := envelope.Decode(m, envelope.TypeStatusChanged, &ev); err != nil {
				r.t.Fatal(err)
			}
			m.Ack()
			out[ev.OperationID] = append(out[ev.OperationID], ev)
			if done(ev) {
				return out
			}
		case <-ctx.Done():
			r.t.Fatal("the awaited status events never came")
			return out
		}
	}
}

// topic returns every message on a topic up to now.
func (r *rig) topic(topic string) []*message.Message {
	r.t.Helper()
	return bustest.Drain(r.t, r.bus, r.db, topic)
}

func (r *rig) count(query string, args ...any) int {
	r.t.Helper()
	var n int
	if err := r.db.QueryRowContext(context.Background(), r.db.Q(query), args...).Scan(&n); err != nil {
		r.t.Fatal(err)
	}
	return n
}

func submitted(t *testing.T, opID string, lines ...envelope.Line) *message.Message {
	t.Helper()
	msg, err := envelope.New(envelope.SubmitID(opID, 1), envelope.TypeOrderSubmitted, opID,
		envelope.OrderSubmitted{OperationID: opID, DraftID: "draft-" + opID, TeamID: "team", Revision: 1, Lines: lines})
	if err != nil {
		t.Fatal(err)
	}
	return msg
}

func TestOrderCompletesOnceWhenDeliveredTwice(t *testing.T) {
	sqldbtest.Each(t, func(t *testing.T, url string) {
		t.Parallel()
		r := startInterior(t, url, interior.Config{})
		line := envelope.Line{SKU: "COF-ESP-1KG", Quantity: 2}
		// The same message twice: a duplicate publish of one submit.
		r.publish(envelope.TopicOrderSubmitted, submitted(t, "op-a", line), submitted(t, "op-a", line))
		r.publish(envelope.TopicOrderSubmitted, submitted(t, "op-b", line))
		got := r.statuses("op-a", "op-b")
		last := got["op-a"][len(got["op-a"])-1]
		if last.Outcome != envelope.OpCompleted || last.Result == nil || last.Result.TotalCents != 4900 || last.Result.OrderNumber == "" {
			t.Fatalf("outcome: %+v", last)
		}
		// op-b went through after both copies of op-a, so op-a's duplicate
		// has been handled (or skipped) by now.
		if n := r.count(`SELECT count(*) FROM orders WHERE operation_id = $1`, "op-a"); n != 1 {
			t.Fatalf("%d orders for op-a, want 1", n)
		}
		if n := r.count(`SELECT count(*) FROM interior_dedup`); n != 8 {
			t.Fatalf("%d dedup keys, want 8 (four handlers, two operations)", n)
		}
		// Had the duplicate been processed, it would have priced op-a again.
		if msgs := r.topic(envelope.TopicOrderPriced); len(msgs) != 2 {
			t.Fatalf("%d priced messages, want 2 (op-a once, op-b once)", len(msgs))
		}
	})
}

func TestFailedAttemptLeavesNothing(t *testing.T) {
	sqldbtest.Each(t, func(t *testing.T, url string) {
		t.Parallel()
		var mu sync.Mutex
		calls := 0
		r := startInterior(t, url, interior.Config{Fault: func(handler string, msg *message.Message) error {
			if handler != "confirm-order" {
				return nil
			}
			mu.Lock()
			defer mu.Unlock()
			calls++
			if calls == 1 {
				return errors.New("disk hiccup")
			}
			return nil
		}})
		r.publish(envelope.TopicOrderSubmitted, submitted(t, "op-f", envelope.Line{SKU: "PEN-BLU-10", Quantity: 1}))
		evs := r.statuses("op-f")["op-f"]
		last := evs[len(evs)-1]
		if last.Outcome != envelope.OpCompleted {
			t.Fatalf("outcome %+v", last)
		}
		if n := r.count(`SELECT count(*) FROM orders`); n != 1 {
			t.Fatalf("%d orders after a failed then successful attempt, want 1", n)
		}
		sawRetry := false
		for _, ev := range evs {
			if ev.Step == envelope.StepConfirm && ev.Attempts == 2 && ev.StepError != "" {
				sawRetry = true
			}
		}
		if !sawRetry {
			t.Fatalf("no status showed the second attempt: %+v", evs)
		}
	})
}

func TestPoisonMessageDoesNotBlock(t *testing.T) {
	sqldbtest.Each(t, func(t *testing.T, url string) {
		t.Parallel()
		r := startInterior(t, url, interior.Config{})
		bad := message.NewMessage("bad-1", []byte(`{"operation_id": 7`))
		bad.Metadata.Set(envelope.MetaType, envelope.TypeOrderSubmitted)
		bad.Metadata.Set(envelope.MetaOperationID, "op-poison")
		r.publish(envelope.TopicOrderSubmitted, bad, submitted(t, "op-good", envelope.Line{SKU: "PEN-BLU-10", Quantity: 1}))
		got := r.statuses("op-poison", "op-good")
		if ev := got["op-poison"][0]; ev.Outcome != envelope.OpFailed || ev.Error == nil {
			t.Fatalf("poison: %+v", ev)
		}
		if evs := got["op-good"]; evs[len(evs)-1].Outcome != envelope.OpCompleted {
			t.Fatalf("message behind the poison: %+v", evs)
		}
	})
}

func TestInvalidOrderFailsWithReason(t *testing.T) {
	sqldbtest.Each(t, func(t *testing.T, url string) {
		t.Parallel()
		r := startInterior(t, url, interior.Config{})
		r.publish(envelope.TopicOrderSubmitted, submitted(t, "op-x", envelope.Line{SKU: "RETIRED-SKU", Quantity: 1}))
		ev := r.statuses("op-x")["op-x"][0]
		if ev.Outcome != envelope.OpFailed || ev.Error == nil || ev.Error.Code != "unknown_product" || ev.Step != envelope.StepValidate {
			t.Fatalf("%+v", ev)
		}
	})
}
