#!/usr/bin/env bash
# bench/ab.sh: two relay-server binaries side by side on the same rows, alternating runs
# (a fresh relay per run), so a change's cost is measured in one sitting on this shared,
# noisy machine. Prints one line per row: the median of each side over REPEAT runs and
# the ratio B/A.
#   A=/path/to/old/relay-server B=build/bin/relay-server bench/ab.sh
# Rows: 1 node x 1 sender and x 16 senders of 64 KiB frames, 1 x 1 of 1 KiB frames,
# 100 nodes x 4 senders of 16 KiB frames, and p99 latency at 10k frames/s of 1 KiB.
# ROWS=REGEX: only the rows whose name matches. ROW_SPECS: other rows instead, one per
# line, each "name|relay-load flags|field" (field: payload Gbit/s, frames/s, p99, the
# relay's CPU s/GB, load CPU s/GB: relay-load's own, or host CPU s/GB: every CPU busy; p50).
# EXTRA: relay flags for both sides; EXTRA_A, EXTRA_B: for one side only (A and B may be
# the same binary, e.g. to measure a flag). PROXY_PORTS: proxy ports per
# relay (default 200; rows of 1,000 nodes need more, and EXTRA lifting the per-IP limits).
# CC: the TCP congestion control of the private network namespace the runs use (default
# cubic; CC=host: the host's loopback as it is), as in make bench (bench/loopback_ns.sh).
# SCRAPE_B=1: B runs with --admin_listen, /metrics scraped every second during its runs
# by one long-lived client, as Prometheus would: the cost of the admin endpoint.
# Loopback only; every process it starts is stopped by PID.
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=${BIN:-build/bin}
A=${A:?set A=path of the baseline relay-server}
B=${B:-$BIN/relay-server}
REPEAT=${REPEAT:-5}
SECONDS_PER_RUN=${SECONDS_PER_RUN:-2}
EXTRA=${EXTRA:-}
EXTRA_A=${EXTRA_A:-}
EXTRA_B=${EXTRA_B:-}
SCRAPE_B=${SCRAPE_B:-0}
source bench/loopback_ns.sh  # CC (cubic): the congestion control of its loopback
ulimit -n "$(ulimit -Hn)" 2>/dev/null || true
source bench/lib.sh

rows=(
  "1x1 64KiB Gbit/s|--nodes=1 --senders=1 --frame_bytes=65536|payload Gbit/s"
  "1x16 64KiB Gbit/s|--nodes=1 --senders=16 --frame_bytes=65536|payload Gbit/s"
  "1x1 1KiB Mframes/s|--nodes=1 --senders=1 --frame_bytes=1024|frames/s"
  "100x4 16KiB Gbit/s|--nodes=100 --senders=4 --frame_bytes=16384|payload Gbit/s"
  "p99 us at 10k/s 1KiB|--nodes=1 --senders=1 --frame_bytes=1024 --rate=10000|p99"
)
if [ -n "${ROW_SPECS:-}" ]; then
  mapfile -t rows <<<"$ROW_SPECS"
fi

one_run() {  # side (A or B), relay-load flags, field -> prints the value
  local bin=$A flags=$2 field=$3 extra="$EXTRA $EXTRA_A" scrape=0 scraper=""
  [ "$1" = B ] && bin=$B && extra="$EXTRA $EXTRA_B" && scrape=$SCRAPE_B
  # shellcheck disable=SC2086
  ADMIN=$scrape RELAY_BIN=$bin start_fresh_relay --lease_ttl=1s --quiet $extra
  local port=$relay_port pid=$relay_pid
  if [ "$scrape" = 1 ]; then
    # One long-lived scraper, as Prometheus is (no process start per scrape).
    python3 -c '
import sys, time, urllib.request
for _ in range(int(sys.argv[2])):
    urllib.request.urlopen("http://127.0.0.1:%s/metrics" % sys.argv[1], timeout=5).read()
    time.sleep(1)
' "$admin_port" $((SECONDS_PER_RUN + 5)) 2>/dev/null &
    scraper=$!
    sleep 1  # its start-up (the interpreter) is not the endpoint's cost
  fi
  # shellcheck disable=SC2086
  "$BIN/relay-load" --relay=127.0.0.1:$port --relay_pid="$pid" $flags \
    --seconds=$SECONDS_PER_RUN --progress=false --json >"$work/out.json" 2>"$work/load.err" || true
  if [ -n "$scraper" ]; then kill "$scraper" 2>/dev/null || true; wait "$scraper" 2>/dev/null || true; fi
  kill "$pid"; wait "$pid" 2>/dev/null || true
  python3 - "$work/out.json" "$field" <<'PY'
import json, sys
try:
    d = json.load(open(sys.argv[1]))
except Exception:
    print("nan"); sys.exit()
f = sys.argv[2]
if f == "payload Gbit/s":
    print(d.get("gbit_per_s", "nan"))
elif f == "frames/s":
    print(d.get("frames_per_s", 0) / 1e6)
elif f == "CPU s/GB":
    print(d.get("relay_cpu_s_per_gb", "nan"))
elif f == "load CPU s/GB":
    print(d.get("load_cpu_s_per_gb", "nan"))
elif f == "host CPU s/GB":
    print(d.get("host_cpu_s_per_gb", "nan"))
elif f == "p50":
    print(d.get("p50_us", "nan"))
else:
    print(d.get("p99_us", "nan"))
PY
}

median() { python3 -c 'import sys,statistics; v=[float(x) for x in sys.argv[1:] if x!="nan"]; print("%.3f" % statistics.median(v) if v else "nan")' "$@"; }

echo "nproc $(nproc); loopback congestion control $LOOPBACK_CC$([ "$BENCH_NETNS" = 1 ] && echo " (private namespace)"); A=$A $EXTRA_A; B=$B $EXTRA_B$([ "$SCRAPE_B" = 1 ] && echo " (admin endpoint scraped every second)"); $REPEAT runs of ${SECONDS_PER_RUN}s per side, alternating"
printf '%-24s %10s %10s %8s   %s\n' row A B B/A "A runs | B runs"
for row in "${rows[@]}"; do
  IFS='|' read -r name flags field <<<"$row"
  [[ "$name" =~ ${ROWS:-.} ]] || continue
  a=(); b=()
  for _ in $(seq 1 "$REPEAT"); do
    a+=("$(one_run A "$flags" "$field")")
    b+=("$(one_run B "$flags" "$field")")
  done
  ma=$(median "${a[@]}"); mb=$(median "${b[@]}")
  ratio=$(python3 -c "a,b=float('$ma'),float('$mb'); print('%.2f' % (b/a) if a else 'nan')")
  printf '%-24s %10s %10s %8s   %s | %s\n' "$name" "$ma" "$mb" "$ratio" "${a[*]}" "${b[*]}"
done
