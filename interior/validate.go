package interior

import (
	"fmt"
	"strings"

	"github.com/ThreeDotsLabs/watermill/message"

	"handoff/pkg/catalog"
	"handoff/pkg/envelope"
	"handoff/pkg/wmx"
)

// Limits an order must keep; the edge enforces them on every edit too, so
// a violation here means the catalog changed or the message is forged.
const (
	maxLines    = 200
	maxQuantity = 10000
)

// validateAndPrice checks every line of a submitted order against the
// catalog and prices it in integer cents.
func (in *Interior) validateAndPrice(msg *message.Message) error {
	const name = "validate-and-price"
	var order envelope.OrderSubmitted
	if err := envelope.Decode(msg, envelope.TypeOrderSubmitted, &order); err != nil {
		return wmx.Permanent(err)
	}
	src := refOf(msg)
	tx, err := wmx.Tx(msg)
	if err != nil {
		return err
	}
	priced, reason := Price(in.catalog, order)
	if reason != nil {
		return in.fail(tx, src, name, envelope.StepValidate, 1, reason)
	}
	out, err := next(src, name, "priced", envelope.TypeOrderPriced, priced)
	if err != nil {
		return err
	}
	in.logFor(msg, name).Info("order priced", "total_cents", priced.TotalCents, "lines", len(priced.Lines))
	return in.stepDone(tx, src, name, envelope.StepValidate, 1, envelope.TopicOrderPriced, out)
}

// Price validates an order against the catalog and prices it. A non-nil
// error is the reason the order cannot go on, in words for its team.
func Price(cat *catalog.Catalog, order envelope.OrderSubmitted) (envelope.OrderPriced, *envelope.Error) {
	priced := envelope.OrderPriced{OperationID: order.OperationID, DraftID: order.DraftID, TeamID: order.TeamID, Revision: order.Revision}
	if len(order.Lines) == 0 {
		return priced, &envelope.Error{Code: "empty_order", Message: "The order has no items."}
	}
	if len(order.Lines) > maxLines {
		return priced, &envelope.Error{Code: "too_many_items", Message: fmt.Sprintf("The order has %d items; at most %d are allowed.", len(order.Lines), maxLines)}
	}
	var unknown, badQty []string
	for _, l := range order.Lines {
		p, ok := cat.Lookup(l.SKU)
		if !ok {
			unknown = append(unknown, l.SKU)
			continue
		}
		if l.Quantity < 1 || l.Quantity > maxQuantity {
			badQty = append(badQty, fmt.Sprintf("%s (%d)", p.Name, l.Quantity))
			continue
		}
		line := envelope.PricedLine{SKU: p.SKU, Name: p.Name, Quantity: l.Quantity, UnitPriceCents: p.UnitPriceCents, LineCents: p.UnitPriceCents * int64(l.Quantity)}
		priced.Lines = append(priced.Lines, line)
		priced.TotalCents += line.LineCents
		priced.Currency = p.Currency
	}
	switch {
	case len(unknown) > 0:
		return priced, &envelope.Error{Code: "unknown_product", Message: "These products are not in the catalog: " + strings.Join(unknown, ", ") + "."}
	case len(badQty) > 0:
		return priced, &envelope.Error{Code: "bad_quantity", Message: fmt.Sprintf("Quantities must be between 1 and %d: %s.", maxQuantity, strings.Join(badQty, ", "))}
	}
	return priced, nil
}
