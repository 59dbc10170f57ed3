#!/usr/bin/env bash
# The sockmap experiment of issue 33, measured: the relay (default), haproxy (mode tcp,
# forced splice, as make bench) and the two BPF forwarders of this folder (sockmap_fwd:
# stream parser + verdict, whole frames; sockmap_fwd --verdict-only: every skb redirected
# as it comes, no frame work at all: the speed limit of the redirect) on the same rows,
# alternating, REPEAT times, in make bench's private namespace (cubic). Prints one line
# per run: Gbit/s, lost or bad frames, the forwarder's own CPU s/GB and the host's (the
# BPF forwarders' work runs in softirq and kworker threads, not in their process: only
# the host's CPU compares them). Needs root (CAP_BPF, CAP_NET_ADMIN), clang, libbpf-dev.
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=${BIN:-build/bin}
REPEAT=${REPEAT:-2}
SECONDS_PER_RUN=${SECONDS_PER_RUN:-3}
ROWS=${ROWS:-"1x1:1024 1x1:64 1x16:1024 1x1:65536"}
PATHS=${PATHS:-relay haproxy sockmap verdict}
scripts/install_deps.sh haproxy
out=${OUT:-build/sockmap}
mkdir -p "$out"
inc=-I/usr/include/$(gcc -print-multiarch)
clang -O2 -g -target bpf "$inc" -c bench/sockmap/sockmap_fwd.bpf.c -o "$out/parser.bpf.o"
clang -O2 -g -target bpf "$inc" -DVERDICT_ONLY -c bench/sockmap/sockmap_fwd.bpf.c \
  -o "$out/verdict.bpf.o"
g++ -O2 -Wall -Werror -o "$out/sockmap_fwd" bench/sockmap/sockmap_fwd.cc -lbpf
source bench/loopback_ns.sh
source bench/lib.sh
echo "sockmap: loopback congestion control $LOOPBACK_CC, $(uname -r)" >&2

run() {  # path senders frame_bytes
  local path=$1 senders=$2 fb=$3 base addr fwd
  base=$(free_base 1104)
  case $path in
    relay)
      "$BIN/relay-server" --listen=127.0.0.1:$base --port_range=$((base + 1))-$((base + 200)) \
        --lease_ttl=1s --quiet >/dev/null 2>"$work/relay.log" &
      fwd=$!; addr="--relay=127.0.0.1:$base" ;;
    haproxy)
      printf 'global\n  maxconn 4000\ndefaults\n  mode tcp\n  timeout connect 5s\n  timeout client 60s\n  timeout server 60s\n  option splice-request\n  option splice-response\nfrontend f\n  bind 127.0.0.1:%s\n  default_backend b\nbackend b\n  server s1 127.0.0.1:%s\n' \
        "$base" $((base + 1)) > "$work/haproxy.cfg"
      haproxy -f "$work/haproxy.cfg" -q >/dev/null 2>&1 &
      fwd=$!; addr="--direct --sink=127.0.0.1:$((base + 1)) --via=127.0.0.1:$base" ;;
    sockmap | verdict)
      local obj=parser
      [ "$path" = verdict ] && obj=verdict
      "$out/sockmap_fwd" "$out/$obj.bpf.o" "$base" $((base + 1)) 2>"$work/fwd.log" &
      fwd=$!; addr="--direct --sink=127.0.0.1:$((base + 1)) --via=127.0.0.1:$base" ;;
  esac
  pids+=($fwd)
  wait_port "$base"
  local line
  # shellcheck disable=SC2086
  line=$(timeout 60 "$BIN/relay-load" $addr --relay_pid=$fwd --senders="$senders" \
    --frame_bytes="$fb" --seconds="${SECONDS_PER_RUN}s" --warmup=1s --progress=false --json \
    2>"$work/load.err") || line="{\"failed\":\"$(tr '\n"' '  ' < "$work/load.err" | cut -c1-120)\"}"
  kill "$fwd" 2>/dev/null || true
  wait "$fwd" 2>/dev/null || true
  echo "{\"path\":\"$path\",\"shape\":\"1x$senders\",\"frame\":$fb,\"result\":$line}" \
    >> "$out/runs.jsonl"
  python3 - "$path" "1x$senders" "$fb" "$line" <<'PY'
import json, sys
path, shape, fb, line = sys.argv[1:]
r = json.loads(line)
if "failed" in r:
    print(f"{shape:5} {fb:>6} {path:8} FAILED {r['failed']}")
else:
    f = lambda k: "-" if r.get(k) is None else f"{r[k]:.3f}"
    print(f"{shape:5} {fb:>6} {path:8} {r['gbit_per_s']:7.2f} Gbit/s  lost {r['lost_frames']}"
          f"  bad {r['bad_frames']}  own CPU s/GB {f('relay_cpu_s_per_gb')}"
          f"  host CPU s/GB {f('host_cpu_s_per_gb')}")
PY
}

: > "$out/runs.jsonl"
for rep in $(seq 1 "$REPEAT"); do
  for row in $ROWS; do
    order=$PATHS
    [ $((rep % 2)) = 0 ] && order=$(tr ' ' '\n' <<< "$PATHS" | tac | tr '\n' ' ')
    for path in $order; do
      run "$path" "$(cut -d: -f1 <<< "$row" | cut -dx -f2)" "$(cut -d: -f2 <<< "$row")"
    done
  done
done
