#!/usr/bin/env bash
# The deployment files, checked as an operator would use them (ctest "deploy"):
#   1. systemd-analyze verify accepts the unit with no warning;
#   2. the example flag file holds only flags relay-server knows;
#   3. cmake --install puts the binaries, the unit, the sysusers file, the flag file and
#      the docs where the unit expects them;
#   4. Type=notify works: relay-server tells $NOTIFY_SOCKET READY=1, then STOPPING=1 on
#      SIGTERM, and exits 0;
#   5. make package builds the four Debian packages, and lintian finds no error or warning;
#   6. in a sandbox (tests/tools/deploy_sandbox.sh): relay 0.4.0 installed and running, the
#      upgrade to this version with a live upgrade, the example built against the -dev
#      package, and a purge that leaves nothing.
# Usage: tests/tools/deploy_test.sh BUILD_DIR
set -euo pipefail
src=$(cd "$(dirname "$0")/../.." && pwd)
build=$(cd "${1:?build dir}" && pwd)
work=$(mktemp -d /tmp/relay-deploy-XXXXXX)
trap 'rm -rf "$work"' EXIT
fail() { echo "deploy: FAIL: $*" >&2; exit 1; }
version=$("$build/bin/relay-server" --version | awk '{print $2}')

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

# 5. The Debian packages (scripts/package.sh), each accepted by lintian: no error, and no
#    warning (docs/DEPLOY.md explains the informational tags that remain).
"$src/scripts/package.sh" "$build" "$work/pkg" >/dev/null || fail "make package"
for name in relay-server relay-tools librelay-node0 librelay-node-dev; do
  [ -f "$work/pkg/${name}_${version}_amd64.deb" ] || fail "no $name package"
done
lint=$(cd "$work/pkg" && lintian --tag-display-limit 0 *.deb 2>&1 | grep -v "running with root") || true
if grep -E "^(E|W): " <<<"$lint"; then
  fail "lintian: $(grep -cE "^(E|W): " <<<"$lint") errors or warnings"
fi

# 6. Install, upgrade and purge, in a private mount and network namespace whose root is an
#    overlay of this machine's (nothing reaches the real system): the single relay 0.4.0
#    package first, with a relay running from it as the unit runs it and a node on it; then
#    this version's four packages over it, and the unit's live upgrade (what `systemctl
#    reload` sends: SIGUSR2) to the new binary with the node still served; the echo example
#    built against the installed -dev package; then a purge that leaves nothing behind.
old="$work/relay-0.4.0"
DESTDIR="$old" cmake --install "$build" --prefix /usr >/dev/null
rm -rf "$old/usr/share/man"  # 0.4.0 had no man pages
mkdir -p "$old/DEBIAN"
cp "$src/tests/tools/relay-0.4/postinst" "$src/tests/tools/relay-0.4/prerm" "$old/DEBIAN/"
cat >"$old/DEBIAN/control" <<CONTROL
Package: relay
Version: 0.4.0
Architecture: amd64
Maintainer: relay maintainers <relay@example.invalid>
Depends: $(dpkg-deb -f "$work/pkg/relay-server_${version}_amd64.deb" Depends)
Section: net
Priority: optional
Description: relay server for P2P nodes behind NAT
CONTROL
dpkg-deb --root-owner-group --build "$old" "$work/relay_0.4.0_amd64.deb" >/dev/null
mkdir -p "$work/upper" "$work/ovl" "$work/root"
timeout 300 unshare --mount --net --propagation private \
  bash "$src/tests/tools/deploy_sandbox.sh" "$work" "$version" >"$work/sandbox.log" 2>&1 ||
  fail "install/upgrade/purge: $(tail -20 "$work/sandbox.log")"
echo "deploy: ok ($(cd "$work/pkg" && ls *_amd64.deb | grep -vc dbgsym) packages, lintian clean; 0.4.0 -> $version with a live upgrade; purge clean)"
