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
	"time"

	"github.com/ThreeDotsLabs/watermill"
	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/ThreeDotsLabs/watermill/message/router/middleware"
	"github.com/prometheus/client_golang/prometheus"

	"handoff/pkg/bus"
	"handoff/pkg/catalog"
	"handoff/pkg/envelope"
	"handoff/pkg/sqldb"
	"handoff/pkg/wmx"
)

//go:embed migrations
var migrations embed.FS

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
}

func (c *Config) setDefaults() {
	if c.MaxAttempts == 0 {
		c.MaxAttempts = 5
	}
	if c.RetryBackoff == 0 {
		c.RetryBackoff = 10 * time.Millisecond
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
		catalog: catalog.Default(),
		dedup:   wmx.DedupRepository{Dialect: db.Dialect, Table: "interior_dedup"},
	}
	router, err := message.NewRouter(message.RouterConfig{CloseTimeout: 10 * time.Second}, watermill.NewSlogLogger(in.log))
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
	return b.InitTopics(ctx, envelope.Topics...)
}

// handler is one step of the workflow.
type handler struct {
	name  string
	topic string
	fn    message.NoPublishHandlerFunc
	// step is the workflow step a failure of this handler is reported on.
	step string
}

func (in *Interior) addHandlers() error {
	handlers := []handler{
		{name: "validate-and-price", topic: envelope.TopicOrderSubmitted, fn: in.validateAndPrice, step: envelope.StepValidate},
		{name: "confirm-order", topic: envelope.TopicOrderPriced, fn: in.confirmOrder, step: envelope.StepConfirm},
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

// Run processes messages until ctx ends or Close is called.
func (in *Interior) Run(ctx context.Context) error {
	if err := in.router.Run(ctx); err != nil {
		return fmt.Errorf("interior router: %w", err)
	}
	return nil
}

// Running is closed once every handler is subscribed.
func (in *Interior) Running() chan struct{} { return in.router.Running() }

// IsRunning reports whether the router is up and not closing.
func (in *Interior) IsRunning() bool { return in.router.IsRunning() }

// Close stops the router, waiting for in-flight handlers.
func (in *Interior) Close() error { return in.router.Close() }

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
