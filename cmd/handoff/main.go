// Command handoff runs the handoff app: the edge (HTTP and WebSocket), the
// interior (the order workflow), or both, on SQLite or PostgreSQL.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"net"
	"net/http"
	neturl "net/url"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"handoff/frontend"
	"handoff/interior"
	"handoff/pkg/bus"
	"handoff/pkg/envelope"
	"handoff/pkg/sqldb"
	"handoff/pkg/wmx"
	"handoff/server"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, os.Args[1:], os.Getenv, os.Stdout, os.Stderr); err != nil {
		if !errors.Is(err, flag.ErrHelp) {
			fmt.Fprintln(os.Stderr, "handoff:", err)
		}
		os.Exit(1)
	}
}

func run(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) error {
	if len(args) == 0 {
		usage(stderr)
		return errors.New("no command given")
	}
	switch args[0] {
	case "-h", "-help", "--help", "help":
		usage(stdout)
		return nil
	}
	cfg, err := parseConfig(args[0], args[1:], getenv, stderr)
	if errors.Is(err, flag.ErrHelp) {
		return nil // the flags were printed
	}
	if err != nil {
		return err
	}
	log := slog.New(slog.NewJSONHandler(stderr, &slog.HandlerOptions{Level: cfg.LogLevel}))
	switch args[0] {
	case "serve":
		return serve(ctx, cfg, log, stdout)
	case "migrate":
		return migrate(ctx, cfg, log)
	default:
		usage(stderr)
		return fmt.Errorf("unknown command %q", args[0])
	}
}

// open opens the database and the bus and applies the migrations of the
// parts this process runs.
func open(ctx context.Context, cfg config, log *slog.Logger) (*sqldb.DB, *bus.Bus, error) {
	db, err := sqldb.Open(ctx, cfg.DatabaseURL)
	if err != nil {
		return nil, nil, err
	}
	if db.Dialect == sqldb.Postgres {
		db.SetMaxOpenConns(cfg.DBPool)
		db.SetMaxIdleConns(cfg.DBPool)
	}
	b, err := bus.New(db, wmx.Logger(log.With("component", "bus")), bus.Options{})
	if err != nil {
		db.Close()
		return nil, nil, fmt.Errorf("bus: %w", err)
	}
	steps := []func(context.Context, *sqldb.DB, *bus.Bus) error{}
	if cfg.runsEdge() {
		steps = append(steps, server.Migrate)
	}
	if cfg.runsInterior() {
		steps = append(steps, interior.Migrate)
	}
	for _, m := range steps {
		if err := m(ctx, db, b); err != nil {
			b.Close()
			db.Close()
			return nil, nil, fmt.Errorf("migrate: %w", err)
		}
	}
	return db, b, nil
}

func migrate(ctx context.Context, cfg config, log *slog.Logger) error {
	db, b, err := open(ctx, cfg, log)
	if err != nil {
		return err
	}
	log.Info("migrations applied", "database", redact(cfg.DatabaseURL), "role", cfg.Role)
	b.Close()
	return db.Close()
}

func serve(ctx context.Context, cfg config, log *slog.Logger, stdout io.Writer) error {
	// The address and the SQLite edge lock first: a process that cannot
	// serve says why before it opens anything.
	ln, err := net.Listen("tcp", cfg.Addr)
	if err != nil {
		return fmt.Errorf("listen on %s: %w", cfg.Addr, err)
	}
	defer ln.Close()
	if cfg.runsEdge() {
		unlock, err := lockSQLiteEdge(cfg.DatabaseURL)
		if err != nil {
			return err
		}
		defer unlock()
	}
	db, b, err := open(ctx, cfg, log)
	if err != nil {
		return err
	}
	defer db.Close()
	defer b.Close()

	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	var edge *server.Server
	var in *interior.Interior
	workers := make(chan error, 2)
	running := 0
	if cfg.runsInterior() {
		if in, err = interior.New(db, b, log, interior.Config{Metrics: reg, Sim: cfg.Payment, PaymentTimeout: cfg.PaymentTimeout, PaymentMaxTries: cfg.PaymentMaxTries}); err != nil {
			return err
		}
		running++
		go func() { workers <- in.Run(context.WithoutCancel(ctx)) }()
	}
	reg.MustRegister(b.LagCollector(envelope.Topics...))
	pruneCtx, stopPruning := context.WithCancel(context.WithoutCancel(ctx))
	defer stopPruning()
	go prune(pruneCtx, cfg, db, b, log)
	var handler http.Handler
	if cfg.runsEdge() {
		static, err := fs.Sub(frontend.Dist, "dist")
		if err != nil {
			return err
		}
		if edge, err = server.New(db, b, log, server.Config{Static: static, Metrics: reg}); err != nil {
			return err
		}
		running++
		go func() { workers <- edge.Run(context.WithoutCancel(ctx)) }()
		handler = edge.Handler()
	} else {
		handler = healthOnly(in)
	}

	// Serve only once the routers are subscribed, so a process that says
	// it is running is also ready.
	if err := waitRunning(ctx, workers, edge, in); err != nil {
		if !errors.Is(err, ctx.Err()) {
			running-- // the worker that stopped has reported
		}
		return errors.Join(err, shutdown(&http.Server{}, edge, in, workers, running, log))
	}
	mux := http.NewServeMux()
	mux.Handle("GET /metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{}))
	mux.Handle("/", handler)
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second, IdleTimeout: 120 * time.Second}
	served := make(chan error, 1)
	go func() { served <- srv.Serve(ln) }()
	url := "http://" + ln.Addr().String()
	log.Info("handoff started", "url", url, "role", cfg.Role, "database", redact(cfg.DatabaseURL))
	fmt.Fprintf(stdout, "handoff is running at %s (role %s). Press Ctrl-C to stop.\n", url, cfg.Role)

	var runErr error
	select {
	case <-ctx.Done():
	case err := <-served:
		runErr = fmt.Errorf("http server: %w", err)
	case err := <-workers:
		runErr = fmt.Errorf("worker stopped: %w", err)
		running--
	}
	log.Info("shutting down")
	return errors.Join(runErr, shutdown(srv, edge, in, workers, running, log))
}

// shutdown stops in order: stop accepting and finish requests, close the
// sockets with 1001, drain the routers; the caller then closes the bus and
// the database.
func shutdown(srv *http.Server, edge *server.Server, in *interior.Interior, workers chan error, running int, log *slog.Logger) error {
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	var errs []error
	if err := srv.Shutdown(ctx); err != nil {
		errs = append(errs, fmt.Errorf("http shutdown: %w", err))
	}
	if edge != nil {
		edge.CloseSockets(ctx)
		if err := edge.Close(); err != nil {
			errs = append(errs, err)
		}
	}
	if in != nil {
		if err := in.Close(); err != nil {
			errs = append(errs, err)
		}
	}
	for ; running > 0; running-- {
		select {
		case err := <-workers:
			if err != nil {
				errs = append(errs, err)
			}
		case <-ctx.Done():
			errs = append(errs, errors.New("workers did not stop in time"))
			running = 0
		}
	}
	log.Info("stopped")
	return errors.Join(errs...)
}

// waitRunning waits until the routers of this process are running.
func waitRunning(ctx context.Context, workers chan error, edge *server.Server, in *interior.Interior) error {
	var chans []chan struct{}
	if edge != nil {
		chans = append(chans, edge.Running())
	}
	if in != nil {
		chans = append(chans, in.Running())
	}
	for _, ch := range chans {
		select {
		case <-ch:
		case err := <-workers:
			return fmt.Errorf("worker stopped while starting: %w", err)
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	return nil
}

// healthOnly is the HTTP surface of an interior-only process.
func healthOnly(in *interior.Interior) http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, r *http.Request) { fmt.Fprintln(w, `{"status":"ok"}`) })
	mux.HandleFunc("GET /readyz", func(w http.ResponseWriter, r *http.Request) {
		if in == nil || !in.IsRunning() {
			w.WriteHeader(http.StatusServiceUnavailable)
			fmt.Fprintln(w, `{"status":"starting"}`)
			return
		}
		fmt.Fprintln(w, `{"status":"ready"}`)
	})
	return mux
}

// redact hides a password in a database URL before it is logged.
func redact(raw string) string {
	u, err := neturl.Parse(raw)
	if err != nil || u.User == nil {
		return raw
	}
	return u.Redacted()
}
