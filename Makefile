# handoff: `make run` starts the app on SQLite; `make test` runs every test.
GO      ?= go
BIN     := bin/handoff
GOFILES := $(shell find . -name '*.go' -not -path './node_modules/*')
FRONTEND_SRC := $(shell find frontend/src frontend/index.html frontend/public -type f 2>/dev/null) frontend/vite.config.ts frontend/tsconfig.json

.PHONY: run build test test-go test-e2e frontend vet clean

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

test-go:
	$(GO) test -race -count=1 -timeout 8m ./...

test-e2e: build
	npx playwright test

test: vet test-go test-e2e

clean:
	rm -rf bin frontend/dist/assets frontend/dist/index.html node_modules/.stamp
