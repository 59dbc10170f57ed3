#!/usr/bin/env bash
# make bench: microbenchmarks, then the end-to-end rows (relay splice/copy/verified,
# haproxy, direct) and a scale run, all on 127.0.0.1. Every row is measured REPEAT times
# and every measurement gets a forwarder of its own: a fresh relay-server (or haproxy)
# started for it and stopped after it, so no row inherits another's leftovers. Within a
# repeat the paths of a row run one after another, so their ratios are side by side.
#
# Writes under $BENCH_OUT (build/bench) only: runs.jsonl (one line per measurement),
# run.json (the machine and settings), micro.txt, then bench/report.py makes
# generated.md, values.json and the charts there. `make bench-publish` copies a run into
# docs/. Every process started here is stopped by PID (also on error or Ctrl-C).
#
# Settings (environment): REPEAT (3) measurements per row, LATENCY_REPEAT (5) per latency
# row (a p99 moves most from run to run); RUN_SECONDS (1) per matrix
# row, HEADLINE_SECONDS (3) per headline and latency row; WARMUP (1s) of traffic before
# each of those measurements, not counted (relay-load --warmup, below); SKIP_MICRO=1;
# FRAMES, SHAPES (matrix subsets, e.g. FRAMES="1024 65536" SHAPES="1x1 1x256"); SECTIONS
# (default "headline pairs small hostcc lowmark latency matrix scale": the parts to run);
# PAIRS (8) pairs of the default relay and haproxy on one stream of 64 KiB frames,
# PAIRS_SMALL (4) of each small-frame row (below); PATHS (the forwarders
# to compare,
# default all: relay relay-splice relay-copy relay-verified haproxy direct, relay-verified
# in the headline only); SAME_RELAY=1 runs each
# path's rows on one long-lived forwarder instead (the old way: to reproduce effects
# that depend on what ran before); CC (cubic) the TCP congestion control of the private
# network namespace every row runs in, or CC=host for the host's loopback as it is
# (bench/loopback_ns.sh).
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=${BIN:-build/bin}
REPEAT=${REPEAT:-3}
LATENCY_REPEAT=${LATENCY_REPEAT:-5}
RUN_SECONDS=${RUN_SECONDS:-1}
HEADLINE_SECONDS=${HEADLINE_SECONDS:-3}
FRAMES=${FRAMES:-64 1024 16384 65536 1048576}
SHAPES=${SHAPES:-1x1 1x16 1x256 1000x1}
SAME_RELAY=${SAME_RELAY:-0}
SECTIONS=${SECTIONS:-headline pairs small hostcc lowmark latency matrix scale}
WARMUP=${WARMUP:-1s}
PAIRS=${PAIRS:-8}
PAIRS_SMALL=${PAIRS_SMALL:-4}
PATHS=${PATHS:-relay relay-splice relay-copy relay-verified haproxy direct}
wants() { [[ " $SECTIONS " == *" $1 "* ]]; }
# The paths of PATHS among $@, in the order given.
paths_among() {
  local p out=""
  for p in "$@"; do [[ " $PATHS " == *" $p "* ]] && out="$out $p"; done
  echo "$out"
}
out=${BENCH_OUT:-build/bench}
export BENCH_OUT=$out
mkdir -p "$out"
scripts/install_deps.sh haproxy gnuplot-nox
# From here on in a private network namespace (it has no network beyond its loopback).
source bench/loopback_ns.sh
ulimit -n "$(ulimit -Hn)" 2>/dev/null || true
source bench/lib.sh

cat > "$out/run.json" <<JSON
{"date":"$(date -u +%Y-%m-%dT%H:%MZ)","nproc":$(nproc),"kernel":"$(uname -r)","cpu":"$(lscpu 2>/dev/null | sed -n 's/^Model name: *//p' | head -1 | tr -d '"\\')","commit":"$(git rev-parse --short HEAD 2>/dev/null || echo unknown)$(git diff --quiet HEAD 2>/dev/null || echo +)","repeat":$REPEAT,"latency_repeat":$LATENCY_REPEAT,"run_seconds":$RUN_SECONDS,"headline_seconds":$HEADLINE_SECONDS,"sections":"$SECTIONS","warmup":"$WARMUP","same_relay":$SAME_RELAY,"pairs":$PAIRS,"pairs_small":$PAIRS_SMALL,"haproxy":"$(haproxy -v 2>/dev/null | head -1 | awk '{print $3}')","tcp_congestion":"$LOOPBACK_CC","host_tcp_congestion":"$HOST_CC","netns":$BENCH_NETNS}
JSON

echo "== microbenchmarks" >&2
: > "$out/micro.txt"
for b in $([ -n "${SKIP_MICRO:-}" ] || echo "$BIN"/*_benchmark); do
  "$b" --benchmark_min_time=0.2 2>/dev/null | grep -E '^BM_' >> "$out/micro.txt"
done
cat "$out/micro.txt" >&2

# All load comes from 127.0.0.1, standing in for thousands of hosts: the per-IP limits
# (docs/RELIABILITY.md) would refuse the 1,000-node rows and the scale run, so the
# benchmark relays lift them (0 = no limit).
NO_IP_LIMITS=(--proxy_requests_per_ip=0 --max_mains_per_ip=0 --max_sessions_per_ip=0
  --max_leases_per_ip=0 --max_peers_per_ip=0 --control_per_ip=0)
# The paths, as the flags of their relay (haproxy and direct are not relays).
declare -A RELAY_FLAGS=(
  [relay]=""  # the defaults (splice)
  [relay-splice]="--forward=splice"
  [relay-copy]="--forward=copy"
  # Verifying every control message, accepting only fresh claims (docs/SECURITY.md), its
  # admin endpoint scraped every second as Prometheus would: the cost of both.
  [relay-verified]="--require_signatures --strict_claims"
)

fwd_pids=()   # the current forwarder's processes (relay or haproxy, and a scraper)
fwd_path=""   # which path they serve
fwd_addr=""   # relay-load flags that reach it
stop_forwarder() {
  local pid
  for pid in "${fwd_pids[@]}"; do kill "$pid" 2>/dev/null || true; done
  for pid in "${fwd_pids[@]}"; do wait "$pid" 2>/dev/null || true; done
  fwd_pids=()
  fwd_path=""
}
start_forwarder() {  # path
  local path=$1 base
  stop_forwarder
  base=$(free_base 1104)
  case $path in
    relay | relay-*)
      local admin=()
      if [ "$path" = relay-verified ]; then admin=(--admin_listen=127.0.0.1:$((base + 1103))); fi
      # shellcheck disable=SC2086
      "$BIN/relay-server" --listen=127.0.0.1:$base --port_range=$((base + 1))-$((base + 1100)) \
        --lease_ttl=1s --quiet "${NO_IP_LIMITS[@]}" ${RELAY_FLAGS[$path]} "${admin[@]}" \
        >/dev/null 2>"$work/relay.log" &
      fwd_pids+=($!)
      pids+=($!)
      fwd_addr="--relay=127.0.0.1:$base --relay_pid=$!"
      wait_port "$base"
      if [ "$path" = relay-verified ]; then
        python3 -c '
import sys, time, urllib.request
while True:
    try:
        urllib.request.urlopen("http://127.0.0.1:%s/metrics" % sys.argv[1], timeout=5).read()
    except Exception:
        pass
    time.sleep(1)
' "$((base + 1103))" &
        fwd_pids+=($!)
        pids+=($!)
      fi
      ;;
    haproxy)
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
  bind 127.0.0.1:$base
  default_backend sink
backend sink
  server s1 127.0.0.1:$((base + 1))
CFG
      haproxy -f "$work/haproxy.cfg" -q >/dev/null 2>&1 &
      fwd_pids+=($!)
      pids+=($!)
      fwd_addr="--direct --sink=127.0.0.1:$((base + 1)) --via=127.0.0.1:$base --relay_pid=$!"
      wait_port "$base"
      ;;
    direct) fwd_addr="--direct" ;;
  esac
  fwd_path=$path
}

runs="$out/runs.jsonl"
: > "$runs"
rm -f "$out"/failed-*.log "$out"/headline.jsonl "$out"/latency.jsonl "$out"/matrix.jsonl \
  "$out"/scale.jsonl "$out"/results.jsonl  # an earlier run's (older scripts wrote these too)
measure() {  # section rep path relay-load-flags...
  local section=$1 rep=$2 path=$3 line err
  shift 3
  if [ "$SAME_RELAY" != 1 ] || [ "$fwd_path" != "$path" ]; then
    start_forwarder "$path"
  fi
  local tag="\"section\":\"$section\",\"rep\":$rep,\"name\":\"$path\""
  # Each path is measured in its steady state: the traffic runs WARMUP first, not counted
  # (TCP windows growing on every path).
  local warm=--warmup=$WARMUP
  [ "$section" = scale ] && warm=""
  # shellcheck disable=SC2086
  if line=$("$BIN/relay-load" --progress=false --json $fwd_addr $warm "$@" 2>"$work/load.err"); then
    echo "$section #$rep $path $*: $(grep -o '"gbit_per_s":[0-9.]*\|"p99_us":[0-9.]*' <<< "$line" | tr '\n' ' ')" >&2
    # How a relay moved the bytes: it logs its counters when it stops. proxy_copied_bytes
    # of bytes_forwarded went through user space; the rest was spliced. (bench/report.py
    # tells from them whether the default relay ran forced copy's or splice's code.)
    if [ "$SAME_RELAY" != 1 ] && [[ $path == relay* ]]; then
      stop_forwarder
      local counters copied forwarded
      counters=$(grep -o 'counters:.*' "$work/relay.log" | tail -1 || true)
      copied=$(grep -o ' proxy_copied_bytes=[0-9]*' <<< "$counters" | cut -d= -f2 || true)
      forwarded=$(grep -o ' bytes_forwarded=[0-9]*' <<< "$counters" | cut -d= -f2 || true)
      if [ -n "$forwarded" ]; then
        line="${line%\}},\"relay_copied_bytes\":${copied:-0},\"relay_forwarded_bytes\":$forwarded}"
      fi
    fi
    echo "{$tag,${line#\{}" >> "$runs"
  else
    err=$(tr '\n"\\' "   " < "$work/load.err" | cut -c1-300)
    echo "{$tag,\"failed\":true,\"error\":\"$err\",\"args\":\"$*\"}" >> "$runs"
    echo "bench: $section #$rep $path $* failed: $err" >&2
    [ -s "$work/relay.log" ] && cp "$work/relay.log" "$out/failed-$section-$rep-$path-$(tr -dc '0-9x' <<< "$*" | cut -c1-40).log"
  fi
  [ "$SAME_RELAY" = 1 ] || stop_forwarder
}

wants headline && echo "== headline: 64 KiB frames, 1 node, 1 and 16 senders, ${HEADLINE_SECONDS}s x $REPEAT" >&2
for rep in $(wants headline && seq 1 "$REPEAT"); do
  for senders in 1 16; do
    for path in $(paths_among relay relay-splice relay-copy relay-verified haproxy direct); do
      measure headline "$rep" $path --nodes=1 --senders=$senders --frame_bytes=65536 \
        --seconds="${HEADLINE_SECONDS}s"
    done
  done
done

# The one-stream target (the relay against haproxy) from pairs: the two one right after
# the other, a fresh forwarder each, the order alternating, HEADLINE_SECONDS each. On
# these shared vCPUs one forwarder's runs of this row spread by a fifth and more, so three
# medians apart can differ by that much; bench/report.py judges the target by the median
# of the pairs' ratios, and shows the headline's medians beside it.
one_stream_pairs() {  # section [senders frame_bytes pairs]
  local rep order path senders=${2:-1} frame=${3:-65536}
  for rep in $(seq 1 "${4:-$PAIRS}"); do
    order="relay haproxy"
    [ $((rep % 2)) = 0 ] && order="haproxy relay"
    for path in $(paths_among $order); do
      measure "$1" "$rep" $path --nodes=1 --senders="$senders" --frame_bytes="$frame" \
        --seconds="${HEADLINE_SECONDS}s"
    done
  done
}
if wants pairs; then
  echo "== pairs: 1 x 1 x 64 KiB, relay and haproxy, $PAIRS pairs of ${HEADLINE_SECONDS}s" >&2
  one_stream_pairs pairs
fi

# Small frames against haproxy, in pairs the same way (PAIRS_SMALL each): 1 KiB and 64 B,
# one sender and 16 into one node. P2P messages are small; haproxy only moves bytes, the
# relay finds every frame (docs/BENCHMARKS.md, "Small frames"). bench/report.py judges
# the small-frame targets by these pairs' ratios.
if wants small; then
  for frame in 1024 64; do
    for senders in 1 16; do
      echo "== small: 1 x $senders x $frame B, relay and haproxy, $PAIRS_SMALL pairs of ${HEADLINE_SECONDS}s" >&2
      one_stream_pairs small "$senders" "$frame" "$PAIRS_SMALL"
    done
  done
fi

# The same pairs under the host's own congestion control, where it is not the one the
# run measures (inside the namespace only: its routes switch for these pairs and back).
# On loopback a pacing congestion control (bbr) bills timer-driven transmits to whichever
# thread the timer interrupts (bench/loopback_ns.sh); these pairs show what that does to
# the comparison on this host.
if wants hostcc && [ "$BENCH_NETNS" = 1 ] && [ "$HOST_CC" != "$LOOPBACK_CC" ]; then
  echo "== hostcc: the pairs again under the host's congestion control, $HOST_CC" >&2
  loopback_cc "$HOST_CC"
  one_stream_pairs hostcc
  loopback_cc "$LOOPBACK_CC"
fi

# The headline's 1 and 16 senders again, each sender socket with TCP_NOTSENT_LOWAT: on
# loopback a sender's queued segments otherwise go out from inside the forwarder's reads
# (its ACKs reach the sender at once, in the forwarder's thread), so a forwarder that keeps
# many senders' windows full pays for their transmit too; with the low mark the senders
# transmit from their own threads, as senders on other hosts do (docs/bench/METHOD.md,
# "Loopback artifacts"; `make perf` shows the split).
wants lowmark && echo "== lowmark: the headline with --sender_notsent_lowat=32768" >&2
for rep in $(wants lowmark && seq 1 "$REPEAT"); do
  for senders in 1 16; do
    for path in $(paths_among relay haproxy); do
      measure lowmark "$rep" $path --nodes=1 --senders=$senders --frame_bytes=65536 \
        --sender_notsent_lowat=32768 --seconds="${HEADLINE_SECONDS}s"
    done
  done
done

# haproxy too: what one forwarding hop adds on this machine, by a forwarder that is not
# this one.
wants latency && echo "== latency: 10,000 frames/s of 1 KiB, default threads, ${HEADLINE_SECONDS}s x $LATENCY_REPEAT" >&2
for rep in $(wants latency && seq 1 "$LATENCY_REPEAT"); do
  for path in $(paths_among relay haproxy direct); do
    measure latency "$rep" $path --rate=10000 --frame_bytes=1024 --seconds="${HEADLINE_SECONDS}s"
  done
done

wants matrix && echo "== matrix: ${RUN_SECONDS}s x $REPEAT per row" >&2
for frame in $(wants matrix && echo "$FRAMES"); do
  for shape in $SHAPES; do
    nodes=${shape%x*}
    senders=${shape#*x}
    paths=$(paths_among relay relay-splice relay-copy direct)
    [ "$nodes" -eq 1 ] && paths=$(paths_among relay relay-splice relay-copy haproxy direct)
    for rep in $(seq 1 "$REPEAT"); do
      for path in $paths; do
        measure matrix "$rep" $path --nodes="$nodes" --senders="$senders" --frame_bytes="$frame" \
          --seconds="${RUN_SECONDS}s"
      done
    done
  done
done
stop_forwarder

if wants scale; then
echo "== scale: idle sessions" >&2
scale_port=$(free_base 1)
"$BIN/relay-server" --listen=127.0.0.1:$scale_port --port_range=20000-31999 --quiet \
  "${NO_IP_LIMITS[@]}" >/dev/null 2>"$work/scale.log" &
scale_pid=$!
pids+=($scale_pid)
wait_port "$scale_port"
fwd_path=scale
fwd_addr="--relay=127.0.0.1:$scale_port --relay_pid=$scale_pid"
SAME_RELAY=1 measure scale 1 scale --nodes=0 --idle_nodes="${IDLE:-9000}" --seconds=2s
fi

python3 bench/report.py --data "$out" --out "$out"
