package interior

import (
	"encoding/json"
	"fmt"
	"time"

	"github.com/ThreeDotsLabs/watermill/message"

	"handoff/pkg/envelope"
	"handoff/pkg/wmx"
)

// confirmOrder records the paid order, commits its reservation and
// completes the operation with its order number and total.
func (in *Interior) confirmOrder(msg *message.Message) error {
	const name = "confirm-order"
	var order envelope.OrderPaid
	if err := envelope.Decode(msg, envelope.TypeOrderPaid, &order); err != nil {
		return wmx.Permanent(err)
	}
	tx, err := wmx.Tx(msg)
	if err != nil {
		return err
	}
	src := refOf(msg)
	number, err := in.recordOrder(msg, order)
	if err != nil {
		return err
	}
	if err := in.settleReservation(msg.Context(), tx, src, committed); err != nil {
		return err
	}
	result := &envelope.Result{OrderNumber: number, TotalCents: order.TotalCents, Currency: order.Currency}
	ev, err := status(src, name, "confirm/done", envelope.StatusChanged{
		Step: envelope.StepConfirm, StepStatus: envelope.StepDone, Attempts: 1,
		Outcome: envelope.OpCompleted, Result: result,
	})
	if err != nil {
		return err
	}
	in.logFor(msg, name).Info("order confirmed", "order_number", number)
	return in.publish(msg, envelope.TopicOperationStatus, ev)
}

// recordOrder inserts the order once per operation and returns its number;
// a second confirmation of the same operation gets the first number back.
func (in *Interior) recordOrder(msg *message.Message, order envelope.OrderPaid) (string, error) {
	tx, err := wmx.Tx(msg)
	if err != nil {
		return "", err
	}
	ctx := msg.Context()
	lines, err := json.Marshal(order.Lines)
	if err != nil {
		return "", err
	}
	_, err = tx.ExecContext(ctx, in.db.Q(`INSERT INTO orders (operation_id, draft_id, team_id, total_cents, currency, lines, created_at)
		VALUES ($1, $2, $3, $4, $5, $6, $7) ON CONFLICT (operation_id) DO NOTHING`),
		order.OperationID, order.DraftID, order.TeamID, order.TotalCents, order.Currency, string(lines), time.Now().UnixMilli())
	if err != nil {
		return "", fmt.Errorf("insert order: %w", err)
	}
	rows, err := tx.QueryContext(ctx, in.db.Q(`SELECT number FROM orders WHERE operation_id = $1`), order.OperationID)
	if err != nil {
		return "", fmt.Errorf("read order number: %w", err)
	}
	defer rows.Close()
	var n int64
	if !rows.Next() {
		return "", fmt.Errorf("order of operation %s vanished", order.OperationID)
	}
	if err := rows.Scan(&n); err != nil {
		return "", err
	}
	return fmt.Sprintf("HO-%06d", n), nil
}
