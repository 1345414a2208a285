package catalog_test

import (
	"testing"

	"handoff/pkg/catalog"
)

func TestDefaultCatalogIsValid(t *testing.T) {
	c := catalog.Default()
	if len(c.Products) < 5 {
		t.Fatalf("catalog has %d products, want a usable list", len(c.Products))
	}
	p, ok := c.Lookup(c.Products[0].SKU)
	if !ok || p.Currency == "" {
		t.Fatalf("lookup of first product: %+v, %v", p, ok)
	}
	if _, ok := c.Lookup("NO-SUCH-SKU"); ok {
		t.Fatal("unknown SKU found")
	}
}

func TestParseRejectsDuplicatesAndGaps(t *testing.T) {
	for name, in := range map[string]string{
		"duplicate": `{"currency":"EUR","products":[{"sku":"A","name":"a","unit_price_cents":1,"stock":1},{"sku":"A","name":"b","unit_price_cents":1,"stock":1}]}`,
		"no price":  `{"currency":"EUR","products":[{"sku":"A","name":"a","unit_price_cents":0,"stock":1}]}`,
		"not json":  `{`,
	} {
		if _, err := catalog.Parse([]byte(in)); err == nil {
			t.Errorf("%s: no error", name)
		}
	}
}
