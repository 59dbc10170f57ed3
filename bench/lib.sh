# Shared by the bench scripts (sourced, not run): a work folder, the PIDs of every
# process the script starts (all stopped on exit, also on error or Ctrl-C), and port
# helpers for 127.0.0.1.
work=$(mktemp -d)
pids=()
cleanup() {
  for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
  for pid in "${pids[@]}"; do wait "$pid" 2>/dev/null || true; done
  rm -rf "$work"
}
trap cleanup EXIT

# Prints the first of $1 consecutive ports below the ephemeral range that nobody listens on.
free_base() {
  local n=$1 base
  for _ in $(seq 1 100); do
    base=$((20000 + RANDOM % (12000 - n)))
    if [ "$(ss -Htln "( sport >= :$base and sport < :$((base + n)) )" | wc -l)" -eq 0 ]; then
      echo "$base"; return
    fi
  done
  echo "bench: no free ports" >&2; exit 1
}

# Waits (at most 10 s) until something listens on port $1.
wait_port() {
  for _ in $(seq 1 200); do
    [ -n "$(ss -Hltn "( sport = :$1 )")" ] && return 0
    sleep 0.05
  done
  echo "bench: nothing listens on $1" >&2; cat "$work"/*.log >&2 2>/dev/null; exit 1
}

# Starts $BIN/relay-server (or $RELAY_BIN) on 127.0.0.1 with a free main port and the
# PROXY_PORTS (default 200) proxy ports above it, extra flags from the arguments; sets
# relay_port and relay_pid (stopped at exit) and waits until it listens. Its stderr goes
# to $work/relay.log.
start_fresh_relay() {  # with ADMIN=1: --admin_listen on admin_port (the port above them)
  local ports=${PROXY_PORTS:-200}
  relay_port=$(free_base $((ports + 2)))
  admin_port=$((relay_port + ports + 1))
  local admin=()
  [ "${ADMIN:-0}" = 1 ] && admin=(--admin_listen=127.0.0.1:$admin_port)
  "${RELAY_BIN:-$BIN/relay-server}" --listen=127.0.0.1:$relay_port \
    --port_range=$((relay_port + 1))-$((relay_port + ports)) "${admin[@]}" "$@" >/dev/null \
    2>"$work/relay.log" &
  relay_pid=$!
  pids+=($relay_pid)
  wait_port "$relay_port"
}
