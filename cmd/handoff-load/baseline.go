package main

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"strings"
	"time"

	"github.com/ThreeDotsLabs/watermill"
	wmsql "github.com/ThreeDotsLabs/watermill-sql/v4/pkg/sql"
	"github.com/ThreeDotsLabs/watermill/message"

	"handoff/pkg/bus"
	"handoff/pkg/sqldb"
)

type baselineConfig struct {
	defaultHops, busHops int
}

// runBaseline measures, in this process and on a fresh PostgreSQL
// database, one hop (publish in a transaction, commit, receive) through
// watermill-sql with its default subscriber (DefaultPostgreSQLSchema,
// DefaultPostgreSQLOffsetsAdapter, 1 s poll) and through pkg/bus with its
// default options (LISTEN/NOTIFY wake-up, 250 ms fallback poll).
//
// Each publish waits a pause first, spread evenly over the subscriber's
// poll interval, so messages arrive all over the poll cycle, as independent
// submits do; back to back, every default hop would wait nearly the whole
// second. The first hop of each is a warm-up.
func runBaseline(ctx context.Context, cfg config) error {
	url, drop, err := createPostgresDB(ctx, cfg.pgAdmin)
	if err != nil {
		return err
	}
	defer func() {
		if err := drop(); err != nil {
			infof("baseline: drop database: %v", err)
		}
	}()
	db, err := sqldb.Open(ctx, url)
	if err != nil {
		return err
	}
	defer db.Close()
	payload := []byte(`{"operation_id":"` + strings.Repeat("x", 36) + `","lines":[{"sku":"COF-ESP-1KG","quantity":2,"note":"` + strings.Repeat("n", 150) + `"}]}`)
	logger := watermill.NopLogger{}

	// watermill-sql as it comes.
	schema := wmsql.DefaultPostgreSQLSchema{}
	sub, err := wmsql.NewSubscriber(wmsql.BeginnerFromStdSQL(db.DB), wmsql.SubscriberConfig{
		SchemaAdapter:    schema,
		OffsetsAdapter:   wmsql.DefaultPostgreSQLOffsetsAdapter{},
		InitializeSchema: true,
	}, logger)
	if err != nil {
		return err
	}
	defer sub.Close()
	defMsgs, err := sub.Subscribe(ctx, "bench_default")
	if err != nil {
		return err
	}
	defPub := func(tx wmsql.ContextExecutor) (message.Publisher, error) {
		return wmsql.NewPublisher(tx, wmsql.PublisherConfig{SchemaAdapter: schema}, logger)
	}
	def, err := hops(ctx, db, cfg.baseline.defaultHops, time.Second, "bench_default", payload, defPub, defMsgs)
	if err != nil {
		return fmt.Errorf("watermill default: %w", err)
	}

	// handoff's configuration.
	b, err := bus.New(db, logger, bus.Options{})
	if err != nil {
		return err
	}
	defer b.Close()
	if err := b.InitTopics(ctx, "bench_bus"); err != nil {
		return err
	}
	bsub, err := b.Subscriber("bench")
	if err != nil {
		return err
	}
	defer bsub.Close()
	busMsgs, err := bsub.Subscribe(ctx, "bench_bus")
	if err != nil {
		return err
	}
	busPub := func(tx wmsql.ContextExecutor) (message.Publisher, error) { return b.Publisher(tx) }
	// Woken by LISTEN/NOTIFY, the bus does not depend on the poll phase, so
	// shorter pauses do; they still land anywhere in its 250 ms fallback.
	bh, err := hops(ctx, db, cfg.baseline.busHops, 50*time.Millisecond, "bench_bus", payload, busPub, busMsgs)
	if err != nil {
		return fmt.Errorf("pkg/bus: %w", err)
	}
	benchf("backend=postgres scenario=baseline watermill_default_hop_p50_ms=%s handoff_hop_p50_ms=%s", ms(def.pct(50)), ms(bh.pct(50)))
	infof("baseline: watermill default %s", def.describe())
	infof("baseline: pkg/bus           %s", bh.describe())
	return nil
}

// hops publishes n+1 messages one at a time, each in its own committed
// transaction after a pause, and times each from BEGIN to its arrival on
// msgs; the first is dropped as a warm-up. The pauses are stratified, one
// in each n-th of [0, maxPause) in random order, so that even 20 hops
// cover the poll cycle evenly.
func hops(ctx context.Context, db *sqldb.DB, n int, maxPause time.Duration, topic string, payload []byte,
	newPub func(wmsql.ContextExecutor) (message.Publisher, error), msgs <-chan *message.Message) (summary, error) {
	var s samples
	pauses := make([]time.Duration, n+1)
	for i := range n {
		pauses[i+1] = time.Duration((float64(i) + rand.Float64()) / float64(n) * float64(maxPause))
	}
	rand.Shuffle(n, func(i, j int) { pauses[i+1], pauses[j+1] = pauses[j+1], pauses[i+1] })
	for i := 0; i <= n; i++ {
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-time.After(pauses[i]):
		}
		id := watermill.NewUUID()
		t0 := time.Now()
		tx, err := db.BeginTx(ctx, nil)
		if err != nil {
			return nil, err
		}
		pub, err := newPub(wmsql.TxFromStdSQL(tx))
		if err == nil {
			err = pub.Publish(topic, message.NewMessage(id, payload))
		}
		if err != nil {
			_ = tx.Rollback()
			return nil, err
		}
		if err := tx.Commit(); err != nil {
			return nil, err
		}
		select {
		case m, ok := <-msgs:
			if !ok {
				return nil, errors.New("subscription closed")
			}
			lat := time.Since(t0)
			m.Ack()
			if m.UUID != id {
				return nil, fmt.Errorf("received %s, want %s", m.UUID, id)
			}
			if i > 0 {
				s.add(lat)
			}
		case <-time.After(10 * time.Second):
			return nil, fmt.Errorf("hop %d: nothing received within 10s", i)
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
	return s.summary(), nil
}
