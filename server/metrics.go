package server

import (
	"net/http"
	"strconv"

	"github.com/go-chi/chi/v5"
	"github.com/go-chi/chi/v5/middleware"
	"github.com/prometheus/client_golang/prometheus"

	"handoff/pkg/wmx"
)

// metrics are the edge's Prometheus metrics.
type metrics struct {
	requests   *prometheus.CounterVec
	opsApplied prometheus.Counter
	submits    prometheus.Counter
	handlers   *wmx.HandlerMetrics
}

func newMetrics(reg prometheus.Registerer, hub *Hub) *metrics {
	m := &metrics{
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "handoff_http_requests_total", Help: "HTTP requests by route pattern and status code.",
		}, []string{"route", "code"}),
		opsApplied: prometheus.NewCounter(prometheus.CounterOpts{Name: "handoff_ops_applied_total", Help: "Draft ops applied."}),
		submits:    prometheus.NewCounter(prometheus.CounterOpts{Name: "handoff_submits_total", Help: "Drafts submitted (first submits, not repeats)."}),
		handlers:   wmx.NewHandlerMetrics(reg),
	}
	reg.MustRegister(m.requests, m.opsApplied, m.submits,
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "handoff_open_sockets", Help: "Open WebSockets on this process."},
			func() float64 { return float64(hub.count()) }))
	return m
}

// countRequests counts requests by chi's route pattern, so ids in paths do
// not explode the label set.
func (s *Server) countRequests(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		ww := middleware.NewWrapResponseWriter(w, r.ProtoMajor)
		next.ServeHTTP(ww, r)
		route := "other"
		if rc := chi.RouteContext(r.Context()); rc != nil && rc.RoutePattern() != "" {
			route = rc.RoutePattern()
		}
		s.metrics.requests.WithLabelValues(route, strconv.Itoa(ww.Status())).Inc()
	})
}
