#!/usr/bin/env bash
# make perf: profiles the relay under relay-load with `perf record -g` and prints the top
# of `perf report`. Uses the cycles event where the machine has hardware counters, and
# falls back to the cpu-clock software event on VMs that have none ("cycles not
# supported"). Ends with where the relay's thread spends its samples by kernel path
# (bench/perf_split.py): reading, the transmit a read triggers (on loopback, the senders'
# work), writing. LOAD_FLAGS: more relay-load flags, e.g. --sender_notsent_lowat=32768.
# CC: the loopback's congestion control, as in make bench (bench/loopback_ns.sh).
# PERF_DATA=path keeps the recording there (for perf annotate, perf report -g ...).
# RELAY_FLAGS: more relay-server flags; PROXY_PORTS (200): its proxy ports. 1,000 nodes:
#   PROXY_PORTS=1100 SENDERS=1 LOAD_FLAGS=--nodes=1000 RELAY_FLAGS='--proxy_requests_per_ip=0
#   --max_peers_per_ip=0 --max_leases_per_ip=0 --control_per_ip=0'
# Stops everything it starts.
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=${BIN:-build/bin}
FRAME=${FRAME:-65536}
SENDERS=${SENDERS:-16}
SECONDS_TO_PROFILE=${SECONDS_TO_PROFILE:-5}
scripts/install_deps.sh linux-perf
source bench/loopback_ns.sh  # CC (cubic): as make bench, in a private network namespace
source bench/lib.sh
echo "perf: loopback congestion control $LOOPBACK_CC" >&2

event=cycles
if ! perf stat -e cycles true >/dev/null 2>"$work/stat.err" || grep -qi "not supported" "$work/stat.err"; then
  event=cpu-clock
  echo "perf: no hardware cycle counter here; sampling the cpu-clock software event" >&2
fi

# shellcheck disable=SC2086
start_fresh_relay --quiet ${RELAY_FLAGS:-}
port=$relay_port
# shellcheck disable=SC2086
"$BIN/relay-load" --relay=127.0.0.1:$port --relay_pid="$relay_pid" --senders=$SENDERS \
  --frame_bytes=$FRAME --seconds=$((SECONDS_TO_PROFILE + 2))s --progress=false ${LOAD_FLAGS:-} \
  >"$work/load.out" 2>&1 &
load_pid=$!
pids+=($load_pid)
sleep 1
perf record -e "$event" -g -p "$relay_pid" -o "$work/perf.data" -- sleep "$SECONDS_TO_PROFILE" \
  2>"$work/record.err" || { cat "$work/record.err" >&2; exit 1; }
wait "$load_pid" || true
cat "$work/load.out"
if [ -n "${PERF_DATA:-}" ]; then
  cp "$work/perf.data" "$PERF_DATA"
  echo "perf: the recording is in $PERF_DATA (perf report -i $PERF_DATA)" >&2
fi
echo "== perf report, flat ($event, relay pid $relay_pid, $SENDERS senders x $FRAME B frames)"
# The first N report lines, without comments; awk reads to the end, so no pipe breaks
# (a `head` would end the pipeline with SIGPIPE under pipefail).
first() { awk -v n="$1" '!/^#/ && !/^$/ && ++seen <= n'; }
perf report -i "$work/perf.data" --stdio --no-children -g none --percent-limit 0.7 2>/dev/null \
  | first "${TOP:-40}"
echo "== by shared object"
perf report -i "$work/perf.data" --stdio --no-children -g none --sort dso 2>/dev/null | first 8
echo "== call graph"
perf report -i "$work/perf.data" --stdio --no-children --percent-limit 3 2>/dev/null \
  | first "${TOP_GRAPH:-60}"
echo "== where the relay's thread spends its samples"
perf script -i "$work/perf.data" -F ip,sym 2>/dev/null | python3 bench/perf_split.py
