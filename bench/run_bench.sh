#!/usr/bin/env bash
# make bench: microbenchmarks, then the end-to-end matrix against relays and an haproxy
# this script starts itself (on 127.0.0.1, free ports), then a scale run. Writes the
# results (JSON lines, the generated tables, the chart) under $BENCH_OUT (build/bench) and
# touches no tracked file; `make bench-publish` (bench/publish.sh) copies a run into docs/.
# Every process it starts is stopped by PID when it ends (also on error or Ctrl-C).
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=${BIN:-build/bin}
RUN_SECONDS=${RUN_SECONDS:-1}
HEADLINE_SECONDS=${HEADLINE_SECONDS:-3}
out=${BENCH_OUT:-build/bench}
export BENCH_OUT=$out
mkdir -p "$out"
scripts/install_deps.sh haproxy gnuplot-nox

ulimit -n "$(ulimit -Hn)" 2>/dev/null || true
source bench/lib.sh

echo "== microbenchmarks" >&2
: > "$out/micro.txt"
for b in $([ -n "${SKIP_MICRO:-}" ] || echo "$BIN"/*_benchmark); do
  "$b" --benchmark_min_time=0.2 2>/dev/null | grep -E '^BM_' >> "$out/micro.txt"
done
cat "$out/micro.txt" >&2

# All load comes from 127.0.0.1, standing in for thousands of hosts: the per-IP limits
# (docs/RELIABILITY.md) would refuse the 1,000-node rows and the scale run, so the
# benchmark relays lift them (0 = no limit).
NO_IP_LIMITS="--proxy_requests_per_ip=0 --max_mains_per_ip=0 --max_sessions_per_ip=0 \
  --max_leases_per_ip=0 --max_peers_per_ip=0"
base=$(free_base 4000)
splice_port=$base; copy_port=$((base + 1)); via_port=$((base + 2)); sink_port=$((base + 3))
verified_port=$((base + 4))
start_relay() {  # variable for the pid, port, first proxy port, extra flags...
  local var=$1 port=$2 lo=$3; shift 3
  # shellcheck disable=SC2086
  "$BIN/relay-server" --listen=127.0.0.1:$port --port_range=$lo-$((lo + 1899)) \
    --lease_ttl=1s --quiet $NO_IP_LIMITS "$@" >/dev/null 2>"$work/relay-$port.log" &
  pids+=($!)
  printf -v "$var" %s "$!"
  wait_port "$port"
}
start_relay splice_pid $splice_port $((base + 100)) --forward=splice
start_relay copy_pid $copy_port $((base + 2000)) --forward=copy
# The same relay verifying every control message and accepting only fresh claims
# (docs/SECURITY.md), with its admin endpoint scraped every second (as Prometheus would):
# the cost of both shows beside relay-splice in the headline rows.
admin_port=$((base + 5))
# shellcheck disable=SC2086
"$BIN/relay-server" --listen=127.0.0.1:$verified_port --port_range=$((base + 3900))-$((base + 3999)) \
  --lease_ttl=1s --quiet $NO_IP_LIMITS --require_signatures --strict_claims \
  --admin_listen=127.0.0.1:$admin_port >/dev/null 2>"$work/relay-verified.log" &
verified_pid=$!
pids+=($verified_pid)
wait_port "$verified_port"
python3 -c '
import sys, time, urllib.request
while True:
    try:
        urllib.request.urlopen("http://127.0.0.1:%s/metrics" % sys.argv[1], timeout=5).read()
    except Exception:
        pass
    time.sleep(1)
' "$admin_port" &
pids+=($!)
cat > "$work/haproxy.cfg" <<CFG
global
  maxconn 4000
defaults
  mode tcp
  timeout connect 5s
  timeout client 60s
  timeout server 60s
  option splice-request
  option splice-response
frontend relay_bench
  bind 127.0.0.1:$via_port
  default_backend sink
backend sink
  server s1 127.0.0.1:$sink_port
CFG
haproxy -f "$work/haproxy.cfg" -q >/dev/null 2>&1 &
haproxy_pid=$!
pids+=($haproxy_pid)
wait_port "$via_port"

results="$out/results.jsonl"
: > "$results"
run() {  # path-name, relay-load flags...
  local name=$1; shift
  local line
  if line=$("$BIN/relay-load" --progress=false --json "$@" 2>"$work/load.err"); then
    echo "{\"name\":\"$name\",${line#\{}" >> "$results"
    echo "$name $*: $(echo "$line" | grep -o '"gbit_per_s":[0-9.]*')" >&2
  else
    echo "bench: $name $* failed: $(cat "$work/load.err")" >&2
  fi
}
paths_for() {  # nodes senders frame seconds
  local nodes=$1 senders=$2 frame=$3 secs=$4
  local common="--nodes=$nodes --senders=$senders --frame_bytes=$frame --seconds=${secs}s"
  run relay-splice --relay=127.0.0.1:$splice_port --relay_pid="$splice_pid" $common
  run relay-copy --relay=127.0.0.1:$copy_port --relay_pid="$copy_pid" $common
  if [ "$nodes" -eq 1 ]; then
    run haproxy --direct --sink=127.0.0.1:$sink_port --via=127.0.0.1:$via_port \
      --relay_pid="$haproxy_pid" $common
  fi
  run direct --direct $common
}

echo "== headline: 64 KiB frames, 1 node, 1 and 16 senders, ${HEADLINE_SECONDS}s each" >&2
for senders in 1 16; do
  paths_for 1 $senders 65536 "$HEADLINE_SECONDS"
  run relay-verified --relay=127.0.0.1:$verified_port --relay_pid="$verified_pid" --nodes=1 \
    --senders=$senders --frame_bytes=65536 --seconds=${HEADLINE_SECONDS}s
done
cp "$results" "$out/headline.jsonl"
: > "$results"

echo "== latency: 10,000 frames/s of 1 KiB" >&2
run relay-splice --relay=127.0.0.1:$splice_port --relay_pid="$splice_pid" --rate=10000 \
  --frame_bytes=1024 --seconds=${HEADLINE_SECONDS}s
run direct --direct --rate=10000 --frame_bytes=1024 --seconds=${HEADLINE_SECONDS}s
cp "$results" "$out/latency.jsonl"
: > "$results"

echo "== matrix" >&2
for frame in 64 1024 16384 65536 1048576; do
  for senders in 1 16 256; do
    paths_for 1 $senders $frame "$RUN_SECONDS"
  done
  paths_for 1000 1 $frame "$RUN_SECONDS"
done
cp "$results" "$out/matrix.jsonl"

echo "== scale: idle sessions" >&2
for pid in "$splice_pid" "$copy_pid" "$verified_pid"; do
  kill "$pid"
  wait "$pid" 2>/dev/null || true
done
scale_port=$(free_base 1)
# shellcheck disable=SC2086
"$BIN/relay-server" --listen=127.0.0.1:$scale_port --port_range=20000-31999 --quiet \
  $NO_IP_LIMITS >/dev/null 2>"$work/scale.log" &
scale_pid=$!
pids+=($scale_pid)
wait_port "$scale_port"
IDLE=${IDLE:-9000}
: > "$results"
run scale --relay=127.0.0.1:$scale_port --relay_pid=$scale_pid --nodes=0 --idle_nodes=$IDLE \
  --seconds=2s
cp "$results" "$out/scale.jsonl"

bench/report.sh
