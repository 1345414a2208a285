// Package catalog is the product list that ships with the program. The edge
// shows it; the interior prices orders from it and seeds its stock from it.
package catalog

import (
	_ "embed"
	"encoding/json"
	"fmt"
)

//go:embed catalog.json
var seed []byte

// Product is one product of the catalog.
type Product struct {
	SKU            string `json:"sku"`
	Name           string `json:"name"`
	UnitPriceCents int64  `json:"unit_price_cents"`
	Currency       string `json:"currency"`
	// Stock is the initial stock level; only the interior reads it.
	Stock int64 `json:"-"`
}

// Catalog is the ordered list of products with a lookup by SKU.
type Catalog struct {
	Products []Product
	bySKU    map[string]int
}

// Lookup returns the product with the SKU.
func (c *Catalog) Lookup(sku string) (Product, bool) {
	i, ok := c.bySKU[sku]
	if !ok {
		return Product{}, false
	}
	return c.Products[i], true
}

// Default returns the catalog that ships with the program.
func Default() *Catalog {
	c, err := Parse(seed)
	if err != nil {
		// The seed is embedded and checked by the package's tests.
		panic(err)
	}
	return c
}

// Parse reads a catalog seed file.
func Parse(data []byte) (*Catalog, error) {
	var file struct {
		Currency string `json:"currency"`
		Products []struct {
			SKU            string `json:"sku"`
			Name           string `json:"name"`
			UnitPriceCents int64  `json:"unit_price_cents"`
			Stock          int64  `json:"stock"`
		} `json:"products"`
	}
	if err := json.Unmarshal(data, &file); err != nil {
		return nil, fmt.Errorf("parse catalog: %w", err)
	}
	c := &Catalog{bySKU: make(map[string]int, len(file.Products))}
	for _, p := range file.Products {
		if p.SKU == "" || p.Name == "" || p.UnitPriceCents <= 0 || p.Stock < 0 {
			return nil, fmt.Errorf("parse catalog: product %q is incomplete", p.SKU)
		}
		if _, dup := c.bySKU[p.SKU]; dup {
			return nil, fmt.Errorf("parse catalog: SKU %q appears twice", p.SKU)
		}
		c.bySKU[p.SKU] = len(c.Products)
		c.Products = append(c.Products, Product{SKU: p.SKU, Name: p.Name, UnitPriceCents: p.UnitPriceCents, Currency: file.Currency, Stock: p.Stock})
	}
	return c, nil
}
