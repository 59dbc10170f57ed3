#!/usr/bin/env bash
# The deployment files, checked as an operator would use them (ctest "deploy"):
#   1. systemd-analyze verify accepts the unit with no warning;
#   2. the example flag file holds only flags relay-server knows;
#   3. cmake --install puts the binaries, the unit, the sysusers file, the flag file and
#      the docs where the unit expects them;
#   4. Type=notify works: relay-server tells $NOTIFY_SOCKET READY=1, then STOPPING=1 on
#      SIGTERM, and exits 0;
#   5. CPack builds a .deb with those files, its shared-library dependencies and the
#      maintainer scripts (postinst creates the user and /etc/relay/relay.conf).
# Usage: tests/tools/deploy_test.sh BUILD_DIR
set -euo pipefail
src=$(cd "$(dirname "$0")/../.." && pwd)
build=$(cd "${1:?build dir}" && pwd)
work=$(mktemp -d /tmp/relay-deploy-XXXXXX)
trap 'rm -rf "$work"' EXIT
fail() { echo "deploy: FAIL: $*" >&2; exit 1; }

# 1. The unit (ExecStart pointed at this build, which systemd-analyze checks exists).
sed "s|/usr/bin/relay-server|$build/bin/relay-server|" "$src/tools/deploy/relay-server.service" \
  >"$work/relay-server.service"
out=$(systemd-analyze verify "$work/relay-server.service" 2>&1) || fail "systemd-analyze: $out"
[ -z "$out" ] || fail "systemd-analyze warns: $out"

# 2. The example flag file parses (flags are read in order; --help then exits 0).
"$build/bin/relay-server" --flagfile="$src/tools/deploy/relay.conf" --help >/dev/null ||
  fail "tools/deploy/relay.conf has a flag relay-server does not know"

# 3. cmake --install.
cmake --install "$build" --prefix "$work/root" >/dev/null
for f in bin/relay-server bin/relay-node bin/relay-load lib/systemd/system/relay-server.service \
  lib/sysusers.d/relay.conf share/doc/relay/relay.conf.example share/doc/relay/DEPLOY.md; do
  [ -e "$work/root/$f" ] || fail "cmake --install did not install $f"
done

# 4. sd_notify: READY=1 once serving, STOPPING=1 on SIGTERM, exit 0.
python3 - "$build/bin/relay-server" "$work/notify" <<'PY' || fail "sd_notify"
import os, signal, socket, subprocess, sys
binary, path = sys.argv[1], sys.argv[2]
s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
s.bind(path)
s.settimeout(10)
env = dict(os.environ, NOTIFY_SOCKET=path)
p = subprocess.Popen([binary, "--listen=127.0.0.1:0", "--port_range=1025-1026", "--quiet"],
                     env=env, stderr=subprocess.DEVNULL)
try:
    got = s.recv(4096).decode()
    assert "READY=1" in got, got
    p.send_signal(signal.SIGTERM)
    got = s.recv(4096).decode()
    assert "STOPPING=1" in got, got
    assert p.wait(timeout=20) == 0
finally:
    if p.poll() is None:
        p.kill()
PY

# 5. The Debian package.
(cd "$build" && cpack -G DEB -B "$work/pkg" >/dev/null) || fail "cpack"
deb=$(ls "$work"/pkg/*.deb)
contents=$(dpkg-deb -c "$deb")
for f in ./usr/bin/relay-server ./usr/lib/systemd/system/relay-server.service \
  ./usr/lib/sysusers.d/relay.conf ./usr/share/doc/relay/relay.conf.example; do
  grep -q " $f\$" <<<"$contents" || fail "the .deb lacks $f"
done
depends=$(dpkg-deb -f "$deb" Depends)
grep -q libsodium <<<"$depends" || fail "Depends lacks libsodium: $depends"
info=$(dpkg-deb -I "$deb")  # (not piped into grep -q: pipefail would see SIGPIPE)
grep -q postinst <<<"$info" || fail "the .deb has no postinst"
grep -q prerm <<<"$info" || fail "the .deb has no prerm"
echo "deploy: ok ($(basename "$deb"), $(wc -c <"$deb") bytes)"
