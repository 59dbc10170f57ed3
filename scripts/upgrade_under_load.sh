#!/usr/bin/env bash
# Live upgrade under load (docs/DEPLOY.md, "Live upgrade"): starts a relay on loopback,
# runs relay-load against it (16 senders by default), and during the run has a new
# relay-server process take over UPGRADES times (--take_over). Prints, per upgrade, the
# forwarding pause the new process measured, and at the end relay-load's counts: frames
# sent / received / lost, cut and bad frames, lost connections (relay-load exits 1 on
# any of those). Then a paced run (RATE frames/s) shows the pause as frames see it: the
# worst one-way latency.
# Usage: scripts/upgrade_under_load.sh   (BUILD, NODES, SENDERS, FRAME_BYTES, RUN_SECONDS, UPGRADES, RATE)
set -euo pipefail
cd "$(dirname "$0")/.."
BUILD=${BUILD:-build}
NODES=${NODES:-1}
SENDERS=${SENDERS:-16}
FRAME_BYTES=${FRAME_BYTES:-65536}
SECONDS_RUN=${RUN_SECONDS:-9}
UPGRADES=${UPGRADES:-3}
RATE=${RATE:-10000}
bin="$BUILD/bin"
[ -x "$bin/relay-server" ] && [ -x "$bin/relay-load" ] || scripts/build.sh relay-server relay-load

work=$(mktemp -d /tmp/relay-upgrade-XXXXXX)
# A main port and the 3,000 proxy ports above it that nobody listens on.
port=""
for _ in $(seq 1 100); do
  base=$((20000 + RANDOM % 9000))
  if [ "$(ss -Htln "( sport >= :$base and sport <= :$((base + 3000)) )" | wc -l)" -eq 0 ]; then
    port=$base
    break
  fi
done
[ -n "$port" ] || { echo "upgrade_under_load: no 3,001 free ports below 32000" >&2; exit 1; }
flags=(--listen=127.0.0.1:$port --port_range=$((port + 1))-$((port + 3000)) --threads=2
       --state_dir="$work/state" --upgrade_socket="$work/upgrade.sock"
       # Every load connection comes from 127.0.0.1: no per-IP limits (as in bench/).
       --proxy_requests_per_ip=0 --max_mains_per_ip=0 --max_sessions_per_ip=0
       --max_leases_per_ip=0 --max_peers_per_ip=0 --control_per_ip=0
       --log_sessions_per_second=0)
relay_pid=""
cleanup() {
  # Only the relay this script started (the last one that took over) and relay-load.
  [ -n "$relay_pid" ] && kill "$relay_pid" 2>/dev/null && sleep 0.2
  [ -n "${load_pid:-}" ] && kill "$load_pid" 2>/dev/null
  rm -rf "$work"
}
trap cleanup EXIT

start_relay() {  # start_relay LOG [extra flags]: starts one relay-server, sets relay_pid
  local log=$1
  shift
  "$bin/relay-server" "${flags[@]}" "$@" 2>"$log" &
  relay_pid=$!
}

wait_for() {  # wait_for FILE TEXT SECONDS
  for _ in $(seq 1 $(($3 * 100))); do
    grep -q "$2" "$1" 2>/dev/null && return 0
    sleep 0.01
  done
  echo "timed out waiting for '$2' in $1" >&2
  cat "$1" >&2
  return 1
}

run() {  # run NAME relay-load-flags...: one relay-load run with UPGRADES takeovers
  local name=$1
  shift
  start_relay "$work/relay-0.log"
  wait_for "$work/relay-0.log" "relay-server listening" 10
  "$bin/relay-load" --relay=127.0.0.1:$port --nodes="$NODES" --senders="$SENDERS" --seconds="$SECONDS_RUN" \
    --progress=false "$@" >"$work/$name.out" 2>&1 &
  load_pid=$!
  local gap
  gap=$(awk -v s="$SECONDS_RUN" -v n="$UPGRADES" 'BEGIN { printf "%.2f", s / (n + 1) }')
  for i in $(seq 1 "$UPGRADES"); do
    sleep "$gap"
    local old=$relay_pid
    start_relay "$work/relay-$i.log" --take_over="$work/upgrade.sock"
    wait_for "$work/relay-$i.log" "live upgrade: took over" 30
    for _ in $(seq 1 1000); do kill -0 "$old" 2>/dev/null || break; sleep 0.01; done
    wait "$old" || { echo "the old relay (pid $old) did not exit 0" >&2; return 1; }
    echo "$name: upgrade $i: pid $old -> $relay_pid:" \
      "$(grep -o 'took over.*' "$work/relay-$i.log")"
  done
  local rc=0
  wait "$load_pid" || rc=$?
  load_pid=""
  echo "$name: relay-load (exit $rc):"
  sed 's/^/  /' "$work/$name.out"
  kill "$relay_pid"
  wait "$relay_pid" || true
  relay_pid=""
  rm -rf "$work/state"
  return $rc
}

echo "nproc $(nproc); $NODES nodes x $SENDERS senders of $FRAME_BYTES-byte frames, $SECONDS_RUN s, $UPGRADES upgrades"
run throughput --frame_bytes="$FRAME_BYTES"
run paced --frame_bytes=1024 --rate="$RATE"
