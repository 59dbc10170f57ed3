# shellcheck shell=bash disable=SC2034  # sourced: its variables are the caller's
# Sourced by bench/run_bench.sh and bench/ab.sh from the repository's root, before
# bench/lib.sh (not run): the benchmarks run in a private network namespace of their own,
# whose loopback routes use one TCP congestion control, the same for every forwarder and
# load generator.
#
#   CC=cubic (the default): the congestion control of the benchmark's loopback;
#   CC=host: no namespace, the host's loopback and its own congestion control.
#
# Why (docs/bench/METHOD.md, "Loopback artifacts"): loopback has no queueing
# discipline, so under a congestion control that paces (bbr, the default of some hosts)
# TCP paces every socket itself with high-resolution timers, whose transmits run in
# whichever thread the timer interrupts and are billed to it; a host that runs bbr on its
# network interfaces gives them the fq discipline, which paces without that. cubic is
# Linux's own default. The namespace (unshare --net; needs root) changes nothing on the
# host: its loopback, routes and sysctls stay as they were, and no other loopback traffic
# of the host shares the benchmark's. Without it (not root, CC=host) the run measures the
# host's loopback and says so.
#
# Sets HOST_CC (the host's default congestion control), LOOPBACK_CC (the one measured)
# and BENCH_NETNS (1 inside the namespace, else 0).
HOST_CC=${HOST_CC:-$(cat /proc/sys/net/ipv4/tcp_congestion_control 2>/dev/null || echo unknown)}
export HOST_CC
CC=${CC:-cubic}

# The routes of 127.0.0.0/8 use congestion control $1 for connections opened from now on
# (only inside the namespace: it replaces the namespace's own routes).
loopback_cc() {
  local route
  for route in 127.0.0.0/8 127.0.0.1; do
    ip route replace local "$route" dev lo table local proto kernel scope host \
      src 127.0.0.1 congctl "$1"
  done
}

if [ -z "${RELAY_BENCH_NETNS:-}" ] && [ "$CC" != host ]; then
  # Re-run this very script in a new namespace, its loopback up and its routes set (the
  # script's own arguments follow). A namespace that cannot be made, or a congestion
  # control the kernel lacks, falls back to the host's loopback.
  if unshare --net -- bash -c "ip link set lo up && $(declare -f loopback_cc) && loopback_cc $CC" \
    2>/dev/null; then
    exec unshare --net -- env RELAY_BENCH_NETNS=1 bash -c \
      "ip link set lo up && $(declare -f loopback_cc) && loopback_cc $CC && exec \"\$@\"" \
      bench "bench/$(basename "$0")" "$@"
  fi
  echo "bench: no private network namespace with congestion control $CC (needs root," \
    "unshare, ip and that module): measuring on the host's loopback, congestion control" \
    "$HOST_CC" >&2
  CC=host
fi
if [ -n "${RELAY_BENCH_NETNS:-}" ]; then
  BENCH_NETNS=1
  LOOPBACK_CC=$CC
else
  BENCH_NETNS=0
  LOOPBACK_CC=$HOST_CC
fi
