#!/usr/bin/env bash
# Builds the given CMake targets (default: everything) quietly: one line on success, the
# tail of the log on failure. The full log stays in $BUILD/build.log.
# Usage: scripts/build.sh [target...]   (BUILD and JOBS from the environment)
set -euo pipefail
cd "$(dirname "$0")/.."
BUILD=${BUILD:-build}
JOBS=${JOBS:-$(nproc)}
mkdir -p "$BUILD"
log="$BUILD/build.log"
if [ ! -f "$BUILD/CMakeCache.txt" ]; then
  if ! cmake -S . -B "$BUILD" -DCMAKE_BUILD_TYPE=${BUILD_TYPE:-RelWithDebInfo} ${CMAKE_ARGS:-} >"$log" 2>&1; then
    tail -40 "$log" >&2
    echo "build: cmake configure failed (full log: $log)" >&2
    exit 1
  fi
fi
args=()
for t in "$@"; do
  args+=(--target "$t")
done
start=$(date +%s)
if ! cmake --build "$BUILD" -j "$JOBS" "${args[@]}" >"$log" 2>&1; then
  grep -E "error|Error" "$log" | head -40 >&2 || true
  echo "build: failed (full log: $log)" >&2
  exit 1
fi
echo "build: ${*:-all} ok in $(( $(date +%s) - start ))s (log: $log)"
