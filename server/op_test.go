package server_test

import (
	"encoding/json"
	"errors"
	"strings"
	"testing"

	"handoff/pkg/catalog"
	"handoff/server"
)

const (
	item1 = "11111111-1111-4111-8111-111111111111"
	item2 = "22222222-2222-4222-8222-222222222222"
)

func mustOp(t *testing.T, s string) *server.Op {
	t.Helper()
	var op server.Op
	if err := json.Unmarshal([]byte(s), &op); err != nil {
		t.Fatalf("op %s: %v", s, err)
	}
	return &op
}

func baseDraft() *server.Draft {
	return &server.Draft{ID: "d", Title: "Coffee", State: server.StateEditing,
		Items: []server.Item{{ID: item1, SKU: "COF-ESP-1KG", Name: "Espresso beans, 1 kg", Quantity: 2, Note: "dark"}}}
}

func TestApplyOp(t *testing.T) {
	cat := catalog.Default()
	long := strings.Repeat("x", 201)
	tests := []struct {
		name  string
		state string
		op    string
		code  string // expected error code, "" for success
		field string
		check func(*server.Draft) bool
	}{
		{name: "set title", op: `{"kind":"set_title","title":"  Team order  "}`, check: func(d *server.Draft) bool { return d.Title == "Team order" }},
		{name: "empty title", op: `{"kind":"set_title","title":"   "}`, code: "invalid", field: "title"},
		{name: "title too long", op: `{"kind":"set_title","title":"` + long + `"}`, code: "invalid", field: "title"},
		{name: "title missing", op: `{"kind":"set_title"}`, code: "invalid", field: "title"},
		{name: "add item", op: `{"kind":"add_item","item":{"id":"` + item2 + `","sku":"TEA-GRN-100","quantity":3,"note":""}}`,
			check: func(d *server.Draft) bool {
				return len(d.Items) == 2 && d.Items[1].Name == "Green tea, 100 bags" && d.Items[1].Quantity == 3
			}},
		{name: "add unknown sku", op: `{"kind":"add_item","item":{"id":"` + item2 + `","sku":"NOPE","quantity":1,"note":""}}`, code: "invalid", field: "item.sku"},
		{name: "add duplicate id", op: `{"kind":"add_item","item":{"id":"` + item1 + `","sku":"TEA-GRN-100","quantity":1,"note":""}}`, code: "invalid", field: "item.id"},
		{name: "add bad id", op: `{"kind":"add_item","item":{"id":"x","sku":"TEA-GRN-100","quantity":1,"note":""}}`, code: "invalid", field: "item.id"},
		{name: "add zero quantity", op: `{"kind":"add_item","item":{"id":"` + item2 + `","sku":"TEA-GRN-100","quantity":0,"note":""}}`, code: "invalid", field: "quantity"},
		{name: "add fractional quantity", op: `{"kind":"add_item","item":{"id":"` + item2 + `","sku":"TEA-GRN-100","quantity":1.5,"note":""}}`, code: "invalid", field: "quantity"},
		{name: "add note too long", op: `{"kind":"add_item","item":{"id":"` + item2 + `","sku":"TEA-GRN-100","quantity":1,"note":"` + strings.Repeat("n", 1001) + `"}}`, code: "invalid", field: "note"},
		{name: "update quantity", op: `{"kind":"update_item","item_id":"` + item1 + `","quantity":10000}`, check: func(d *server.Draft) bool { return d.Items[0].Quantity == 10000 && d.Items[0].Note == "dark" }},
		{name: "update note only", op: `{"kind":"update_item","item_id":"` + item1 + `","note":"light"}`, check: func(d *server.Draft) bool { return d.Items[0].Note == "light" && d.Items[0].Quantity == 2 }},
		{name: "update past limit", op: `{"kind":"update_item","item_id":"` + item1 + `","quantity":10001}`, code: "invalid", field: "quantity"},
		{name: "update nothing", op: `{"kind":"update_item","item_id":"` + item1 + `"}`, code: "invalid"},
		{name: "update gone item", op: `{"kind":"update_item","item_id":"` + item2 + `","quantity":1}`, code: "not_found"},
		{name: "remove", op: `{"kind":"remove_item","item_id":"` + item1 + `"}`, check: func(d *server.Draft) bool { return len(d.Items) == 0 }},
		{name: "remove gone item", op: `{"kind":"remove_item","item_id":"` + item2 + `"}`, code: "not_found"},
		{name: "remove with quantity", op: `{"kind":"remove_item","item_id":"` + item1 + `","quantity":3}`, code: "invalid"},
		{name: "unknown kind", op: `{"kind":"explode"}`, code: "invalid", field: "kind"},
		{name: "submitted draft", state: server.StateSubmitted, op: `{"kind":"set_title","title":"x"}`, code: "draft_submitted"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			d := baseDraft()
			if tc.state != "" {
				d.State = tc.state
			}
			before, _ := json.Marshal(d)
			err := server.ApplyOp(d, mustOp(t, tc.op), cat)
			if tc.code == "" {
				if err != nil {
					t.Fatalf("unexpected error %v", err)
				}
				if !tc.check(d) {
					t.Fatalf("draft after op: %+v", d)
				}
				return
			}
			var e *server.Error
			if !errors.As(err, &e) || e.Code != tc.code {
				t.Fatalf("error %v, want code %s", err, tc.code)
			}
			if tc.field != "" && e.Extra["field"] != tc.field {
				t.Fatalf("field %v, want %s", e.Extra["field"], tc.field)
			}
			if after, _ := json.Marshal(d); string(after) != string(before) {
				t.Fatalf("draft changed on error:\n%s\n%s", before, after)
			}
		})
	}
}

func TestApplyOpItemLimit(t *testing.T) {
	cat := catalog.Default()
	d := &server.Draft{ID: "d", Title: "Big", State: server.StateEditing}
	for i := 0; i < server.MaxItems; i++ {
		d.Items = append(d.Items, server.Item{ID: "id" + string(rune('a'+i%26)) + strings.Repeat("z", i/26), SKU: "PEN-BLU-10", Quantity: 1})
	}
	err := server.ApplyOp(d, mustOp(t, `{"kind":"add_item","item":{"id":"`+item2+`","sku":"TEA-GRN-100","quantity":1,"note":""}}`), cat)
	var e *server.Error
	if !errors.As(err, &e) || e.Code != "invalid" || e.Extra["field"] != "items" {
		t.Fatalf("201st item: %v", err)
	}
}
