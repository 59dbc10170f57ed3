# Shared by the bench scripts (sourced, not run): scripts/lib.sh (a work folder, the
# PIDs of every process started, stopped on exit; free ports) and a fresh relay per run.
source "$(dirname "${BASH_SOURCE[0]}")/../scripts/lib.sh"

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
