package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"strconv"
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

func usage(w io.Writer) {
	fmt.Fprintln(w, `usage: handoff <command> [flags]

commands:
  serve     run the app (edge, interior, or both)
  migrate   create or upgrade the database tables, then exit

Run "handoff serve -h" for the flags.`)
}
