#!/usr/bin/env bash
# The node library as an embedder gets it (ctest "package"): install the build into a
# fresh prefix, build examples/echo_node.cc against the *installed* library twice (with
# pkg-config, and with CMake's find_package(RelayNode)), check the library exports only
# its API, then run the example against a relay: a message sent to its proxy address
# comes back.
# Usage: tests/tools/package_test.sh BUILD_DIR
set -euo pipefail
src=$(cd "$(dirname "$0")/../.." && pwd)
build=$(cd "${1:?build dir}" && pwd)
source "$src/scripts/lib.sh"  # work, pids (stopped at exit)
fail() { echo "package: FAIL: $*" >&2; exit 1; }

cmake --install "$build" --prefix "$work/root" >/dev/null
prefix="$work/root"
pc=$(find "$prefix" -name relay-node.pc | head -1)
[ -n "$pc" ] || fail "no relay-node.pc installed"
[ -f "$prefix/include/relay/node.h" ] || fail "no include/relay/node.h installed"
grep -q "pb.h\|absl/" "$prefix/include/relay/node.h" && fail "the public header pulls in protobuf or abseil"
lib=$(find "$prefix" -name 'librelay-node.so*' -type f | head -1)
[ -n "$lib" ] || fail "no librelay-node.so installed"
libdir=$(dirname "$lib")

# 1. pkg-config, as the README says.
export PKG_CONFIG_PATH="$(dirname "$pc")"
grep -q "^prefix=$prefix\$" "$pc" || fail "relay-node.pc does not name the install prefix: $(head -1 "$pc")"
# shellcheck disable=SC2046
g++ "$src/examples/echo_node.cc" $(pkg-config --cflags --libs relay-node) -o "$work/echo_pkgconfig" ||
  fail "echo_node does not build with pkg-config"

# 2. CMake's find_package.
cmake -S "$src/examples" -B "$work/cmake-build" -DCMAKE_PREFIX_PATH="$prefix" >/dev/null ||
  fail "find_package(RelayNode) failed"
cmake --build "$work/cmake-build" >/dev/null || fail "echo_node does not build with CMake"

# 3. Only the API is exported (the relay's own libraries are hidden inside).
exported=$(nm -D --defined-only -C "$lib" | awk '{ $1=""; $2=""; print }' | grep -v "^ *relay::Node\|^ *typeinfo\|^ *vtable" | grep -c "relay::" || true)
[ "$exported" = 0 ] || fail "$exported internal relay:: symbols exported: $(nm -D --defined-only -C "$lib" | grep relay:: | grep -v 'relay::Node' | head -3)"

# 4. It works: echo_node on a relay, relay-node sends to it and waits for the echo.
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
lo=$(python3 -c 'import socket
for b in range(40000, 60000, 17):
    try:
        ss=[socket.socket() for _ in range(4)]
        [s.bind(("127.0.0.1", b+i)) for i, s in enumerate(ss)]
        print(b); break
    except OSError: pass
    finally:
        [s.close() for s in ss]')
"$build/bin/relay-server" --listen=127.0.0.1:$port --port_range=$lo-$((lo + 3)) --threads=1 \
  2>"$work/relay.log" &
pids+=($!)
for _ in $(seq 1 200); do
  (exec 3<>/dev/tcp/127.0.0.1/$port) 2>/dev/null && break
  sleep 0.02
done
for echo in "$work/echo_pkgconfig" "$work/cmake-build/echo_node"; do
  LD_LIBRARY_PATH="$libdir" "$echo" 127.0.0.1:$port >"$work/echo.out" 2>"$work/echo.err" &
  pids+=($!)
  echo_pid=$!
  for _ in $(seq 1 500); do
    [ -s "$work/echo.out" ] && break
    sleep 0.02
  done
  address=$(head -1 "$work/echo.out")
  [[ "$address" == 127.0.0.1:* ]] || fail "$echo printed no proxy address: $(cat "$work/echo.err")"
  reply=$("$build/bin/relay-node" send --to="$address" --text="hello $echo" \
    --relay=127.0.0.1:$port --wait-reply --timeout=10s 2>"$work/send.err") ||
    fail "no reply from $echo: $(cat "$work/send.err") / $(cat "$work/echo.err")"
  [[ "$reply" == *"hello $echo"* ]] || fail "wrong reply from $echo: $reply"
  kill "$echo_pid"
  wait "$echo_pid" || fail "$echo did not exit cleanly on SIGTERM"
done
echo "package: ok (pkg-config and CMake builds of echo_node against $prefix echo through a relay)"
