package interior

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"time"

	wmsql "github.com/ThreeDotsLabs/watermill-sql/v4/pkg/sql"
	"github.com/ThreeDotsLabs/watermill/message"

	"handoff/pkg/bus"
	"handoff/pkg/envelope"
	"handoff/pkg/pglisten"
	"handoff/pkg/sqldb"
	"handoff/pkg/wmx"
)

// Payment states.
const (
	payPending  = "pending"
	payCharged  = "charged"
	payDeclined = "declined"
	payFailed   = "failed"
)

const (
	takePayment = "take-payment"
	// paymentChannel wakes payment workers in every interior process.
	paymentChannel = "handoff_payments"
	paymentPoll    = 250 * time.Millisecond
)

// requestPayment records the intent to charge a reserved order. The call
// to the provider is slow and external, so it never runs inside a consume
// transaction (which would hold SQLite's write lock, or stall PostgreSQL's
// delivery on every topic); a payment worker makes it afterwards with an
// idempotency key derived from this message.
func (in *Interior) requestPayment(msg *message.Message) error {
	var order envelope.OrderPriced
	if err := envelope.Decode(msg, envelope.TypeOrderPriced, &order); err != nil {
		return wmx.Permanent(err)
	}
	tx, err := wmx.Tx(msg)
	if err != nil {
		return err
	}
	ctx, src := msg.Context(), refOf(msg)
	body, _ := json.Marshal(order)
	_, err = tx.ExecContext(ctx, in.db.Q(`INSERT INTO payments (id, operation_id, attempt, message_id, idempotency_key, amount_cents, currency, order_json, state, next_attempt_at)
		VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, `+in.db.Dialect.NowMillis()+`) ON CONFLICT (id) DO NOTHING`),
		envelope.DeriveID(src.ID, takePayment, "intent"), src.OperationID, src.Attempt, src.ID,
		chargeKey(src), order.TotalCents, order.Currency, string(body), payPending)
	if err != nil {
		return fmt.Errorf("record payment intent: %w", err)
	}
	ev, err := status(src, takePayment, "payment/running", envelope.StatusChanged{Step: envelope.StepPayment, StepStatus: envelope.StepRunning, Attempts: 1})
	if err != nil {
		return err
	}
	// The workers, here and in other processes, are woken once the intent
	// is committed.
	if !bus.AfterCommit(tx, func() {
		in.wakePayments()
		in.bus.Notify(paymentChannel, "")
	}) {
		return fmt.Errorf("payment intent of %s: not in a consume transaction", src.OperationID)
	}
	return in.publishOn(tx, envelope.TopicOperationStatus, ev)
}

// chargeKey is the idempotency key of an operation's payment. It is the
// same for every run of the operation: a call that charged but never
// answered, then a manual retry, must not charge twice; the retry's call
// gets the first charge back.
func chargeKey(src ref) string {
	return envelope.DeriveID(src.OperationID, takePayment, "charge")
}

func (in *Interior) wakePayments() {
	select {
	case in.payWake <- struct{}{}:
	default:
	}
}

// payment is a claimed payment intent.
type payment struct {
	ID, Key, Currency, OrderJSON string
	src                          ref
	Amount                       int64
	Tries                        int
}

// runPayments is one payment worker: it claims due intents, calls the
// provider outside any transaction, and records the outcome in a new short
// transaction.
func (in *Interior) runPayments(ctx context.Context) {
	for ctx.Err() == nil {
		p, ok, err := in.claimPayment(ctx)
		if err != nil {
			if ctx.Err() == nil {
				in.log.Error("claim payment", "err", err)
			}
			_ = sleep(ctx, time.Second)
			continue
		}
		if !ok {
			select {
			case <-ctx.Done():
			case <-in.payWake:
			case <-time.After(paymentPoll):
			}
			continue
		}
		in.pay(ctx, p)
	}
}

// claimPayment leases one due intent. The lease outlives a call to the
// provider; if the worker dies, another takes the intent over when the
// lease ends and calls again with the same key.
func (in *Interior) claimPayment(ctx context.Context) (payment, bool, error) {
	var p payment
	found := false
	now := in.db.Dialect.NowMillis()
	lease := (in.cfg.PaymentTimeout + 5*time.Second).Milliseconds()
	q := `SELECT id, operation_id, attempt, message_id, idempotency_key, amount_cents, currency, order_json, tries FROM payments
		WHERE state = $1 AND next_attempt_at <= ` + now + ` AND claimed_until < ` + now + ` ORDER BY next_attempt_at LIMIT 1`
	if in.db.Dialect == sqldb.Postgres {
		q += ` FOR UPDATE SKIP LOCKED`
	}
	err := in.db.InTx(ctx, func(tx *sql.Tx) error {
		err := tx.QueryRowContext(ctx, in.db.Q(q), payPending).Scan(&p.ID, &p.src.OperationID, &p.src.Attempt, &p.src.ID, &p.Key, &p.Amount, &p.Currency, &p.OrderJSON, &p.Tries)
		if errors.Is(err, sql.ErrNoRows) {
			return nil
		}
		if err != nil {
			return err
		}
		p.Tries++
		found = true
		_, err = tx.ExecContext(ctx, in.db.Q(`UPDATE payments SET tries = $2, claimed_until = `+now+` + $3 WHERE id = $1`), p.ID, p.Tries, lease)
		return err
	})
	return p, found, err
}

// pay calls the provider for a claimed intent and records what it said.
func (in *Interior) pay(ctx context.Context, p payment) {
	log := in.log.With("handler", takePayment, "operation_id", p.src.OperationID, "payment_id", p.ID)
	callCtx, cancel := context.WithTimeout(ctx, in.cfg.PaymentTimeout)
	chargeID, err := in.provider.Charge(callCtx, Charge{IdempotencyKey: p.Key, AmountCents: p.Amount, Currency: p.Currency, Reference: p.src.OperationID})
	cancel()
	if ctx.Err() != nil {
		return // shutting down: the lease ends and the call is made again
	}
	var rerr error
	switch {
	case err == nil:
		log.Info("payment charged", "charge_id", chargeID, "tries", p.Tries)
		rerr = in.recordCharged(ctx, p, chargeID)
	case errors.Is(err, ErrDeclined):
		log.Info("payment declined", "tries", p.Tries)
		rerr = in.recordFailure(ctx, p, payDeclined, &envelope.Error{Code: "payment_declined", Message: "The payment was declined. The reserved stock was released."})
	case p.Tries >= in.cfg.PaymentMaxTries:
		log.Warn("payment gave up", "tries", p.Tries, "err", err)
		rerr = in.recordFailure(ctx, p, payFailed, &envelope.Error{Code: "payment_unavailable", Retryable: true,
			Message: fmt.Sprintf("The payment provider could not be reached after %d tries (%v). The reserved stock was released; you can retry.", p.Tries, err)})
	default:
		log.Warn("payment try failed", "tries", p.Tries, "err", err)
		rerr = in.recordRetry(ctx, p, err)
	}
	if rerr != nil && ctx.Err() == nil {
		log.Error("record payment outcome", "err", rerr)
	}
}

// settle runs fn in a short transaction if the intent is still pending, so
// two workers that both called the provider (after a lease ran out) record
// one outcome.
func (in *Interior) settle(ctx context.Context, p payment, to string, fn func(tx wmsql.Tx) error) error {
	var published *bus.Deferred
	err := in.db.InTx(ctx, func(tx *sql.Tx) error {
		res, err := tx.ExecContext(ctx, in.db.Q(`UPDATE payments SET state = $2, claimed_until = 0 WHERE id = $1 AND state = $3`), p.ID, to, payPending)
		if err != nil {
			return err
		}
		if n, _ := res.RowsAffected(); n == 0 {
			return nil
		}
		published = in.bus.Defer(tx)
		return fn(published.Exec())
	})
	if err == nil && published != nil {
		published.Committed()
	}
	return err
}

func (in *Interior) recordCharged(ctx context.Context, p payment, chargeID string) error {
	var order envelope.OrderPriced
	if err := json.Unmarshal([]byte(p.OrderJSON), &order); err != nil {
		return err
	}
	out, err := next(p.src, takePayment, "paid", envelope.TypeOrderPaid, envelope.OrderPaid{OrderPriced: order, ChargeID: chargeID})
	if err != nil {
		return err
	}
	return in.settle(ctx, p, payCharged, func(tx wmsql.Tx) error {
		if _, err := tx.ExecContext(ctx, in.db.Q(`UPDATE payments SET charge_id = $2 WHERE id = $1`), p.ID, chargeID); err != nil {
			return err
		}
		return in.stepDone(tx, p.src, takePayment, envelope.StepPayment, p.Tries, envelope.TopicOrderPaid, out)
	})
}

// recordFailure ends the payment, compensates by releasing the stock, and
// fails the operation.
func (in *Interior) recordFailure(ctx context.Context, p payment, state string, reason *envelope.Error) error {
	return in.settle(ctx, p, state, func(tx wmsql.Tx) error {
		if err := in.releaseStock(ctx, tx, p.src); err != nil {
			return err
		}
		return in.fail(tx, p.src, takePayment, envelope.StepPayment, p.Tries, reason)
	})
}

// recordRetry schedules the next try with backoff and shows the attempt.
func (in *Interior) recordRetry(ctx context.Context, p payment, cause error) error {
	delay := in.cfg.PaymentBackoff << min(p.Tries-1, 5)
	ev, err := status(p.src, takePayment, "payment/try-"+strconv.Itoa(p.Tries), envelope.StatusChanged{
		Step: envelope.StepPayment, StepStatus: envelope.StepRunning, Attempts: p.Tries + 1, StepError: cause.Error(),
	})
	if err != nil {
		return err
	}
	return in.db.InTx(ctx, func(tx *sql.Tx) error {
		res, err := tx.ExecContext(ctx, in.db.Q(`UPDATE payments SET claimed_until = 0, last_error = $2, next_attempt_at = `+in.db.Dialect.NowMillis()+` + $3
			WHERE id = $1 AND state = $4`), p.ID, cause.Error(), delay.Milliseconds(), payPending)
		if err != nil {
			return err
		}
		if n, _ := res.RowsAffected(); n == 0 {
			return nil
		}
		return in.publishOn(wmsql.TxFromStdSQL(tx), envelope.TopicOperationStatus, ev)
	})
}

// listenPayments wakes this process's payment workers when another process
// records a payment intent.
func (in *Interior) listenPayments(ctx context.Context) (*pglisten.Listener, error) {
	if in.db.Dialect != sqldb.Postgres {
		return nil, nil
	}
	return pglisten.Start(ctx, pglisten.Config{
		URL: in.db.URL, Channels: []string{paymentChannel}, Name: "handoff-payments", Log: in.log,
		OnNotify:    func(string, string) { in.wakePayments() },
		OnReconnect: in.wakePayments,
	})
}
