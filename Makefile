# Thin wrapper around CMake: the short commands of the README.
BUILD ?= build
JOBS ?= $(shell nproc)
ARGS ?=

.PHONY: all deps build run test sanitize fuzz package clean format demo bench bench-publish perf attack fleet fleet-publish flags-doc

all: build

deps:
	@scripts/install_deps.sh

build: deps
	@BUILD=$(BUILD) JOBS=$(JOBS) scripts/build.sh

# Starts the relay on its defaults (extra flags: make run ARGS="--threads=2"). Builds
# only relay-server.
run: deps
	@BUILD=$(BUILD) JOBS=$(JOBS) scripts/build.sh relay-server
	$(BUILD)/bin/relay-server $(ARGS)

test: build
	cd $(BUILD) && ctest --output-on-failure -j $(JOBS)

# Every test again under ASan+UBSan (Debug, assertions on), under TSan, and built by
# clang; build-asan/, build-tsan/, build-clang/. CI runs it after make test.
sanitize: deps
	JOBS=$(JOBS) scripts/sanitize.sh

# The libFuzzer targets (fuzz/) built by clang with ASan+UBSan in build-fuzz/, each run
# for FUZZ_SECONDS (default 60); CI runs each for 20 s. See docs/SECURITY.md.
fuzz: deps
	JOBS=$(JOBS) scripts/fuzz.sh

# The Debian packages (debhelper): build/packages/ relay-server, relay-tools, librelay-node0,
# librelay-node-dev (docs/DEPLOY.md).
package: build
	scripts/package.sh $(BUILD)

# docs/FLAGS.md from the programs' --help (the ctest flags_doc fails when it is stale).
flags-doc: build
	scripts/flags_doc.sh $(BUILD)/bin docs/FLAGS.md

format:
	clang-format -i $$(git ls-files '*.cc' '*.h')

clean:
	rm -rf $(BUILD) build-asan build-tsan build-clang build-fuzz

# Two nodes exchange a message through a relay on 127.0.0.1 (see README).
demo: build
	BIN=$(BUILD)/bin tools/demo.sh

# Microbenchmarks, the end-to-end rows (relay default/splice/copy/verified, haproxy,
# direct; each row 3 times on fresh forwarders), the relay and haproxy in pairs on 64 KiB,
# 1 KiB and 64 B frames, and a scale run; writes build/bench/ (runs.jsonl, generated.md,
# values.json, chart), no tracked file. About 35 minutes.
# Runs in a private network namespace whose loopback uses congestion control CC (cubic;
# CC=host: the host's loopback as it is): bench/loopback_ns.sh.
# `make bench-publish` copies that run into docs/bench/ and regenerates docs/BENCHMARKS.md.
bench: build
	BIN=$(BUILD)/bin BENCH_OUT=$(BUILD)/bench bench/run_bench.sh

bench-publish:
	BENCH_OUT=$(BUILD)/bench bench/publish.sh

# The relay under load with `perf record -g`; prints the top of the profile.
perf: build
	BIN=$(BUILD)/bin bench/perf.sh

# Sessions at the host's limit (1,000 vs 9,000, scraped or not, a --state_dir restart)
# and a fleet of ten relays on one host losing one (bench/fleet.sh). About 4 minutes;
# writes build/fleet/. `make fleet-publish` copies it to docs/bench/ for BENCHMARKS.md.
fleet: build
	BIN=$(BUILD)/bin FLEET_OUT=$(BUILD)/fleet bench/fleet.sh

fleet-publish:
	cp $(BUILD)/fleet/fleet.jsonl docs/bench/fleet.jsonl
	python3 bench/report.py --data docs/bench --render bench/BENCHMARKS.md.in --write docs/BENCHMARKS.md

# Each attack of relay-attack at full scale beside innocent traffic; prints the innocents'
# rate and delay before and during it, and the relay's RSS, fds and CPU. About 2 minutes.
attack: build
	BIN=$(BUILD)/bin bench/attack.sh
