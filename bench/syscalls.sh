#!/usr/bin/env bash
# bench/syscalls.sh: the relay's system calls per frame forwarded, counted by the kernel
# (perf stat on the syscall tracepoints of the relay's PID), and its CPU seconds per GB,
# for one or two relay-server binaries on the same rows, alternating runs (a fresh relay
# per run). Unlike throughput on this shared machine, a syscall count hardly varies from
# run to run, so it shows what a change to the I/O path did.
#   bench/syscalls.sh                                   build/bin/relay-server
#   A=/path/to/old/relay-server bench/syscalls.sh       A and build/bin/relay-server
# ROWS=REGEX: only the rows whose name matches. REPEAT (default 2) runs of
# SECONDS_PER_RUN (default 2) per binary and row; prints the median per column.
# CC: the loopback's congestion control, as in make bench (bench/loopback_ns.sh).
# Loopback only; every process it starts is stopped by PID.
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=${BIN:-build/bin}
B=${B:-$BIN/relay-server}
A=${A:-}
REPEAT=${REPEAT:-2}
SECONDS_PER_RUN=${SECONDS_PER_RUN:-2}
scripts/install_deps.sh linux-perf
ulimit -n "$(ulimit -Hn)" 2>/dev/null || true
source bench/loopback_ns.sh  # CC (cubic): as make bench, in a private network namespace
source bench/lib.sh

rows=(
  "1x1 64KiB|--nodes=1 --senders=1 --frame_bytes=65536"
  "1x16 64KiB|--nodes=1 --senders=16 --frame_bytes=65536"
  "1x1 1KiB|--nodes=1 --senders=1 --frame_bytes=1024"
  "1x1 1KiB 10k/s|--nodes=1 --senders=1 --frame_bytes=1024 --rate=10000"
)
# Reading from peers (recv*, read*, splice from a socket or a pipe), writing to nodes and
# pipes (send*, write*), waiting (epoll_wait), asking a socket what it holds (ioctl).
calls=(recvfrom recvmsg read readv splice sendto sendmsg write writev epoll_wait ioctl)
events=$(printf 'syscalls:sys_enter_%s,' "${calls[@]}")
events=${events%,}

one_run() {  # binary, relay-load flags -> one JSON line
  local bin=$1 flags=$2
  RELAY_BIN=$bin start_fresh_relay --lease_ttl=1s --quiet
  local pid=$relay_pid
  local t0
  t0=$(awk '{print $14 + $15}' "/proc/$pid/stat")
  perf stat -x, -e "$events" -p "$pid" -o "$work/stat.csv" -- sleep $((SECONDS_PER_RUN + 1)) &
  local stat_pid=$!
  pids+=($stat_pid)
  sleep 0.5  # perf attached
  # shellcheck disable=SC2086
  "$BIN/relay-load" --relay=127.0.0.1:$relay_port $flags --seconds=$SECONDS_PER_RUN \
    --progress=false --json >"$work/out.json" 2>"$work/load.err" || true
  wait "$stat_pid" || true
  local t1
  t1=$(awk '{print $14 + $15}' "/proc/$pid/stat")
  kill "$pid"
  wait "$pid" 2>/dev/null || true
  python3 - "$work/out.json" "$work/stat.csv" "$t0" "$t1" "$(getconf CLK_TCK)" <<'PY'
import json, sys
load = json.load(open(sys.argv[1]))
counts = {}
for line in open(sys.argv[2]):
    f = line.strip().split(",")
    if len(f) > 2 and f[2].startswith("syscalls:sys_enter_"):
        counts[f[2][len("syscalls:sys_enter_"):]] = int(f[0]) if f[0].isdigit() else 0
frames = max(load.get("frames", 0), 1)
gb = load.get("frames", 0) * load.get("frame_bytes", 0) / 1e9
cpu = (float(sys.argv[4]) - float(sys.argv[3])) / float(sys.argv[5])
reads = sum(counts.get(c, 0) for c in ("recvfrom", "recvmsg", "read", "readv", "splice"))
writes = sum(counts.get(c, 0) for c in ("sendto", "sendmsg", "write", "writev"))
print(json.dumps({
    "gbit": load.get("gbit_per_s", 0), "reads": reads / frames, "writes": writes / frames,
    "waits": counts.get("epoll_wait", 0) / frames,
    "total": sum(counts.values()) / frames, "cpu_per_gb": cpu / gb if gb else 0,
    "peeks_and_recvfrom": counts.get("recvfrom", 0) / frames,
}))
PY
}

echo "nproc $(nproc); loopback congestion control $LOOPBACK_CC; $([ -n "$A" ] && echo "A=$A; ")B=$B; $REPEAT runs of ${SECONDS_PER_RUN}s, alternating"
echo "per frame forwarded: reads (recv*, read*, splice), of them recvfrom (the peek),"
echo "writes (send*, write*), epoll_wait, all syscalls; relay CPU s/GB; Gbit/s"
printf '%-16s %-2s %7s %9s %7s %7s %7s %7s %7s\n' row "" reads recvfrom writes waits total "cpu/GB" Gbit/s
for row in "${rows[@]}"; do
  IFS='|' read -r name flags <<<"$row"
  [[ "$name" =~ ${ROWS:-.} ]] || continue
  : >"$work/A.jsonl"
  : >"$work/B.jsonl"
  for _ in $(seq 1 "$REPEAT"); do
    [ -n "$A" ] && one_run "$A" "$flags" >>"$work/A.jsonl"
    one_run "$B" "$flags" >>"$work/B.jsonl"
  done
  for side in A B; do
    [ "$side" = A ] && [ -z "$A" ] && continue
    python3 - "$work/$side.jsonl" "$name" "$side" <<'PY'
import json, statistics, sys
runs = [json.loads(l) for l in open(sys.argv[1]) if l.strip()]
m = lambda k: statistics.median(r[k] for r in runs) if runs else float("nan")
print("%-16s %-2s %7.2f %9.2f %7.2f %7.2f %7.2f %7.3f %7.2f" % (
    sys.argv[2], sys.argv[3], m("reads"), m("peeks_and_recvfrom"), m("writes"), m("waits"),
    m("total"), m("cpu_per_gb"), m("gbit")))
PY
  done
done
