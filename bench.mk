# bench.mk — benchmark targets, included by the top Makefile (which defines GO, BIN and LDFLAGS).
#
#   make bench           proxy benchmark on loopback (direct | vipd | HAProxy if installed), then the cluster's
#                        election benchmarks. HAProxy leg: apt-get install -y haproxy.
#   make bench-proxy     the proxy benchmark alone: bulk, short connections on 1 and 2 CPUs, latency at 1k conn/s,
#                        idle footprint, a reconnect storm of 8,000 clients; BENCH_REPS repetitions (medians and
#                        per-repetition ratios; ~3 minutes each). BENCH_BASE=path/to/old/vipd adds it as vipd-base.
#   make bench-failover  VIP failover in network namespaces (needs root, ip, nft); prints outage tables.
#
# BENCH_FLAGS / FAILOVER_FLAGS pass extra flags, e.g. make bench BENCH_FLAGS='-duration 2s -idle 3000'.

BENCH_FLAGS    ?=
BENCH_REPS     ?= 5
BENCH_BASE     ?=
FAILOVER_FLAGS ?=

.PHONY: bench bench-proxy bench-election bench-failover

bench: bench-proxy bench-election

bench-proxy:
	$(GO) build -trimpath -ldflags '$(LDFLAGS)' -o $(BIN)/vipd ./cmd/vipd
	$(GO) build -trimpath -o $(BIN)/proxybench ./bench/proxybench
	$(BIN)/proxybench -vipd $(BIN)/vipd -reps $(BENCH_REPS) $(if $(BENCH_BASE),-vipd-base $(BENCH_BASE)) $(BENCH_FLAGS)

bench-election:
	$(GO) test -run '^$$' -bench Failover -benchtime 1x ./cluster/

bench-failover:
	@if [ "$$(id -u)" != 0 ]; then echo "bench-failover needs root (network namespaces)"; exit 1; fi
	$(GO) build -trimpath -ldflags '$(LDFLAGS)' -o $(BIN)/vipd ./cmd/vipd
	$(GO) build -trimpath -o $(BIN)/failoverbench ./bench/failoverbench
	$(BIN)/failoverbench -vipd $(BIN)/vipd $(FAILOVER_FLAGS)

# bench-soak: the stability target — 5 minutes of steady state with both cores saturated by busy loops;
# fails on any leader or VIP holder change. SOAK=1m for a shorter run.
SOAK ?= 5m
.PHONY: bench-soak
bench-soak:
	@if [ "$$(id -u)" != 0 ]; then echo "bench-soak needs root (network namespaces)"; exit 1; fi
	$(GO) build -trimpath -ldflags '$(LDFLAGS)' -o $(BIN)/vipd ./cmd/vipd
	$(GO) build -trimpath -o $(BIN)/failoverbench ./bench/failoverbench
	$(BIN)/failoverbench -vipd $(BIN)/vipd -soak $(SOAK) $(FAILOVER_FLAGS)
