#!/usr/bin/env bash
# make fleet: sessions at the host's limit, and a fleet of relays on one host that loses
# one. In a private network namespace (bench/loopback_ns.sh), loopback only; every step
# bounded in time; stops everything it starts. About 4 minutes on 2 cores.
#
# 1. One relay at the host's limit, side by side with a smaller one (same build, same
#    sitting): SMALL (1,000) and SESSIONS (9,000) idle sessions, each with one measured
#    stream of 10,000 frames/s of 1 KiB for 10 s; the large one again while its admin
#    endpoint is scraped every second (/metrics and every page of /sessions, by a scraper
#    under SCHED_IDLE: a monitoring host's CPU is not the relay's). Relay RSS per idle
#    session, the idle nodes' Keepalive round trip, the stream's one-way delay.
# 2. A restart with --state_dir holding SESSIONS leases: seconds until it listens again.
# 3. FLEET relays (default 10) at 127.0.1.1-10, each with PER_RELAY idle nodes and one
#    measured stream of FLEET_RATE frames/s, from one relay-load per relay whose --relay
#    list starts at its relay (--failover); once every stream is measuring, the first
#    relay gets SIGKILL. Every one of its nodes must be re-homed on the others within 30 s
#    and the survivors' nodes and streams must lose nothing.
#
# PER_RELAY defaults to 8,000, not 9,000: here a process may hold 20,000 fds and a session
# costs a relay two (its main connection and its proxy listener), so one relay tops out
# near 9,900 sessions. A fleet that must survive the loss of one of N relays can run each
# at most at (N-1)/N of that: 10 x 9,000 nodes would need 10,000 sessions on each of the 9
# survivors. FLEET_RATE defaults to 1,000 frames/s per relay (10,000 on the host): ten
# streams of 10,000 each would ask more CPU than 2 cores have beside 20 processes.
#
# Writes $FLEET_OUT (default build/fleet): fleet.jsonl (one JSON line per run) and
# fleet.txt (the tables); exit status 1 if a target is missed or a node lost.
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=${BIN:-build/bin}
OUT=${FLEET_OUT:-build/fleet}
SMALL=${SMALL:-1000}
SESSIONS=${SESSIONS:-9000}
FLEET=${FLEET:-10}
PER_RELAY=${PER_RELAY:-8000}
FLEET_RATE=${FLEET_RATE:-1000}
FLEET_SECONDS=${FLEET_SECONDS:-45}
PARTS=${PARTS:-limit restart fleet}  # which of the three to run
source bench/loopback_ns.sh
ulimit -n "$(ulimit -Hn)" 2>/dev/null || true
source bench/lib.sh
mkdir -p "$OUT"
: >"$OUT/fleet.jsonl"
NO_IP_LIMITS=(--proxy_requests_per_ip=0 --max_mains_per_ip=0 --max_sessions_per_ip=0
  --max_leases_per_ip=0 --max_peers_per_ip=0 --control_per_ip=0)
sched_idle=""
command -v chrt >/dev/null && sched_idle="chrt -i 0"
failed=0

# Appends {"kind": $1} and the fields of the JSON objects $2... (empty: none) to
# fleet.jsonl.
record() {
  python3 -c 'import json,sys; d={"kind":sys.argv[1]}; [d.update(json.loads(a or "{}")) for a in sys.argv[2:]]; print(json.dumps(d))' \
    "$@" >>"$OUT/fleet.jsonl"
}

# One relay, $1 idle sessions, scraped if $2 = 1.
at_limit() {
  local n=$1 scrape=$2 port=6008 admin=9108 relay load scraper=""
  "$BIN/relay-server" --listen=127.0.0.1:$port --port_range=20000-29999 --quiet \
    --admin_listen=127.0.0.1:$admin "${NO_IP_LIMITS[@]}" >/dev/null 2>"$work/relay.log" &
  relay=$!
  pids+=($relay)
  wait_port $port
  "$BIN/relay-load" --relay=127.0.0.1:$port --idle_nodes="$n" --nodes=1 --rate=10000 \
    --frame_bytes=1024 --warmup=1s --seconds=10 --progress=false --json --relay_pid=$relay \
    >"$work/load.json" 2>"$work/load.err" &
  load=$!
  pids+=($load)
  if [ "$scrape" = 1 ]; then
    $sched_idle python3 bench/scrape_admin.py $admin $load >"$work/scrape.json" &
    scraper=$!
    pids+=($scraper)
  fi
  wait $load || { echo "fleet: relay-load failed: $(cat "$work/load.err")" >&2; failed=1; }
  [ -n "$scraper" ] && wait $scraper
  kill $relay; wait $relay 2>/dev/null || true
  record at_limit "$(cat "$work/load.json")" \
    "{\"scraped\": $([ "$scrape" = 1 ] && cat "$work/scrape.json" || echo null)}"
}

# A relay with --state_dir holding $1 leases restarts: seconds until it listens again.
restart() {
  local n=$1 port=6008 relay start end
  rm -rf "$work/state"
  "$BIN/relay-server" --listen=127.0.0.1:$port --state_dir="$work/state" --quiet \
    "${NO_IP_LIMITS[@]}" >/dev/null 2>"$work/relay.log" &
  relay=$!
  pids+=($relay)
  wait_port $port
  "$BIN/relay-load" --relay=127.0.0.1:$port --idle_nodes="$n" --nodes=0 --seconds=1 \
    --progress=false >/dev/null 2>"$work/load.err"
  kill $relay; wait $relay 2>/dev/null || true
  start=$(date +%s.%N)
  "$BIN/relay-server" --listen=127.0.0.1:$port --state_dir="$work/state" \
    "${NO_IP_LIMITS[@]}" >/dev/null 2>"$work/relay.log" &
  relay=$!
  pids+=($relay)
  for _ in $(seq 1 2000); do
    [ -n "$(ss -Hltn "( sport = :$port )")" ] && break
    sleep 0.005
  done
  end=$(date +%s.%N)
  local restored
  for _ in $(seq 1 200); do  # the log line may trail the listener by a moment
    restored=$(sed -n 's/.*: \([0-9]*\) leases restored.*/\1/p' "$work/relay.log" | head -1)
    [ -n "$restored" ] && break
    sleep 0.01
  done
  kill $relay; wait $relay 2>/dev/null || true
  record restart "{}" "{\"leases\": ${restored:-0}, \"listening_s\": $(python3 -c "print(round($end - $start, 3))")}"
}

# {"turns": N, "turns_over_1ms": M}: the loop turns of the relay whose admin endpoint is
# $1 (its own contribution to delay), from its /metrics histogram.
loop_turns() {
  python3 - "$1" <<'PY'
import json, re, sys, urllib.request
total = under = 0
try:
    text = urllib.request.urlopen("http://%s/metrics" % sys.argv[1], timeout=5).read().decode()
    for line in text.splitlines():
        m = re.match(r'relay_reactor_loop_seconds_bucket\{reactor="\d+",le="([^"]+)"\} (\d+)', line)
        if m and m.group(1) == "+Inf":
            total += int(m.group(2))
        elif m and m.group(1) == "0.001":
            under += int(m.group(2))
    print(json.dumps({"turns": total, "turns_over_1ms": total - under}))
except OSError:
    print(json.dumps({"turns": None, "turns_over_1ms": None}))
PY
}

# The fleet: $FLEET relays, one relay-load each; the first relay dies.
fleet() {
  local i j list relays=() loads=() hosts=()
  for i in $(seq 1 "$FLEET"); do
    hosts+=("127.0.1.$i")
    "$BIN/relay-server" --listen=127.0.1.$i:6008 --port_range=20000-29999 --threads=1 --quiet \
      --admin_listen=127.0.1.$i:9108 "${NO_IP_LIMITS[@]}" >/dev/null 2>"$work/relay$i.log" &
    relays+=($!)
    pids+=($!)
  done
  for i in $(seq 0 $((FLEET - 1))); do
    for _ in $(seq 1 200); do
      [ -n "$(ss -Hltn "( src ${hosts[$i]} and sport = :6008 )")" ] && break
      sleep 0.05
    done
  done
  local t0
  t0=$(date +%s.%N)
  for i in $(seq 0 $((FLEET - 1))); do
    list=""
    for j in $(seq 0 $((FLEET - 1))); do
      list+="${list:+,}${hosts[$(((i + j) % FLEET))]}:6008"
    done
    "$BIN/relay-load" --relay="$list" --failover --idle_nodes="$PER_RELAY" --nodes=1 \
      --rate="$FLEET_RATE" --frame_bytes=1024 --seconds="$FLEET_SECONDS" --threads=1 --json \
      --relay_pid="${relays[$i]}" >"$work/fleet$i.json" 2>"$work/fleet$i.err" &
    loads+=($!)
    pids+=($!)
  done
  # Every stream measuring (its first progress line), then the first relay dies.
  for _ in $(seq 1 1200); do
    local measuring=0
    for i in $(seq 0 $((FLEET - 1))); do
      grep -q "relay-load: t=" "$work/fleet$i.err" 2>/dev/null && measuring=$((measuring + 1))
    done
    [ "$measuring" = "$FLEET" ] && break
    sleep 0.1
  done
  local setup_s
  setup_s=$(python3 -c "import time; print(round(time.time() - $t0, 1))")
  sleep 3
  kill -9 "${relays[0]}"
  wait "${relays[0]}" 2>/dev/null || true
  for i in $(seq 0 $((FLEET - 1))); do
    wait "${loads[$i]}" || { echo "fleet: relay-load $i failed: $(grep -v 't=' "$work/fleet$i.err")" >&2; failed=1; }
    turns=""
    [ "$i" != 0 ] && turns=$(loop_turns "${hosts[$i]}:9108")
    record fleet "$(cat "$work/fleet$i.json")" "$turns" \
      "{\"relay\": \"${hosts[$i]}\", \"killed\": $([ "$i" = 0 ] && echo true || echo false), \"fleet_setup_s\": $setup_s, \"per_relay\": $PER_RELAY, \"rate\": $FLEET_RATE}"
  done
  for i in $(seq 1 $((FLEET - 1))); do
    kill "${relays[$i]}" 2>/dev/null || true
  done
}

record meta "{}" "{\"date\": \"$(date -u +%Y-%m-%dT%H:%MZ)\", \"commit\": \"$(git rev-parse --short HEAD 2>/dev/null || echo unknown)\", \"nproc\": $(nproc), \"kernel\": \"$(uname -r)\", \"fd_limit\": $(ulimit -n)}"
if [[ " $PARTS " == *" limit "* ]]; then
  echo "fleet: one relay at $SMALL and $SESSIONS idle sessions" >&2
  at_limit "$SMALL" 0
  at_limit "$SESSIONS" 0
  at_limit "$SESSIONS" 1
fi
if [[ " $PARTS " == *" restart "* ]]; then
  echo "fleet: a restart with $SESSIONS leases" >&2
  restart "$SESSIONS"
fi
if [[ " $PARTS " == *" fleet "* ]]; then
  echo "fleet: $FLEET relays x $PER_RELAY nodes, the first killed" >&2
  fleet
fi
python3 bench/fleet_report.py "$OUT/fleet.jsonl" | tee "$OUT/fleet.txt"
status=${PIPESTATUS[0]}
[ "$failed" = 0 ] && [ "$status" = 0 ]
