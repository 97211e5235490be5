# Lethe: `make run` for a local deployment, `make test` for every test.
# Both need PostgreSQL's server binaries (apt-get install postgresql) and
# build the Vault server once into bin/vault (~20 min the first time).

GO      ?= go
VERSION ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)

.PHONY: all build run cluster drills test fuzz bench bench-quick vault lint fmt clean deps help FORCE

all: build

## build: compile bin/lethe
build: bin/lethe

bin/lethe: FORCE
	@echo "==> building bin/lethe"
	$(GO) build -trimpath -ldflags "-X main.version=$(VERSION)" -o bin/lethe ./cmd/lethe

bin/lethe-dev: FORCE
	@$(GO) build -o bin/lethe-dev ./cmd/lethe-dev

## vault: build the Vault server used by tests and `make run` (first time ~20 min)
vault:
	@scripts/build-vault.sh

## deps: check the machine has what the tests and `make run` need
deps:
	@scripts/check-deps.sh

## cluster: the highly available topology on this machine (etcd, Patroni + PostgreSQL, Vault Raft x3, lethe serve x3, HAProxy); Ctrl-C stops it
cluster: deps build vault bin/lethe-dev
	@scripts/install-cluster-deps.sh
	@bin/lethe-dev cluster

## drills: fault drills on the highly available topology under load (kill -9 of the PostgreSQL primary, the active Vault node, a lethe serve; etcd restart; a frozen standby), with the table of windows and losses
drills: deps build vault
	@scripts/install-cluster-deps.sh
	@echo "==> fault drills (the topology starts first; about 5 minutes)"
	$(GO) test -tags drills -count=1 -v -timeout 30m ./internal/drills/

## run: a complete local deployment (PostgreSQL, Vault, lethe serve); Ctrl-C stops it
run: deps build vault bin/lethe-dev
	@bin/lethe-dev run

## test: every test, against a real PostgreSQL and a real Vault started for the run
test: deps vault bin/lethe-dev lint
	@echo "==> running the tests (PostgreSQL and Vault start first)"
	@bin/lethe-dev test -- $(GO) test -race -count=1 -timeout 20m ./...
	@echo "==> fuzzing each decoder of untrusted input for a short time"
	@scripts/fuzz.sh

## bench: benchmarks against a raw pgx baseline; figures also go to bench-results.json
bench: deps vault
	@echo "==> building the benchmark"
	@$(GO) build -o bin/lethe-bench ./cmd/lethe-bench
	@bin/lethe-bench

## bench-quick: the benchmarks as a short smoke run (the figures mean little)
bench-quick: deps vault
	@$(GO) run ./cmd/lethe-bench -quick -out /dev/null

## lint: gofmt, go vet, and the import rules (domain packages never import adapters)
lint:
	@echo "==> lint"
	@test -z "$$(gofmt -l $$(git ls-files '*.go'))" || { echo "gofmt needed:"; gofmt -l $$(git ls-files '*.go'); exit 1; }
	@$(GO) vet ./...
	@scripts/check-imports.sh

## fuzz: every fuzz target for FUZZTIME (default 100000x executions) each
fuzz:
	@scripts/fuzz.sh

fmt:
	gofmt -w $$(git ls-files '*.go')

clean:
	rm -rf bin/lethe bin/lethe-dev bin/lethe-bench bench-results.json

## help: this list
help:
	@grep -E '^## ' Makefile | sed 's/^## /  /'
