#!/usr/bin/env bash
# make attack: each attack of relay-attack at full scale against a fresh relay on its
# default limits, beside innocent traffic (relay-load: 10 nodes, 1 KiB frames at 2,000
# frames/s in all, one-way delay measured). "during" covers T+1 s of innocent traffic
# with the attack running from its second second on. Prints, per attack, the innocents' delivery
# rate and p99 delay before and during the attack, and the relay's peak RSS, open fds,
# CPU and the time a GET /healthz on its admin endpoint takes during it. The attacker comes
# from 127.0.0.2, the innocents from 127.0.0.1. The attacker runs under SCHED_IDLE (chrt -i
# 0): it gets the CPU the relay and the innocents leave, as a remote attacker's own CPU
# would not be the relay host's (on a small machine it would otherwise delay the relay's
# threads by itself, attack or not).
# Loopback only, bounded in time (about 15 s per attack); stops everything it starts.
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=${BIN:-build/bin}
T=${T:-5}
ATTACKS=${ATTACKS:-header_only slowloris idle control_hold non_reading pool_burn takeover bad_utf8 control_flood signed_flood stall_inside admin_idle}
# RELAY_FLAGS: more flags for the relay (e.g. --require_signatures, under which every
# control_flood message is a signature check; --control_rate=0 to see it unbounded).
RELAY_FLAGS=${RELAY_FLAGS:-}
ulimit -n "$(ulimit -Hn)" 2>/dev/null || true
source bench/lib.sh
sched_idle=""
command -v chrt >/dev/null && sched_idle="chrt -i 0"

innocents() {  # relay port, relay pid, seconds -> JSON line
  "$BIN/relay-load" --relay=127.0.0.1:$1 --nodes=10 --senders=1 --frame_bytes=1024 \
    --rate=2000 --seconds=$3 --progress=false --json --relay_pid=$2 2>>"$work/load.err" ||
    echo '{}'
}
field() { python3 -c 'import json,sys; d=json.loads(sys.argv[1] or "{}"); v=d.get(sys.argv[2]); print("-" if v is None else (round(v,1) if isinstance(v,float) else v))' "$1" "$2"; }
cpu_s() { awk '{print ($14 + $15) / 100}' "/proc/$1/stat"; }
# Milliseconds a GET /healthz on the admin endpoint takes (5 s at most: "-" beyond).
healthz_ms() {
  python3 - "$1" <<'PY'
import socket, sys, time
t = time.monotonic()
try:
    s = socket.create_connection(("127.0.0.1", int(sys.argv[1])), timeout=5)
    s.settimeout(max(0.1, 5 - (time.monotonic() - t)))
    s.sendall(b"GET /healthz HTTP/1.0\r\n\r\n")
    while s.recv(4096):
        pass
    print("%.1f" % ((time.monotonic() - t) * 1000))
except OSError:
    print("-")
PY
}

echo "nproc $(nproc); relay on its default limits${RELAY_FLAGS:+ and $RELAY_FLAGS}; innocents: 10 nodes x 1 KiB at 2000 frames/s; $T s per phase"
printf '%-13s %10s %10s %6s %9s %9s %9s %6s %7s %9s  %s\n' attack "before/s" "during/s" ratio \
  "p99 us" "p99 us" "RSS MiB" fds "CPU s" "healthz ms" "attacker"
for attack in $ATTACKS; do
  # shellcheck disable=SC2086
  ADMIN=1 start_fresh_relay --quiet --drain_timeout=2s $RELAY_FLAGS
  port=$relay_port
  before=$(innocents "$port" "$relay_pid" "$T")
  # The innocents come first, so the attack (which scans the proxy ports) aims at them;
  # it starts 1 s into their run and lasts past its end.
  innocents "$port" "$relay_pid" $((T + 1)) >"$work/during.json" &
  load_pid=$!
  pids+=($load_pid)
  sleep 1
  cpu0=$(cpu_s "$relay_pid")
  $sched_idle "$BIN/relay-attack" --relay=127.0.0.1:$port --attack="$attack" --seconds=$((T + 1)) \
    --port_range=$((port + 1))-$((port + 200)) --admin=127.0.0.1:$admin_port \
    >"$work/attack.out" 2>"$work/attack.err" &
  attack_pid=$!
  pids+=($attack_pid)
  sleep $((T - 2))
  health=$(healthz_ms "$admin_port")
  sleep 1
  fds=$(ls "/proc/$relay_pid/fd" | wc -l)
  wait "$load_pid" || true
  during=$(cat "$work/during.json")
  cpu1=$(cpu_s "$relay_pid")
  wait "$attack_pid" || true
  kill "$relay_pid"; wait "$relay_pid" 2>/dev/null || true
  b=$(field "$before" frames_per_s); d=$(field "$during" frames_per_s)
  ratio=$(python3 -c "b,d='$b','$d'; print('%.2f' % (float(d)/float(b)) if b not in ('-','0') and d!='-' else '-')")
  rss=$(python3 -c "v='$(field "$during" relay_rss_peak_kib)'; print('%.0f' % (float(v)/1024) if v!='-' else '-')")
  printf '%-13s %10s %10s %6s %9s %9s %9s %6s %7s %9s  %s\n' "$attack" "$b" "$d" "$ratio" \
    "$(field "$before" p99_us)" "$(field "$during" p99_us)" "$rss" "$fds" \
    "$(python3 -c "print('%.1f' % ($cpu1 - $cpu0))")" "$health" "$(tr -d '\n' <"$work/attack.out")"
done
