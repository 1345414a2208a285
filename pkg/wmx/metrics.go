package wmx

import (
	"context"
	"database/sql"
	"errors"
	"log/slog"
	"time"

	"github.com/ThreeDotsLabs/watermill"
	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/prometheus/client_golang/prometheus"
)

// HandlerMetrics measures message handlers: attempt durations, failed
// attempts and dedup hits, by handler.
type HandlerMetrics struct {
	duration *prometheus.HistogramVec
	errors   *prometheus.CounterVec
	dedup    *prometheus.CounterVec
}

// NewHandlerMetrics registers the handler metrics on reg.
func NewHandlerMetrics(reg prometheus.Registerer) *HandlerMetrics {
	m := &HandlerMetrics{
		duration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name: "handoff_handler_duration_seconds", Help: "Duration of message handler attempts.",
			Buckets: []float64{.0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5},
		}, []string{"handler"}),
		errors: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "handoff_handler_errors_total", Help: "Failed message handler attempts.",
		}, []string{"handler"}),
		dedup: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "handoff_dedup_hits_total", Help: "Messages skipped as duplicates.",
		}, []string{"handler"}),
	}
	m.duration = reuse(reg, m.duration)
	m.errors = reuse(reg, m.errors)
	m.dedup = reuse(reg, m.dedup)
	return m
}

// reuse registers c, or returns the equal collector registered before: the
// edge and the interior of one process share the handler metrics.
func reuse[C prometheus.Collector](reg prometheus.Registerer, c C) C {
	if err := reg.Register(c); err != nil {
		var already prometheus.AlreadyRegisteredError
		if errors.As(err, &already) {
			return already.ExistingCollector.(C)
		}
		panic(err)
	}
	return c
}

// Middleware measures each attempt of the handler; it belongs inside Retry
// so that every attempt counts.
func (m *HandlerMetrics) Middleware(handler string) message.HandlerMiddleware {
	dur, errs := m.duration.WithLabelValues(handler), m.errors.WithLabelValues(handler)
	return func(h message.HandlerFunc) message.HandlerFunc {
		return func(msg *message.Message) ([]*message.Message, error) {
			start := time.Now()
			out, err := h(msg)
			dur.Observe(time.Since(start).Seconds())
			if err != nil {
				errs.Inc()
			}
			return out, err
		}
	}
}

// Repository wraps a dedup repository so that its hits count for handler.
func (m *HandlerMetrics) Repository(repo DedupRepository, handler string) CountingRepository {
	return CountingRepository{DedupRepository: repo, hits: m.dedup.WithLabelValues(handler)}
}

// CountingRepository is a DedupRepository that counts its duplicates.
type CountingRepository struct {
	DedupRepository
	hits prometheus.Counter
}

// IsDuplicate records key and counts it when it was already there.
func (r CountingRepository) IsDuplicate(ctx context.Context, key string) (bool, error) {
	dup, err := r.DedupRepository.IsDuplicate(ctx, key)
	if dup && r.hits != nil {
		r.hits.Inc()
	}
	return dup, err
}

// Fresh is DedupRepository.Fresh, counting the keys already there.
func (r CountingRepository) Fresh(ctx context.Context, tx *sql.Tx, keys []string) (map[string]bool, error) {
	fresh, err := r.DedupRepository.Fresh(ctx, tx, keys)
	if err == nil && r.hits != nil {
		r.hits.Add(float64(len(keys) - len(fresh)))
	}
	return fresh, err
}

// Observe records one run of a handler that is not a Watermill handler
// (a batch consumer) under the same metrics.
func (m *HandlerMetrics) Observe(handler string, took time.Duration, err error) {
	m.duration.WithLabelValues(handler).Observe(took.Seconds())
	if err != nil {
		m.errors.WithLabelValues(handler).Inc()
	}
}

// Logger adapts slog for Watermill, with Watermill's info lines (a handler
// added, a subscriber started, each poll's SQL) demoted to debug: at info
// the log says what the product does, not what the library does.
func Logger(log *slog.Logger) watermill.LoggerAdapter {
	return watermill.NewSlogLoggerWithLevelMapping(log, map[slog.Level]slog.Level{slog.LevelInfo: slog.LevelDebug})
}
