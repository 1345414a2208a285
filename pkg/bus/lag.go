package bus

import (
	"context"
	"time"

	wmsql "github.com/ThreeDotsLabs/watermill-sql/v4/pkg/sql"
	"github.com/prometheus/client_golang/prometheus"

	"handoff/pkg/sqldb"
	"handoff/pkg/wmsqlite"
)

// Lag is the age of a topic's oldest message that some consumer group has
// not yet processed, in the database's clock; zero when every group is up
// to date or the topic has none.
func (b *Bus) Lag(ctx context.Context, topic string) (time.Duration, error) {
	var secs float64
	err := b.db.QueryRowContext(ctx, b.lagQuery(topic)).Scan(&secs)
	if err != nil {
		return 0, err
	}
	return time.Duration(secs * float64(time.Second)), nil
}

// lagQuery finds the oldest row past the slowest group's position, in the
// consume order of the dialect (see pruneQuery).
func (b *Bus) lagQuery(topic string) string {
	if b.db.Dialect == sqldb.SQLite {
		messages, offsets := wmsqlite.MessagesTable(topic), wmsqlite.OffsetsTable(topic)
		return `SELECT COALESCE((julianday('now') - julianday(min(created_at))) * 86400, 0) FROM ` + messages + `
			WHERE "offset" > (SELECT min(offset_acked) FROM ` + offsets + `)`
	}
	schema := b.schema.(wmsql.DefaultPostgreSQLSchema)
	offsetsAdapter := b.offsets.(wmsql.DefaultPostgreSQLOffsetsAdapter)
	messages, offsets := schema.MessagesTable(topic), offsetsAdapter.MessagesOffsetsTable(topic)
	return `SELECT COALESCE(EXTRACT(EPOCH FROM LOCALTIMESTAMP - min(created_at))::float8, 0) FROM ` + messages + `
		WHERE (transaction_id, "offset") > (
			SELECT last_processed_transaction_id, offset_acked FROM ` + offsets + `
			ORDER BY last_processed_transaction_id, offset_acked NULLS FIRST LIMIT 1)`
}

// LagCollector exports Lag of each topic as handoff_outbox_lag_seconds,
// read from the database at every scrape.
func (b *Bus) LagCollector(topics ...string) prometheus.Collector {
	return &lagCollector{bus: b, topics: topics,
		desc: prometheus.NewDesc("handoff_outbox_lag_seconds", "Age of the oldest message on a topic that a consumer group has not processed.", []string{"topic"}, nil)}
}

type lagCollector struct {
	bus    *Bus
	topics []string
	desc   *prometheus.Desc
}

func (c *lagCollector) Describe(ch chan<- *prometheus.Desc) { ch <- c.desc }

func (c *lagCollector) Collect(ch chan<- prometheus.Metric) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	for _, topic := range c.topics {
		lag, err := c.bus.Lag(ctx, topic)
		if err != nil {
			ch <- prometheus.NewInvalidMetric(c.desc, err)
			continue
		}
		ch <- prometheus.MustNewConstMetric(c.desc, prometheus.GaugeValue, lag.Seconds(), topic)
	}
}
