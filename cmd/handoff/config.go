package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"strconv"
	"time"

	"handoff/interior"
	"strings"
)

// config is every setting of the program, from flags with environment
// variables as their defaults.
type config struct {
	Addr        string
	DatabaseURL string
	Role        string
	LogLevel    slog.Level
	// DBPool bounds the PostgreSQL connections of this process.
	DBPool int
	// Payment configures the simulated payment provider.
	Payment interior.SimConfig
	// PaymentTimeout bounds one call to the provider.
	PaymentTimeout time.Duration
	// PaymentMaxTries bounds the calls for one payment.
	PaymentMaxTries int
	// Retention is how long processed messages are kept.
	Retention time.Duration
	// DedupRetention is how long dedup keys are kept; longer than
	// Retention, so no message still stored can be redelivered unrecognised.
	DedupRetention time.Duration
}

// Roles a process can take.
const (
	roleAll      = "all"
	roleEdge     = "edge"
	roleInterior = "interior"
)

func (c config) runsEdge() bool     { return c.Role == roleAll || c.Role == roleEdge }
func (c config) runsInterior() bool { return c.Role == roleAll || c.Role == roleInterior }

// parseConfig reads flags for a subcommand; getenv supplies the defaults.
func parseConfig(name string, args []string, getenv func(string) string, out io.Writer) (config, error) {
	env := func(key, def string) string {
		if v := getenv(key); v != "" {
			return v
		}
		return def
	}
	var c config
	var level string
	fs := flag.NewFlagSet("handoff "+name, flag.ContinueOnError)
	fs.SetOutput(out)
	fs.StringVar(&c.Addr, "addr", env("HANDOFF_ADDR", "127.0.0.1:8080"), "address to listen on (HANDOFF_ADDR)")
	fs.StringVar(&c.DatabaseURL, "database", env("HANDOFF_DATABASE_URL", "sqlite:data/handoff.db"), "database URL: sqlite:PATH or postgres://... (HANDOFF_DATABASE_URL)")
	fs.StringVar(&c.Role, "role", env("HANDOFF_ROLE", roleAll), "what this process runs: all, edge or interior (HANDOFF_ROLE)")
	fs.IntVar(&c.DBPool, "db-pool", envInt(getenv, "HANDOFF_DB_POOL", 16), "PostgreSQL connections per process (HANDOFF_DB_POOL)")
	fs.DurationVar(&c.Payment.Latency, "payment-latency", envDuration(getenv, "HANDOFF_PAYMENT_LATENCY", 0), "simulated payment provider: time per call (HANDOFF_PAYMENT_LATENCY)")
	fs.Int64Var(&c.Payment.DeclineAboveCents, "payment-decline-above", int64(envInt(getenv, "HANDOFF_PAYMENT_DECLINE_ABOVE", 0)), "simulated provider: decline charges above this many cents; 0 never (HANDOFF_PAYMENT_DECLINE_ABOVE)")
	fs.Float64Var(&c.Payment.DeclineRate, "payment-decline-rate", envFloat(getenv, "HANDOFF_PAYMENT_DECLINE_RATE"), "simulated provider: share of payments declined, 0 to 1 (HANDOFF_PAYMENT_DECLINE_RATE)")
	fs.Float64Var(&c.Payment.TransientRate, "payment-transient-rate", envFloat(getenv, "HANDOFF_PAYMENT_TRANSIENT_RATE"), "simulated provider: share of calls failing transiently (HANDOFF_PAYMENT_TRANSIENT_RATE)")
	fs.IntVar(&c.Payment.FailFirst, "payment-fail-first", envInt(getenv, "HANDOFF_PAYMENT_FAIL_FIRST", 0), "simulated provider: the first N calls of every payment fail transiently (HANDOFF_PAYMENT_FAIL_FIRST)")
	fs.Float64Var(&c.Payment.TimeoutRate, "payment-timeout-rate", envFloat(getenv, "HANDOFF_PAYMENT_TIMEOUT_RATE"), "simulated provider: share of calls that charge and never answer (HANDOFF_PAYMENT_TIMEOUT_RATE)")
	fs.DurationVar(&c.PaymentTimeout, "payment-timeout", envDuration(getenv, "HANDOFF_PAYMENT_TIMEOUT", 2*time.Second), "time allowed for one call to the payment provider (HANDOFF_PAYMENT_TIMEOUT)")
	fs.IntVar(&c.PaymentMaxTries, "payment-max-tries", envInt(getenv, "HANDOFF_PAYMENT_MAX_TRIES", 5), "calls to the provider before a payment fails as retryable (HANDOFF_PAYMENT_MAX_TRIES)")
	fs.DurationVar(&c.Retention, "retention", envDuration(getenv, "HANDOFF_RETENTION", 24*time.Hour), "how long processed messages are kept (HANDOFF_RETENTION)")
	fs.DurationVar(&c.DedupRetention, "dedup-retention", envDuration(getenv, "HANDOFF_DEDUP_RETENTION", 7*24*time.Hour), "how long dedup keys are kept; at least --retention (HANDOFF_DEDUP_RETENTION)")
	fs.StringVar(&level, "log-level", env("HANDOFF_LOG_LEVEL", "info"), "debug, info, warn or error (HANDOFF_LOG_LEVEL)")
	if err := fs.Parse(args); err != nil {
		return c, err
	}
	if fs.NArg() > 0 {
		return c, fmt.Errorf("unexpected argument %q", fs.Arg(0))
	}
	return c, c.validate(level)
}

func (c *config) validate(level string) error {
	var errs []error
	switch c.Role {
	case roleAll, roleEdge, roleInterior:
	default:
		errs = append(errs, fmt.Errorf("--role must be all, edge or interior, not %q", c.Role))
	}
	if !strings.HasPrefix(c.DatabaseURL, "sqlite:") && !strings.HasPrefix(c.DatabaseURL, "postgres://") && !strings.HasPrefix(c.DatabaseURL, "postgresql://") {
		errs = append(errs, fmt.Errorf("--database must start with sqlite: or postgres://, not %q", c.DatabaseURL))
	}
	if c.DBPool < 2 || c.DBPool > 1000 {
		errs = append(errs, fmt.Errorf("--db-pool must be 2 to 1000, not %d", c.DBPool))
	}
	for name, rate := range map[string]float64{"decline-rate": c.Payment.DeclineRate, "transient-rate": c.Payment.TransientRate, "timeout-rate": c.Payment.TimeoutRate} {
		if rate < 0 || rate > 1 {
			errs = append(errs, fmt.Errorf("--payment-%s must be between 0 and 1, not %v", name, rate))
		}
	}
	if c.Payment.Latency < 0 || c.Payment.DeclineAboveCents < 0 || c.Payment.FailFirst < 0 || c.PaymentTimeout <= 0 || c.PaymentMaxTries < 1 {
		errs = append(errs, errors.New("payment latency, decline-above and fail-first must not be negative, and the payment timeout and max tries must be positive"))
	}
	if c.Retention <= 0 || c.DedupRetention < c.Retention {
		errs = append(errs, fmt.Errorf("--retention must be positive and --dedup-retention at least as long (got %v and %v)", c.Retention, c.DedupRetention))
	}
	if c.Addr == "" {
		errs = append(errs, errors.New("--addr must not be empty"))
	}
	if err := c.LogLevel.UnmarshalText([]byte(level)); err != nil {
		errs = append(errs, fmt.Errorf("--log-level: %w", err))
	}
	return errors.Join(errs...)
}

// envInt reads an integer default from the environment; a malformed value
// is kept as -1 so validation reports it.
func envInt(getenv func(string) string, key string, def int) int {
	v := getenv(key)
	if v == "" {
		return def
	}
	n, err := strconv.Atoi(v)
	if err != nil {
		return -1
	}
	return n
}

// envDuration and envFloat read defaults like envInt; malformed values
// become -1 so validation reports them.
func envDuration(getenv func(string) string, key string, def time.Duration) time.Duration {
	v := getenv(key)
	if v == "" {
		return def
	}
	d, err := time.ParseDuration(v)
	if err != nil {
		return -1
	}
	return d
}

func envFloat(getenv func(string) string, key string) float64 {
	v := getenv(key)
	if v == "" {
		return 0
	}
	f, err := strconv.ParseFloat(v, 64)
	if err != nil {
		return -1
	}
	return f
}

func usage(w io.Writer) {
	fmt.Fprintln(w, `usage: handoff <command> [flags]

commands:
  serve     run the app (edge, interior, or both)
  migrate   create or upgrade the database tables, then exit

Run "handoff serve -h" for the flags.`)
}
