# Portcullis. Run `make help` for the targets.
GO        ?= go
FUZZTIME  ?= 30s
BENCHTIME ?= 1s
# make bench: every run lasts BENCH_WARMUP + BENCH_DURATION; each scenario
# makes 2 × BENCH_ROUNDS × (1 + number of BENCH_LOADS) runs. Empty
# BENCH_SCENARIOS means all of them (bench/README.md).
BENCH_DURATION  ?= 2s
BENCH_WARMUP    ?= 500ms
BENCH_ROUNDS    ?= 2
BENCH_LOADS     ?= 0.25,0.5,0.75
BENCH_SCENARIOS ?=
BENCH_FLAGS     ?=
# make soak: authz-jwt and rl-redis together at half load for SOAK_DURATION,
# a fault every SOAK_FAULT_EVERY (bench/README.md, Soak).
SOAK_DURATION    ?= 15m
SOAK_FAULT_EVERY ?= 3m
SOAK_FLAGS       ?=
STATICCHECK_VERSION := v0.8.2
CONFIG    ?= examples/portcullis.yaml
# Real MCP peers the tests run against (conformance suite, TypeScript SDK,
# server-everything, Node 22), pinned in the lockfile.
NODE_PEERS := mcpserver/testdata/node/node_modules/.package-lock.json

.PHONY: help build test testrace lint fuzz faults bench soak microbench dev run

help: ## list the targets
	@grep -E '^[a-z]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-10s %s\n", $$1, $$2}'

build: ## build bin/portcullis
	$(GO) build -o bin/portcullis ./cmd/portcullis

test: $(NODE_PEERS) ## run every test: lint, then go test -race (what CI runs)
	$(MAKE) lint
	$(GO) test -race -count=1 ./...

testrace: $(NODE_PEERS) ## go test -race only
	$(GO) test -race -count=1 ./...

$(NODE_PEERS): mcpserver/testdata/node/package-lock.json
	npm ci --prefix mcpserver/testdata/node --no-audit --no-fund

lint: ## gofmt, go vet, staticcheck, go mod tidy diff, project lints
	@out=$$(gofmt -l $$(git ls-files '*.go')); if [ -n "$$out" ]; then echo "gofmt needed:"; echo "$$out"; exit 1; fi
	$(GO) vet ./...
	@command -v staticcheck >/dev/null || $(GO) install honnef.co/go/tools/cmd/staticcheck@$(STATICCHECK_VERSION)
	staticcheck ./...
	@$(GO) mod tidy -diff || { echo "go mod tidy would change go.mod/go.sum (diff above)"; exit 1; }
	@bad=$$(git grep -nE 'interface\{\}|time\.After\(|log\.Print|"github.com/open-policy-agent/opa/(rego|ast|topdown|storage|loader|tester|bundle)"' -- '*.go' ':!*_test.go'); \
	  if [ -n "$$bad" ]; then echo "project lint (any over interface{}, no time.After, no global log, OPA v1 imports only):"; echo "$$bad"; exit 1; fi

fuzz: ## run each fuzz target for FUZZTIME (default 30s)
	@for pkg in $$($(GO) list ./...); do \
	  for f in $$($(GO) test -list '^Fuzz' $$pkg | grep '^Fuzz'); do \
	    echo "== $$pkg $$f"; $(GO) test -run '^$$' -fuzz "^$$f$$" -fuzztime $(FUZZTIME) $$pkg || exit 1; \
	  done; done

faults: ## fault tests under load, Redis ones included (Redis at REDIS_ADDR, default 127.0.0.1:6379)
	$(GO) test -race -count=1 -tags faults -run '^TestFault' -v ./cmd/portcullis

bench: ## compare Portcullis with the null server per scenario (bench/); JSON + SVG into bench/results
	$(GO) run ./bench/cmd/bench compare -duration $(BENCH_DURATION) -warmup $(BENCH_WARMUP) \
	  -rounds $(BENCH_ROUNDS) -loads $(BENCH_LOADS) $(BENCH_FLAGS) $(BENCH_SCENARIOS)

soak: ## soak test: half load for SOAK_DURATION, faults every SOAK_FAULT_EVERY; report in bench/results/soak.json
	$(GO) run ./bench/cmd/bench soak -duration $(SOAK_DURATION) -fault-every $(SOAK_FAULT_EVERY) $(SOAK_FLAGS)

microbench: ## run the Go benchmarks with allocation counts
	$(GO) test -run '^$$' -bench . -benchmem -benchtime $(BENCHTIME) ./...

dev: build ## run portcullis dev: everything on loopback behind the front door on 127.0.0.1:10000
	./bin/portcullis dev

run: build ## run portcullis serve with CONFIG (default examples/portcullis.yaml)
	./bin/portcullis serve --config $(CONFIG)
