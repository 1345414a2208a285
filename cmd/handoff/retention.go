package main

import (
	"context"
	"log/slog"
	"time"

	"handoff/interior"
	"handoff/pkg/bus"
	"handoff/pkg/envelope"
	"handoff/pkg/sqldb"
	"handoff/pkg/wmx"
	"handoff/server"
)

const (
	pruneEvery = time.Minute
	pruneBatch = 1000
)

// prune keeps the message tables and dedup keys of the parts this process
// runs within their retention, until ctx ends. Several processes may prune
// at once; deletes of what is already gone change nothing.
func prune(ctx context.Context, cfg config, db *sqldb.DB, b *bus.Bus, log *slog.Logger) {
	t := time.NewTicker(pruneEvery)
	defer t.Stop()
	for {
		pruneOnce(ctx, cfg, db, b, log)
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

func pruneOnce(ctx context.Context, cfg config, db *sqldb.DB, b *bus.Bus, log *slog.Logger) {
	var tables []string
	if cfg.runsInterior() {
		if n, err := b.Prune(ctx, cfg.Retention, pruneBatch, envelope.Topics...); err != nil {
			logPrune(ctx, log, "messages", err)
		} else if n > 0 {
			log.Info("pruned processed messages", "deleted", n)
		}
		tables = append(tables, interior.DedupTable)
	}
	if cfg.runsEdge() {
		tables = append(tables, server.DedupTable)
	}
	for _, table := range tables {
		if n, err := wmx.PruneDedup(ctx, db, table, cfg.DedupRetention, pruneBatch); err != nil {
			logPrune(ctx, log, table, err)
		} else if n > 0 {
			log.Info("pruned dedup keys", "table", table, "deleted", n)
		}
	}
}

func logPrune(ctx context.Context, log *slog.Logger, what string, err error) {
	if ctx.Err() == nil {
		log.Warn("prune", "what", what, "err", err)
	}
}
