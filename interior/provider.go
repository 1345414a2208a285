package interior

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"hash/fnv"
	"math/rand/v2"
	"sync"
	"time"

	"handoff/pkg/envelope"
	"handoff/pkg/sqldb"
)

// PaymentProvider charges money outside handoff. Charge must be idempotent
// by key: a repeated call with the same key charges once and returns the
// same charge id.
type PaymentProvider interface {
	Charge(ctx context.Context, c Charge) (chargeID string, err error)
}

// Charge is one payment request.
type Charge struct {
	IdempotencyKey string
	AmountCents    int64
	Currency       string
	// Reference is the operation, for the provider's records.
	Reference string
}

// ErrDeclined is the provider's final no; any other error is transient and
// the charge may be tried again with the same key.
var ErrDeclined = errors.New("payment declined")

// SimConfig sets the simulated provider's behaviour.
type SimConfig struct {
	// Latency is how long each call takes.
	Latency time.Duration
	// DeclineAboveCents declines charges above this amount (0: never).
	DeclineAboveCents int64
	// DeclineRate is the share of idempotency keys that are declined.
	DeclineRate float64
	// TransientRate is the share of calls that fail with a transient error.
	TransientRate float64
	// FailFirst makes the first N calls for every operation (across its
	// retries) fail transiently.
	FailFirst int
	// TimeoutRate is the share of calls that charge and then never answer,
	// so the caller times out although the money moved.
	TimeoutRate float64
	// TimeoutFirst makes the next N calls for every operation, after
	// FailFirst, charge and then never answer.
	TimeoutFirst int
}

// SimProvider is the built-in payment provider: a simulation with the
// latency and failure modes of SimConfig. It records every charge in its
// own table (sim_charges), like a real provider's ledger, so tests can
// count charges.
type SimProvider struct {
	db  *sqldb.DB
	cfg SimConfig
	mu  sync.Mutex
	// calls counts calls per operation, for FailFirst and TimeoutFirst.
	calls map[string]int
}

// NewSimProvider returns the simulation over db.
func NewSimProvider(db *sqldb.DB, cfg SimConfig) *SimProvider {
	return &SimProvider{db: db, cfg: cfg, calls: map[string]int{}}
}

// errTransient is the simulation's passing failure.
var errTransient = errors.New("payment provider temporarily unavailable")

// Charge implements PaymentProvider.
func (p *SimProvider) Charge(ctx context.Context, c Charge) (string, error) {
	if err := sleep(ctx, p.cfg.Latency); err != nil {
		return "", err
	}
	p.mu.Lock()
	p.calls[c.Reference]++
	n := p.calls[c.Reference]
	p.mu.Unlock()
	if n <= p.cfg.FailFirst || rand.Float64() < p.cfg.TransientRate {
		return "", errTransient
	}
	if (p.cfg.DeclineAboveCents > 0 && c.AmountCents > p.cfg.DeclineAboveCents) || share(c.IdempotencyKey) < p.cfg.DeclineRate {
		return "", ErrDeclined
	}
	id, err := p.record(ctx, c)
	if err != nil {
		return "", fmt.Errorf("%w: %v", errTransient, err)
	}
	if n <= p.cfg.FailFirst+p.cfg.TimeoutFirst || rand.Float64() < p.cfg.TimeoutRate {
		<-ctx.Done()
		return "", ctx.Err()
	}
	return id, nil
}

// record writes the charge once per key and returns its id.
func (p *SimProvider) record(ctx context.Context, c Charge) (string, error) {
	id := envelope.DeriveID(c.IdempotencyKey, "sim-provider", "charge")
	_, err := p.db.ExecContext(ctx, p.db.Q(`INSERT INTO sim_charges (idempotency_key, charge_id, amount_cents, currency, created_at)
		VALUES ($1, $2, $3, $4, $5) ON CONFLICT (idempotency_key) DO NOTHING`), c.IdempotencyKey, id, c.AmountCents, c.Currency, time.Now().UnixMilli())
	return "ch_" + id[:8], err
}

// Charges counts the charges the simulation has recorded.
func (p *SimProvider) Charges(ctx context.Context) (int, error) {
	var n int
	err := p.db.QueryRowContext(ctx, `SELECT count(*) FROM sim_charges`).Scan(&n)
	if errors.Is(err, sql.ErrNoRows) {
		return 0, nil
	}
	return n, err
}

// share maps a key to [0, 1) deterministically, so a key is always
// declined or never.
func share(key string) float64 {
	h := fnv.New64a()
	_, _ = h.Write([]byte(key))
	return float64(h.Sum64()%10000) / 10000
}

func sleep(ctx context.Context, d time.Duration) error {
	if d <= 0 {
		return nil
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}
