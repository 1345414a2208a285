// Package interior is the asynchronous side of handoff: Watermill routers
// over watermill-sql that take a submitted order through its steps exactly
// once and report every change as a status event for the edge.
package interior

import (
	"context"
	"embed"
	"fmt"
	"io/fs"
	"log/slog"
	"sync"
	"time"

	wmsql "github.com/ThreeDotsLabs/watermill-sql/v4/pkg/sql"
	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/ThreeDotsLabs/watermill/message/router/middleware"
	"github.com/prometheus/client_golang/prometheus"

	"handoff/pkg/bus"
	"handoff/pkg/catalog"
	"handoff/pkg/envelope"
	"handoff/pkg/pglisten"
	"handoff/pkg/sqldb"
	"handoff/pkg/wmx"
)

//go:embed migrations
var migrations embed.FS

// DedupTable is the table of this side's dedup keys (created by its
// migrations), which retention prunes.
const DedupTable = "interior_dedup"

// Config tunes the interior.
type Config struct {
	// MaxAttempts bounds the attempts of a step before it is given up.
	MaxAttempts int
	// RetryBackoff is the first pause between attempts; it doubles.
	RetryBackoff time.Duration
	// Fault, when set, runs at the end of every handler attempt after its
	// writes; an error it returns fails the attempt. Tests use it to prove
	// that a failed attempt leaves nothing behind.
	Fault func(handler string, msg *message.Message) error
	// Metrics is where the interior registers its metrics; nil keeps them
	// private.
	Metrics prometheus.Registerer
	// Provider takes payments; nil uses the simulation with Sim.
	Provider PaymentProvider
	// Sim configures the simulated provider.
	Sim SimConfig
	// PaymentWorkers is the number of concurrent calls to the provider.
	PaymentWorkers int
	// PaymentMaxTries bounds the calls for one payment before it fails as
	// retryable.
	PaymentMaxTries int
	// PaymentTimeout bounds one call to the provider.
	PaymentTimeout time.Duration
	// PaymentBackoff is the pause after the first failed try; it doubles.
	PaymentBackoff time.Duration
}

func (c *Config) setDefaults() {
	if c.MaxAttempts == 0 {
		c.MaxAttempts = 5
	}
	if c.RetryBackoff == 0 {
		c.RetryBackoff = 10 * time.Millisecond
	}
	if c.PaymentWorkers == 0 {
		c.PaymentWorkers = 4
	}
	if c.PaymentMaxTries == 0 {
		c.PaymentMaxTries = 5
	}
	if c.PaymentTimeout == 0 {
		c.PaymentTimeout = 2 * time.Second
	}
	if c.PaymentBackoff == 0 {
		c.PaymentBackoff = 100 * time.Millisecond
	}
}

// Interior runs the order workflow.
type Interior struct {
	db      *sqldb.DB
	bus     *bus.Bus
	log     *slog.Logger
	cfg     Config
	catalog *catalog.Catalog
	dedup   wmx.DedupRepository
	router  *message.Router
	metrics *wmx.HandlerMetrics
	// provider takes payments; payWake wakes an idle payment worker.
	provider PaymentProvider
	payWake  chan struct{}
	payments *pglisten.Listener
	stop     context.CancelFunc
	workers  sync.WaitGroup
}

// New wires the interior's router; Run starts it.
func New(db *sqldb.DB, b *bus.Bus, log *slog.Logger, cfg Config) (*Interior, error) {
	cfg.setDefaults()
	if cfg.Metrics == nil {
		cfg.Metrics = prometheus.NewRegistry()
	}
	in := &Interior{
		metrics: wmx.NewHandlerMetrics(cfg.Metrics),
		db:      db, bus: b, log: log.With("component", "interior"), cfg: cfg,
		catalog:  catalog.Default(),
		dedup:    wmx.DedupRepository{Dialect: db.Dialect, Table: DedupTable},
		provider: cfg.Provider,
		payWake:  make(chan struct{}, 1),
	}
	if in.provider == nil {
		in.provider = NewSimProvider(db, cfg.Sim)
	}
	router, err := message.NewRouter(message.RouterConfig{CloseTimeout: 10 * time.Second}, wmx.Logger(in.log))
	if err != nil {
		return nil, fmt.Errorf("interior router: %w", err)
	}
	in.router = router
	if err := in.addHandlers(); err != nil {
		return nil, err
	}
	return in, nil
}

// Migrate creates or upgrades the interior's tables and its topics.
func Migrate(ctx context.Context, db *sqldb.DB, b *bus.Bus) error {
	sub, err := fs.Sub(migrations, "migrations")
	if err != nil {
		return err
	}
	if err := db.Migrate(ctx, "interior", sub); err != nil {
		return err
	}
	for _, p := range catalog.Default().Products {
		if _, err := db.ExecContext(ctx, db.Q(`INSERT INTO stock (sku, available) VALUES ($1, $2) ON CONFLICT (sku) DO NOTHING`), p.SKU, p.Stock); err != nil {
			return fmt.Errorf("seed stock: %w", err)
		}
	}
	return b.InitTopics(ctx, envelope.Topics...)
}

// handler is one step of the workflow.
type handler struct {
	name  string
	topic string
	fn    message.NoPublishHandlerFunc
	// step is the workflow step a failure of this handler is reported on.
	step string
	// compensate undoes earlier steps when the handler gives up.
	compensate func(ctx context.Context, tx wmsql.ContextExecutor, src ref) error
}

func (in *Interior) addHandlers() error {
	handlers := []handler{
		{name: "validate-and-price", topic: envelope.TopicOrderSubmitted, fn: in.validateAndPrice, step: envelope.StepValidate},
		{name: "reserve-stock", topic: envelope.TopicOrderPriced, fn: in.reserveStock, step: envelope.StepReserve},
		{name: takePayment, topic: envelope.TopicOrderReserved, fn: in.requestPayment, step: envelope.StepPayment, compensate: in.releaseStock},
		// A confirmation that keeps failing leaves a charged payment behind;
		// it is released as stock here and logged for a refund by hand.
		{name: "confirm-order", topic: envelope.TopicOrderPaid, fn: in.confirmOrder, step: envelope.StepConfirm, compensate: in.releaseStock},
	}
	for _, h := range handlers {
		sub, err := in.bus.Subscriber("interior." + h.name)
		if err != nil {
			return fmt.Errorf("subscriber for %s: %w", h.name, err)
		}
		wh := in.router.AddConsumerHandler(h.name, h.topic, sub, in.withFault(h.name, h.fn))
		policy := wmx.RetryPolicy{
			MaxAttempts:     in.cfg.MaxAttempts,
			InitialBackoff:  in.cfg.RetryBackoff,
			OnFailedAttempt: in.reportAttempt(h),
			OnGiveUp:        in.giveUp(h),
		}
		// Outermost first: retry around a savepoint per attempt, panics
		// turned into errors inside it, dedup innermost so its key is
		// rolled back with a failed attempt.
		wh.AddMiddleware(policy.Retry, in.metrics.Middleware(h.name), wmx.Savepoint, middleware.Recoverer,
			wmx.Deduplicator(in.metrics.Repository(in.dedup, h.name), h.name))
	}
	return nil
}

// Run processes messages and payments until ctx ends or Close is called.
func (in *Interior) Run(ctx context.Context) error {
	wctx, stop := context.WithCancel(context.WithoutCancel(ctx))
	in.stop = stop
	l, err := in.listenPayments(wctx)
	if err != nil {
		stop()
		return fmt.Errorf("payment wake-ups: %w", err)
	}
	in.payments = l
	for i := 0; i < in.cfg.PaymentWorkers; i++ {
		in.workers.Add(1)
		go func() {
			defer in.workers.Done()
			in.runPayments(wctx)
		}()
	}
	if err := in.router.Run(ctx); err != nil {
		return fmt.Errorf("interior router: %w", err)
	}
	return nil
}

// Running is closed once every handler is subscribed.
func (in *Interior) Running() chan struct{} { return in.router.Running() }

// IsRunning reports whether the router is up and not closing.
func (in *Interior) IsRunning() bool { return in.router.IsRunning() }

// Close stops the payment workers and the router, waiting for in-flight
// handlers. A payment call cut short is made again by the next process
// once its lease ends, with the same idempotency key.
func (in *Interior) Close() error {
	if in.stop != nil {
		in.stop()
		in.workers.Wait()
	}
	if in.payments != nil {
		in.payments.Close()
	}
	return in.router.Close()
}

// logFor returns a logger carrying the message's operation id as the
// correlation id of every line.
func (in *Interior) logFor(msg *message.Message, handler string) *slog.Logger {
	return in.log.With("handler", handler, "message_id", msg.UUID, "operation_id", msg.Metadata.Get(envelope.MetaOperationID))
}

func (in *Interior) withFault(name string, fn message.NoPublishHandlerFunc) message.NoPublishHandlerFunc {
	if in.cfg.Fault == nil {
		return fn
	}
	return func(msg *message.Message) error {
		if err := fn(msg); err != nil {
			return err
		}
		return in.cfg.Fault(name, msg)
	}
}
