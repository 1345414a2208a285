// Command handoff-load drives a real `handoff serve` over loopback through
// the public HTTP and WebSocket API and prints one line per measured figure:
//
//	bench: backend=sqlite scenario=edit conns=1000 drafts=100 ops_per_s=500 ack_p50_ms=.. ...
//
// It starts the server binary itself, as a child process on a free port with
// a fresh database (a SQLite file in a temporary directory, or a new
// PostgreSQL database that is dropped afterwards), so the server's memory and
// CPU are measured on a process of their own.
//
// Scenarios (-scenarios, comma separated):
//
//	edit        1000 sockets on 100 drafts, 500 ops/s in total; ack and fan-out latency
//	submit      50 submits/s; submit request to the `completed` operation message
//	submit_max  the highest submit rate sustained with every operation completing
//	            and p99 under one second: a stepped probe of short steps; with
//	            -max-full the rate found is then held for 60 s to confirm it
//	idle        10,000 idle authenticated sockets; server RSS growth per socket
//	baseline    one hop through watermill-sql with its defaults versus one hop
//	            through pkg/bus, in process, on PostgreSQL
//
// Figures go to stdout as "bench:" lines; details (achieved rates, losses,
// CPU use of the server, PostgreSQL and this process) go to stderr as
// "info:" lines.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"
)

type config struct {
	bin       string
	backends  []string
	scenarios map[string]bool
	pgAdmin   string
	logLevel  string
	keep      bool
	perfDir   string
	verbose   bool

	edit     editConfig
	submit   submitConfig
	max      maxConfig
	idle     idleConfig
	baseline baselineConfig
}

var allScenarios = []string{"edit", "submit", "submit_max", "idle", "baseline"}

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, os.Args[1:]); err != nil {
		if !errors.Is(err, flag.ErrHelp) {
			fmt.Fprintln(os.Stderr, "handoff-load:", err)
		}
		os.Exit(1)
	}
}

func run(ctx context.Context, args []string) error {
	cfg, err := parseFlags(args)
	if err != nil {
		return err
	}
	raiseFileLimit()
	start := time.Now()
	var failed []string
	try := func(name string, fn func() error) {
		if ctx.Err() != nil {
			return
		}
		t0 := time.Now()
		infof("%s: starting, load average %s", name, loadAvg())
		if err := fn(); err != nil {
			fmt.Fprintf(os.Stderr, "handoff-load: %s: %v\n", name, err)
			failed = append(failed, name)
		}
		infof("%s took %.1fs", name, time.Since(t0).Seconds())
	}
	if cfg.scenarios["edit"] {
		for _, backend := range cfg.backends {
			try(backend+"/edit", func() error { return runEdit(ctx, cfg, backend) })
		}
	}
	if cfg.scenarios["submit"] {
		for _, backend := range cfg.backends {
			try(backend+"/submit", func() error { return runSubmit(ctx, cfg, backend) })
		}
	}
	if cfg.scenarios["submit_max"] {
		for _, backend := range cfg.max.backends {
			try(backend+"/submit_max", func() error { return runSubmitMax(ctx, cfg, backend) })
		}
	}
	if cfg.scenarios["idle"] {
		try("idle", func() error { return runIdle(ctx, cfg) })
	}
	if cfg.scenarios["baseline"] {
		try("baseline", func() error { return runBaseline(ctx, cfg) })
	}
	infof("total wall time %.1fs", time.Since(start).Seconds())
	if err := ctx.Err(); err != nil {
		return err
	}
	if len(failed) > 0 {
		return fmt.Errorf("failed: %s", strings.Join(failed, ", "))
	}
	return nil
}

func parseFlags(args []string) (config, error) {
	var cfg config
	fs := flag.NewFlagSet("handoff-load", flag.ContinueOnError)
	var backends, scenarios, maxBackends string
	fs.StringVar(&cfg.bin, "bin", "bin/handoff", "the handoff binary to start")
	fs.StringVar(&backends, "backends", "sqlite,postgres", "backends for edit and submit: sqlite, postgres")
	fs.StringVar(&scenarios, "scenarios", strings.Join(allScenarios, ","), "scenarios to run: "+strings.Join(allScenarios, ", "))
	fs.StringVar(&cfg.pgAdmin, "pg", "postgres://postgres@127.0.0.1:5432/postgres?sslmode=disable", "PostgreSQL URL of a database from which to CREATE and DROP a fresh database per run")
	fs.StringVar(&cfg.logLevel, "server-log-level", "info", "--log-level of the server (its log goes to a file in its temporary directory)")
	fs.BoolVar(&cfg.keep, "keep", false, "keep each run's temporary directory, database and server log")
	fs.StringVar(&cfg.perfDir, "perf", "", "if set, `perf record -g` the server during each measured window into this directory")
	fs.BoolVar(&cfg.verbose, "v", false, "more info lines")

	fs.IntVar(&cfg.edit.conns, "edit-conns", 1000, "edit: sockets, one member each")
	fs.IntVar(&cfg.edit.drafts, "edit-drafts", 100, "edit: drafts (one team each; conns/drafts members per team)")
	fs.IntVar(&cfg.edit.rate, "edit-rate", 500, "edit: ops per second, in total")
	fs.IntVar(&cfg.edit.items, "edit-items", 5, "edit: items per draft that the ops update")
	fs.DurationVar(&cfg.edit.warmup, "edit-warmup", 3*time.Second, "edit: load before measuring")
	fs.DurationVar(&cfg.edit.duration, "edit-duration", 15*time.Second, "edit: measured time")

	fs.IntVar(&cfg.submit.rate, "submit-rate", 50, "submit: submits per second")
	fs.IntVar(&cfg.submit.teams, "submit-teams", 10, "submit: teams (a submitter and a watching member each)")
	fs.DurationVar(&cfg.submit.warmup, "submit-warmup", 2*time.Second, "submit: load before measuring")
	fs.DurationVar(&cfg.submit.duration, "submit-duration", 15*time.Second, "submit: measured time")

	fs.StringVar(&maxBackends, "max-backends", "postgres", "submit_max: backends")
	fs.IntVar(&cfg.max.start, "max-start", 50, "submit_max: first rate tried (submits/s)")
	fs.IntVar(&cfg.max.step, "max-step", 50, "submit_max: rate increase per step")
	fs.IntVar(&cfg.max.limit, "max-limit", 3000, "submit_max: stop the search at this rate")
	fs.IntVar(&cfg.max.refine, "max-refine", 1, "submit_max: bisection steps between the last passing and the first failing rate")
	fs.DurationVar(&cfg.max.stepDuration, "max-step-duration", 8*time.Second, "submit_max: duration of each probe step")
	fs.DurationVar(&cfg.max.confirm, "max-confirm", 0, "submit_max: if set, hold the found rate this long to confirm it, stepping down on failure")
	fs.DurationVar(&cfg.max.p99, "max-p99", time.Second, "submit_max: a step passes only with p99 under this")
	full := fs.Bool("max-full", false, "submit_max: the full form: after the probe, hold the rate found for 60 s (-max-confirm 60s), stepping down by a tenth until it passes")

	fs.IntVar(&cfg.idle.conns, "idle-conns", 10000, "idle: sockets")
	fs.IntVar(&cfg.idle.members, "idle-members", 1000, "idle: members (sessions) the sockets are spread over")
	fs.StringVar(&cfg.idle.backend, "idle-backend", "sqlite", "idle: backend")
	fs.DurationVar(&cfg.idle.settle, "idle-settle", 5*time.Second, "idle: wait before each RSS reading")

	fs.IntVar(&cfg.baseline.defaultHops, "baseline-default-hops", 20, "baseline: hops through watermill-sql's defaults (about 1 s each)")
	fs.IntVar(&cfg.baseline.busHops, "baseline-bus-hops", 200, "baseline: hops through pkg/bus")
	if err := fs.Parse(args); err != nil {
		return cfg, err
	}
	if fs.NArg() > 0 {
		return cfg, fmt.Errorf("unexpected argument %q", fs.Arg(0))
	}
	if *full && cfg.max.confirm == 0 {
		cfg.max.confirm = 60 * time.Second
	}
	var err error
	if cfg.backends, err = backendList(backends); err != nil {
		return cfg, err
	}
	if cfg.max.backends, err = backendList(maxBackends); err != nil {
		return cfg, err
	}
	if _, err := backendList(cfg.idle.backend); err != nil {
		return cfg, err
	}
	cfg.scenarios = map[string]bool{}
	for _, s := range splitList(scenarios) {
		ok := false
		for _, known := range allScenarios {
			ok = ok || s == known
		}
		if !ok {
			return cfg, fmt.Errorf("unknown scenario %q (want %s)", s, strings.Join(allScenarios, ", "))
		}
		cfg.scenarios[s] = true
	}
	if cfg.edit.drafts < 1 || cfg.edit.conns < cfg.edit.drafts || cfg.edit.rate < 1 || cfg.edit.items < 1 {
		return cfg, errors.New("edit: need conns >= drafts >= 1, rate >= 1, items >= 1")
	}
	if cfg.submit.rate < 1 || cfg.submit.teams < 1 {
		return cfg, errors.New("submit: need rate >= 1 and teams >= 1")
	}
	if cfg.max.start < 1 || cfg.max.step < 1 {
		return cfg, errors.New("submit_max: need start >= 1 and step >= 1")
	}
	if cfg.idle.conns < 1 || cfg.idle.members < 1 {
		return cfg, errors.New("idle: need conns >= 1 and members >= 1")
	}
	if _, err := os.Stat(cfg.bin); err != nil {
		return cfg, fmt.Errorf("server binary: %w (run make build)", err)
	}
	return cfg, nil
}

func splitList(s string) []string {
	var out []string
	for _, part := range strings.Split(s, ",") {
		if part = strings.TrimSpace(part); part != "" {
			out = append(out, part)
		}
	}
	return out
}

func backendList(s string) ([]string, error) {
	out := splitList(s)
	for _, b := range out {
		if b != "sqlite" && b != "postgres" {
			return nil, fmt.Errorf("unknown backend %q (want sqlite or postgres)", b)
		}
	}
	return out, nil
}

// raiseFileLimit lifts the soft limit on open files to the hard one: the
// idle scenario holds 10,000 sockets here and as many in the child, which
// inherits the limit.
func raiseFileLimit() {
	var lim syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &lim); err != nil {
		return
	}
	if lim.Cur < lim.Max {
		lim.Cur = lim.Max
		_ = syscall.Setrlimit(syscall.RLIMIT_NOFILE, &lim)
	}
}

// loadAvg is the first three fields of /proc/loadavg: other work on the
// machine skews every figure, so each scenario notes it.
func loadAvg() string {
	data, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return "?"
	}
	f := strings.Fields(string(data))
	if len(f) < 3 {
		return "?"
	}
	return strings.Join(f[:3], " ")
}

func infof(format string, args ...any) {
	fmt.Fprintf(os.Stderr, "info: "+format+"\n", args...)
}

// benchf prints a figure line on stdout.
func benchf(format string, args ...any) {
	fmt.Fprintf(os.Stdout, "bench: "+format+"\n", args...)
}
