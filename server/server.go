// Package server is the edge of handoff: the HTTP API and WebSocket hub
// where teams edit drafts live, the submit boundary into the interior, and
// the operations view projected from the interior's status events.
package server

import (
	"context"
	"embed"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"net/http"
	"sync"
	"sync/atomic"
	"time"

	"github.com/go-chi/chi/v5"
	"github.com/go-chi/chi/v5/middleware"
	"github.com/google/uuid"
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
const DedupTable = "edge_dedup"

// Config tunes the edge.
type Config struct {
	// Static is the built front end; nil serves the API alone.
	Static fs.FS
	// AuthRate is the number of sign-up, join and invite look-ups allowed
	// per client address per minute.
	AuthRate int
	// SocketQueue bounds the messages waiting for one socket; a client that
	// lets it fill is too slow and is closed with 1008 rather than slowing
	// others.
	SocketQueue int
	// FrameRate is the frames per second a socket may send (bursts of
	// twice that); beyond it ops are rejected with rate_limited.
	FrameRate int
	// CatchUpEvery is how often an edge on PostgreSQL sweeps for changes
	// whose announcement it missed; default 10 s.
	CatchUpEvery time.Duration
	// Metrics is where the edge registers its metrics; nil keeps them
	// private.
	Metrics prometheus.Registerer
}

// Server is the edge.
type Server struct {
	db      *sqldb.DB
	bus     *bus.Bus
	log     *slog.Logger
	cfg     Config
	catalog *catalog.Catalog
	hub     *Hub
	locks   draftLocks
	// delivery orders the pushes of a draft's applied ops, whichever
	// process applied them.
	delivery draftLocks
	// process names this edge process in announcements to the others.
	process  string
	listener *pglisten.Listener
	notifier *pglisten.Notifier // nil on SQLite
	// pushed is the newest seq of each recently pushed operation, so that
	// catchUp pushes only what was missed.
	pushMu sync.Mutex
	pushed map[string]pushedOp
	dedup  wmx.DedupRepository
	// running is closed once the projection reads; projecting says it
	// still does; stopped is closed when Run returns.
	running    chan struct{}
	projecting atomic.Bool
	stopped    chan struct{}
	started    atomic.Bool
	limiter    *rateLimiter
	metrics    *metrics
	// baseCtx outlives requests: sockets run on it after the upgrade.
	baseCtx context.Context
	cancel  context.CancelFunc
}

// Migrate creates or upgrades the edge's tables and its topics.
func Migrate(ctx context.Context, db *sqldb.DB, b *bus.Bus) error {
	sub, err := fs.Sub(migrations, "migrations")
	if err != nil {
		return err
	}
	if err := db.Migrate(ctx, "server", sub); err != nil {
		return err
	}
	return b.InitTopics(ctx, envelope.Topics...)
}

// New wires the edge; Run starts its projection, Handler serves requests.
func New(db *sqldb.DB, b *bus.Bus, log *slog.Logger, cfg Config) (*Server, error) {
	if cfg.AuthRate == 0 {
		cfg.AuthRate = 30
	}
	if cfg.CatchUpEvery <= 0 {
		cfg.CatchUpEvery = 10 * time.Second
	}
	if cfg.SocketQueue == 0 {
		cfg.SocketQueue = 256
	}
	if cfg.FrameRate == 0 {
		cfg.FrameRate = 50
	}
	s := &Server{
		db: db, bus: b, log: log.With("component", "edge"), cfg: cfg, catalog: catalog.Default(), hub: newHub(),
		dedup:   wmx.DedupRepository{Dialect: db.Dialect, Table: DedupTable},
		limiter: newRateLimiter(cfg.AuthRate, time.Minute),
	}
	if cfg.Metrics == nil {
		cfg.Metrics = prometheus.NewRegistry()
	}
	s.metrics = newMetrics(cfg.Metrics, s.hub)
	s.baseCtx, s.cancel = context.WithCancel(context.Background())
	s.process = uuid.NewString()
	s.pushed = map[string]pushedOp{}
	s.running, s.stopped = make(chan struct{}), make(chan struct{})
	if err := s.listen(); err != nil {
		s.cancel()
		return nil, fmt.Errorf("edge announcements: %w", err)
	}
	return s, nil
}

// Run runs the operations projection until ctx ends or Close is called.
func (s *Server) Run(ctx context.Context) error {
	if !s.started.CompareAndSwap(false, true) {
		return errors.New("edge: Run called twice")
	}
	defer close(s.stopped)
	ctx, stop := context.WithCancel(ctx)
	defer stop()
	defer context.AfterFunc(s.baseCtx, stop)()
	err := s.runProjection(ctx)
	s.projecting.Store(false)
	if err != nil {
		return fmt.Errorf("edge projection: %w", err)
	}
	return nil
}

// Running is closed once the projection reads its events.
func (s *Server) Running() chan struct{} { return s.running }

// CloseSockets closes every WebSocket with 1001 (going away) and waits for
// their handlers, or for ctx to end.
func (s *Server) CloseSockets(ctx context.Context) {
	s.hub.closeAll(ctx)
	s.cancel()
}

// Close stops the projection and the announcements.
func (s *Server) Close() error {
	s.cancel()
	if s.listener != nil {
		s.listener.Close()
	}
	if s.notifier != nil {
		s.notifier.Close()
	}
	if s.started.Load() {
		<-s.stopped
	}
	return nil
}

// Handler is the edge's HTTP handler.
func (s *Server) Handler() http.Handler {
	r := chi.NewRouter()
	r.Use(middleware.RequestID, s.logRequests, s.countRequests, middleware.Recoverer)
	r.Get("/healthz", func(w http.ResponseWriter, r *http.Request) {
		writeJSON(w, http.StatusOK, map[string]string{"status": "ok"})
	})
	r.Get("/readyz", s.ready)
	r.Route("/api", func(r chi.Router) {
		r.Use(sameOrigin)
		r.With(s.limitAuth).Post("/teams", s.handle(s.createTeam))
		r.With(s.limitAuth).Post("/invites/lookup", s.handle(s.lookupInvite))
		r.With(s.limitAuth).Post("/join", s.handle(s.join))
		r.Group(func(r chi.Router) {
			r.Use(s.authenticate)
			r.Get("/me", s.handle(s.me))
			r.Post("/logout", s.handle(s.logout))
			r.Get("/catalog", s.handle(s.getCatalog))
			r.Get("/drafts", s.handle(s.listDrafts))
			r.Post("/drafts", s.handle(s.createDraft))
			r.Get("/drafts/{id}", s.handle(s.getDraft))
			r.Post("/drafts/{id}/submit", s.handle(s.submitDraft))
			r.Get("/operations", s.handle(s.listOperations))
			r.Get("/operations/{id}", s.handle(s.getOperation))
			r.Post("/operations/{id}/retry", s.handle(s.retryOperation))
		})
		r.NotFound(func(w http.ResponseWriter, r *http.Request) {
			writeJSON(w, http.StatusNotFound, errorf(CodeNotFound, "There is no API endpoint %s %s.", r.Method, r.URL.Path).body())
		})
		r.MethodNotAllowed(func(w http.ResponseWriter, r *http.Request) {
			writeJSON(w, http.StatusMethodNotAllowed, errorf("method_not_allowed", "%s is not allowed on %s.", r.Method, r.URL.Path).body())
		})
	})
	r.Handle("/*", s.static())
	// The socket is mounted outside every middleware that wraps the
	// response writer.
	return http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		if req.URL.Path == "/api/ws" {
			s.serveWS(w, req)
			return
		}
		r.ServeHTTP(w, req)
	})
}

func (s *Server) getCatalog(w http.ResponseWriter, r *http.Request) error {
	writeJSON(w, http.StatusOK, map[string]any{"products": s.catalog.Products})
	return nil
}

func (s *Server) ready(w http.ResponseWriter, r *http.Request) {
	ctx, cancel := context.WithTimeout(r.Context(), 2*time.Second)
	defer cancel()
	if err := s.db.PingContext(ctx); err != nil {
		writeJSON(w, http.StatusServiceUnavailable, errorf(CodeUnavailable, "The database is unreachable.").body())
		return
	}
	if !s.projecting.Load() {
		writeJSON(w, http.StatusServiceUnavailable, errorf(CodeUnavailable, "The operations projection is not running.").body())
		return
	}
	writeJSON(w, http.StatusOK, map[string]string{"status": "ready"})
}

func (s *Server) logRequests(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		start := time.Now()
		ww := middleware.NewWrapResponseWriter(w, r.ProtoMajor)
		next.ServeHTTP(ww, r)
		if r.URL.Path == "/api/ws" {
			return
		}
		s.log.Info("request", "request_id", middleware.GetReqID(r.Context()), "method", r.Method, "path", r.URL.Path,
			"status", ww.Status(), "duration_ms", time.Since(start).Milliseconds())
	})
}
