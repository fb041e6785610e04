# lakesink — make demo | make test | make bench
SHELL := /bin/bash
GO ?= go
BIN := bin/lakesink
BED := deploy/local/bed.sh
export GOFLAGS := -buildvcs=false

.PHONY: all build demo test test-faults torture test-short bed-up bed-down bench fuzz vet fmt clean

all: build

build:
	$(GO) build -o $(BIN) ./cmd/lakesink

## demo: the whole pipeline embedded (in-process Kafka, local lake), no services needed
demo: build
	./$(BIN) demo -dir .demo/lake

## test: install and start the test bed (Kafka, S3, Postgres, moto, Iceberg REST, Trino, schema registry, Python venv), run every test, stop the bed
test:
	$(GO) mod download
	$(GO) vet ./...
	@trap '$(BED) down' EXIT; \
	  $(BED) up && eval "$$($(BED) env)" && \
	  LAKESINK_REQUIRE_BED=1 $(GO) test -v -count=1 -timeout 40m ./... && \
	  $(MAKE) test-deploy

## test-faults: the fault-injection suite (issue 13 §2) on the test bed: Kafka broker kill -9
## and outage (a broker of the test's own behind a TCP fault proxy), offset commits failing
## alone, S3 at 5 s a request and S3 unreachable for 60 s, three compactors at once, partition
## added, hour boundaries, late events, load with SIGTERMs, and a 50 s torture run with seed 1. Every
## scenario ends with lakesink audit (0 lost, 0 duplicated) and DuckDB counts. make test runs
## the same tests inside its go test ./... (they are TestFault* and TestTorture in cmd/lakesink).
FAULT_TESTS := ^(TestFault.*|TestTorture)$$
test-faults:
	@trap '$(BED) down' EXIT; \
	  $(BED) up && eval "$$($(BED) env)" && \
	  LAKESINK_REQUIRE_BED=1 $(GO) test -v -count=1 -timeout 30m -run '$(FAULT_TESTS)' ./cmd/lakesink

## torture: the randomised fault driver for DURATION (default 30m) from SEED (default: the
## time); prints the seed, every action with its time, and the audit's verdict. A failure
## replays with the same SEED. Output is also kept in torture-<seed>.log.
SEED ?= $(shell date +%s)
DURATION ?= 30m
torture:
	@trap '$(BED) down' EXIT; \
	  $(BED) up && eval "$$($(BED) env)" && \
	  LAKESINK_REQUIRE_BED=1 LAKESINK_TORTURE_SEED=$(SEED) LAKESINK_TORTURE_DURATION=$(DURATION) \
	  $(GO) test -v -count=1 -timeout 6h -run '^TestTorture$$' ./cmd/lakesink 2>&1 | tee torture-$(SEED).log; \
	  exit $${PIPESTATUS[0]}

## test-short: the fast tier, no servers
test-short:
	$(GO) test -short -count=1 ./...

## test-deploy: deploy/ (its own Go module): manifests, alerts, dashboard, Terraform, compose,
## Dockerfile and CI checks, run against the real binary (built as the image builds it)
.PHONY: test-deploy
test-deploy:
	cd deploy && $(GO) test -count=1 -timeout 20m ./...

bed-up:
	$(BED) up
bed-down:
	$(BED) down

## bench: every performance measure against the test bed (encode-only bound, sink end to end,
## compaction with 1 and 2 shards, idle and one-hour compaction runs on 100- and 10,000-file
## tables, steady-rate latency, 10/1000/5000 open hour partitions, shuffled events over 1,426
## hours with the default config and a cap, hour vs day partitions, the per-file cost of a
## small file: BenchmarkSmallFile, CPU per file from rusage, and the merge against its
## in-memory bound at 28KB/1MB/64MB raw files): a table of targets,
## bench-results/bench.json, bench-results/partitions.png and bench-results/small-file.txt
bench: build
	@trap '$(BED) down' EXIT; \
	  LAKESINK_BED_S3_KEEPALIVE=1 $(BED) up && eval "$$($(BED) env)" && \
	  $(GO) run ./bench -bin $(BIN) -events $${EVENTS:-1000000} && \
	  LAKESINK_REQUIRE_BED=1 $(GO) test -run '^$$' -bench BenchmarkSmallFile -benchtime 3000x ./sink > bench-results/small-file.txt && cat bench-results/small-file.txt && \
	  .bed/venv/bin/python bench/plot_partitions.py bench-results/bench.json bench-results/partitions.png

## bench-plot: draw the partitions measure of bench-results/bench.json (throughput and peak
## RSS against open hour partitions) into bench-results/partitions.png, with the venv's matplotlib
.PHONY: bench-plot
bench-plot:
	deploy/local/venv.sh install
	.bed/venv/bin/python bench/plot_partitions.py bench-results/bench.json bench-results/partitions.png

## fuzz: every fuzz target for FUZZTIME each (default 60s); findings land in testdata/fuzz.
## New inputs are minimized for at most 5 s (Go's default 60 s can stall a whole run).
FUZZTIME ?= 60s
fuzz:
	$(GO) test ./decode -run '^$$' -fuzz '^FuzzDecode$$' -fuzztime $(FUZZTIME) -fuzzminimizetime 5s
	$(GO) test ./lake/layout -run '^$$' -fuzz '^FuzzRawKey$$' -fuzztime $(FUZZTIME) -fuzzminimizetime 5s
	$(GO) test ./decode -run '^$$' -fuzz '^FuzzDecodeAvro$$' -fuzztime $(FUZZTIME) -fuzzminimizetime 5s
	$(GO) test ./decode -run '^$$' -fuzz '^FuzzAvroEvolution$$' -fuzztime $(FUZZTIME) -fuzzminimizetime 5s
	$(GO) test ./lake/layout -run '^$$' -fuzz '^FuzzPartitionDir$$' -fuzztime $(FUZZTIME) -fuzzminimizetime 5s

vet:
	$(GO) vet ./...
fmt:
	gofmt -l -w $$(git ls-files '*.go')

clean:
	rm -rf bin .demo
