package main

import (
	"context"
	"encoding/json"
	"fmt"
	"strconv"
	"strings"

	"handoff/pkg/client"
)

// wireMsg is the part of a server message the load generator looks at.
type wireMsg struct {
	Type       string `json:"type"`
	DraftID    string `json:"draft_id"`
	Revision   int64  `json:"revision"`
	ClientOpID string `json:"client_op_id"`
	Operation  *struct {
		ID      string `json:"id"`
		DraftID string `json:"draft_id"`
		Status  string `json:"status"`
		Seq     int64  `json:"seq"`
		Error   *struct {
			Code    string `json:"code"`
			Message string `json:"message"`
		} `json:"error"`
	} `json:"operation"`
	Error *struct {
		Code    string `json:"code"`
		Message string `json:"message"`
	} `json:"error"`
}

// opFrame is an op frame, written by hand: it is built 500 times a second
// and a map through encoding/json would cost the load generator more than
// the server spends parsing it.
func opFrame(draftID, clientOpID string, base int64, op string) []byte {
	b := make([]byte, 0, 160+len(op))
	b = append(b, `{"type":"op","draft_id":"`...)
	b = append(b, draftID...)
	b = append(b, `","client_op_id":"`...)
	b = append(b, clientOpID...)
	b = append(b, `","base_revision":`...)
	b = strconv.AppendInt(b, base, 10)
	b = append(b, `,"op":`...)
	b = append(b, op...)
	b = append(b, '}')
	return b
}

func addItemOp(itemID, sku string, quantity int) string {
	return fmt.Sprintf(`{"kind":"add_item","item":{"id":%q,"sku":%q,"quantity":%d,"note":""}}`, itemID, sku, quantity)
}

func updateQuantityOp(itemID string, quantity int) string {
	return `{"kind":"update_item","item_id":"` + itemID + `","quantity":` + strconv.Itoa(quantity) + `}`
}

// catalogSKUs reads the catalog's SKUs.
func catalogSKUs(ctx context.Context, c *client.Client) ([]string, error) {
	var out struct {
		Products []struct {
			SKU string `json:"sku"`
		} `json:"products"`
	}
	if _, err := c.Do(ctx, "GET", "/api/catalog", nil, &out); err != nil {
		return nil, fmt.Errorf("catalog: %w", err)
	}
	var skus []string
	for _, p := range out.Products {
		skus = append(skus, p.SKU)
	}
	if len(skus) == 0 {
		return nil, fmt.Errorf("catalog is empty")
	}
	return skus, nil
}

// benchOpID encodes who sent an op, whether it is measured and when it was
// written (ns since the scenario's epoch), so a receiver needs no shared map:
// "b<sender>.<measured>.<ns>".
func benchOpID(sender int, measured bool, sentNs int64) string {
	m := "0"
	if measured {
		m = "1"
	}
	return "b" + strconv.Itoa(sender) + "." + m + "." + strconv.FormatInt(sentNs, 10)
}

func parseBenchOpID(id string) (sender int, measured bool, sentNs int64, ok bool) {
	rest, found := strings.CutPrefix(id, "b")
	if !found {
		return 0, false, 0, false
	}
	a, rest, found := strings.Cut(rest, ".")
	if !found {
		return 0, false, 0, false
	}
	m, ns, found := strings.Cut(rest, ".")
	if !found {
		return 0, false, 0, false
	}
	s, err1 := strconv.Atoi(a)
	t, err2 := strconv.ParseInt(ns, 10, 64)
	if err1 != nil || err2 != nil {
		return 0, false, 0, false
	}
	return s, m == "1", t, true
}

func decodeMsg(data []byte) (wireMsg, error) {
	var m wireMsg
	err := json.Unmarshal(data, &m)
	return m, err
}
