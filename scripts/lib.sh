# Shared by the project's shell scripts (sourced, not run): a work folder, the PIDs of
# every process the script starts (all stopped, by PID, on exit, also on error or
# Ctrl-C), and free ports on 127.0.0.1. Used by bench/, tools/demo.sh and tests/tools/.
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
  echo "$(basename "$0"): no free ports" >&2; exit 1
}

# Waits (at most 10 s) until something listens on port $1.
wait_port() {
  for _ in $(seq 1 200); do
    [ -n "$(ss -Hltn "( sport = :$1 )")" ] && return 0
    sleep 0.05
  done
  echo "$(basename "$0"): nothing listens on $1" >&2; cat "$work"/*.log >&2 2>/dev/null; exit 1
}
