package interior

import (
	"context"
	"encoding/json"
	"fmt"
	"sort"
	"strings"

	wmsql "github.com/ThreeDotsLabs/watermill-sql/v4/pkg/sql"
	"github.com/ThreeDotsLabs/watermill/message"

	"handoff/pkg/envelope"
	"handoff/pkg/wmx"
)

// Reservation states.
const (
	reserved  = "reserved"
	released  = "released"
	committed = "committed"
)

// wanted sums an order's quantities per SKU, in SKU order, so concurrent
// reservations lock stock rows in one order and never deadlock.
func wanted(lines []envelope.PricedLine) ([]string, map[string]int64, map[string]string) {
	qty, names := map[string]int64{}, map[string]string{}
	for _, l := range lines {
		qty[l.SKU] += int64(l.Quantity)
		names[l.SKU] = l.Name
	}
	skus := make([]string, 0, len(qty))
	for sku := range qty {
		skus = append(skus, sku)
	}
	sort.Strings(skus)
	return skus, qty, names
}

// reserveStock reserves every line of a priced order, or none: if any line
// is short, the operation fails naming the short lines and what is left.
func (in *Interior) reserveStock(msg *message.Message) error {
	const name = "reserve-stock"
	var order envelope.OrderPriced
	if err := envelope.Decode(msg, envelope.TypeOrderPriced, &order); err != nil {
		return wmx.Permanent(err)
	}
	tx, err := wmx.Tx(msg)
	if err != nil {
		return err
	}
	ctx, src := msg.Context(), refOf(msg)
	skus, qty, names := wanted(order.Lines)
	var short []string
	released := map[string]int64{}
	for _, sku := range skus {
		left, rel, err := in.available(ctx, tx, sku)
		if err != nil {
			return err
		}
		released[sku] = rel
		if left < qty[sku] {
			short = append(short, fmt.Sprintf("%s: %d wanted, %d left", names[sku], qty[sku], left))
		}
	}
	if len(short) > 0 {
		reason := &envelope.Error{Code: "out_of_stock", Message: "Not enough stock. " + strings.Join(short, "; ") + "."}
		return in.fail(tx, src, name, envelope.StepReserve, 1, reason)
	}
	for _, sku := range skus {
		if err := in.take(ctx, tx, sku, qty[sku], released[sku]); err != nil {
			return err
		}
	}
	lines, _ := json.Marshal(qty)
	if _, err := tx.ExecContext(ctx, in.db.Q(`INSERT INTO reservations (operation_id, attempt, lines, state) VALUES ($1, $2, $3, $4)`),
		src.OperationID, src.Attempt, string(lines), reserved); err != nil {
		return fmt.Errorf("record reservation: %w", err)
	}
	out, err := next(src, name, "reserved", envelope.TypeOrderPriced, order)
	if err != nil {
		return err
	}
	return in.stepDone(tx, src, name, envelope.StepReserve, 1, envelope.TopicOrderReserved, out)
}

// take reserves n of a SKU, folding into its stock row the releases that
// available read in this transaction. Release rows are never changed once
// written, so deleting the ones this transaction sees cannot conflict; one
// written since is not seen, not deleted, and counted next time.
func (in *Interior) take(ctx context.Context, tx wmsql.ContextExecutor, sku string, n, released int64) error {
	if released > 0 {
		if _, err := tx.ExecContext(ctx, in.db.Q(`DELETE FROM stock_releases WHERE sku = $1`), sku); err != nil {
			return fmt.Errorf("fold releases of %s: %w", sku, err)
		}
	}
	if _, err := tx.ExecContext(ctx, in.db.Q(`UPDATE stock SET available = available + $2 WHERE sku = $1`), sku, released-n); err != nil {
		return fmt.Errorf("reserve %s: %w", sku, err)
	}
	return nil
}

// available reads what is left of a SKU, releases included, and the sum
// of those releases.
func (in *Interior) available(ctx context.Context, tx wmsql.ContextExecutor, sku string) (left, released int64, err error) {
	q := `SELECT available, COALESCE((SELECT sum(quantity) FROM stock_releases r WHERE r.sku = stock.sku), 0) FROM stock WHERE sku = $1`
	if in.db.Dialect == "postgres" {
		q += ` FOR UPDATE OF stock`
	}
	rows, err := tx.QueryContext(ctx, in.db.Q(q), sku)
	if err != nil {
		return 0, 0, fmt.Errorf("read stock of %s: %w", sku, err)
	}
	defer rows.Close()
	var stock int64
	if rows.Next() {
		if err := rows.Scan(&stock, &released); err != nil {
			return 0, 0, err
		}
	}
	return stock + released, released, nil
}

// releaseStock gives a run's reserved stock back (compensation), as rows of
// stock_releases (see its migration). It acts once: a reservation already
// released or committed is left alone.
func (in *Interior) releaseStock(ctx context.Context, tx wmsql.ContextExecutor, src ref) error {
	return in.settleReservation(ctx, tx, src, released)
}

// settleReservation moves a run's reservation out of "reserved"; releasing
// puts its quantities back into stock.
func (in *Interior) settleReservation(ctx context.Context, tx wmsql.ContextExecutor, src ref, to string) error {
	rows, err := tx.QueryContext(ctx, in.db.Q(`SELECT lines FROM reservations WHERE operation_id = $1 AND attempt = $2 AND state = $3`),
		src.OperationID, src.Attempt, reserved)
	if err != nil {
		return fmt.Errorf("read reservation: %w", err)
	}
	var raw string
	found := rows.Next()
	if found {
		err = rows.Scan(&raw)
	}
	rows.Close()
	if err != nil || !found {
		return err
	}
	if _, err := tx.ExecContext(ctx, in.db.Q(`UPDATE reservations SET state = $3 WHERE operation_id = $1 AND attempt = $2`), src.OperationID, src.Attempt, to); err != nil {
		return fmt.Errorf("settle reservation: %w", err)
	}
	if to != released {
		return nil
	}
	var qty map[string]int64
	if err := json.Unmarshal([]byte(raw), &qty); err != nil {
		return fmt.Errorf("reservation lines: %w", err)
	}
	skus := make([]string, 0, len(qty))
	for sku := range qty {
		skus = append(skus, sku)
	}
	sort.Strings(skus)
	for _, sku := range skus {
		if _, err := tx.ExecContext(ctx, in.db.Q(`INSERT INTO stock_releases (operation_id, attempt, sku, quantity) VALUES ($1, $2, $3, $4)
			ON CONFLICT (operation_id, attempt, sku) DO NOTHING`), src.OperationID, src.Attempt, sku, qty[sku]); err != nil {
			return fmt.Errorf("release %s: %w", sku, err)
		}
	}
	return nil
}
