#!/usr/bin/env bash
# make demo: the design's exchange on 127.0.0.1. Starts a relay and two nodes, node 1
# sends "hello" to node 2's proxy address, node 2 (--echo) answers through node 1's proxy
# address; prints both addresses and the round trip, then stops everything it started.
set -euo pipefail
BIN=${BIN:-build/bin}
source "$(dirname "$0")/../scripts/lib.sh"  # work, pids (stopped at exit), free_base

proxy_lo=$(free_base 101)
main_port=$((proxy_lo + 100))

"$BIN/relay-server" --listen=127.0.0.1:$main_port --advertise_host=127.0.0.1 \
  --port_range=$proxy_lo-$((proxy_lo + 99)) --threads=2 2>"$work/relay.log" &
pids+=($!)
for _ in $(seq 1 100); do
  grep -q "listening" "$work/relay.log" && break
  sleep 0.05
done
echo "relay:  127.0.0.1:$main_port"

"$BIN/relay-node" --relay=127.0.0.1:$main_port --echo >"$work/node2.out" 2>"$work/node2.err" &
pids+=($!)
for _ in $(seq 1 100); do
  [ -s "$work/node2.out" ] && break
  sleep 0.05
done
node2=$(head -n 1 "$work/node2.out")
[ -n "$node2" ] || { echo "demo: node 2 got no address" >&2; cat "$work/node2.err" >&2; exit 1; }
echo "node 2: proxy address $node2 (echoing)"

out=$("$BIN/relay-node" send --relay=127.0.0.1:$main_port --to="$node2" --text=hello \
  --wait-reply --timeout=10s)
node1=$(echo "$out" | sed -n 1p)
echo "node 1: proxy address $node1"
echo "node 1 -> node 2: hello"
echo "node 2 -> node 1: $(echo "$out" | sed -n 2p)"
echo "$out" | sed -n 3p
echo "$out" | grep -q 'text="hello"' || { echo "demo: no echo came back" >&2; exit 1; }
grep -q 'text="hello"' "$work/node2.out" || { echo "demo: node 2 saw nothing" >&2; exit 1; }
echo "demo: ok"
