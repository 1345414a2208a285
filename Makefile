# handoff: `make run` starts the app on SQLite; `make test` runs every test.
SHELL := bash
.SHELLFLAGS := -eu -o pipefail -c
GO      ?= go
BIN     := bin/handoff
GOFILES := $(shell find . -name '*.go' -not -path './node_modules/*')
FRONTEND_SRC := $(shell find frontend/src frontend/index.html frontend/public -type f 2>/dev/null) frontend/vite.config.ts frontend/tsconfig.json

.PHONY: run build test test-go test-e2e frontend vet clean chaos

run: build
	./$(BIN) serve

build: $(BIN)

# npm ci is exact and fast when the lock is present; the stamp makes it run
# only when the lock changes.
node_modules/.stamp: package.json package-lock.json
	npm ci --no-audit --no-fund
	touch $@

frontend/dist/index.html: node_modules/.stamp $(FRONTEND_SRC)
	npm run --silent typecheck
	npm run --silent build

frontend: frontend/dist/index.html

$(BIN): frontend/dist/index.html $(GOFILES) go.mod go.sum
	$(GO) build -o $(BIN) ./cmd/handoff

vet:
	$(GO) vet ./...
	@test -z "$$(gofmt -l $$(git ls-files '*.go'))" || { echo "gofmt needed:"; gofmt -l $$(git ls-files '*.go'); exit 1; }

# One package at a time: on PostgreSQL any open transaction holding an id
# delays delivery for every subscriber of the server, so packages running
# side by side would slow each other's tests in ways that look like bugs.
test-go:
	$(GO) test -race -count=1 -p 1 -timeout 8m ./...

test-e2e: build
	npx playwright test

test: vet test-go test-e2e

# The crash test at full size: 500 drafts per backend, interiors killed with
# SIGKILL 30 times and the edge once; `make test` runs a short form.
chaos:
	$(GO) test -count=1 -timeout 30m -run 'TestChaos' -v ./cmd/handoff/ -chaos.drafts=500 -chaos.kills=30 -chaos.teams=16 2>&1 | grep -E '^(chaos:|\s+chaos_test|--- FAIL)' 

clean:
	rm -rf bin frontend/dist/assets frontend/dist/index.html node_modules/.stamp

# bench: a short run of cmd/handoff-load (under 5 minutes) against the real
# binary on SQLite and PostgreSQL; one "bench:" line per figure on stdout.
# Needs PostgreSQL at BENCH_PG (each run creates and drops a database of its
# own). The idle scenario holds 10,000 sockets in the load generator and as
# many in the server, hence the file limit. More flags: BENCH_FLAGS=...,
# e.g. BENCH_FLAGS=-max-full for the 60 s form of submit_max.
BENCH_PG    ?= postgres://postgres@127.0.0.1:5432/postgres?sslmode=disable
BENCH_FLAGS ?=
.PHONY: bench
bench: build
	$(GO) build -o bin/handoff-load ./cmd/handoff-load
	ulimit -n 65536 2>/dev/null || ulimit -n $$(ulimit -Hn); \
	./bin/handoff-load -bin $(BIN) -pg '$(BENCH_PG)' $(BENCH_FLAGS)
